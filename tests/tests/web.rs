//! System tests of `doorphone-web`: the real binary as its own user on a
//! private bus with the real config, relay and media services, and `curl` as
//! the client (Basic and Digest logins over HTTPS).

use std::time::{Duration, Instant};

use doorphone_interfaces::config::Config1Proxy;
use doorphone_interfaces::relay::Relay1Proxy;
use doorphone_interfaces::sip;
use doorphone_system_tests::rig::{Rig, until_state};
use doorphone_system_tests::sip::{Callee, Caller};
use doorphone_system_tests::web::{ADMIN, Api, USER, WebRig, passwd};
use doorphone_system_tests::{PATIENCE, jpeg_size};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

async fn rig() -> WebRig {
    WebRig::start(true).await.unwrap()
}

/// Waits for the next `DoorOpened` on `stream` and gives its arguments.
async fn door_opened(
    stream: &mut doorphone_interfaces::relay::DoorOpenedStream,
) -> (String, String) {
    let signal = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("DoorOpened in time")
        .expect("the bus is there");
    let args = signal.args().unwrap();
    (args.relay.to_owned(), args.source.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_door_opens_over_the_api_with_basic_and_with_digest_and_not_with_a_wrong_password() {
    let rig = rig().await;
    let relay = Relay1Proxy::new(&rig.conn).await.unwrap();
    let mut opened = relay.receive_door_opened().await.unwrap();
    let mut closed = relay.receive_door_closed().await.unwrap();
    // An open door only extends its hold: each open below waits for the close.
    let until_closed = async |closed: &mut doorphone_interfaces::relay::DoorClosedStream| {
        tokio::time::timeout(PATIENCE, closed.next())
            .await
            .expect("DoorClosed in time");
    };
    let open = rig.api.url("/api/v1/doors/A/open");

    let reply = rig.api.curl_as(USER, &["-X", "POST", &open]).await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json(), json!({"relay": "A", "source": "api"}));
    assert_eq!(door_opened(&mut opened).await, ("A".into(), "api".into()));
    until_closed(&mut closed).await;

    let credentials = format!("{}:{}", ADMIN.0, ADMIN.1);
    let reply = rig
        .api
        .curl(&["--digest", "-u", &credentials, "-X", "POST", &open])
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        200,
        "Digest: {reply:?}\n{}",
        rig.api.web.log()
    );
    assert_eq!(door_opened(&mut opened).await, ("A".into(), "api".into()));
    until_closed(&mut closed).await;

    // An unknown user, and a wrong password with either scheme, are a 401
    // with both challenges.
    let reply = rig
        .api
        .curl(&["-u", "mallory:correct horse", "-X", "POST", &open])
        .await
        .unwrap();
    assert_eq!(reply.status, 401, "{reply:?}");
    for scheme in ["--basic", "--digest"] {
        let reply = rig
            .api
            .curl(&[
                scheme,
                "-u",
                "installer:wrong password",
                "-X",
                "POST",
                &open,
            ])
            .await
            .unwrap();
        assert_eq!(reply.status, 401, "{scheme}: {reply:?}");
        assert!(
            reply.json()["error"]
                .as_str()
                .unwrap()
                .contains("authentication")
        );
    }
    let reply = rig
        .api
        .curl(&["-D", "-", "-X", "POST", &open])
        .await
        .unwrap();
    let head = String::from_utf8_lossy(&reply.body).to_lowercase();
    assert!(
        head.contains(
            "www-authenticate: digest realm=\"doorphone\", qop=\"auth\", algorithm=sha-256"
        ),
        "{head}"
    );
    assert!(
        head.contains("www-authenticate: basic realm=\"doorphone\""),
        "{head}"
    );

    // An unknown relay is a 404 naming the relay. The next door opening seen
    // is the one asked for below: neither the refused logins nor the unknown
    // relay opened anything.
    let reply = rig
        .api
        .curl_as(USER, &["-X", "POST", &rig.api.url("/api/v1/doors/Z/open")])
        .await
        .unwrap();
    assert_eq!(reply.status, 404, "{reply:?}");
    assert_eq!(reply.json()["field"], "relay");
    relay.open("A", "dtmf").await.unwrap();
    assert_eq!(door_opened(&mut opened).await, ("A".into(), "dtmf".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_opens_doors_but_only_an_admin_reads_or_changes_the_configuration() {
    let rig = rig().await;
    let config_url = rig.api.url("/api/v1/config");
    let reply = rig.api.curl_as(ADMIN, &[&config_url]).await.unwrap();
    assert_eq!(reply.status, 200);
    let mut document = reply.json();
    // Secrets stay masked on the way out.
    for user in document["web"]["users"].as_array().unwrap() {
        assert_eq!(user["password_hash"], "********", "{user}");
        assert_eq!(user["digest_ha1"], "********", "{user}");
    }
    document["calls"]["max_call_time"] = json!(240);
    let body = document.to_string();
    let calls_url = rig.api.url("/api/v1/calls");
    for args in [
        vec![config_url.as_str()],
        vec!["-X", "PUT", "--data-binary", &body, &config_url],
        vec![calls_url.as_str()],
    ] {
        let reply = rig.api.curl_as(USER, &args).await.unwrap();
        assert_eq!(reply.status, 403, "{args:?}: {reply:?}");
        assert!(reply.json()["error"].as_str().unwrap().contains("admin"));
    }
    let config = Config1Proxy::new(&rig.conn).await.unwrap();
    let stored = || async {
        let value = config.get("calls.max_call_time").await.unwrap();
        doorphone_interfaces::json::from_variant(&value).unwrap()
    };
    assert_ne!(stored().await, json!(240));

    // The admin's import, masks and all, changes the value and keeps the users.
    let reply = rig
        .api
        .curl_as(ADMIN, &["-X", "PUT", "--data-binary", &body, &config_url])
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.json()["revision"].as_u64().unwrap() > 0);
    assert_eq!(stored().await, json!(240));
    let reply = rig
        .api
        .curl_as(USER, &["-X", "POST", &rig.api.url("/api/v1/doors/A/open")])
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "the user still logs in: {reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failed_logins_lock_out_that_address_and_only_it() {
    let rig = rig().await;
    let status = rig.api.url("/api/v1/status");
    for n in 1..=5 {
        let reply = rig
            .api
            .curl(&["-u", "installer:guess", &status])
            .await
            .unwrap();
        assert_eq!(reply.status, 401, "failure {n}: {reply:?}");
    }
    // Now even the right password is refused from this address.
    let reply = rig.api.curl_as(ADMIN, &[&status]).await.unwrap();
    assert_eq!(reply.status, 429, "{reply:?}");
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("too many failed logins from 127.0.0.1")
    );
    assert!(
        rig.api
            .web
            .log()
            .contains("failed logins from 127.0.0.1: locked out for 300 s"),
        "{}",
        rig.api.web.log()
    );
    // Another address logs in.
    let reply = rig
        .api
        .curl_as(ADMIN, &["--interface", "127.0.0.2", &status])
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["services"]["relay"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_deliver_door_opened_with_its_source() {
    let rig = rig().await;
    let mut events = EventClient::connect(&rig).await;
    assert_eq!(events.next().await, "ready");

    let relay = Relay1Proxy::new(&rig.conn).await.unwrap();
    let mut opened = relay.receive_door_opened().await.unwrap();
    relay.open("A", "api").await.unwrap();
    door_opened(&mut opened).await;
    let signalled = Instant::now();
    let (name, data, at) = events.next_with_data().await;
    assert_eq!(name, "door_opened");
    assert_eq!(data, json!({"relay": "A", "source": "api"}));
    let latency = at.saturating_duration_since(signalled);
    println!("SSE door_opened {latency:?} after the DoorOpened signal");
    assert!(latency < Duration::from_secs(1), "{latency:?}");

    // The hold ends: door_closed follows.
    let (name, data, _) = events.next_with_data().await;
    assert_eq!(
        (name.as_str(), data),
        ("door_closed", json!({"relay": "A"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_is_a_jpeg_of_the_cameras_size() {
    let rig = rig().await;
    let reply = rig
        .api
        .curl_as(USER, &[&rig.api.url("/api/v1/snapshot.jpg")])
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.content_type, "image/jpeg");
    assert_eq!(jpeg_size(&reply.body), Some((640, 480)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_value_is_422_naming_its_field_and_changes_nothing() {
    let rig = rig().await;
    let url = rig.api.url("/api/v1/config/calls.max_call_time");
    let config = Config1Proxy::new(&rig.conn).await.unwrap();
    let before = config.revision().await.unwrap();
    let reply = rig
        .api
        .curl_as(ADMIN, &["-X", "PATCH", "--data-binary", "4", &url])
        .await
        .unwrap();
    assert_eq!(reply.status, 422, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["field"], "calls.max_call_time", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("calls.max_call_time: ")
    );
    assert_eq!(config.revision().await.unwrap(), before, "nothing changed");

    let reply = rig
        .api
        .curl_as(ADMIN, &["-X", "PATCH", "--data-binary", "300", &url])
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    let out = rig
        .doorctl(&["config", "get", "calls.max_call_time"], None)
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "300");

    for (body, status) in [("not json", 400), ("null", 422)] {
        let reply = rig
            .api
            .curl_as(ADMIN, &["-X", "PATCH", "--data-binary", body, &url])
            .await
            .unwrap();
        assert_eq!(reply.status, status, "{body}: {reply:?}");
    }
    let reply = rig
        .api
        .curl_as(
            ADMIN,
            &[
                "-X",
                "PATCH",
                "--data-binary",
                "1",
                &rig.api.url("/api/v1/config/calls.no_such_key"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 404, "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_is_down_is_a_503_naming_it_until_it_is_back() {
    let mut rig = rig().await;
    let open = rig.api.url("/api/v1/doors/A/open");
    rig.relay.stop();
    let reply = rig.api.curl_as(USER, &["-X", "POST", &open]).await.unwrap();
    assert_eq!(reply.status, 503, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["field"], "relay", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("org.doorphone.Relay1")
    );
    let status = rig
        .api
        .curl_as(USER, &[&rig.api.url("/api/v1/status")])
        .await
        .unwrap()
        .json();
    assert_eq!(status["services"]["relay"], false, "{status}");
    assert_eq!(status["services"]["config"], true, "{status}");
    assert_eq!(status["doors"], Value::Null, "{status}");
    // The SIP agent never ran here: its calls are a 503 too.
    let reply = rig
        .api
        .curl_as(ADMIN, &[&rig.api.url("/api/v1/calls")])
        .await
        .unwrap();
    assert_eq!(
        (reply.status, reply.json()["field"].clone()),
        (503, json!("sip"))
    );

    rig.restart_relay().await.unwrap();
    let reply = rig.api.curl_as(USER, &["-X", "POST", &open]).await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    let status = rig
        .api
        .curl_as(USER, &[&rig.api.url("/api/v1/status")])
        .await
        .unwrap()
        .json();
    assert_eq!(status["doors"][0]["relay"], "A", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_users_the_api_names_doorctl_web_passwd() {
    let rig = WebRig::start(false).await.unwrap();
    let reply = rig
        .api
        .curl_as(ADMIN, &[&rig.api.url("/api/v1/status")])
        .await
        .unwrap();
    assert_eq!(reply.status, 503);
    let body = reply.json();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("doorctl web passwd"),
        "{body}"
    );
    assert_eq!(body["field"], "web.users");
    // The first user made lets its owner in.
    passwd(&rig.bus, ADMIN.0, "admin", ADMIN.1).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = rig
            .api
            .curl_as(ADMIN, &[&rig.api.url("/api/v1/status")])
            .await
            .unwrap();
        if reply.status == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{reply:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every operation of the OpenAPI document is served (behind its login, so
/// a request without one is a 401, never a 404 or 405), and the document itself
/// is public; plain HTTP only redirects to HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_api_is_the_documented_one_and_plain_http_redirects() {
    let rig = rig().await;
    let reply = rig
        .api
        .curl(&[&rig.api.url("/api/v1/openapi.json")])
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let doc = reply.json();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if op["x-role"] == "public" {
                continue;
            }
            let concrete = path
                .replace("{id}", "1")
                .replace("{relay}", "A")
                .replace("{key}", "calls.max_call_time");
            let reply = rig
                .api
                .curl(&["-X", &method.to_uppercase(), &rig.api.url(&concrete)])
                .await
                .unwrap();
            assert_eq!(reply.status, 401, "{method} {path}: {reply:?}");
        }
    }
    let reply = rig
        .api
        .curl(&[&rig.api.url("/api/v1/nothing")])
        .await
        .unwrap();
    assert_eq!(
        (reply.status, reply.json()["error"].is_string()),
        (404, true)
    );

    let plain = format!("http://127.0.0.1:{}/api/v1/status?x=1", rig.api.http_port);
    let reply = rig.api.curl(&["-D", "-", &plain]).await.unwrap();
    assert_eq!(reply.status, 308);
    let head = String::from_utf8_lossy(&reply.body).to_lowercase();
    assert!(
        head.contains(&format!(
            "location: https://127.0.0.1:{}/api/v1/status?x=1",
            rig.api.port
        )),
        "{head}"
    );
}

/// Through the SIP agent, with SIPp at the far ends: an admin places a call,
/// sees it, ends it; answers a ringing one and ends it; a user reads the
/// history but may not place calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_placed_listed_answered_and_ended_over_the_api() {
    let rig = Rig::start(10, |doc| doc["calls"]["auto_answer"]["ip"] = json!(false)).await;
    let dir = tempfile::Builder::new()
        .prefix("doorphone-web")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let api = Api::start(&rig.bus, dir.path(), true).await.unwrap();
    let mut states = rig.states().await;
    let calls = api.url("/api/v1/calls");

    let mut callee = rig.callee(
        "callee",
        Callee::Answer {
            after: Duration::from_millis(300),
        },
    );
    let number = json!({"number": format!("127.0.0.1:{}", callee.port)}).to_string();
    let reply = api
        .curl_as(USER, &["-X", "POST", "--data-binary", &number, &calls])
        .await
        .unwrap();
    assert_eq!(reply.status, 403, "a user places no call: {reply:?}");
    let reply = api
        .curl_as(ADMIN, &["-X", "POST", "--data-binary", &number, &calls])
        .await
        .unwrap();
    assert_eq!(reply.status, 201, "{reply:?}");
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    until_state(&mut states, sip::call_state::ANSWERED).await;
    let listed = api.curl_as(ADMIN, &[&calls]).await.unwrap().json();
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed[0]["state"], "answered", "{listed}");
    assert_eq!(listed[0]["direction"], "out", "{listed}");
    let one = api.url(&format!("/api/v1/calls/{id}"));
    let reply = api.curl_as(ADMIN, &["-X", "DELETE", &one]).await.unwrap();
    assert_eq!(reply.status, 204, "{reply:?}");
    callee.succeeds(PATIENCE).await.unwrap();
    // An ended call is gone (404), or, while its object lingers, ended (409).
    let reply = api.curl_as(ADMIN, &["-X", "DELETE", &one]).await.unwrap();
    assert!(
        [404, 409].contains(&reply.status),
        "an ended call: {reply:?}"
    );
    assert!(reply.json()["error"].is_string());

    let mut caller = rig.call("caller", "door", "visitor", false, Caller::AnsweredUntilBye);
    until_state(&mut states, sip::call_state::RINGING).await;
    let listed = api.curl_as(ADMIN, &[&calls]).await.unwrap().json();
    assert_eq!(listed[0]["state"], "ringing", "{listed}");
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let reply = api
        .curl_as(
            ADMIN,
            &[
                "-X",
                "POST",
                &api.url(&format!("/api/v1/calls/{id}/answer")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 204, "{reply:?}");
    until_state(&mut states, sip::call_state::ANSWERED).await;
    let reply = api
        .curl_as(
            ADMIN,
            &["-X", "DELETE", &api.url(&format!("/api/v1/calls/{id}"))],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 204, "{reply:?}");
    caller.succeeds(PATIENCE).await.unwrap();

    // The agent records an ended call just after its end: asked until both are in.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let history = loop {
        let history = api
            .curl_as(USER, &[&api.url("/api/v1/history")])
            .await
            .unwrap()
            .json();
        if history.as_array().unwrap().len() >= 2 || tokio::time::Instant::now() > deadline {
            break history;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reasons: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["direction"].as_str().unwrap(),
                e["end_reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [("out", "local_hangup"), ("in", "local_hangup")],
        "{history}"
    );
}

/// `doorphone-web`'s unique name on the bus, found by its process.
async fn web_name(rig: &WebRig) -> String {
    let dbus = zbus::fdo::DBusProxy::new(&rig.conn).await.unwrap();
    let pid = rig.api.web.pid().expect("web runs");
    for name in dbus.list_names().await.unwrap() {
        if name.starts_with(':')
            && let Ok(bus_name) = zbus::names::BusName::try_from(name.as_str())
            && dbus.get_connection_unix_process_id(bus_name).await.ok() == Some(pid)
        {
            return name.to_string();
        }
    }
    panic!("web is not on the bus");
}

/// The match rules `doorphone-web` holds on the bus (dbus-daemon's
/// `Debug.Stats`).
async fn web_match_rules(rig: &WebRig) -> Vec<String> {
    let web = web_name(rig).await;
    let mut all = rig
        .conn
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus.Debug.Stats"),
            "GetAllMatchRules",
            &(),
        )
        .await
        .unwrap()
        .body()
        .deserialize::<std::collections::HashMap<String, Vec<String>>>()
        .unwrap();
    all.remove(&web).unwrap_or_default()
}

/// The signals the live events carry, besides the configuration's `Changed`
/// (which the service follows for itself as well).
const EVENT_SIGNALS: [&str; 7] = [
    "CallStateChanged",
    "CallRefused",
    "DoorOpened",
    "DoorClosed",
    "ButtonPressed",
    "PageStarted",
    "PageEnded",
];

/// How many of `rules` match signal `member`.
fn rules_for(rules: &[String], member: &str) -> usize {
    let wanted = format!("member='{member}'");
    rules.iter().filter(|r| r.contains(&wanted)).count()
}

/// The `RemoveMatch` calls `doorphone-web` makes, seen by a monitor of the
/// bus: the rules it drops, as it drops them.
struct RuleRemovals {
    web: String,
    messages: zbus::MessageStream,
}

impl RuleRemovals {
    async fn watch(rig: &WebRig) -> RuleRemovals {
        let web = web_name(rig).await;
        let monitor = rig.bus.connect().await.unwrap();
        monitor
            .call_method(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus.Monitoring"),
                "BecomeMonitor",
                &(
                    vec![format!(
                        "type='method_call',member='RemoveMatch',sender='{web}'"
                    )],
                    0u32,
                ),
            )
            .await
            .unwrap();
        RuleRemovals {
            web,
            messages: zbus::MessageStream::from(monitor),
        }
    }

    /// Waits until the web service has dropped a rule for each of `members`.
    async fn until_dropped(&mut self, members: &[&str]) {
        let mut left: Vec<&str> = members.to_vec();
        tokio::time::timeout(PATIENCE, async {
            while !left.is_empty() {
                let message = self
                    .messages
                    .next()
                    .await
                    .expect("the monitor stays on the bus")
                    .unwrap();
                let header = message.header();
                if header.member().is_some_and(|m| m == "RemoveMatch")
                    && header.sender().is_some_and(|s| s == self.web.as_str())
                    && let Ok(rule) = message.body().deserialize::<String>()
                {
                    left.retain(|m| !rule.contains(&format!("member='{m}'")));
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("web kept its rules for {left:?}"));
    }
}

/// A client of `/api/v1/events`: `curl -N`, read line by line.
struct EventClient {
    curl: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl EventClient {
    async fn connect(rig: &WebRig) -> EventClient {
        let credentials = format!("{}:{}", USER.0, USER.1);
        let mut curl = tokio::process::Command::new("curl")
            .args([
                "-sk",
                "-N",
                "-u",
                &credentials,
                &rig.api.url("/api/v1/events"),
            ])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = tokio::io::BufReader::new(curl.stdout.take().unwrap()).lines();
        EventClient { curl, lines }
    }

    /// The next event: its name, its data and when its data arrived.
    async fn next_with_data(&mut self) -> (String, Value, Instant) {
        let mut name = String::new();
        loop {
            let line = tokio::time::timeout(PATIENCE, self.lines.next_line())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream stays open");
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ") {
                return (name, serde_json::from_str(data).unwrap(), Instant::now());
            }
        }
    }

    /// The next event's name.
    async fn next(&mut self) -> String {
        self.next_with_data().await.0
    }

    async fn close(mut self) {
        self.curl.kill().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_subscribed_on_the_bus_only_while_a_client_follows_them() {
    let rig = rig().await;
    let relay = Relay1Proxy::new(&rig.conn).await.unwrap();
    let mut opened = relay.receive_door_opened().await.unwrap();
    let mut closed = relay.receive_door_closed().await.unwrap();
    let door_open_and_closed = async |opened: &mut _, closed: &mut _| {
        relay.open("A", "api").await.unwrap();
        door_opened(opened).await;
        tokio::time::timeout(PATIENCE, StreamExt::next(closed))
            .await
            .expect("DoorClosed in time");
    };

    // Serving, and following the configuration, but no client: the calls,
    // doors and pages do not wake the service.
    let rules = web_match_rules(&rig).await;
    assert_eq!(rules_for(&rules, "Changed"), 1, "{rules:#?}");
    for member in EVENT_SIGNALS {
        assert_eq!(rules_for(&rules, member), 0, "{member}: {rules:#?}");
    }

    // The first client subscribes before its `ready`; a second one shares
    // the subscriptions.
    let mut first = EventClient::connect(&rig).await;
    assert_eq!(first.next().await, "ready");
    let rules = web_match_rules(&rig).await;
    for member in EVENT_SIGNALS {
        assert_eq!(rules_for(&rules, member), 1, "{member}: {rules:#?}");
    }
    let mut second = EventClient::connect(&rig).await;
    assert_eq!(second.next().await, "ready");
    assert_eq!(web_match_rules(&rig).await, rules);
    door_open_and_closed(&mut opened, &mut closed).await;
    for client in [&mut first, &mut second] {
        assert_eq!(client.next().await, "door_opened");
        assert_eq!(client.next().await, "door_closed");
    }

    // One leaves: the other still gets the events.
    first.close().await;
    door_open_and_closed(&mut opened, &mut closed).await;
    assert_eq!(second.next().await, "door_opened");
    assert_eq!(second.next().await, "door_closed");
    assert_eq!(rules_for(&web_match_rules(&rig).await, "DoorOpened"), 1);

    // The last leaves: the subscriptions go (the service learns it at its
    // next write to the client, at the latest).
    let mut removals = RuleRemovals::watch(&rig).await;
    second.close().await;
    door_open_and_closed(&mut opened, &mut closed).await;
    removals.until_dropped(&EVENT_SIGNALS).await;
    let rules = web_match_rules(&rig).await;
    for member in EVENT_SIGNALS {
        assert_eq!(rules_for(&rules, member), 0, "{member}: {rules:#?}");
    }
    assert_eq!(rules_for(&rules, "Changed"), 1, "{rules:#?}");

    // A new client subscribes again, and gets the events.
    let mut again = EventClient::connect(&rig).await;
    assert_eq!(again.next().await, "ready");
    door_open_and_closed(&mut opened, &mut closed).await;
    assert_eq!(again.next().await, "door_opened");
    assert_eq!(rules_for(&web_match_rules(&rig).await, "DoorOpened"), 1);
}
