//! System tests of `doorphone-sip`: the real agent, config and media services as
//! their own users on a private bus, and SIPp as callers, callees and registrars
//! on loopback.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use doorphone_interfaces::relay::Relay1Proxy;
use doorphone_interfaces::sip::{self, account_state};
use doorphone_system_tests::audio::{dominant, read_wav};
use doorphone_system_tests::baresip::{BARESIP_TONE, Baresip};
use doorphone_system_tests::rig::{
    Rig, WAIT, account, between, contact, next_end, next_refusal, now_ms,
};
use doorphone_system_tests::servers::{FTP_SERVER, HTTP_SERVER, SMTP_SERVER, Server, closed_port};
use doorphone_system_tests::sip::{Callee, Caller, Sipp, Traced, callee, free_port, registrar};
use doorphone_system_tests::{PATIENCE, chown_to};
use futures_util::StreamExt;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn whitelist_lets_contacts_ring_and_refuses_strangers_without_media() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |doc| {
        // Account 1's server is on 127.0.0.1 (it need not answer: calls to
        // its user from there are its calls). It guards the door phone.
        let mut a = account(1, "1001", "127.0.0.1:9", "x");
        a["prevent_sip_hacking"] = json!(true);
        doc["accounts"] = json!([a]);
        doc["contacts"] = json!([
            contact(1, "200", true),
            contact(2, "300", false),
            contact(3, "127.0.0.2", true)
        ]);
        doc["calls"]["auto_answer"]["sip"] = json!(true);
    })
    .await;
    let proxy = rig.proxy().await;
    let mut refused = proxy.receive_call_refused().await.unwrap();

    // A stranger through the account's server.
    let mut stranger = rig.call("stranger", "1001", "666", false, Caller::Refused(403));
    stranger.succeeds(WAIT).await.unwrap();
    let (caller, code, reason) = next_refusal(&mut refused).await;
    assert_eq!((code, reason.as_str()), (403, "not_whitelisted"));
    assert!(caller.contains("666"), "{caller}");
    assert!(
        stranger.messages().iter().all(|m| !m.is_response(180)),
        "a stranger must not hear ringing"
    );
    // Known but not whitelisted: the same answer.
    rig.call("known", "1001", "300", false, Caller::Refused(403))
        .succeeds(WAIT)
        .await
        .unwrap();
    assert_eq!(next_refusal(&mut refused).await.2, "not_whitelisted");
    // The resident's From user, sent straight to the door phone from anywhere
    // but the server: a direct call, whose caller is its address, not its From.
    rig.call_at("spoofed", "127.0.0.3", "door", "200", Caller::Refused(403))
        .succeeds(WAIT)
        .await
        .unwrap();
    let (caller, _, reason) = next_refusal(&mut refused).await;
    assert_eq!(reason, "not_whitelisted");
    assert!(caller.starts_with("sip:127.0.0.3:"), "{caller}");
    assert_eq!(rig.media_sessions().await, 0, "no media for strangers");

    // The resident through the server, and the whitelisted address directly.
    let mut friend = rig.call(
        "friend",
        "1001",
        "200",
        false,
        Caller::Answered {
            hang_up_after: Duration::from_millis(300),
        },
    );
    friend.succeeds(WAIT).await.unwrap();
    assert!(friend.messages().iter().any(|m| m.is_response(180)));
    rig.call_at(
        "friend-ip",
        "127.0.0.2",
        "door",
        "anyone",
        Caller::Answered {
            hang_up_after: Duration::from_millis(300),
        },
    )
    .succeeds(WAIT)
    .await
    .unwrap();

    // Off: strangers ring.
    rig.reconfigure(|doc| doc["accounts"][0]["prevent_sip_hacking"] = json!(false))
        .await;
    rig.call_through(
        "stranger-off",
        "666",
        Caller::Answered {
            hang_up_after: Duration::from_millis(300),
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dnd_refuses_with_its_return_code_on_its_own_account_only() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |doc| {
        let mut a1 = account(1, "1001", "127.0.0.1:9", "x");
        a1["dnd"] = json!({"enabled": true, "return_code": 404, "on_code": "", "off_code": ""});
        doc["accounts"] = json!([a1, account(2, "2002", "127.0.0.1:9", "x")]);
        doc["calls"]["auto_answer"]["sip"] = json!(true);
    })
    .await;
    for code in [404u16, 480, 486, 603] {
        rig.reconfigure(|doc| doc["accounts"][0]["dnd"]["return_code"] = json!(code))
            .await;
        rig.call(
            &format!("dnd-{code}"),
            "1001",
            "200",
            false,
            Caller::Refused(code),
        )
        .succeeds(WAIT)
        .await
        .unwrap();
    }
    // Account 2 has no DND: its call is answered.
    let mut states = rig.states().await;
    rig.call(
        "account-2",
        "2002",
        "200",
        false,
        Caller::Answered {
            hang_up_after: Duration::from_millis(300),
        },
    )
    .succeeds(WAIT)
    .await
    .unwrap();
    assert_eq!(next_end(&mut states).await, sip::end_reason::REMOTE_HANGUP);
    let history = rig.proxy().await.history().await.unwrap();
    let refusals: Vec<u16> = history
        .iter()
        .filter(|h| h.end_reason == "dnd")
        .map(|h| h.code)
        .collect();
    assert_eq!(refusals, [404, 480, 486, 603]);
    assert!(history.iter().any(|h| h.account == "2" && h.answered > 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_answer_waits_its_delay_and_leaves_sip_calls_ringing_when_ip_only() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |doc| {
        doc["accounts"] = json!([account(1, "1001", "127.0.0.1:9", "x")]);
        doc["calls"]["auto_answer"] =
            json!({"ip": true, "sip": false, "delay": 3, "mode": "audio"});
        doc["calls"]["max_dial_in_time"] = json!(5);
    })
    .await;
    // A direct call: 200 OK 3 s after the INVITE; audio mode answers a video
    // offer with audio only.
    let mut ip = rig.call(
        "delayed",
        "door",
        "200",
        true,
        Caller::Answered {
            hang_up_after: Duration::from_millis(200),
        },
    );
    ip.succeeds(WAIT).await.unwrap();
    let m = ip.messages();
    let waited = between(
        &m,
        |m| m.sent && m.is_request("INVITE"),
        |m| !m.sent && m.is_response(200),
    );
    assert!((waited - 3.0).abs() <= 0.5, "answered after {waited:.3} s");
    let ok = m.iter().find(|m| !m.sent && m.is_response(200)).unwrap();
    assert!(ok.text.contains("m=audio"), "{}", ok.text);
    assert!(
        ok.text.contains("m=video 0") || !ok.text.contains("m=video"),
        "video refused in audio mode: {}",
        ok.text
    );

    // A call through account 1 rings until max dial-in time ends it with 480.
    let mut sip_call = rig.call("ringing", "1001", "200", false, Caller::Refused(480));
    sip_call.succeeds(WAIT).await.unwrap();
    let m = sip_call.messages();
    // The call rings at once: its first response is the 180 (no 100 Trying
    // before it).
    let first = m
        .iter()
        .find(|m| !m.sent && m.first_line().starts_with("SIP/2.0"));
    assert!(
        first.is_some_and(|m| m.is_response(180)),
        "{:?}",
        first.map(|m| m.first_line())
    );
    let rang = between(
        &m,
        |m| m.sent && m.is_request("INVITE"),
        |m| !m.sent && m.is_response(480),
    );
    assert!((rang - 5.0).abs() <= 0.5, "ended after {rang:.3} s");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answered_call_ends_with_bye_at_max_call_time() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |doc| doc["calls"]["max_call_time"] = json!(5)).await;
    let proxy = rig.proxy().await;
    let mut states = proxy.receive_call_state_changed().await.unwrap();
    let mut call = rig.call("limited", "door", "200", false, Caller::AnsweredUntilBye);
    call.succeeds(WAIT).await.unwrap();
    let m = call.messages();
    let lasted = between(
        &m,
        |m| !m.sent && m.is_response(200),
        |m| !m.sent && m.is_request("BYE"),
    );
    assert!((lasted - 5.0).abs() <= 0.5, "BYE after {lasted:.3} s");
    assert_eq!(next_end(&mut states).await, sip::end_reason::MAX_CALL_TIME);
    // BYE freed the media session.
    assert_eq!(rig.media_sessions().await, 0);
}

/// The answered call's end takes it out of `Calls` and `ActiveCall` in one
/// change: a client that follows the properties never holds an active call that
/// `Calls` no longer has.
#[tokio::test(flavor = "multi_thread")]
async fn an_answered_call_leaves_calls_and_active_call_in_one_change() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |_| {}).await;
    let props = zbus::fdo::PropertiesProxy::builder(&rig.conn)
        .destination(sip::BUS_NAME)
        .path(sip::OBJECT_PATH)
        .build()
        .await
        .unwrap();
    let mut changes = props.receive_properties_changed().await.unwrap();
    let mut call = rig.call(
        "ends",
        "door",
        "200",
        false,
        Caller::Answered {
            hang_up_after: Duration::ZERO,
        },
    );
    call.succeeds(WAIT).await.unwrap();
    let mut answered = None;
    loop {
        let change = tokio::time::timeout(PATIENCE, changes.next())
            .await
            .expect("ActiveCall changes back to / after the BYE")
            .unwrap();
        let args = change.args().unwrap();
        let Some(active) = args.changed_properties.get("ActiveCall") else {
            continue;
        };
        let active = zbus::ObjectPath::try_from(active).unwrap().to_string();
        if active != "/" {
            answered = Some(active);
            continue;
        }
        let answered = answered.expect("ActiveCall named the call while it was answered");
        assert!(answered.starts_with(sip::CALL_PATH_PREFIX), "{answered}");
        let calls = args
            .changed_properties
            .get("Calls")
            .expect("Calls changes with ActiveCall");
        let calls = Vec::<zbus::OwnedObjectPath>::try_from(calls.try_clone().unwrap()).unwrap();
        assert_eq!(calls, [], "no call is left in progress");
        break;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_caller_is_hung_up_after_the_rtp_timeout() {
    doorphone_system_tests::require_root();
    // SIPp sends no RTP at all.
    let rig = Rig::start(2, |_| {}).await;
    let mut states = rig.states().await;
    let mut call = rig.call("silent", "door", "200", false, Caller::AnsweredUntilBye);
    call.succeeds(WAIT).await.unwrap();
    let m = call.messages();
    let lasted = between(
        &m,
        |m| !m.sent && m.is_response(200),
        |m| !m.sent && m.is_request("BYE"),
    );
    assert!(lasted < 5.0, "hung up after {lasted:.3} s");
    assert_eq!(next_end(&mut states).await, sip::end_reason::RTP_TIMEOUT);
    assert_eq!(rig.media_sessions().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dial_plan_prefix_rings_every_target_and_the_first_answer_cancels_the_rest() {
    doorphone_system_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let start =
        |name: &str, b| Sipp::start(dir.path(), name, &callee(&b), free_port(), None, &[]).unwrap();
    let mut first = start("callee-1", Callee::RingUntilCancel);
    let mut second = start(
        "callee-2",
        Callee::Answer {
            after: Duration::from_secs(1),
        },
    );
    let mut third = start("callee-3", Callee::RingUntilCancel);
    let targets: Vec<String> = [&first, &second, &third]
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let dir_rig = Rig::start(30, |doc| {
        doc["dial_plan"] = json!([{"id": 1, "name": "Flats", "prefix": "9", "account": "auto", "replace": targets}]);
    })
    .await;
    let proxy = dir_rig.proxy().await;
    let call = proxy.dial("9", Default::default()).await.unwrap();
    first.succeeds(WAIT).await.unwrap();
    third.succeeds(WAIT).await.unwrap();
    let cp = dir_rig.call_object(call.clone()).await;
    assert_eq!(cp.state().await.unwrap(), sip::call_state::ANSWERED);
    assert!(
        cp.remote()
            .await
            .unwrap()
            .contains(&second.port.to_string())
    );
    cp.hangup().await.unwrap();
    second.succeeds(WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unanswered_outgoing_call_is_cancelled_at_max_dial_out_time() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |doc| doc["calls"]["max_dial_out_time"] = json!(5)).await;
    let mut callee = rig.callee("never", Callee::RingUntilCancel);
    let proxy = rig.proxy().await;
    let mut states = proxy.receive_call_state_changed().await.unwrap();
    proxy
        .dial(&format!("127.0.0.1:{}", callee.port), Default::default())
        .await
        .unwrap();
    callee.succeeds(WAIT).await.unwrap();
    let m = callee.messages();
    let rang = between(
        &m,
        |m| !m.sent && m.is_request("INVITE"),
        |m| !m.sent && m.is_request("CANCEL"),
    );
    assert!((rang - 5.0).abs() <= 0.5, "cancelled after {rang:.3} s");
    assert_eq!(next_end(&mut states).await, sip::end_reason::NO_ANSWER);
    let history = proxy.history().await.unwrap();
    assert_eq!(
        history.last().unwrap().end_reason,
        sip::end_reason::NO_ANSWER
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_register_with_digest_refresh_before_expiry_and_show_failures() {
    doorphone_system_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (free_port(), free_port());
    // Registrar 1 grants 4 s: the refresh must come before they run out.
    let mut reg1 = Sipp::start(
        dir.path(),
        "registrar-1",
        &registrar("1001", "secret1", 4, 2),
        p1,
        None,
        &[],
    )
    .unwrap();
    let mut reg2 = Sipp::start(
        dir.path(),
        "registrar-2",
        &registrar("2002", "secret2", 60, 1),
        p2,
        None,
        &[],
    )
    .unwrap();
    let rig = Rig::start(30, |doc| {
        doc["accounts"] = json!([
            account(1, "1001", &format!("127.0.0.1:{p1}"), "secret1"),
            account(2, "2002", &format!("127.0.0.1:{p2}"), "secret2"),
        ]);
    })
    .await;
    reg1.succeeds(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.sip_log()));
    reg2.succeeds(WAIT).await.unwrap();
    let m = reg1.messages();
    let oks: Vec<f64> = m
        .iter()
        .filter(|m| m.sent && m.is_response(200))
        .map(|m| m.at)
        .collect();
    let registers: Vec<f64> = m
        .iter()
        .filter(|m| !m.sent && m.is_request("REGISTER"))
        .map(|m| m.at)
        .collect();
    assert_eq!(oks.len(), 2);
    let refresh = registers.iter().find(|&&t| t > oks[0]).unwrap() - oks[0];
    assert!(refresh < 4.0, "refreshed {refresh:.3} s after a 4 s grant");
    let accounts = rig.proxy().await.accounts().await.unwrap();
    assert!(
        accounts
            .iter()
            .all(|a| a.state == account_state::REGISTERED),
        "{accounts:?}"
    );

    // A wrong password shows as failed, with the server's answer.
    let p3 = free_port();
    let _reg3 = Sipp::start(
        dir.path(),
        "registrar-3",
        &registrar("2002", "right", 60, 1),
        p3,
        None,
        &[],
    )
    .unwrap();
    let proxy = rig.proxy().await;
    let mut changes = proxy.receive_account_state_changed().await.unwrap();
    rig.reconfigure(|doc| {
        doc["accounts"][1]["server"] = json!(format!("127.0.0.1:{p3}"));
        doc["accounts"][1]["password"] = json!("wrong");
    })
    .await;
    let failed = tokio::time::timeout(PATIENCE, async {
        loop {
            let s = changes.next().await.unwrap();
            let a = s.args().unwrap();
            if a.account == 2 && a.state == account_state::FAILED {
                break a.code;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(failed, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn switching_dnd_dials_the_on_and_off_codes_to_the_server() {
    doorphone_system_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut reg = Sipp::start(
        dir.path(),
        "registrar",
        &registrar("1001", "pw", 600, 1),
        port,
        None,
        &[],
    )
    .unwrap();
    let rig = Rig::start(30, |doc| {
        doc["accounts"] = json!([account(1, "1001", &format!("127.0.0.1:{port}"), "pw")]);
    })
    .await;
    reg.succeeds(WAIT).await.unwrap();
    let proxy = rig.proxy().await;
    tokio::time::timeout(PATIENCE, async {
        while proxy.accounts().await.unwrap()[0].state != account_state::REGISTERED {
            proxy
                .receive_account_state_changed()
                .await
                .unwrap()
                .next()
                .await;
        }
    })
    .await
    .unwrap();
    // The server side of the codes: a callee on the registrar's port.
    for (on, code) in [(true, "78"), (false, "79")] {
        let mut server = Sipp::start(
            dir.path(),
            &format!("code-{code}"),
            &callee(&Callee::Answer {
                after: Duration::ZERO,
            }),
            port,
            None,
            &[],
        )
        .unwrap();
        rig.reconfigure(|doc| doc["accounts"][0]["dnd"]["enabled"] = json!(on))
            .await;
        server.succeeds(WAIT).await.unwrap();
        let invite = server
            .messages()
            .into_iter()
            .find(|m| m.is_request("INVITE"))
            .unwrap();
        assert!(
            invite
                .first_line()
                .starts_with(&format!("INVITE sip:{code}@127.0.0.1")),
            "{}",
            invite.first_line()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_datagrams_do_not_stop_the_agent() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |_| {}).await;
    let mut states = rig.states().await;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let valid = "INVITE sip:door@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:door@127.0.0.1>\r\nCall-ID: junk\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:9>\r\nContent-Length: 4\r\n\r\nv=0\n";
    let mut seed = 0x2545F4914F6CDD1Du64;
    for i in 0..1000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let datagram: Vec<u8> = match i % 5 {
            0 => valid.as_bytes()[..(seed as usize % valid.len())].to_vec(),
            1 => (0..(seed % 1400) as usize)
                .map(|n| (seed >> (n % 56)) as u8 ^ n as u8)
                .collect(),
            2 => valid
                .replace(
                    "Contact: <sip:a@127.0.0.1:9>",
                    &format!("X-Long: {}", "a".repeat(7000)),
                )
                .into_bytes(),
            3 => valid
                .replace(
                    "Content-Length: 4",
                    &format!("Content-Length: {}", seed % 100_000),
                )
                .into_bytes(),
            _ => valid
                .replace("CSeq: 1 INVITE", "CSeq: x BYE")
                .replace("Call-ID: junk", &format!("Call-ID: {seed}"))
                .into_bytes(),
        };
        socket.send_to(&datagram, rig.agent()).unwrap();
    }
    rig.call_through(
        "after-junk",
        "200",
        Caller::Answered {
            hang_up_after: Duration::from_millis(200),
        },
    )
    .await;
    assert_eq!(next_end(&mut states).await, sip::end_reason::REMOTE_HANGUP);
    assert_eq!(rig.media_sessions().await, 0);
}

/// The door phone's test tone.
const DOOR_TONE: f64 = 440.0;

#[tokio::test(flavor = "multi_thread")]
async fn a_full_call_from_baresip_carries_audio_both_ways_and_bye_frees_the_media() {
    doorphone_system_tests::require_root();
    let speaker_dir = tempfile::Builder::new()
        .prefix("speaker")
        .tempdir()
        .unwrap();
    chown_to(speaker_dir.path(), "doorphone-media").unwrap();
    let speaker = speaker_dir.path().join("speaker.wav");
    let rig = Rig::start_with_sink(30, Some(&speaker), |_| {}).await;
    let mut states = rig.states().await;
    // Calls the door phone, talks for four seconds, and quits (hanging up).
    let mut baresip = Baresip::dial(
        &format!("sip:door@127.0.0.1:{}", rig.port),
        None,
        40200..=40209,
        5,
    )
    .expect("baresip (Debian package baresip-core)");
    let status = baresip.finish().await.unwrap();
    let peer_log = baresip.log();
    assert!(
        status.success(),
        "baresip: {status}\n{peer_log}\n{}",
        rig.sip_log()
    );
    assert_eq!(
        next_end(&mut states).await,
        sip::end_reason::REMOTE_HANGUP,
        "{peer_log}"
    );
    assert_eq!(rig.media_sessions().await, 0, "BYE frees the media session");

    // baresip heard the door phone's tone...
    let received = baresip
        .heard()
        .unwrap_or_else(|| panic!("baresip recorded nothing\n{peer_log}"));
    let (rate, heard) = read_wav(&std::fs::read(&received).unwrap()).unwrap();
    let last_second = &heard[heard.len().saturating_sub(rate as usize)..];
    assert_eq!(
        dominant(last_second, rate, &[DOOR_TONE, BARESIP_TONE]),
        Some(DOOR_TONE)
    );
    // ...and the door phone's speaker played baresip's.
    let (rate, played) = read_wav(&std::fs::read(&speaker).unwrap()).unwrap();
    let tail = &played[played.len().saturating_sub(rate as usize)..];
    assert_eq!(
        dominant(tail, rate, &[DOOR_TONE, BARESIP_TONE]),
        Some(BARESIP_TONE)
    );
}

/// Runs a SIPVicious tool (PyPI `sipvicious`) to its end and returns its output.
async fn sipvicious(tool: &str, args: Vec<String>) -> String {
    let out = tokio::task::spawn_blocking({
        let tool = tool.to_owned();
        move || Command::new(tool).args(args).stdin(Stdio::null()).output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{tool} (PyPI sipvicious): {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn scanners_find_no_extension_ring_nothing_and_start_no_media() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |doc| {
        let mut a = account(1, "1001", "127.0.0.1:9", "x");
        a["prevent_sip_hacking"] = json!(true);
        doc["accounts"] = json!([a]);
        // The resident's phone, on a host of its own.
        doc["contacts"] = json!([contact(1, "127.0.0.2", true)]);
    })
    .await;
    let mut states = rig.states().await;
    let words = rig.dir.path().join("extensions.txt");
    std::fs::write(
        &words,
        "100\n101\n200\n1001\n1002\ndoor\nadmin\nreception\n",
    )
    .unwrap();
    let port = rig.port.to_string();
    let map = sipvicious(
        "sipvicious_svmap",
        vec!["127.0.0.1".into(), "-p".into(), port.clone()],
    )
    .await;
    let war = sipvicious(
        "sipvicious_svwar",
        vec![
            "-m".into(),
            "INVITE".into(),
            "-d".into(),
            words.display().to_string(),
            "127.0.0.1".into(),
            "-p".into(),
            port,
        ],
    )
    .await;
    assert!(
        !map.contains("doorphone") && !map.contains("rsip"),
        "svmap learns no software:\n{map}"
    );
    assert!(war.contains("found nothing"), "svwar:\n{war}");
    for ext in ["100", "200", "1001", "door", "admin"] {
        assert!(
            !war.lines().any(|l| l.contains(&format!("| {ext} "))),
            "svwar found extension {ext}:\n{war}"
        );
    }
    assert_eq!(rig.media_sessions().await, 0, "no media for scanners");
    // The scans rang nothing: the first state the agent reports is the
    // whitelisted caller's ringing that follows.
    rig.call_at(
        "friend",
        "127.0.0.2",
        "door",
        "200",
        Caller::Answered {
            hang_up_after: Duration::from_millis(200),
        },
    )
    .succeeds(WAIT)
    .await
    .unwrap();
    let first = states.next().await.unwrap();
    let args = first.args().unwrap();
    assert_eq!(args.state, sip::call_state::RINGING);
    assert!(args.reason == "new", "{args:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_never_acknowledged_does_not_lock_out_the_next_caller() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |_| {}).await;
    for n in 0..4 {
        rig.call(
            &format!("silent-{n}"),
            "door",
            "666",
            false,
            Caller::AnsweredWithoutAck,
        )
        .succeeds(WAIT)
        .await
        .unwrap();
    }
    let mut visitor = rig.call(
        "visitor",
        "door",
        "200",
        false,
        Caller::Answered {
            hang_up_after: Duration::from_millis(200),
        },
    );
    visitor.succeeds(WAIT).await.unwrap();
    // Nothing tells the caller what software answers.
    for m in visitor.messages().iter().filter(|m| !m.sent) {
        let headers = m.text.to_ascii_lowercase();
        assert!(
            !headers.contains("\nuser-agent:") && !headers.contains("\nserver:"),
            "{}",
            m.text
        );
    }
}

/// A door phone with relay A opened by `#` and relay B by `1234`, ending calls
/// 2 s after a door opened by DTMF.
async fn door_rig(authority: &str) -> Rig {
    let authority = authority.to_owned();
    Rig::start_full(30, None, true, &[], move |doc| {
        doc["relays"] = json!([
            { "id": "A", "name": "Door", "gpio": 17, "active_low": false,
              "trigger_delay": 0, "hold": 1, "dtmf_code": "#" },
            { "id": "B", "name": "Gate", "gpio": 22, "active_low": false,
              "trigger_delay": 0, "hold": 1, "dtmf_code": "1234" }
        ]);
        doc["calls"]["hang_up_after_open"] = json!({"types": ["dtmf"], "timeout": 2});
        doc["dtmf_authority"] = json!(authority);
        // The resident's phone, on a host of its own.
        doc["contacts"] = json!([contact(1, "127.0.0.2", true)]);
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dtmf_code_opens_its_door_and_the_call_ends_after_the_hang_up_time() {
    doorphone_system_tests::require_root();
    let rig = door_rig("all").await;
    let relay = Relay1Proxy::new(&rig.conn).await.unwrap();
    let proxy = rig.proxy().await;
    let mut states = proxy.receive_call_state_changed().await.unwrap();
    // `#` as RFC 4733 events in the RTP, then by SIP INFO.
    for (name, digits) in [
        (
            "rtp",
            Caller::Digits {
                rtp: "#",
                info: "",
                hang_up: false,
            },
        ),
        (
            "info",
            Caller::Digits {
                rtp: "",
                info: "#",
                hang_up: false,
            },
        ),
    ] {
        let mut opened = relay.receive_door_opened().await.unwrap();
        let mut call = rig.call(name, "door", "200", false, digits);
        let signal = tokio::time::timeout(PATIENCE, opened.next())
            .await
            .unwrap()
            .unwrap();
        let args = signal.args().unwrap();
        assert_eq!((args.relay, args.source), ("A", "dtmf"), "{name}");
        call.succeeds(WAIT)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", rig.sip_log()));
        assert_eq!(
            next_end(&mut states).await,
            sip::end_reason::DOOR_OPENED,
            "{name}"
        );
        // The BYE comes the hang-up time (2 s) after the digit.
        let m = call.messages();
        let pressed = |m: &Traced| match name {
            "rtp" => m.sent && m.is_request("ACK"),
            _ => m.sent && m.is_request("INFO"),
        };
        let after = between(&m, pressed, |m| !m.sent && m.is_request("BYE"));
        assert!(
            (2.0..2.8).contains(&after),
            "{name}: BYE {after:.3} s after the code"
        );
    }
    assert_eq!(
        rig.relays_energised(),
        ["A", "A"],
        "the sim log shows the door open twice"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_codes_open_nothing_and_five_lock_the_caller_out() {
    doorphone_system_tests::require_root();
    let rig = door_rig("all").await;
    let mut states = rig.states().await;
    let mut locks = rig.proxy().await.receive_door_codes_locked().await.unwrap();
    // A wrong 4-digit code (1235), then four more wrong digits: the fifth wrong
    // code locks this caller's door codes and ends the call.
    rig.call_through(
        "wrong",
        "200",
        Caller::Digits {
            rtp: "",
            info: "12359999",
            hang_up: false,
        },
    )
    .await;
    assert_eq!(
        next_end(&mut states).await,
        sip::end_reason::DOOR_CODES_LOCKED
    );
    let signal = tokio::time::timeout(PATIENCE, locks.next())
        .await
        .unwrap()
        .unwrap();
    let args = signal.args().unwrap();
    assert!(args.caller.starts_with("sip:127.0.0.1:"), "{}", args.caller);
    let minutes = (args.until as f64 - now_ms()) / 60_000.0;
    assert!(
        (9.0..=10.0).contains(&minutes),
        "locked for {minutes:.2} min"
    );
    // Calling again does not unlock it: the next call is refused.
    rig.call_through("again", "200", Caller::Refused(403)).await;
    // The right code from another caller opens B, and only B ever opened.
    rig.call_at(
        "right",
        "127.0.0.2",
        "door",
        "200",
        Caller::Digits {
            rtp: "",
            info: "1234",
            hang_up: false,
        },
    )
    .succeeds(WAIT)
    .await
    .unwrap();
    assert_eq!(next_end(&mut states).await, sip::end_reason::DOOR_OPENED);
    assert_eq!(rig.relays_energised(), ["B"]);
    let history = rig.proxy().await.history().await.unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.end_reason == "door_codes_locked" && h.answered > 0),
        "the locked call is in the history"
    );
    assert!(
        history
            .iter()
            .any(|h| h.end_reason == "door_codes_locked" && h.code == 403),
        "the refused call is in the history"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_whitelisted_callers_open_doors_when_the_authority_is_contacts() {
    doorphone_system_tests::require_root();
    let rig = door_rig("contacts").await;
    let mut states = rig.states().await;
    // A stranger's right code opens nothing, even with the resident's From
    // user (the stranger hangs up).
    rig.call_through(
        "stranger",
        "200",
        Caller::Digits {
            rtp: "#",
            info: "#",
            hang_up: true,
        },
    )
    .await;
    assert_eq!(next_end(&mut states).await, sip::end_reason::REMOTE_HANGUP);
    assert!(rig.relays_energised().is_empty());
    // The resident's phone opens the door.
    rig.call_at(
        "resident",
        "127.0.0.2",
        "door",
        "666",
        Caller::Digits {
            rtp: "",
            info: "#",
            hang_up: false,
        },
    )
    .succeeds(WAIT)
    .await
    .unwrap();
    assert_eq!(next_end(&mut states).await, sip::end_reason::DOOR_OPENED);
    assert_eq!(rig.relays_energised(), ["A"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_opens_doors_when_the_authority_is_none() {
    doorphone_system_tests::require_root();
    let rig = door_rig("none").await;
    let mut states = rig.states().await;
    rig.call_through(
        "resident",
        "200",
        Caller::Digits {
            rtp: "#",
            info: "#",
            hang_up: true,
        },
    )
    .await;
    assert_eq!(next_end(&mut states).await, sip::end_reason::REMOTE_HANGUP);
    assert!(rig.relays_energised().is_empty());
}

/// SIPp callees on their own ports, started before the door phone so its
/// buttons can name them.
fn callees(dir: &Path, behaviours: Vec<Callee>) -> Vec<Sipp> {
    behaviours
        .into_iter()
        .enumerate()
        .map(|(n, b)| {
            Sipp::start(
                dir,
                &format!("callee-{}", n + 1),
                &callee(&b),
                free_port(),
                None,
                &[],
            )
            .unwrap()
        })
        .collect()
}

fn address(sipp: &Sipp) -> String {
    format!("127.0.0.1:{}", sipp.port)
}

fn button(call_type: &str, numbers: Vec<String>, when_refused: &str, timeout: u32) -> Value {
    json!({"button": 1, "call_type": call_type, "numbers": numbers, "group_number": "",
           "when_refused": when_refused, "timeout": timeout,
           "no_answer": {"relays": [], "actions": [], "http_url": ""}})
}

/// Presses button 1 and returns how its plan finished (outcome, answered by).
async fn press(rig: &Rig) -> (String, String) {
    let proxy = rig.proxy().await;
    let mut finished = proxy.receive_button_call_finished().await.unwrap();
    proxy.press_button(1).await.unwrap();
    let signal = tokio::time::timeout(WAIT, finished.next())
        .await
        .unwrap()
        .unwrap();
    let a = signal.args().unwrap();
    assert_eq!(a.button, 1);
    (a.outcome.to_owned(), a.answered_by.to_owned())
}

/// When `callee` received its first INVITE (seconds since the epoch).
fn invited_at(callee: &Sipp) -> f64 {
    callee
        .messages()
        .iter()
        .find(|m| !m.sent && m.is_request("INVITE"))
        .map(|m| m.at)
        .expect("the callee was called")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_call_rings_everyone_and_the_first_answer_cancels_the_others() {
    doorphone_system_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut c = callees(
        dir.path(),
        vec![
            Callee::RingUntilCancel,
            Callee::Answer {
                after: Duration::from_secs(1),
            },
            Callee::RingUntilCancel,
        ],
    );
    let numbers = c.iter().map(address).collect();
    let rig = Rig::start(30, |doc| {
        doc["buttons"] = json!([button("group", numbers, "end_this_call", 30)])
    })
    .await;
    let (outcome, by) = press(&rig).await;
    assert_eq!(outcome, "answered");
    assert!(by.contains(&c[1].port.to_string()), "{by}");
    c[0].succeeds(WAIT).await.unwrap();
    c[2].succeeds(WAIT).await.unwrap();
    let call = rig.active_call().await;
    assert_eq!(call.state().await.unwrap(), sip::call_state::ANSWERED);
    call.hangup().await.unwrap();
    c[1].succeeds(WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_refusal_ends_its_branch_or_every_branch() {
    doorphone_system_tests::require_root();
    // end_this_call: the refusal of callee 1 leaves callee 2 to answer.
    let dir = tempfile::tempdir().unwrap();
    let mut c = callees(
        dir.path(),
        vec![
            Callee::Refuse("486 Busy Here"),
            Callee::Answer {
                after: Duration::from_secs(1),
            },
        ],
    );
    let numbers = c.iter().map(address).collect();
    let rig = Rig::start(30, |doc| {
        doc["buttons"] = json!([button("group", numbers, "end_this_call", 30)])
    })
    .await;
    assert_eq!(press(&rig).await.0, "answered");
    c[0].succeeds(WAIT).await.unwrap();
    rig.active_call().await.hangup().await.unwrap();
    c[1].succeeds(WAIT).await.unwrap();
    drop(rig);

    // end_all_calls: the refusal of callee 1 cancels 2 and 3.
    let dir = tempfile::tempdir().unwrap();
    let mut c = callees(
        dir.path(),
        vec![
            Callee::Refuse("603 Decline"),
            Callee::RingUntilCancel,
            Callee::RingUntilCancel,
        ],
    );
    let numbers = c.iter().map(address).collect();
    let rig = Rig::start(30, |doc| {
        doc["buttons"] = json!([button("group", numbers, "end_all_calls", 30)])
    })
    .await;
    assert_eq!(press(&rig).await.0, "refused");
    for callee in c.iter_mut() {
        callee.succeeds(WAIT).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sequence_call_moves_on_after_each_timeout_and_ends_at_the_answer() {
    doorphone_system_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut c = callees(
        dir.path(),
        vec![
            Callee::RingUntilCancel,
            Callee::Answer {
                after: Duration::from_millis(500),
            },
        ],
    );
    let numbers = c.iter().map(address).collect();
    let rig = Rig::start(30, |doc| {
        doc["buttons"] = json!([button("sequence", numbers, "call_next", 5)])
    })
    .await;
    let (outcome, by) = press(&rig).await;
    assert_eq!(outcome, "answered");
    assert!(by.contains(&c[1].port.to_string()), "{by}");
    c[0].succeeds(WAIT).await.unwrap();
    let gap = invited_at(&c[1]) - invited_at(&c[0]);
    assert!(
        (gap - 5.0).abs() <= 0.5,
        "callee 2 called {gap:.3} s after callee 1"
    );
    rig.proxy().await.active_call().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sequence_refusal_calls_the_next_at_once_or_ends_the_plan() {
    doorphone_system_tests::require_root();
    // call_next: after a 486 the next number rings at once.
    let dir = tempfile::tempdir().unwrap();
    let mut c = callees(
        dir.path(),
        vec![
            Callee::Refuse("486 Busy Here"),
            Callee::Answer {
                after: Duration::ZERO,
            },
        ],
    );
    let numbers = c.iter().map(address).collect();
    let rig = Rig::start(30, |doc| {
        doc["buttons"] = json!([button("sequence", numbers, "call_next", 30)])
    })
    .await;
    assert_eq!(press(&rig).await.0, "answered");
    c[0].succeeds(WAIT).await.unwrap();
    let gap = invited_at(&c[1]) - invited_at(&c[0]);
    assert!(gap < 1.0, "callee 2 called {gap:.3} s after callee 1");
    drop(rig);

    // do_not_call_next: the 486 ends the plan; callee 2 is never called.
    let dir = tempfile::tempdir().unwrap();
    let mut c = callees(
        dir.path(),
        vec![
            Callee::Refuse("486 Busy Here"),
            Callee::Answer {
                after: Duration::ZERO,
            },
        ],
    );
    let numbers = c.iter().map(address).collect();
    let rig = Rig::start(30, |doc| {
        doc["buttons"] = json!([button("sequence", numbers, "do_not_call_next", 30)])
    })
    .await;
    assert_eq!(press(&rig).await.0, "refused");
    c[0].succeeds(WAIT).await.unwrap();
    assert!(c[1].messages().is_empty(), "callee 2 was called");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_number_is_called_instead_of_the_list() {
    doorphone_system_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut c = callees(
        dir.path(),
        vec![
            Callee::Answer {
                after: Duration::ZERO,
            },
            Callee::Answer {
                after: Duration::ZERO,
            },
        ],
    );
    let mut b = button("group", vec![address(&c[1])], "end_this_call", 30);
    b["group_number"] = json!(address(&c[0]));
    let rig = Rig::start(30, |doc| doc["buttons"] = json!([b])).await;
    let (outcome, by) = press(&rig).await;
    assert_eq!(outcome, "answered");
    assert!(by.contains(&c[0].port.to_string()), "{by}");
    // Pressing again while the call lasts starts nothing.
    assert!(rig.proxy().await.press_button(1).await.is_err());
    let call = rig.active_call().await;
    call.hangup().await.unwrap();
    c[0].succeeds(WAIT).await.unwrap();
    assert!(c[1].messages().is_empty(), "the list was called");
}

/// Whether GStreamer decodes `path` as a JPEG.
fn is_jpeg(path: &Path) -> bool {
    Command::new("gst-launch-1.0")
        .args(["-q", "filesrc"])
        .arg(format!("location={}", path.display()))
        .args(["!", "jpegdec", "!", "fakesink"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_answer_opens_the_relays_and_sends_the_snapshot_by_ftp_and_email_and_the_http_get() {
    doorphone_system_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut c = callees(
        dir.path(),
        vec![Callee::RingUntilCancel, Callee::RingUntilCancel],
    );
    let ftp_root = tempfile::tempdir().unwrap();
    let mails = tempfile::tempdir().unwrap();
    let mut ftp = Server::start(FTP_SERVER, ftp_root.path());
    let mut smtp = Server::start(SMTP_SERVER, mails.path());
    let mut http = Server::start(HTTP_SERVER, dir.path());
    let mut b = button("sequence", vec![address(&c[0])], "call_next", 5);
    b["no_answer"] = json!({"relays": ["A"], "actions": ["ftp", "email", "http"],
        "http_url": format!("http://127.0.0.1:{}/doorbell-missed", http.port)});
    let (ftp_port, smtp_port) = (ftp.port, smtp.port);
    let rig = Rig::start_full(30, None, true, &[], move |doc| {
        doc["buttons"] = json!([b]);
        doc["relays"] = json!([{ "id": "A", "name": "Door", "gpio": 17, "active_low": false,
            "trigger_delay": 0, "hold": 1, "dtmf_code": "" }]);
        doc["actions"] = json!({
            "ftp": {"url": format!("ftp://127.0.0.1:{ftp_port}/snapshots/"), "user": "door", "password": "secret"},
            "email": {"smtp": format!("127.0.0.1:{smtp_port}"), "tls": "none", "user": "", "password": "",
                      "from": "door@example.com", "to": ["guard@example.com"]}
        });
    })
    .await;
    let relay = Relay1Proxy::new(&rig.conn).await.unwrap();
    let mut opened = relay.receive_door_opened().await.unwrap();
    let mut failed = rig.proxy().await.receive_action_failed().await.unwrap();
    assert_eq!(press(&rig).await.0, "no_answer");
    c[0].succeeds(WAIT).await.unwrap();
    let door = tokio::time::timeout(WAIT, opened.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (door.args().unwrap().relay, door.args().unwrap().source),
        ("A", "no_answer")
    );
    let uploaded = PathBuf::from(ftp.expect("RECEIVED ").trim());
    assert!(
        is_jpeg(&uploaded),
        "the FTP server holds {} which is no JPEG",
        uploaded.display()
    );
    let mail: Value = serde_json::from_str(&smtp.expect("RECEIVED ")).unwrap();
    let attachments = mail["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1, "{mail}");
    assert_eq!(attachments[0]["type"], "image/jpeg");
    assert!(is_jpeg(Path::new(attachments[0]["path"].as_str().unwrap())));
    assert!(http.expect("GET ").starts_with("/doorbell-missed "));

    // The FTP server goes down: ActionFailed says so while e-mail and HTTP go on.
    drop(ftp);
    let dead = closed_port();
    rig.reconfigure(|doc| {
        doc["actions"]["ftp"]["url"] = json!(format!("ftp://127.0.0.1:{dead}/snapshots/"));
        doc["buttons"][0]["numbers"] = json!([address(&c[1])]);
    })
    .await;
    assert_eq!(press(&rig).await.0, "no_answer");
    let failure = tokio::time::timeout(WAIT, failed.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failure.args().unwrap().action, "ftp");
    let mail: Value = serde_json::from_str(&smtp.expect("RECEIVED ")).unwrap();
    assert_eq!(mail["attachments"][0]["type"], "image/jpeg");
    assert!(http.expect("GET ").starts_with("/doorbell-missed "));
    c[1].succeeds(WAIT).await.unwrap();
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_with_tls_registers_over_tls() {
    doorphone_system_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A CA, and the registrar's certificate for 127.0.0.1 signed by it.
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=Door test CA",
            "-days",
            "1",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        d.join("ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "ext",
        ],
    );
    let ca_dir = tempfile::tempdir().unwrap();
    std::fs::copy(d.join("ca.pem"), ca_dir.path().join("ca.pem")).unwrap();
    chown_to(ca_dir.path(), "doorphone-sip").unwrap();

    // SIPp speaks TCP behind socat, which ends TLS for it.
    let (sipp_port, tls_port) = (free_port(), free_port());
    let mut reg = Sipp::start(
        d,
        "registrar",
        &registrar("1001", "pw", 60, 1),
        sipp_port,
        None,
        &["-t", "t1"],
    )
    .unwrap();
    let mut socat = Command::new("socat")
        .args(["-d", "-d"])
        .arg(format!(
            "openssl-listen:{tls_port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
            d.join("server.pem").display(),
            d.join("server.key").display()
        ))
        .arg(format!("tcp:127.0.0.1:{sipp_port}"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("socat (Debian package socat)");
    let stderr = socat.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let listening = tokio::task::spawn_blocking(move || {
        let found = lines
            .by_ref()
            .any(|l| l.map(|l| l.contains("listening on")).unwrap_or(false));
        (found, lines)
    });
    let (found, _lines) = listening.await.unwrap();
    assert!(found, "socat did not listen");

    let ca = ca_dir.path().join("ca.pem").display().to_string();
    // The account comes with a configuration change: the agent reads the
    // certificates TLS servers are checked against once an account needs them.
    let mut tls_account = account(1, "1001", &format!("127.0.0.1:{tls_port}"), "pw");
    tls_account["transport"] = json!("tls");
    let disabled = {
        let mut a = tls_account.clone();
        a["enabled"] = json!(false);
        a
    };
    let rig = Rig::start_full(30, None, false, &["--tls-ca".into(), ca], move |doc| {
        doc["accounts"] = json!([disabled]);
    })
    .await;
    rig.reconfigure(move |doc| doc["accounts"] = json!([tls_account]))
        .await;
    reg.succeeds(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.sip_log()));
    let proxy = rig.proxy().await;
    let mut changes = proxy.receive_account_state_changed().await.unwrap();
    tokio::time::timeout(PATIENCE, async {
        while proxy.accounts().await.unwrap()[0].state != account_state::REGISTERED {
            changes.next().await;
        }
    })
    .await
    .unwrap();
    socat.kill().ok();
    socat.wait().ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_among_500_rules_rings_its_five_targets_and_other_numbers_go_as_they_are() {
    doorphone_system_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut c = callees(
        dir.path(),
        vec![
            Callee::RingUntilCancel,
            Callee::RingUntilCancel,
            Callee::Answer {
                after: Duration::from_secs(1),
            },
            Callee::RingUntilCancel,
            Callee::RingUntilCancel,
            Callee::Answer {
                after: Duration::ZERO,
            },
        ],
    );
    let five: Vec<String> = c[..5].iter().map(address).collect();
    let rules: Vec<Value> = (0..500)
        .map(|n| {
            let replace = if n == 250 {
                json!(five)
            } else {
                json!([format!("127.0.0.1:{}", 10_000 + n)])
            };
            json!({"id": n + 1, "name": format!("Rule {n}"), "prefix": format!("{}", 8000 + n),
                   "account": "auto", "replace": replace})
        })
        .collect();
    let rig = Rig::start(30, move |doc| doc["dial_plan"] = json!(rules)).await;
    let proxy = rig.proxy().await;
    let mut states = proxy.receive_call_state_changed().await.unwrap();
    let call = proxy.dial("8250", Default::default()).await.unwrap();
    for n in [0, 1, 3, 4] {
        c[n].succeeds(WAIT).await.unwrap();
    }
    let starts: Vec<f64> = c[..5].iter().map(invited_at).collect();
    let spread = starts.iter().cloned().fold(f64::MIN, f64::max)
        - starts.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread < 0.5, "the five were called {spread:.3} s apart");
    let call = rig.call_object(call).await;
    assert!(
        call.remote()
            .await
            .unwrap()
            .contains(&c[2].port.to_string())
    );
    call.hangup().await.unwrap();
    c[2].succeeds(WAIT).await.unwrap();
    assert_eq!(next_end(&mut states).await, sip::end_reason::LOCAL_HANGUP);

    // No rule: the number is dialled as it is.
    let call = proxy
        .dial(&address(&c[5]), Default::default())
        .await
        .unwrap();
    answered(&rig, &mut states).await;
    let call = rig.call_object(call).await;
    call.hangup().await.unwrap();
    c[5].succeeds(WAIT).await.unwrap();
}

/// Waits until a call is answered and returns it.
async fn answered(rig: &Rig, states: &mut doorphone_interfaces::sip::CallStateChangedStream) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let s = states.next().await.unwrap();
            if s.args().unwrap().state == sip::call_state::ANSWERED {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no call answered\n{}", rig.sip_log()));
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_listed_door_open_sources_end_the_call() {
    doorphone_system_tests::require_root();
    let rig = door_rig("all").await;
    let relay = Relay1Proxy::new(&rig.conn).await.unwrap();
    let proxy = rig.proxy().await;
    let mut states = proxy.receive_call_state_changed().await.unwrap();
    let mut opened = relay.receive_door_opened().await.unwrap();

    // Types [dtmf]: a door opened over the bus leaves the call alone.
    let mut call = rig.call(
        "api-ignored",
        "door",
        "200",
        false,
        Caller::AnsweredUntilBye,
    );
    answered(&rig, &mut states).await;
    relay.open("A", "api").await.unwrap();
    opened.next().await.unwrap();
    // The call is still answered once the door has closed again (1 s hold).
    let mut closed = relay.receive_door_closed().await.unwrap();
    closed.next().await.unwrap();
    // The call is still answered after the door closed again.
    rig.active_call().await.hangup().await.unwrap();
    call.succeeds(WAIT).await.unwrap();
    assert_eq!(next_end(&mut states).await, sip::end_reason::LOCAL_HANGUP);

    // Types [api]: the same open ends the call after the timeout.
    rig.reconfigure(|doc| doc["calls"]["hang_up_after_open"]["types"] = json!(["api"]))
        .await;
    let mut call = rig.call("api-ends", "door", "200", false, Caller::AnsweredUntilBye);
    answered(&rig, &mut states).await;
    relay.open("A", "api").await.unwrap();
    call.succeeds(WAIT).await.unwrap();
    assert_eq!(next_end(&mut states).await, sip::end_reason::DOOR_OPENED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_account_unregisters() {
    doorphone_system_tests::require_root();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The first registration, then the one that ends it.
    let mut reg = Sipp::start(
        dir.path(),
        "registrar",
        &registrar("1001", "pw", 600, 2),
        port,
        None,
        &[],
    )
    .unwrap();
    let rig = Rig::start(30, |doc| {
        doc["accounts"] = json!([account(1, "1001", &format!("127.0.0.1:{port}"), "pw")]);
    })
    .await;
    let proxy = rig.proxy().await;
    let mut changes = proxy.receive_account_state_changed().await.unwrap();
    tokio::time::timeout(PATIENCE, async {
        while proxy.accounts().await.unwrap()[0].state != account_state::REGISTERED {
            changes.next().await;
        }
    })
    .await
    .unwrap();
    rig.reconfigure(|doc| doc["accounts"][0]["enabled"] = json!(false))
        .await;
    reg.succeeds(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.sip_log()));
    let last = reg
        .messages()
        .into_iter()
        .rev()
        .find(|m| !m.sent && m.is_request("REGISTER"))
        .unwrap();
    assert!(
        last.text
            .lines()
            .any(|l| l.eq_ignore_ascii_case("Expires: 0")),
        "{}",
        last.text
    );
    tokio::time::timeout(PATIENCE, async {
        while proxy.accounts().await.unwrap()[0].state != account_state::DISABLED {
            changes.next().await;
        }
    })
    .await
    .unwrap();
}

/// The history commits what comes within a second together (one write to the
/// flash for a busy second): a call that ended just before the agent is
/// stopped is written before it goes, and is there when it starts again.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_ended_just_before_the_agent_stopped_is_in_the_history_after_a_restart() {
    doorphone_system_tests::require_root();
    let mut rig = Rig::start(30, |_| {}).await;
    let mut states = rig.states().await;
    let mut caller = rig.call(
        "last",
        "door",
        "200",
        false,
        Caller::Answered {
            hang_up_after: Duration::from_millis(100),
        },
    );
    caller.succeeds(WAIT).await.unwrap();
    assert_eq!(next_end(&mut states).await, sip::end_reason::REMOTE_HANGUP);
    // Stopped as soon as the call is over, well within the history's gathering.
    let stopped = rig.sip.as_mut().unwrap().stop();
    assert!(stopped.is_some_and(|s| s.success()), "{}", rig.sip_log());
    let (agent, port) = doorphone_system_tests::sip::start_agent(&rig.bus, rig.dir.path(), &[])
        .await
        .unwrap();
    rig.sip = Some(agent);
    rig.port = port;
    let history = rig.proxy().await.history().await.unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert!(history[0].remote.contains("200"), "{history:?}");
    assert!(history[0].answered > 0, "{history:?}");
    assert_eq!(history[0].end_reason, sip::end_reason::REMOTE_HANGUP);
}
