//! The door trusts only what the network proves, tried as an attacker on
//! the same network would: callers on other loopback addresses (127.0.0.x
//! binds without set-up) spoof a resident's From, its host, its
//! `P-Asserted-Identity` and `Remote-Party-ID`, speak inside a resident's
//! dialog, and brute-force door codes over several calls. Each opens nothing
//! (the relay service's simulated GPIO log) and each refusal gives its
//! reason; the same paths taken legitimately open the door, so no test here
//! passes by refusing everyone.
//!
//! Addresses: 127.0.0.1 is account 1's server (its `server` resolves there);
//! 127.0.0.2 is the resident's own phone (a whitelisted IP contact); 127.0.0.3
//! and up are strangers.

use std::time::Duration;

use doorphone_interfaces::relay::Relay1Proxy;
use doorphone_interfaces::sip::{self, end_reason};
use doorphone_system_tests::PATIENCE;
use doorphone_system_tests::rig::{
    Rig, WAIT, account, contact, next_end, next_refusal, until_state,
};
use doorphone_system_tests::sip::{Caller, RawPeer, caller, from_as, with_headers};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// Relay A opens with `#`, relay B with `1234`; a call ends 2 s after a
/// door opened by DTMF. Account 1 (user 1001) has its server on 127.0.0.1;
/// `friend` (a user at the server) and 127.0.0.2 are whitelisted.
async fn rig(authority: &str, change: impl FnOnce(&mut Value)) -> Rig {
    let authority = authority.to_owned();
    Rig::start_full(30, None, true, &[], move |doc| {
        let mut a = account(1, "1001", "127.0.0.1:9", "x");
        a["dtmf_mode"] = json!("both");
        doc["accounts"] = json!([a]);
        doc["relays"] = json!([
            { "id": "A", "name": "Door", "gpio": 17, "active_low": false,
              "trigger_delay": 0, "hold": 1, "dtmf_code": "#" },
            { "id": "B", "name": "Gate", "gpio": 22, "active_low": false,
              "trigger_delay": 0, "hold": 1, "dtmf_code": "1234" }
        ]);
        doc["calls"]["hang_up_after_open"] = json!({"types": ["dtmf"], "timeout": 2});
        doc["calls"]["auto_answer"] = json!({"ip": true, "sip": true, "delay": 0, "mode": "audio"});
        doc["dtmf_authority"] = json!(authority);
        doc["contacts"] = json!([contact(1, "friend", true), contact(2, "127.0.0.2", true)]);
        change(doc);
    })
    .await
}

/// A caller that enters `#` by SIP INFO and then hangs up itself.
fn presses_hash() -> Caller {
    Caller::Digits {
        rtp: "#",
        info: "#",
        hang_up: true,
    }
}

/// A caller that enters `#` by SIP INFO and waits for the door phone's BYE.
fn opens() -> Caller {
    Caller::Digits {
        rtp: "",
        info: "#",
        hang_up: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_from_header_is_a_claim_only_the_accounts_server_makes() {
    doorphone_system_tests::require_root();
    let rig = rig("contacts", |_| {}).await;
    let mut states = rig.states().await;
    // The resident's user, from another host: a direct call from 127.0.0.3.
    rig.scenario_at(
        "spoofed-user",
        "127.0.0.3",
        &caller("1001", "friend", false, &presses_hash()),
    )
    .succeeds(WAIT)
    .await
    .unwrap();
    assert_eq!(next_end(&mut states).await, end_reason::REMOTE_HANGUP);
    // The resident's user at the server's own host name, with the identity
    // headers a server would add.
    let spoof = with_headers(
        &from_as(
            &caller("1001", "friend", false, &presses_hash()),
            "friend",
            "sip:friend@127.0.0.1",
        ),
        &[
            "P-Asserted-Identity: <sip:friend@127.0.0.1>",
            "Remote-Party-ID: <sip:friend@127.0.0.1>;party=calling;screen=yes;privacy=off",
        ],
    );
    rig.scenario_at("spoofed-host", "127.0.0.4", &spoof)
        .succeeds(WAIT)
        .await
        .unwrap();
    assert_eq!(next_end(&mut states).await, end_reason::REMOTE_HANGUP);
    assert!(
        rig.relays_energised().is_empty(),
        "no stranger opened a door"
    );

    // The same user through the server opens the door.
    rig.call("friend", "1001", "friend", false, opens())
        .succeeds(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.sip_log()));
    assert_eq!(next_end(&mut states).await, end_reason::DOOR_OPENED);
    // And the server's word for a caller is its P-Asserted-Identity.
    let asserted = with_headers(
        &caller("1001", "anonymous", false, &opens()),
        &["P-Asserted-Identity: \"Friend\" <sip:friend@pbx.example.com>"],
    );
    rig.scenario_at("asserted", "127.0.0.1", &asserted)
        .succeeds(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.sip_log()));
    assert_eq!(next_end(&mut states).await, end_reason::DOOR_OPENED);
    assert_eq!(rig.relays_energised(), ["A", "A"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_direct_caller_is_its_address_whatever_its_from_says() {
    doorphone_system_tests::require_root();
    let rig = rig("contacts", |doc| {
        doc["device"]["ip_call"]["prevent_sip_hacking"] = json!(true);
    })
    .await;
    let proxy = rig.proxy().await;
    let mut refused = proxy.receive_call_refused().await.unwrap();
    let mut states = rig.states().await;
    // A stranger naming the resident's phone in its From is refused with no
    // ringing and no media.
    let spoof = from_as(
        &caller("door", "x", false, &Caller::Refused(403)),
        "x",
        "sip:friend@127.0.0.2",
    );
    let mut stranger = rig.scenario_at("stranger", "127.0.0.3", &spoof);
    stranger.succeeds(WAIT).await.unwrap();
    let (who, code, reason) = next_refusal(&mut refused).await;
    assert_eq!((code, reason.as_str()), (403, end_reason::NOT_WHITELISTED));
    assert!(who.starts_with("sip:127.0.0.3:"), "{who}");
    assert!(stranger.messages().iter().all(|m| !m.is_response(180)));
    assert_eq!(rig.media_sessions().await, 0);
    // The resident's phone, whatever its From, rings and opens.
    let mut resident = rig.call_at("resident", "127.0.0.2", "door", "somebody", opens());
    resident.succeeds(WAIT).await.unwrap();
    assert_eq!(next_end(&mut states).await, end_reason::DOOR_OPENED);
    assert_eq!(rig.relays_energised(), ["A"]);
}

/// The dialog the door phone's 200 OK confirms: Call-ID, the caller's From
/// (with tag), the door phone's To (with tag).
fn dialog_of(ok: &doorphone_system_tests::sip::Traced) -> (String, String, String) {
    let header = |name: &str| {
        ok.text
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
            .map(|l| l[name.len() + 1..].trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {}", ok.text))
    };
    (header("call-id"), header("from"), header("to"))
}

#[tokio::test(flavor = "multi_thread")]
async fn in_dialog_requests_from_another_address_are_refused_and_change_nothing() {
    doorphone_system_tests::require_root();
    let rig = rig("contacts", |_| {}).await;
    let mut states = rig.states().await;
    let relay = Relay1Proxy::new(&rig.conn).await.unwrap();
    let mut opened = relay.receive_door_opened().await.unwrap();
    // The resident's call, which enters its code 3 s into the call.
    let mut resident = rig.call_at(
        "resident",
        "127.0.0.2",
        "door",
        "resident",
        Caller::DigitsLater {
            wait: Duration::from_secs(3),
            rtp: "",
            info: "#",
        },
    );
    until_state(&mut states, sip::call_state::ANSWERED).await;
    // An attacker who saw the dialog's identifiers speaks in it from
    // 127.0.0.3: the code, a re-INVITE moving the media, and a BYE.
    let ok = resident
        .wait_for(PATIENCE, |m| !m.sent && m.is_response(200))
        .await
        .unwrap();
    let (call_id, from, to) = dialog_of(&ok);
    let attacker = RawPeer::bind("127.0.0.3").await.unwrap();
    let agent = rig.agent();
    for (cseq, method, ctype, body) in [
        (
            20,
            "INFO",
            "application/dtmf-relay",
            "Signal=#\r\nDuration=160\r\n".to_owned(),
        ),
        (
            21,
            "INVITE",
            "application/sdp",
            doorphone_system_tests::sip::plain_offer("127.0.0.3", 7000),
        ),
        (22, "BYE", "", String::new()),
    ] {
        let me = attacker.addr();
        let mut request = format!(
            "{method} sip:door@{agent} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-attack-{cseq}\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:x@{me}>\r\nMax-Forwards: 70\r\n"
        );
        if !ctype.is_empty() {
            request.push_str(&format!("Content-Type: {ctype}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        attacker.send(agent, request.as_bytes()).await.unwrap();
        let answer = attacker.final_response(PATIENCE).await.expect("an answer");
        assert!(
            answer.starts_with("SIP/2.0 403"),
            "{method} from a third address: {}",
            answer.lines().next().unwrap_or("")
        );
    }
    assert!(
        rig.relays_energised().is_empty(),
        "the attacker's code opened nothing"
    );
    assert_eq!(
        rig.proxy().await.calls().await.unwrap().len(),
        1,
        "the attacker's BYE ended nothing"
    );
    // The resident's own code, from the dialog's own address, opens the door.
    let signal = tokio::time::timeout(PATIENCE, opened.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(signal.args().unwrap().relay, "A");
    resident.succeeds(WAIT).await.unwrap();
    assert_eq!(next_end(&mut states).await, end_reason::DOOR_OPENED);
    assert_eq!(rig.relays_energised(), ["A"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_brute_force_over_six_calls_is_locked_out_while_others_still_open() {
    doorphone_system_tests::require_root();
    let rig = rig("all", |_| {}).await;
    let proxy = rig.proxy().await;
    let mut locks = proxy.receive_door_codes_locked().await.unwrap();
    let mut refused = proxy.receive_call_refused().await.unwrap();
    let mut states = rig.states().await;
    // One wrong code per call, calling again each time: the fifth locks.
    for n in 1..=5 {
        let attempt = Caller::Digits {
            rtp: "",
            info: "1235",
            hang_up: n < 5,
        };
        rig.scenario_at(
            &format!("guess-{n}"),
            "127.0.0.3",
            &caller("door", "x", false, &attempt),
        )
        .succeeds(WAIT)
        .await
        .unwrap_or_else(|e| panic!("guess {n}: {e}\n{}", rig.sip_log()));
        let ended = next_end(&mut states).await;
        if n < 5 {
            assert_eq!(ended, end_reason::REMOTE_HANGUP, "guess {n}");
        } else {
            assert_eq!(ended, end_reason::DOOR_CODES_LOCKED, "guess {n}");
        }
    }
    let signal = tokio::time::timeout(PATIENCE, locks.next())
        .await
        .unwrap()
        .unwrap();
    assert!(signal.args().unwrap().caller.starts_with("sip:127.0.0.3:"));
    // The sixth call, with the right code, is refused outright.
    rig.scenario_at(
        "guess-6",
        "127.0.0.3",
        &caller("door", "x", false, &Caller::Refused(403)),
    )
    .succeeds(WAIT)
    .await
    .unwrap();
    let (_, code, reason) = next_refusal(&mut refused).await;
    assert_eq!(
        (code, reason.as_str()),
        (403, end_reason::DOOR_CODES_LOCKED)
    );
    assert!(rig.relays_energised().is_empty());
    // Another caller's right code still opens.
    rig.call_at("resident", "127.0.0.2", "door", "resident", opens())
        .succeeds(WAIT)
        .await
        .unwrap();
    assert_eq!(next_end(&mut states).await, end_reason::DOOR_OPENED);
    assert_eq!(rig.relays_energised(), ["A"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_gives_its_reason_in_the_signal_and_the_history() {
    doorphone_system_tests::require_root();
    let rig = rig("all", |doc| {
        doc["device"]["ip_call"]["enabled"] = json!(false);
        doc["accounts"][0]["prevent_sip_hacking"] = json!(true);
    })
    .await;
    let proxy = rig.proxy().await;
    let mut refused = proxy.receive_call_refused().await.unwrap();
    let mut reasons = Vec::new();
    // untrusted_source: a direct call while direct calls are off.
    rig.call_at("direct", "127.0.0.3", "door", "x", Caller::Refused(403))
        .succeeds(WAIT)
        .await
        .unwrap();
    reasons.push(next_refusal(&mut refused).await);
    // not_whitelisted: a stranger through the guarded account.
    rig.call("stranger", "1001", "stranger", false, Caller::Refused(403))
        .succeeds(WAIT)
        .await
        .unwrap();
    reasons.push(next_refusal(&mut refused).await);
    // dnd: the friend while the account is in DND.
    rig.reconfigure(|doc| {
        doc["accounts"][0]["dnd"] =
            json!({"enabled": true, "return_code": 480, "on_code": "", "off_code": ""})
    })
    .await;
    rig.call("dnd", "1001", "friend", false, Caller::Refused(480))
        .succeeds(WAIT)
        .await
        .unwrap();
    reasons.push(next_refusal(&mut refused).await);
    // busy: the friend again while the friend's first call is up.
    rig.reconfigure(|doc| doc["accounts"][0]["dnd"]["enabled"] = json!(false))
        .await;
    let mut states = rig.states().await;
    let mut first = rig.call("first", "1001", "friend", false, Caller::AnsweredUntilBye);
    until_state(&mut states, sip::call_state::ANSWERED).await;
    // The answer acknowledged: the door phone is busy from then on.
    first
        .wait_for(PATIENCE, |m| m.sent && m.is_request("ACK"))
        .await
        .unwrap();
    rig.call("second", "1001", "friend", false, Caller::Refused(486))
        .succeeds(WAIT)
        .await
        .unwrap();
    reasons.push(next_refusal(&mut refused).await);
    rig.active_call().await.hangup().await.unwrap();
    first.succeeds(WAIT).await.unwrap();
    let got: Vec<(u16, &str)> = reasons.iter().map(|(_, c, r)| (*c, r.as_str())).collect();
    assert_eq!(
        got,
        [
            (403, end_reason::UNTRUSTED_SOURCE),
            (403, end_reason::NOT_WHITELISTED),
            (480, end_reason::DND),
            (486, end_reason::BUSY)
        ]
    );
    let history = proxy.history().await.unwrap();
    for (_, code, reason) in &reasons {
        assert!(
            history
                .iter()
                .any(|h| &h.end_reason == reason && h.code == *code),
            "{reason} is in the history"
        );
    }
    // door_codes_locked is shown by the brute-force test.
}

/// RFC 4733 packets of one key press of `event` (11 is `#`) with payload
/// type `pt`: a start with the marker bit, then three ends, as phones send it.
fn telephone_event(event: u8, pt: u8, ssrc: u32) -> Vec<Vec<u8>> {
    (0u16..4)
        .map(|n| {
            let mut p = vec![0x80, pt | if n == 0 { 0x80 } else { 0 }];
            p.extend_from_slice(&(1000 + n).to_be_bytes());
            p.extend_from_slice(&160_000u32.to_be_bytes());
            p.extend_from_slice(&ssrc.to_be_bytes());
            let end = if n > 0 { 0x80 } else { 0 };
            p.extend_from_slice(&[event, end | 10]);
            p.extend_from_slice(&(160 * (n + 1)).to_be_bytes());
            p
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rtp_telephone_events_injected_from_a_third_address_open_nothing() {
    doorphone_system_tests::require_root();
    let rig = rig("contacts", |_| {}).await;
    let mut states = rig.states().await;
    let relay = Relay1Proxy::new(&rig.conn).await.unwrap();
    let mut opened = relay.receive_door_opened().await.unwrap();
    // The resident's call: its own `#` by RFC 4733, 3 s into the call.
    let mut resident = rig.call_at(
        "resident",
        "127.0.0.2",
        "door",
        "resident",
        Caller::DigitsLater {
            wait: Duration::from_secs(3),
            rtp: "#",
            info: "",
        },
    );
    until_state(&mut states, sip::call_state::ANSWERED).await;
    // The session's port, from the door phone's answer.
    let ok = resident
        .wait_for(PATIENCE, |m| !m.sent && m.is_response(200))
        .await
        .unwrap();
    let port: u16 = ok
        .text
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the answer's audio port");
    let session = rig.active_call().await.media_session().await.unwrap();
    let session = doorphone_interfaces::media::SessionProxy::builder(&rig.conn)
        .path(session)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    // A sweep of `#` from a third host, and from the resident's host but
    // another port: both are strangers to the session.
    for from in ["127.0.0.3:0", "127.0.0.2:0"] {
        let injector = tokio::net::UdpSocket::bind(from).await.unwrap();
        for pt in [101u8, 96, 100, 127] {
            for packet in telephone_event(11, pt, 0x1234_5678) {
                injector
                    .send_to(&packet, ("127.0.0.1", port))
                    .await
                    .unwrap();
            }
        }
    }
    // Media counts as it drops; the count is read every 10 ms (it has no
    // change signal) until every injected packet is in it.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let rejected = loop {
        let n = session.packets_rejected().await.unwrap();
        if n >= 32 || tokio::time::Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(rejected >= 32, "{rejected} packets rejected");
    assert!(
        rig.relays_energised().is_empty(),
        "injected digits opened a door"
    );
    // The resident's own `#` opens it.
    let signal = tokio::time::timeout(PATIENCE, opened.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(signal.args().unwrap().relay, "A");
    resident.succeeds(WAIT).await.unwrap();
    assert_eq!(next_end(&mut states).await, end_reason::DOOR_OPENED);
    assert_eq!(rig.relays_energised(), ["A"]);
}
