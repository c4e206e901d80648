//! SRTP with SDES keys (RFC 3711, RFC 4568) against baresip: with the door's
//! `device.ip_call.media_encryption` mandatory or optional, baresip's
//! `mediaenc=srtp-mand` and `mediaenc=srtp` calls are answered, the tones go both
//! ways through the encrypted session (Goertzel on both sides), an RFC 4733 digit
//! inside SRTP opens the door, and a capture on loopback finds no packet that
//! reads as plain PCMU of either tone, while the same detector finds them in a
//! plain call. A plain offer to a mandatory door gets 488; the door with
//! encryption off answers the same caller. The door's own calls offer RTP/SAVP
//! with both suites' keys when encryption is mandatory; a plain answer ends the
//! call, an answer with keys is taken.

use std::ops::RangeInclusive;

use doorphone_interfaces::relay::Relay1Proxy;
use doorphone_interfaces::sip::{call_state, end_reason};
use doorphone_system_tests::audio::{dominant, read_wav};
use doorphone_system_tests::baresip::{BARESIP_TONE, Baresip};
use doorphone_system_tests::capture::{Capture, Datagram, plain_pcmu_tone, rtp_payload};
use doorphone_system_tests::rig::{Rig, next_end, until_state};
use doorphone_system_tests::sip::{Callee, Caller, Sipp, callee, free_port};
use doorphone_system_tests::{PATIENCE, chown_to};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// The door phone's test tone.
const DOOR_TONE: f64 = 440.0;
/// How long baresip stays in a call.
const CALL_SECONDS: u32 = 6;

/// A door with relay A opening on `#`, its speaker written to a WAV file in
/// `speaker_dir`, and IP calls' media encryption `encryption`.
async fn door(speaker_dir: &tempfile::TempDir, encryption: &str) -> Rig {
    chown_to(speaker_dir.path(), "doorphone-media").unwrap();
    let encryption = encryption.to_owned();
    Rig::start_full(
        30,
        Some(&speaker_dir.path().join("speaker.wav")),
        true,
        &[],
        move |doc: &mut Value| {
            doc["relays"] = json!([
                { "id": "A", "name": "Door", "gpio": 17, "active_low": false,
                  "trigger_delay": 0, "hold": 1, "dtmf_code": "#" }
            ]);
            doc["device"]["ip_call"]["media_encryption"] = json!(encryption);
        },
    )
    .await
}

/// What a baresip call through the door showed.
struct Call {
    /// The tone baresip heard, and the one the door's speaker played.
    baresip_heard: Option<f64>,
    door_heard: Option<f64>,
    /// PCMU packets to or from baresip's RTP ports, and those that read as plain
    /// PCMU of one of the tones.
    rtp_packets: usize,
    plain_tone_packets: usize,
    /// The relays the call's digit energised.
    opened: Vec<String>,
}

/// baresip calls the door with `mediaenc`, presses `#` once answered, and quits
/// after [`CALL_SECONDS`]; the capture records its RTP ports meanwhile.
async fn call(
    rig: &Rig,
    speaker_dir: &tempfile::TempDir,
    mediaenc: Option<&str>,
    rtp_ports: RangeInclusive<u16>,
) -> Call {
    let mut states = rig.states().await;
    let relay = Relay1Proxy::new(&rig.conn).await.unwrap();
    let mut opened = relay.receive_door_opened().await.unwrap();
    let capture = Capture::start(rtp_ports.clone()).expect("an AF_PACKET socket (root)");
    let mut baresip = Baresip::dial(
        &format!("sip:door@127.0.0.1:{}", rig.port),
        mediaenc,
        rtp_ports,
        CALL_SECONDS,
    )
    .unwrap();
    until_state(&mut states, call_state::ANSWERED).await;
    baresip.press("#").unwrap();
    let signal = tokio::time::timeout(PATIENCE, opened.next())
        .await
        .unwrap_or_else(|_| panic!("no door opened\n{}\n{}", baresip.log(), rig.sip_log()))
        .unwrap();
    assert_eq!(signal.args().unwrap().relay, "A");
    let status = baresip.finish().await.unwrap();
    assert!(
        status.success(),
        "baresip: {status}\n{}\n{}",
        baresip.log(),
        rig.sip_log()
    );
    assert_eq!(
        next_end(&mut states).await,
        end_reason::REMOTE_HANGUP,
        "{}",
        baresip.log()
    );
    let seen: Vec<Datagram> = capture.stop();
    let pcmu: Vec<&[u8]> = seen
        .iter()
        .filter_map(|d| rtp_payload(&d.payload, 0))
        .collect();
    let plain_tone_packets = pcmu
        .iter()
        .filter(|p| plain_pcmu_tone(p, &[DOOR_TONE, BARESIP_TONE]))
        .count();

    let heard = baresip
        .heard()
        .unwrap_or_else(|| panic!("baresip recorded nothing\n{}", baresip.log()));
    let (rate, samples) = read_wav(&std::fs::read(&heard).unwrap()).unwrap();
    let last = &samples[samples.len().saturating_sub(rate as usize)..];
    let baresip_heard = dominant(last, rate, &[DOOR_TONE, BARESIP_TONE]);
    let speaker = std::fs::read(speaker_dir.path().join("speaker.wav")).unwrap();
    let (rate, played) = read_wav(&speaker).unwrap();
    let tail = &played[played.len().saturating_sub(rate as usize)..];
    let door_heard = dominant(tail, rate, &[DOOR_TONE, BARESIP_TONE]);
    Call {
        baresip_heard,
        door_heard,
        rtp_packets: pcmu.len(),
        plain_tone_packets,
        opened: rig.relays_energised(),
    }
}

/// Both tones heard, the door opened, and none of the many RTP packets on the
/// wire is plain PCMU of a tone.
fn assert_encrypted_call(call: &Call, what: &str) {
    assert_eq!(call.baresip_heard, Some(DOOR_TONE), "{what}: baresip heard");
    assert_eq!(
        call.door_heard,
        Some(BARESIP_TONE),
        "{what}: the door heard"
    );
    assert_eq!(call.opened, ["A"], "{what}: the digit opened relay A");
    assert!(
        call.rtp_packets > 200,
        "{what}: the capture saw {} RTP packets",
        call.rtp_packets
    );
    assert_eq!(
        call.plain_tone_packets, 0,
        "{what}: {} of {} packets are plain PCMU of a tone",
        call.plain_tone_packets, call.rtp_packets
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mandatory_srtp_carries_tones_and_a_door_code_and_hides_the_audio() {
    doorphone_system_tests::require_root();
    let speaker_dir = tempfile::Builder::new()
        .prefix("speaker")
        .tempdir()
        .unwrap();
    let rig = door(&speaker_dir, "mandatory").await;
    let encrypted = call(&rig, &speaker_dir, Some("srtp-mand"), 40000..=40009).await;
    assert_encrypted_call(&encrypted, "srtp-mand");
}

#[tokio::test(flavor = "multi_thread")]
async fn optional_srtp_is_taken_when_the_caller_offers_keys() {
    doorphone_system_tests::require_root();
    let speaker_dir = tempfile::Builder::new()
        .prefix("speaker")
        .tempdir()
        .unwrap();
    let rig = door(&speaker_dir, "optional").await;
    let encrypted = call(&rig, &speaker_dir, Some("srtp"), 40010..=40019).await;
    assert_encrypted_call(&encrypted, "srtp");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_call_shows_its_audio_to_the_same_capture() {
    doorphone_system_tests::require_root();
    let speaker_dir = tempfile::Builder::new()
        .prefix("speaker")
        .tempdir()
        .unwrap();
    let rig = door(&speaker_dir, "off").await;
    let plain = call(&rig, &speaker_dir, None, 40020..=40029).await;
    assert_eq!(plain.baresip_heard, Some(DOOR_TONE));
    assert_eq!(plain.door_heard, Some(BARESIP_TONE));
    assert_eq!(plain.opened, ["A"]);
    // The detector that finds nothing in SRTP finds the tones in plain RTP.
    assert!(
        plain.plain_tone_packets * 2 > plain.rtp_packets && plain.rtp_packets > 200,
        "{} of {} packets are plain PCMU of a tone",
        plain.plain_tone_packets,
        plain.rtp_packets
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mandatory_door_refuses_a_plain_offer_with_488_and_answers_it_when_off() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |doc| {
        doc["device"]["ip_call"]["media_encryption"] = json!("mandatory");
    })
    .await;
    rig.call_through("plain-refused", "visitor", Caller::Refused(488))
        .await;
    assert_eq!(
        rig.media_sessions().await,
        0,
        "a refused offer keeps no media"
    );
    let log = rig.sip_log();
    assert!(
        log.contains("not encrypted"),
        "the refusal says why:\n{log}"
    );

    rig.reconfigure(|doc| doc["device"]["ip_call"]["media_encryption"] = json!("off"))
        .await;
    let mut states = rig.states().await;
    rig.call_through(
        "plain-answered",
        "visitor",
        Caller::Answered {
            hang_up_after: std::time::Duration::from_millis(500),
        },
    )
    .await;
    assert_eq!(next_end(&mut states).await, end_reason::REMOTE_HANGUP);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mandatory_door_ends_its_own_call_when_the_answer_is_plain() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |doc| {
        doc["device"]["ip_call"]["media_encryption"] = json!("mandatory");
    })
    .await;
    let proxy = rig.proxy().await;
    let mut states = rig.states().await;
    let answers = Callee::Answer {
        after: std::time::Duration::from_millis(200),
    };
    // A callee that answers in plain RTP gets a BYE at once.
    let mut plain = rig.callee("plain-answer", answers.clone());
    proxy
        .dial(&format!("127.0.0.1:{}", plain.port), Default::default())
        .await
        .unwrap();
    plain
        .succeeds(PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.sip_log()));
    assert_eq!(next_end(&mut states).await, end_reason::FAILED);
    let invite = plain
        .messages()
        .into_iter()
        .find(|m| !m.sent && m.is_request("INVITE"))
        .expect("the door's INVITE");
    for line in [
        "RTP/SAVP",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:",
        "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:",
    ] {
        assert!(invite.text.contains(line), "{line}:\n{}", invite.text);
    }

    // A callee that takes the first suite with its own key is answered.
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";
    let scenario = callee(&answers)
        .replace("RTP/AVP 0 101", "RTP/SAVP 0 101")
        .replace(
            "a=sendrecv\n",
            &format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\na=sendrecv\n"),
        );
    let mut keyed = Sipp::start(
        rig.dir.path(),
        "keyed-answer",
        &scenario,
        free_port(),
        None,
        &[],
    )
    .unwrap();
    let call = proxy
        .dial(&format!("127.0.0.1:{}", keyed.port), Default::default())
        .await
        .unwrap();
    until_state(&mut states, call_state::ANSWERED).await;
    let answered = rig.call_object(call).await;
    assert_eq!(answered.state().await.unwrap(), call_state::ANSWERED);
    answered.hangup().await.unwrap();
    keyed.succeeds(PATIENCE).await.unwrap();
    assert_eq!(next_end(&mut states).await, end_reason::LOCAL_HANGUP);
}
