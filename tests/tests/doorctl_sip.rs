//! `doorctl`'s call commands end to end: the real binary against the real config
//! service and SIP agent on a private bus, without a SIP peer (the SIPp tests place
//! real calls). Each command with its output and exit code.

use std::process::{Output, Stdio};

use doorphone_interfaces::sip;
use doorphone_system_tests::{Bus, ConfigDb, Service, bin, start_config};
use serde_json::{Value, json};

struct Rig {
    bus: Bus,
    _db: ConfigDb,
    _config: Service,
    sip: Service,
    _dir: tempfile::TempDir,
}

/// The config service with its defaults (no account enabled) and the SIP agent;
/// no media service, which nothing here reaches.
async fn rig() -> Rig {
    let bus = Bus::start().unwrap();
    let db = ConfigDb::new().unwrap();
    let config = start_config(&bus, &db).await.unwrap();
    let dir = tempfile::Builder::new()
        .prefix("doorctl-sip")
        .tempdir()
        .unwrap();
    let (sip, _) = doorphone_system_tests::sip::start_agent(&bus, dir.path(), &[])
        .await
        .unwrap();
    Rig {
        bus,
        _db: db,
        _config: config,
        sip,
        _dir: dir,
    }
}

impl Rig {
    fn doorctl_as(&self, user: &str, args: &[&str]) -> Output {
        self.bus
            .command_as(user, &bin("doorctl"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("doorctl runs")
    }

    /// Runs `args` as root and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.doorctl_as("root", args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}\nagent log:\n{}",
            stderr(&out),
            self.sip.log()
        );
        assert!(out.stderr.is_empty(), "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `args` as root and expects exit `code` and nothing on stdout; returns
    /// stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.doorctl_as("root", args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(
            out.stdout.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr(&out)
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_calls_and_history_of_an_idle_door_phone() {
    let rig = rig().await;

    let accounts = json_of(&rig.ok(&["accounts", "--json"]));
    let accounts = accounts.as_array().expect("a JSON list");
    assert_eq!(accounts.len(), 2, "{accounts:?}");
    for (account, id) in accounts.iter().zip([1, 2]) {
        assert_eq!(account["id"], json!(id), "{account}");
        assert_eq!(
            account["state"],
            json!(sip::account_state::DISABLED),
            "{account}"
        );
        for field in ["code", "reason", "aor"] {
            assert!(account.get(field).is_some(), "{field} in {account}");
        }
    }
    let table = rig.ok(&["accounts"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("ACCOUNT") && lines[0].contains("AOR"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("1 ") && lines[1].contains("disabled"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("2 ") && lines[2].contains("disabled"),
        "{table}"
    );

    assert_eq!(json_of(&rig.ok(&["calls", "--json"])), json!([]));
    let table = rig.ok(&["calls"]);
    assert_eq!(table.lines().count(), 1, "only the header: {table}");
    assert!(table.starts_with("CALL"), "{table}");

    let history = json_of(&rig.ok(&["history", "--json"]));
    assert!(history.is_array(), "{history}");
    let table = rig.ok(&["history"]);
    assert!(table.starts_with("DIRECTION"), "{table}");

    // The registrations join the services in `status`.
    let status = json_of(&rig.ok(&["status", "--json"]));
    assert!(
        status["services"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": sip::BUS_NAME, "up": true})),
        "{status}"
    );
    assert_eq!(status["accounts"][0]["id"], json!(1), "{status}");
    assert_eq!(
        status["accounts"][1]["state"],
        json!(sip::account_state::DISABLED),
        "{status}"
    );
    let table = rig.ok(&["status"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("2 ") && l.contains("disabled")),
        "{table}"
    );

    // Reading is open to everyone.
    for args in [
        &["accounts"][..],
        &["calls", "--json"],
        &["history", "--json"],
    ] {
        let out = rig.doorctl_as("nobody", args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_usage_errors() {
    let mut rig = rig().await;

    // Without a registered account a number cannot be called; the agent says so.
    let err = rig.fails(&["dial", "201"], 1);
    assert_eq!(
        err.trim(),
        "doorctl: 201: a number needs a registered account, and none is registered"
    );
    let err = rig.fails(&["dial", "201", "--account", "1", "--audio", "--json"], 1);
    assert_eq!(err.trim(), "doorctl: account 1 is not enabled");
    assert_eq!(json_of(&rig.ok(&["calls", "--json"])), json!([]));

    // A direct call needs media for its offer; there is none on this bus.
    let err = rig.fails(&["dial", "127.0.0.1:9"], 1);
    assert!(
        err.contains("the media service (org.doorphone.Media1) is not reachable"),
        "{err}"
    );
    let err = rig.fails(&["button", "press", "1"], 1);
    assert_eq!(err.trim(), "doorctl: button 1 is not configured");

    let err = rig.fails(&["answer"], 1);
    assert_eq!(err.trim(), "doorctl: no call is ringing");
    let err = rig.fails(&["hangup"], 1);
    assert_eq!(err.trim(), "doorctl: no call is in progress");
    let err = rig.fails(&["answer", "7"], 1);
    assert_eq!(
        err.trim(),
        "doorctl: there is no call /org/doorphone/Sip1/call/7 (it has ended, or never was)"
    );
    let err = rig.fails(&["hangup", "/org/doorphone/Sip1/call/7"], 1);
    assert!(
        err.contains("there is no call /org/doorphone/Sip1/call/7"),
        "{err}"
    );

    // Placing and ending calls is for root and the admin group.
    let out = rig.doorctl_as("nobody", &["dial", "201"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));

    for args in [
        &["dial"][..],
        &["dial", "201", "--audio", "--video"],
        &["dial", "201", "--account", "3"],
        &["answer", "first"],
        &["answer", "/org/doorphone/Media1/session/1"],
        &["hangup", "1", "2"],
        &["button", "press", "17"],
        &["calls", "--all"],
        &["accounts", "1"],
        &["history", "--since", "yesterday"],
    ] {
        let err = rig.fails(args, 2);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }

    // Without the agent, every call command says which service is missing.
    rig.sip.stop();
    let status = json_of(&rig.ok(&["status", "--json"]));
    assert_eq!(status["accounts"], Value::Null, "{status}");
    assert!(!rig.ok(&["status"]).contains("ACCOUNT"));
    for args in [
        &["dial", "201"][..],
        &["answer"],
        &["answer", "1"],
        &["hangup"],
        &["calls"],
        &["accounts", "--json"],
        &["history"],
    ] {
        let err = rig.fails(args, 1);
        assert_eq!(
            err.trim(),
            "doorctl: the SIP agent (org.doorphone.Sip1) is not running",
            "{args:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_show_their_media_encryption_and_warn_of_keys_in_clear() {
    let rig = rig().await;
    let conn = rig.bus.connect().await.unwrap();
    let revision = doorphone_system_tests::reconfigure(&conn, |doc| {
        doc["accounts"] = json!([
            {"id": 1, "enabled": false, "user": "1001", "server": "127.0.0.1:9",
             "transport": "udp", "media_encryption": "mandatory"},
            {"id": 2, "enabled": false, "user": "2002", "server": "127.0.0.1:9",
             "transport": "tls", "media_encryption": "optional"}
        ]);
    })
    .await
    .unwrap();
    doorphone_system_tests::applied(
        &conn,
        sip::BUS_NAME,
        sip::OBJECT_PATH,
        sip::INTERFACE,
        revision,
    )
    .await
    .unwrap();
    let accounts = json_of(&rig.ok(&["accounts", "--json"]));
    assert_eq!(
        accounts[0]["media_encryption"],
        json!("mandatory"),
        "{accounts}"
    );
    let warning = accounts[0]["warning"].as_str().unwrap();
    assert!(warning.contains("in clear over udp"), "{warning}");
    assert_eq!(accounts[1]["media_encryption"], json!("optional"));
    assert_eq!(
        accounts[1]["warning"],
        json!(""),
        "TLS carries the keys hidden"
    );
    let table = rig.ok(&["accounts"]);
    assert!(table.lines().next().unwrap().contains("MEDIA"), "{table}");
    assert!(table.contains("in clear over udp"), "{table}");
    // Warned once in the log, not at every look.
    rig.ok(&["accounts"]);
    assert_eq!(
        rig.sip.log().matches("in clear over udp").count(),
        1,
        "{}",
        rig.sip.log()
    );
}
