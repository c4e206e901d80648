//! Faults and hostile input against the real SIP agent, config and media on
//! a private bus: one packet, one crash or one restart never takes the door
//! off the air.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use doorphone_interfaces::sip;
use doorphone_system_tests::rig::{Rig, WAIT, next_end, until_state};
use doorphone_system_tests::sip::{
    Caller, RawPeer, Sipp, empty_reinvite_caller, free_port, late_offer_caller, odd_request,
    plain_offer,
};
use doorphone_system_tests::{PATIENCE, repo_root, start_config, start_media};
use serde_json::json;

/// The door phone answers a plain call: it is on the air.
async fn answers(rig: &Rig, name: &str) {
    rig.call_through(
        name,
        "200",
        Caller::Answered {
            hang_up_after: Duration::from_millis(200),
        },
    )
    .await;
}

/// The agent answers a D-Bus `Ping` through the bus: it is on the bus and
/// its loop runs.
async fn pings(rig: &Rig) {
    let peer = zbus::fdo::PeerProxy::builder(&rig.conn)
        .destination(sip::BUS_NAME)
        .path(sip::OBJECT_PATH)
        .build()
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, peer.ping())
        .await
        .expect("the agent answers Ping in time")
        .expect("the agent is on the bus");
}

fn status(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nul_byte_from_the_network_is_refused_and_never_reaches_the_bus() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |_| {}).await;
    let peer = RawPeer::bind("127.0.0.1").await.unwrap();
    // The 430-byte INVITE that used to disconnect the agent from the bus.
    let sdp = plain_offer("127.0.0.1", 7000).replace("s=-", "s=\0");
    peer.send(
        rig.agent(),
        &peer.request("INVITE", "door", rig.agent(), "x", &[], sdp.as_bytes()),
    )
    .await
    .unwrap();
    let answer = peer.final_response(PATIENCE).await.expect("an answer");
    assert_eq!(status(&answer), "SIP/2.0 488 Not Acceptable Here");
    // SDP that is no UTF-8 at all.
    let mut body = plain_offer("127.0.0.1", 7000).into_bytes();
    body.extend_from_slice(&[0xff, 0xfe, b'\r', b'\n']);
    peer.send(
        rig.agent(),
        &peer.request("INVITE", "door", rig.agent(), "x", &[], &body),
    )
    .await
    .unwrap();
    let answer = peer.final_response(PATIENCE).await.expect("an answer");
    assert_eq!(status(&answer), "SIP/2.0 488 Not Acceptable Here");
    // A NUL in a header is no SIP at all.
    peer.send(
        rig.agent(),
        &peer.request("OPTIONS", "door", rig.agent(), "x", &["Subject: a\0b"], b""),
    )
    .await
    .unwrap();
    let answer = peer.final_response(PATIENCE).await.expect("an answer");
    assert_eq!(status(&answer), "SIP/2.0 400 Bad Request");
    assert_eq!(rig.media_sessions().await, 0);
    pings(&rig).await;
    answers(&rig, "after").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn other_sip_versions_get_505_and_unknown_methods_501() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |_| {}).await;
    for (name, method, version, expect) in [
        ("version", "OPTIONS", "SIP/7.0", 505),
        ("method", "FROBNICATE", "SIP/2.0", 501),
        ("both", "FROBNICATE", "SIP/3.0", 505),
    ] {
        let mut sipp = Sipp::start(
            rig.dir.path(),
            name,
            &odd_request(method, version, "door", expect),
            free_port(),
            Some(rig.agent()),
            &[],
        )
        .unwrap();
        sipp.succeeds(WAIT)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let m = sipp.messages();
        let reply = m.iter().find(|m| !m.sent).expect("an answer");
        assert!(
            reply.first_line().starts_with(&format!("SIP/2.0 {expect}")),
            "{name}: {}",
            reply.first_line()
        );
    }
    answers(&rig, "after").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invite_without_sdp_gets_an_offer_in_the_200_and_the_ack_answers_it() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |_| {}).await;
    let mut states = rig.states().await;
    // The caller's RTP port, as its ACK gives it: media plays there once it
    // has the answer.
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = rtp.local_addr().unwrap().port();
    let mut sipp = Sipp::start(
        rig.dir.path(),
        "late",
        &late_offer_caller("door", "200", port, Duration::from_millis(1500)),
        free_port(),
        Some(rig.agent()),
        &[],
    )
    .unwrap();
    let mut packet = [0u8; 2048];
    let (len, _) = tokio::time::timeout(PATIENCE, rtp.recv_from(&mut packet))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "media plays to the port of the ACK's answer\n{}\n{}\n{}",
                sipp.trace_text(),
                std::fs::read_to_string(rig.dir.path().join("late.err")).unwrap_or_default(),
                rig.sip_log()
            )
        })
        .unwrap();
    assert!(len > 12 && packet[0] >> 6 == 2, "an RTP packet");
    sipp.succeeds(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.sip_log()));
    assert_eq!(next_end(&mut states).await, sip::end_reason::REMOTE_HANGUP);
    let ok = sipp
        .messages()
        .into_iter()
        .find(|m| !m.sent && m.is_response(200))
        .unwrap();
    assert!(
        ok.text.contains("m=audio"),
        "the 200 holds the offer: {}",
        ok.text
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reinvite_without_sdp_gets_an_offer_and_the_ack_moves_the_media() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |_| {}).await;
    let mut states = rig.states().await;
    let first = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let second = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut sipp = Sipp::start(
        rig.dir.path(),
        "reinvite",
        &empty_reinvite_caller(
            "door",
            "200",
            first.local_addr().unwrap().port(),
            second.local_addr().unwrap().port(),
            // Long enough for a loaded machine's media to move before the BYE.
            Duration::from_secs(6),
        ),
        free_port(),
        Some(rig.agent()),
        &[],
    )
    .unwrap();
    let mut packet = [0u8; 2048];
    // The re-INVITE follows the ACK at once: the answer in its ACK may reach
    // media before or after the call's first packet went to the INVITE's
    // port. Either way the audio ends up at the port the ACK gave, and only
    // there.
    let mut heard = 0;
    while heard < 10 {
        tokio::time::timeout(PATIENCE, second.recv_from(&mut packet))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no RTP at the ACK's port\n{}\n{}",
                    sipp.trace_text(),
                    rig.sip_log()
                )
            })
            .unwrap();
        if heard == 0 {
            // What was sent before the move is queued at the first port by now
            // (loopback delivers as it sends).
            while first.try_recv_from(&mut packet).is_ok() {}
        }
        heard += 1;
    }
    assert!(
        first.try_recv_from(&mut packet).is_err(),
        "RTP still reaches the INVITE's port after the move"
    );
    sipp.succeeds(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.sip_log()));
    assert_eq!(next_end(&mut states).await, sip::end_reason::REMOTE_HANGUP);
    let offers: Vec<_> = sipp
        .messages()
        .into_iter()
        .filter(|m| !m.sent && m.is_response(200) && m.text.contains("m=audio"))
        .collect();
    assert_eq!(offers.len(), 2, "the answer and the re-INVITE's offer");
}

/// Every datagram of the committed corpus (hand-made and fuzzer-found
/// hostile input), in order.
fn corpus() -> Vec<Vec<u8>> {
    let dir = repo_root().join("tests/fuzz/sip-corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_datagrams_leave_the_agent_on_the_bus_and_answering() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |doc| {
        doc["accounts"] = json!([doorphone_system_tests::rig::account(
            1,
            "1001",
            "127.0.0.1:9",
            "x"
        )]);
    })
    .await;
    let peer = RawPeer::bind("127.0.0.1").await.unwrap();
    let corpus = corpus();
    assert!(
        corpus.len() >= 30,
        "the corpus holds {} datagrams",
        corpus.len()
    );
    for (n, datagram) in corpus.iter().enumerate() {
        // The corpus names the agent by a placeholder: its port is new each run.
        let datagram = doorphone_system_tests::fuzz::replace(
            datagram,
            b"AGENT",
            rig.agent().to_string().as_bytes(),
        );
        peer.send(rig.agent(), &datagram).await.unwrap();
        if n % 10 == 9 {
            pings(&rig).await;
        }
    }
    pings(&rig).await;
    answers(&rig, "after").await;
    assert!(rig.sip.as_ref().unwrap().pid().is_some());
}

/// Seconds since the Unix epoch now, as SIPp's trace stamps them.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_fuzz_run_leaves_the_agent_answering() {
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |_| {}).await;
    let probe = RawPeer::bind("127.0.0.9").await.unwrap();
    let alive = || async {
        let options = probe.request("OPTIONS", "door", rig.agent(), "probe", &[], b"");
        probe.send(rig.agent(), &options).await?;
        let answer = probe
            .final_response(PATIENCE)
            .await
            .ok_or_else(|| anyhow::anyhow!("no answer to OPTIONS"))?;
        anyhow::ensure!(answer.starts_with("SIP/2.0 200"), "OPTIONS got {answer}");
        pings(&rig).await;
        Ok(())
    };
    let report = doorphone_system_tests::fuzz::run(
        rig.agent(),
        &repo_root().join("tests/fuzz/sip-corpus"),
        2000,
        7,
        250,
        alive,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.sip_log()));
    assert!(report.sent >= 1900, "{report:?}");
    rig.hang_up_all().await;
    answers(&rig, "after").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn media_killed_during_a_call_ends_it_with_bye_within_two_seconds() {
    doorphone_system_tests::require_root();
    let mut rig = Rig::start(30, |_| {}).await;
    let mut states = rig.states().await;
    let mut caller = rig.call("caller", "door", "200", false, Caller::AnsweredUntilBye);
    until_state(&mut states, sip::call_state::ANSWERED).await;
    let killed = now();
    rig.media.as_mut().unwrap().kill();
    caller
        .succeeds(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.sip_log()));
    assert_eq!(next_end(&mut states).await, sip::end_reason::MEDIA_FAILED);
    let bye = caller
        .messages()
        .into_iter()
        .find(|m| !m.sent && m.is_request("BYE"))
        .expect("the caller got a BYE");
    assert!(
        bye.at - killed <= 2.0,
        "BYE {:.3} s after media died",
        bye.at - killed
    );
    assert!(rig.proxy().await.calls().await.unwrap().is_empty());
    // Media back: the next caller is answered.
    rig.media = Some(
        start_media(
            &rig.bus,
            &[
                "--audio-sink".into(),
                "fake".into(),
                "--video-source".into(),
                "test".into(),
                "--address".into(),
                "127.0.0.1".into(),
            ],
            &rig.dir.path().join("media-again.log"),
        )
        .await
        .unwrap(),
    );
    answers(&rig, "after").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_config_service_killed_ten_times_leaves_the_agent_answering() {
    doorphone_system_tests::require_root();
    let mut rig = Rig::start(30, |_| {}).await;
    for n in 0..10u32 {
        // A change on its way when the service dies.
        let conn = rig.conn.clone();
        let change = tokio::spawn(async move {
            doorphone_system_tests::reconfigure(&conn, |doc| {
                doc["calls"]["max_call_time"] = json!(100 + n);
            })
            .await
        });
        tokio::task::yield_now().await;
        rig.config.as_mut().unwrap().kill();
        change.await.unwrap().ok();
        rig.config = Some(start_config(&rig.bus, &rig.db).await.unwrap());
        pings(&rig).await;
    }
    answers(&rig, "after").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_a_call_up_sends_bye_and_the_agent_exits_within_five_seconds() {
    doorphone_system_tests::require_root();
    let mut rig = Rig::start(30, |_| {}).await;
    let mut states = rig.states().await;
    let mut caller = rig.call("caller", "door", "200", false, Caller::AnsweredUntilBye);
    until_state(&mut states, sip::call_state::ANSWERED).await;
    let asked = Instant::now();
    let status = rig.sip.as_mut().unwrap().stop().expect("the agent ran");
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took <= Duration::from_secs(5),
        "the agent took {took:?} to stop"
    );
    caller.succeeds(WAIT).await.expect("the caller got a BYE");
}
