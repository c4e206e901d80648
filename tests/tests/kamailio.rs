//! The door phone behind a real SIP server: Kamailio (Debian's `kamailio`) as
//! registrar and proxy with digest authentication, on loopback with its own
//! configuration. Both accounts register there; a resident's baresip,
//! registered there too, calls the door through it and opens the door; the
//! door calls the resident through it, answering the proxy's 407, and is
//! heard; and an INVITE for the door's account user sent around the proxy,
//! straight to the door, is not an account call.
//!
//! Addresses: Kamailio, the door phone and baresip are on 127.0.0.1 (the
//! accounts' server resolves there); 127.0.0.3 is a stranger.

use doorphone_interfaces::relay::Relay1Proxy;
use doorphone_interfaces::sip::{self, end_reason};
use doorphone_system_tests::audio::dominant;
use doorphone_system_tests::baresip::Resident;
use doorphone_system_tests::kamailio::Kamailio;
use doorphone_system_tests::rig::{
    Rig, WAIT, account, contact, next_end, next_refusal, until_state,
};
use doorphone_system_tests::sip::{Caller, Sipp, caller, free_port, through_proxy};
use doorphone_system_tests::{PATIENCE, eventually};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Kamailio's users: the door's two accounts and the resident.
const USERS: &[(&str, &str)] = &[("1001", "secret1"), ("1002", "secret2"), ("resident", "pw")];

/// Kamailio, and the door phone with both accounts at it: relay A opens with
/// `#` from whitelisted callers only (`resident`), a call ends 2 s after a
/// door opened by DTMF, calls are answered at once.
async fn door_at_kamailio(change: impl FnOnce(&mut Value)) -> (tempfile::TempDir, Kamailio, Rig) {
    let dir = tempfile::Builder::new()
        .prefix("kamailio")
        .tempdir()
        .unwrap();
    let kamailio = Kamailio::start(dir.path(), USERS).await.unwrap();
    let server = kamailio.server();
    let rig = Rig::start_full(30, None, true, &[], move |doc| {
        let mut a1 = account(1, "1001", &server, "secret1");
        let mut a2 = account(2, "1002", &server, "secret2");
        for a in [&mut a1, &mut a2] {
            a["dtmf_mode"] = json!("both");
        }
        doc["accounts"] = json!([a1, a2]);
        doc["relays"] = json!([
            { "id": "A", "name": "Door", "gpio": 17, "active_low": false,
              "trigger_delay": 0, "hold": 1, "dtmf_code": "#" }
        ]);
        doc["calls"]["hang_up_after_open"] = json!({"types": ["dtmf"], "timeout": 2});
        doc["calls"]["auto_answer"] = json!({"ip": true, "sip": true, "delay": 0, "mode": "audio"});
        doc["dtmf_authority"] = json!("contacts");
        doc["contacts"] = json!([contact(1, "resident", true)]);
        change(doc);
    })
    .await;
    rig.until_registered(&[1, 2]).await;
    (dir, kamailio, rig)
}

/// The resident's baresip, registered at Kamailio, answering at once; its
/// microphone a 1000 Hz tone.
async fn resident(kamailio: &Kamailio) -> Resident {
    let phone = Resident::start(
        &format!(
            "<sip:resident@{}>;auth_pass=pw;regint=60;audio_codecs=PCMU;answermode=auto",
            kamailio.server()
        ),
        1000.0,
    )
    .await
    .unwrap();
    kamailio
        .registered("resident", PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", phone.log()));
    phone
}

/// A SIPp resident calling account 1's user through Kamailio with digest
/// credentials, from 127.0.0.1, as `expect` scripts it.
fn sipp_resident(rig: &Rig, kamailio: &Kamailio, name: &str, expect: &Caller) -> Sipp {
    Sipp::start(
        rig.dir.path(),
        name,
        &through_proxy(&caller("1001", "resident", false, expect), "resident", "pw"),
        free_port(),
        Some(kamailio.addr()),
        &[],
    )
    .unwrap()
}

/// Enters `#` by SIP INFO and waits for the door phone's BYE.
const INFO_HASH: Caller = Caller::Digits {
    rtp: "",
    info: "#",
    hang_up: false,
};

#[tokio::test(flavor = "multi_thread")]
async fn both_accounts_register_and_a_resident_calling_through_kamailio_opens_the_door() {
    doorphone_system_tests::require_root();
    let (_dir, kamailio, rig) = door_at_kamailio(|_| {}).await;
    // Both accounts registered, each after answering a 401 challenge.
    for user in ["1001", "1002"] {
        kamailio
            .logged(&format!("challenged REGISTER of sip:{user}@"), PATIENCE)
            .await
            .unwrap();
        kamailio.registered(user, PATIENCE).await.unwrap();
    }
    let accounts = rig.proxy().await.accounts().await.unwrap();
    assert!(accounts.iter().all(|a| a.code == 200), "{accounts:?}");

    let mut states = rig.states().await;
    let relay = Relay1Proxy::new(&rig.conn).await.unwrap();
    let mut opened = relay.receive_door_opened().await.unwrap();
    let mut phone = resident(&kamailio).await;
    // baresip calls account 1's user at Kamailio: challenged, authenticated,
    // relayed to the door, answered.
    phone
        .command("dial", &format!("sip:1001@{}", kamailio.server()))
        .await
        .unwrap();
    until_state(&mut states, sip::call_state::ANSWERED).await;
    phone.event("CALL_ESTABLISHED", PATIENCE).await.unwrap();
    kamailio
        .logged("challenged INVITE from sip:resident@", PATIENCE)
        .await
        .unwrap();
    kamailio
        .logged("authenticated INVITE from sip:resident@", PATIENCE)
        .await
        .unwrap();
    let call = rig.active_call().await;
    assert_eq!(call.account().await.unwrap(), "1");
    let identity = call.identity().await.unwrap();
    assert!(identity.starts_with("sip:resident@"), "{identity}");
    // Its `#` by RFC 4733 opens the door, and the door phone hangs up.
    phone.command("sndcode", "#").await.unwrap();
    let signal = tokio::time::timeout(PATIENCE, opened.next())
        .await
        .expect("the door opens")
        .unwrap();
    assert_eq!(signal.args().unwrap().relay, "A");
    assert_eq!(next_end(&mut states).await, end_reason::DOOR_OPENED);
    phone.event("CALL_CLOSED", PATIENCE).await.unwrap();

    // The resident's SIP INFO through Kamailio opens it too (baresip 1.0
    // sends DTMF by RFC 4733 only: SIPp answers the proxy's challenge here).
    sipp_resident(&rig, &kamailio, "info", &INFO_HASH)
        .succeeds(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", rig.sip_log(), kamailio.log()));
    assert_eq!(next_end(&mut states).await, end_reason::DOOR_OPENED);
    assert_eq!(rig.relays_energised(), ["A", "A"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_buttons_call_reaches_the_resident_through_kamailio_after_its_407() {
    doorphone_system_tests::require_root();
    let (_dir, kamailio, rig) = door_at_kamailio(|doc| {
        doc["buttons"] = json!([{
            "button": 1, "call_type": "group", "numbers": ["resident"], "group_number": "",
            "when_refused": "end_this_call", "timeout": 30,
            "no_answer": {"relays": [], "actions": [], "http_url": ""}
        }]);
    })
    .await;
    let mut phone = resident(&kamailio).await;
    let proxy = rig.proxy().await;
    let mut finished = proxy.receive_button_call_finished().await.unwrap();
    let mut states = rig.states().await;
    proxy.press_button(1).await.unwrap();
    let established = phone.event("CALL_ESTABLISHED", PATIENCE).await.unwrap();
    assert!(
        established["peeruri"]
            .as_str()
            .is_some_and(|p| p.starts_with("sip:1001@")),
        "{established}"
    );
    let signal = tokio::time::timeout(WAIT, finished.next())
        .await
        .expect("the button's call finishes")
        .unwrap();
    let args = signal.args().unwrap();
    assert_eq!((args.button, args.outcome), (1, "answered"));
    // The INVITE was challenged and the door phone's digest accepted.
    let challenged = kamailio
        .logged("challenged INVITE from sip:1001@", PATIENCE)
        .await
        .unwrap();
    let authenticated = kamailio
        .logged("authenticated INVITE from sip:1001@", PATIENCE)
        .await
        .unwrap();
    assert!(authenticated.ends_with("by 1001"), "{authenticated}");
    let log = kamailio.log();
    assert!(log.find(&challenged) < log.find(&authenticated));
    let call = rig.active_call().await;
    assert_eq!(call.account().await.unwrap(), "1");
    // The door phone's tone (440 Hz) reaches baresip: the last second of
    // what it records, read every 100 ms as the file grows.
    let heard = || {
        phone.heard().and_then(|(rate, samples)| {
            let second = rate as usize;
            (samples.len() >= 2 * second)
                .then(|| dominant(&samples[samples.len() - second..], rate, &[440.0, 1000.0]))
                .flatten()
        })
    };
    eventually(PATIENCE, std::time::Duration::from_millis(100), || {
        (heard() == Some(440.0)).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("baresip heard {:?}\n{}", heard(), phone.log()));
    // The door phone hangs up; the BYE reaches baresip through Kamailio.
    call.hangup().await.unwrap();
    phone.event("CALL_CLOSED", PATIENCE).await.unwrap();
    assert_eq!(next_end(&mut states).await, end_reason::LOCAL_HANGUP);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invite_for_the_account_sent_around_kamailio_is_not_an_account_call() {
    doorphone_system_tests::require_root();
    let (_dir, kamailio, rig) = door_at_kamailio(|_| {}).await;
    let proxy = rig.proxy().await;
    let mut refused = proxy.receive_call_refused().await.unwrap();
    let mut states = rig.states().await;
    // Straight to the door from 127.0.0.3, naming account 1's user and the
    // resident: a direct IP call (answered, direct calls being on), whose
    // digits by RFC 4733 and by INFO open nothing.
    let digits = Caller::Digits {
        rtp: "#",
        info: "#",
        hang_up: true,
    };
    rig.scenario_at(
        "around",
        "127.0.0.3",
        &caller("1001", "resident", false, &digits),
    )
    .succeeds(WAIT)
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.sip_log()));
    assert_eq!(next_end(&mut states).await, end_reason::REMOTE_HANGUP);
    let history = proxy.history().await.unwrap();
    let last = history.last().expect("the call is in the history");
    assert_eq!(last.account, "ip", "{last:?}");
    assert!(
        rig.relays_energised().is_empty(),
        "a stranger opened the door"
    );
    assert_eq!(
        kamailio.count("INVITE sip:1001@"),
        0,
        "Kamailio saw no INVITE"
    );

    // With direct calls off, the same INVITE is refused outright.
    rig.reconfigure(|doc| doc["device"]["ip_call"]["enabled"] = json!(false))
        .await;
    rig.scenario_at(
        "around-again",
        "127.0.0.3",
        &caller("1001", "resident", false, &Caller::Refused(403)),
    )
    .succeeds(WAIT)
    .await
    .unwrap();
    let (who, code, reason) = next_refusal(&mut refused).await;
    assert_eq!((code, reason.as_str()), (403, end_reason::UNTRUSTED_SOURCE));
    assert!(who.starts_with("sip:127.0.0.3:"), "{who}");

    // The same user's same digits through Kamailio open the door.
    sipp_resident(&rig, &kamailio, "through", &INFO_HASH)
        .succeeds(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", rig.sip_log(), kamailio.log()));
    assert_eq!(next_end(&mut states).await, end_reason::DOOR_OPENED);
    assert_eq!(rig.relays_energised(), ["A"]);
}
