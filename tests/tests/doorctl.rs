//! `doorctl` end to end: the real binary against the real config service on a
//! private bus, each subcommand with its output and exit code.

use std::io::Write;
use std::process::{Output, Stdio};

use doorphone_system_tests::{Bus, ConfigDb, bin, start_config};
use serde_json::{Value, json};

struct Rig {
    bus: Bus,
    _db: ConfigDb,
    service: doorphone_system_tests::Service,
}

async fn rig() -> Rig {
    let bus = Bus::start().unwrap();
    let db = ConfigDb::new().unwrap();
    let service = start_config(&bus, &db).await.unwrap();
    Rig {
        bus,
        _db: db,
        service,
    }
}

impl Rig {
    fn doorctl_as(&self, user: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.bus.command_as(user, &bin("doorctl"));
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("doorctl runs");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    }

    fn doorctl(&self, args: &[&str]) -> Output {
        self.doorctl_as("root", args, None)
    }

    /// Runs `args` and expects success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.doorctl(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `args` and expects exit `code`; returns stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.doorctl(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
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
async fn config_get_set_export_import() {
    let rig = rig().await;
    assert_eq!(
        rig.ok(&["config", "get", "calls.max_call_time"]).trim(),
        "300"
    );
    rig.ok(&["config", "set", "calls.max_call_time", "120"]);
    assert_eq!(
        rig.ok(&["config", "get", "calls.max_call_time"]).trim(),
        "120"
    );
    rig.ok(&["config", "set", "device.name", "Main gate"]);
    assert_eq!(
        rig.ok(&["config", "get", "device.name"]).trim(),
        "\"Main gate\""
    );
    rig.ok(&[
        "config",
        "set",
        "calls.hang_up_after_open.types",
        "[\"dtmf\",\"api\"]",
    ]);
    assert_eq!(
        json_of(&rig.ok(&["config", "get", "calls.hang_up_after_open"])),
        json!({"types": ["dtmf", "api"], "timeout": 5})
    );
    // A number for a text field is that text.
    rig.ok(&["config", "set", "relays.A.dtmf_code", "1234"]);
    assert_eq!(
        rig.ok(&["config", "get", "relays.A.dtmf_code"]).trim(),
        "\"1234\""
    );

    let err = rig.fails(&["config", "set", "calls.max_call_time", "4"], 1);
    assert_eq!(
        err.trim(),
        "doorctl: calls.max_call_time: 4 is out of range (0 or 5-7200)"
    );
    let err = rig.fails(&["config", "get", "calls.nothing"], 1);
    assert_eq!(err.trim(), "doorctl: calls.nothing: no such key");

    let exported = rig.ok(&["config", "export"]);
    let mut doc = json_of(&exported);
    assert_eq!(doc["calls"]["max_call_time"], json!(120));
    doc["calls"]["max_dial_in_time"] = json!(30);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), doc.to_string()).unwrap();
    rig.ok(&["config", "import", file.path().to_str().unwrap()]);
    assert_eq!(
        rig.ok(&["config", "get", "calls.max_dial_in_time"]).trim(),
        "30"
    );

    // Standard input, and a refused document.
    doc["calls"]["max_dial_in_time"] = json!(40);
    let out = rig.doorctl_as("root", &["config", "import", "-"], Some(&doc.to_string()));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        rig.ok(&["config", "get", "calls.max_dial_in_time"]).trim(),
        "40"
    );
    doc["multicast"]["listen"] = json!([{"address": "10.0.0.1", "port": 5000}]);
    let out = rig.doorctl_as("root", &["config", "import", "-"], Some(&doc.to_string()));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "doorctl: multicast.listen[1].address: 10.0.0.1 is not a multicast address (224.0.0.0-239.255.255.255)"
    );
    let err = rig.fails(&["config", "import", "/nonexistent.json"], 1);
    assert!(
        err.starts_with("doorctl: cannot read /nonexistent.json"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts() {
    let rig = rig().await;
    assert_eq!(
        rig.ok(&[
            "contact",
            "add",
            "--name",
            "Concierge",
            "--number",
            "200",
            "--whitelist"
        ])
        .trim(),
        "1"
    );
    assert_eq!(
        rig.ok(&[
            "contact",
            "add",
            "--name",
            "Flat 12",
            "--number",
            "sip:212@pbx.example.com",
            "--account",
            "2"
        ])
        .trim(),
        "2"
    );
    let table = rig.ok(&["contact", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("WHITELIST"),
        "{table}"
    );
    assert!(
        lines[1].contains("Concierge") && lines[1].contains("yes"),
        "{table}"
    );
    assert!(
        lines[2].contains("sip:212@pbx.example.com") && lines[2].contains("no"),
        "{table}"
    );
    assert_eq!(
        json_of(&rig.ok(&["contact", "list", "--json"])),
        json!([
            {"id": 1, "name": "Concierge", "number": "200", "account": "auto", "whitelist": true},
            {"id": 2, "name": "Flat 12", "number": "sip:212@pbx.example.com", "account": "2", "whitelist": false}
        ])
    );
    rig.ok(&[
        "contact",
        "set",
        "2",
        "--name",
        "Flat 12",
        "--number",
        "212",
        "--whitelist",
    ]);
    assert_eq!(
        json_of(&rig.ok(&["contact", "list", "--json"]))[1]["whitelist"],
        json!(true)
    );
    let err = rig.fails(&["contact", "add", "--name", "X", "--number", "2 00"], 1);
    assert!(
        err.contains("is not a SIP user, SIP URI or IP address"),
        "{err}"
    );
    rig.ok(&["contact", "rm", "1"]);
    let err = rig.fails(&["contact", "rm", "1"], 1);
    assert_eq!(err.trim(), "doorctl: contacts[1]: no such contact");
    rig.fails(&["contact", "rm", "one"], 2);
    rig.fails(
        &[
            "contact",
            "add",
            "--name",
            "X",
            "--number",
            "1",
            "--account",
            "3",
        ],
        2,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_plan() {
    let rig = rig().await;
    assert_eq!(
        rig.ok(&[
            "dialplan",
            "add",
            "--name",
            "Reception",
            "--prefix",
            "0",
            "192.168.1.10",
            "sip:200@pbx.example.com"
        ])
        .trim(),
        "1"
    );
    let table = rig.ok(&["dialplan", "list"]);
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .contains("192.168.1.10,sip:200@pbx.example.com"),
        "{table}"
    );
    assert_eq!(
        json_of(&rig.ok(&["dialplan", "list", "--json"])),
        json!([{"id": 1, "name": "Reception", "prefix": "0", "account": "auto", "replace": ["192.168.1.10", "sip:200@pbx.example.com"]}])
    );
    assert_eq!(
        json_of(&rig.ok(&["dialplan", "resolve", "0", "--json"])),
        json!({"account": "auto", "targets": ["192.168.1.10", "sip:200@pbx.example.com"]})
    );
    let resolved = rig.ok(&["dialplan", "resolve", "77"]);
    assert!(
        resolved.lines().nth(1).unwrap().contains("77"),
        "{resolved}"
    );
    let err = rig.fails(
        &["dialplan", "add", "--name", "Again", "--prefix", "0", "1"],
        1,
    );
    assert!(err.contains("prefix \"0\" is already used"), "{err}");
    rig.fails(&["dialplan", "add", "--name", "None", "--prefix", "5"], 2);
    rig.fails(
        &[
            "dialplan", "add", "--name", "Six", "--prefix", "6", "1", "2", "3", "4", "5", "6",
        ],
        2,
    );
    rig.ok(&[
        "dialplan", "set", "1", "--name", "Desk", "--prefix", "00", "201",
    ]);
    assert_eq!(
        json_of(&rig.ok(&["dialplan", "resolve", "00", "--json"]))["targets"],
        json!(["201"])
    );
    rig.ok(&["dialplan", "rm", "1"]);
    assert_eq!(json_of(&rig.ok(&["dialplan", "list", "--json"])), json!([]));
    rig.fails(&["dialplan", "rm", "1"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buttons() {
    let rig = rig().await;
    rig.ok(&[
        "button",
        "set",
        "2",
        "--type",
        "sequence",
        "200",
        "201",
        "--timeout",
        "15",
        "--relay",
        "A",
    ]);
    assert_eq!(
        json_of(&rig.ok(&["button", "list", "--json"])),
        json!([{
            "button": 2, "call_type": "sequence", "numbers": ["200", "201"], "group_number": "",
            "when_refused": "call_next", "timeout": 15, "no_answer_relays": ["A"],
            "no_answer_actions": [], "no_answer_http_url": ""
        }])
    );
    let table = rig.ok(&["button", "list"]);
    assert!(table.lines().nth(1).unwrap().starts_with('2'), "{table}");
    let err = rig.fails(
        &[
            "button", "set", "2", "--type", "group", "200", "--action", "http",
        ],
        1,
    );
    assert_eq!(
        err.trim(),
        "doorctl: buttons[2].no_answer.http_url: required when the http action is chosen"
    );
    let err = rig.fails(&["button", "set", "17", "--type", "group", "200"], 1);
    assert!(
        err.contains("buttons[17].button: 17 is out of range (1-16)"),
        "{err}"
    );
    rig.fails(&["button", "set", "3", "--type", "ring", "200"], 2);
    rig.ok(&["button", "rm", "2"]);
    rig.fails(&["button", "rm", "2"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_policy_and_absent_services() {
    let mut rig = rig().await;
    let table = rig.ok(&["status"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("org.doorphone.Config1") && l.ends_with("up")),
        "{table}"
    );
    assert!(table.contains("config revision: 1"), "{table}");
    let status = json_of(&rig.ok(&["status", "--json"]));
    assert_eq!(status["revision"], json!(1));
    assert_eq!(
        status["services"][0],
        json!({"name": "org.doorphone.Config1", "up": true})
    );

    // Anyone may read; only root and the admin group may change.
    let out = rig.doorctl_as("nobody", &["contact", "list", "--json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = rig.doorctl_as(
        "nobody",
        &["config", "set", "calls.max_call_time", "60"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));

    rig.fails(&["config"], 2);
    rig.fails(&["frobnicate"], 2);

    rig.service.stop();
    let err = rig.fails(&["config", "export"], 1);
    assert_eq!(
        err.trim(),
        "doorctl: the configuration service (org.doorphone.Config1) is not running"
    );
    let status = json_of(&rig.ok(&["status", "--json"]));
    assert_eq!(status["services"][0]["up"], json!(false));

    let out = std::process::Command::new(bin("doorctl"))
        .args(["config", "export"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .starts_with("doorctl: cannot reach the system bus at unix:path=/nonexistent/bus"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_users_get_hashes_that_only_the_web_service_reads() {
    let rig = rig().await;
    let users = || json_of(&rig.ok(&["web", "users", "--json"]));
    assert_eq!(users(), json!([]));

    let passwd = |user: &str, args: &[&str], password: &str| {
        let mut all = vec!["web", "passwd"];
        all.extend_from_slice(args);
        rig.doorctl_as(user, &all, Some(&format!("{password}\n")))
    };
    let out = passwd("root", &["installer"], "correct horse");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = passwd("root", &["tenant", "--role", "user"], "battery staple");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        users(),
        json!([
            {"name": "installer", "role": "admin", "digest": true},
            {"name": "tenant", "role": "user", "digest": true}
        ])
    );

    // Export masks both hashes; the password appears nowhere.
    let exported = rig.ok(&["config", "export"]);
    let doc = json_of(&exported);
    assert_eq!(doc["web"]["users"][0]["password_hash"], json!("********"));
    assert_eq!(doc["web"]["users"][0]["digest_ha1"], json!("********"));
    assert_eq!(doc["web"]["session_timeout"], json!(900));
    assert!(!exported.contains("correct horse") && !exported.contains("argon2"));

    // The web service's user reads the hashes; anyone else is refused them.
    let secrets = |user: &str| {
        rig.bus.busctl_as(
            user,
            &[
                "--json=short",
                "call",
                "org.doorphone.Config1",
                "/org/doorphone/Config1",
                "org.doorphone.Config1",
                "ExportSecrets",
            ],
        )
    };
    let out = secrets("doorphone-web");
    assert!(out.status.success(), "{}", stderr(&out));
    let reply = json_of(&String::from_utf8(out.stdout).unwrap());
    let doc = json_of(reply["data"][0].as_str().unwrap());
    let hash = doc["web"]["users"][0]["password_hash"].as_str().unwrap();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    let ha1 = doc["web"]["users"][0]["digest_ha1"].as_str().unwrap();
    assert_eq!(ha1.len(), 64);
    for user in ["nobody", "doorphone-media"] {
        let out = secrets(user);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("denied"), "{user}: {}", stderr(&out));
    }

    // Importing the exported (masked) document keeps the stored hashes.
    let out = rig.doorctl_as("root", &["config", "import", "-"], Some(&exported));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = secrets("doorphone-web");
    let reply = json_of(&String::from_utf8(out.stdout).unwrap());
    let again = json_of(reply["data"][0].as_str().unwrap());
    assert_eq!(again["web"]["users"], doc["web"]["users"]);

    // A new password changes the hash and keeps the role.
    let out = passwd("root", &["tenant"], "another staple");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        users()[1],
        json!({"name": "tenant", "role": "user", "digest": true})
    );

    // Refusals change nothing: an unprivileged caller, a short password, a
    // name the rules refuse, a session time-out out of range.
    let before = rig.ok(&["config", "export"]);
    let out = passwd("nobody", &["mallory"], "correct horse");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
    let out = passwd("root", &["installer"], "short");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "doorctl: password: must be 8-128 characters (5 given)"
    );
    let out = passwd("root", &["a:b"], "correct horse");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "doorctl: web.users[2].name: \"a:b\" must be 1-32 of A-Z a-z 0-9 . _ -"
    );
    let err = rig.fails(&["config", "set", "web.session_timeout", "59"], 1);
    assert_eq!(
        err.trim(),
        "doorctl: web.session_timeout: 59 is out of range (60-86400)"
    );
    assert_eq!(rig.ok(&["config", "export"]), before);

    rig.ok(&["web", "remove", "tenant"]);
    assert_eq!(
        users(),
        json!([{"name": "installer", "role": "admin", "digest": true}])
    );
    let err = rig.fails(&["web", "remove", "tenant"], 1);
    assert_eq!(err.trim(), "doorctl: no web user \"tenant\"");
}
