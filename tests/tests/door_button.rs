//! The physical call button end to end: the real config, media, relay
//! (simulated GPIO, its input pressed through the `--sim-inputs` pipe) and SIP
//! agent on a private bus, and a SIPp callee on loopback. A press of the input
//! wired to call button 1 makes the relay service signal `ButtonPressed(1)`, and
//! the SIP agent places button 1's call.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use doorphone_interfaces::relay::Relay1Proxy;
use doorphone_interfaces::sip;
use doorphone_system_tests::sip::{Callee, Sipp, callee, free_port, start_agent};
use doorphone_system_tests::{Bus, ConfigDb, Service, chown_to, start_config};
use futures_util::StreamExt;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

struct Rig {
    _bus: Bus,
    _db: ConfigDb,
    _services: Vec<Service>,
    dir: tempfile::TempDir,
    conn: zbus::Connection,
}

impl Rig {
    /// Config (with `change` applied to its document), media with test sources,
    /// the relay service on simulated GPIO with its inputs' pipe, and the SIP
    /// agent.
    async fn start(change: impl FnOnce(&mut Value)) -> Rig {
        let bus = Bus::start().unwrap();
        let db = ConfigDb::new().unwrap();
        let config = start_config(&bus, &db).await.unwrap();
        let conn = bus.connect().await.unwrap();
        doorphone_system_tests::reconfigure(&conn, change)
            .await
            .unwrap();

        let dir = tempfile::Builder::new()
            .prefix("doorphone-button")
            .tempdir()
            .unwrap();
        chown_to(dir.path(), "doorphone-media").unwrap();
        let media = doorphone_system_tests::start_media(
            &bus,
            &[
                "--audio-sink".into(),
                "fake".into(),
                "--video-source".into(),
                "test".into(),
                "--address".into(),
                "127.0.0.1".into(),
            ],
            &dir.path().join("media.log"),
        )
        .await
        .unwrap();
        let relay = doorphone_system_tests::start_sim_relay(&bus, dir.path())
            .await
            .unwrap();
        let (sip, _) = start_agent(&bus, dir.path(), &[]).await.unwrap();
        Rig {
            _bus: bus,
            _db: db,
            _services: vec![config, media, relay, sip],
            dir,
            conn,
        }
    }

    /// Sets a simulated input line to `level`, as `echo GPIO LEVEL > inputs`.
    fn set_line(&self, gpio: u32, level: u8) {
        let path = self.dir.path().join("relay/inputs");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all(format!("{gpio} {level}\n").as_bytes())
            .unwrap();
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

fn answering_callee(dir: &Path) -> Sipp {
    Sipp::start(
        dir,
        "callee",
        &callee(&Callee::Answer {
            after: Duration::from_millis(500),
        }),
        free_port(),
        None,
        &[],
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_button_input_places_the_buttons_call() {
    doorphone_system_tests::require_root();
    let sipp_dir = tempfile::tempdir().unwrap();
    let mut callee = answering_callee(sipp_dir.path());
    let number = format!("127.0.0.1:{}", callee.port);
    let rig = Rig::start(|doc| {
        doc["calls"]["auto_answer"] =
            json!({"ip": true, "sip": false, "delay": 0, "mode": "audio"});
        doc["buttons"] = json!([{
            "button": 1, "call_type": "group", "numbers": [number], "group_number": "",
            "when_refused": "end_this_call", "timeout": 30,
            "no_answer": {"relays": [], "actions": [], "http_url": ""}
        }]);
        doc["inputs"] =
            json!([{ "gpio": 24, "active_low": true, "debounce_ms": 50, "presses": 1 }]);
    })
    .await;
    let relay = Relay1Proxy::new(&rig.conn).await.unwrap();
    let mut pressed = relay.receive_button_pressed().await.unwrap();
    let agent = sip::Sip1Proxy::builder(&rig.conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    let mut finished = agent.receive_button_call_finished().await.unwrap();

    // The visitor presses and lets go.
    rig.set_line(24, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    rig.set_line(24, 1);

    let signal = tokio::time::timeout(WAIT, pressed.next())
        .await
        .unwrap_or_else(|_| panic!("no ButtonPressed\n{}", rig.log("relay.log")))
        .unwrap();
    assert_eq!(signal.args().unwrap().button, 1);
    let signal = tokio::time::timeout(WAIT, finished.next())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "button 1's call did not finish\n{}\n{}",
                rig.log("sip.log"),
                callee.trace_text()
            )
        })
        .unwrap();
    let args = signal.args().unwrap();
    assert_eq!(
        (args.button, args.outcome),
        (1, "answered"),
        "{}",
        rig.log("sip.log")
    );
    assert!(
        args.answered_by.contains(&callee.port.to_string()),
        "{}",
        args.answered_by
    );
    assert!(
        callee
            .messages()
            .iter()
            .any(|m| !m.sent && m.is_request("INVITE")),
        "{}",
        callee.trace_text()
    );
    // The door phone's call is up; hanging it up ends the callee's scenario.
    let active = agent.active_call().await.unwrap();
    let call = sip::CallProxy::builder(&rig.conn)
        .path(active)
        .build()
        .await
        .unwrap();
    assert_eq!(call.state().await.unwrap(), sip::call_state::ANSWERED);
    call.hangup().await.unwrap();
    callee.succeeds(WAIT).await.unwrap();
}
