//! System tests of `doorphone-relay`: the real binary as its own user on a private
//! bus, its relays from the real config service, with the simulated backend (its
//! transition log read back, its inputs pressed through their named pipe) and the
//! sysfs backend on a fake `/sys/class/gpio` in a private mount namespace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use doorphone_interfaces::config::Config1Proxy;
use doorphone_interfaces::relay::{self, Relay1Proxy};
use doorphone_system_tests::{
    Bus, ConfigDb, PATIENCE, Service, bin, chown_to, repo_root, start_config, start_service,
};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

/// How far a measured time may be from the configured one.
const TOLERANCE: f64 = 0.3;

/// A: 1 s delay, 2 s hold. B: active low, no delay, 2 s hold. T: no delay, 1 s
/// hold (a timer for the other tests).
fn test_relays() -> Value {
    json!([
        { "id": "A", "name": "Front door", "gpio": 17, "active_low": false, "trigger_delay": 1, "hold": 2, "dtmf_code": "#" },
        { "id": "B", "name": "Gate", "gpio": 22, "active_low": true, "trigger_delay": 0, "hold": 2, "dtmf_code": "" },
        { "id": "T", "name": "Timer", "gpio": 5, "active_low": false, "trigger_delay": 0, "hold": 1, "dtmf_code": "" }
    ])
}

struct Rig {
    bus: Bus,
    _db: ConfigDb,
    config: Service,
    relay: Service,
    dir: tempfile::TempDir,
    conn: zbus::Connection,
}

/// Replaces the `relays` section of the configuration.
async fn set_relays(conn: &zbus::Connection, relays: Value) {
    set_relays_and_inputs(conn, relays, json!([]))
        .await
        .unwrap();
}

/// Replaces the `relays` and `inputs` sections of the configuration.
async fn set_relays_and_inputs(
    conn: &zbus::Connection,
    relays: Value,
    inputs: Value,
) -> Result<(), String> {
    let config = Config1Proxy::new(conn).await.unwrap();
    let mut doc: Value = serde_json::from_str(&config.export().await.unwrap()).unwrap();
    doc["relays"] = relays;
    doc["inputs"] = inputs;
    config
        .import(&doc.to_string())
        .await
        .map_err(|e| e.to_string())
}

fn relay_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("doorphone-relay")
        .tempdir()
        .unwrap();
    chown_to(dir.path(), "doorphone-relay").unwrap();
    dir
}

fn sim_args(dir: &Path) -> Vec<String> {
    vec![
        "--gpio".into(),
        "sim".into(),
        "--sim-log".into(),
        dir.join("relays.log").display().to_string(),
        "--claims".into(),
        dir.join("claims").display().to_string(),
        "--sim-inputs".into(),
        dir.join("inputs").display().to_string(),
    ]
}

/// Sets simulated input lines, as `echo 23 0 > inputs` would: one `GPIO LEVEL`
/// line each.
fn set_lines(dir: &Path, lines: &[(u32, u8)]) {
    let mut pipe = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("inputs"))
        .unwrap();
    let text: String = lines.iter().map(|(g, l)| format!("{g} {l}\n")).collect();
    pipe.write_all(text.as_bytes()).unwrap();
}

/// Presses an active-low button on `gpio` for `held`, then lets it go.
async fn press(dir: &Path, gpio: u32, held: Duration) {
    set_lines(dir, &[(gpio, 0)]);
    tokio::time::sleep(held).await;
    set_lines(dir, &[(gpio, 1)]);
}

async fn start_relay(bus: &Bus, dir: &Path) -> Service {
    start_service(
        bus,
        "doorphone-relay",
        "doorphone-relay",
        relay::BUS_NAME,
        &sim_args(dir),
        &dir.join(format!("relay-{}.log", now())),
    )
    .await
    .unwrap()
}

impl Rig {
    async fn start() -> Rig {
        Rig::start_with_inputs(json!([])).await
    }

    /// The test relays and `inputs`.
    async fn start_with_inputs(inputs: Value) -> Rig {
        let bus = Bus::start().unwrap();
        let db = ConfigDb::new().unwrap();
        let config = start_config(&bus, &db).await.unwrap();
        let conn = bus.connect().await.unwrap();
        set_relays_and_inputs(&conn, test_relays(), inputs)
            .await
            .unwrap();
        let dir = relay_dir();
        let relay = start_relay(&bus, dir.path()).await;
        Rig {
            bus,
            _db: db,
            config,
            relay,
            dir,
            conn,
        }
    }

    /// A proxy that reads properties afresh at every call.
    async fn proxy(&self) -> Relay1Proxy<'static> {
        uncached(&self.conn).await
    }

    fn sim_log(&self) -> Vec<Transition> {
        sim_log(&self.dir.path().join("relays.log"))
    }

    fn doorctl_as(&self, user: &str, args: &[&str]) -> Output {
        self.bus
            .command_as(user, &bin("doorctl"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

async fn uncached(conn: &zbus::Connection) -> Relay1Proxy<'static> {
    Relay1Proxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap()
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// One line of the simulated backend's log.
#[derive(Debug, Clone, PartialEq)]
struct Transition {
    at: f64,
    relay: String,
    on: bool,
    level: String,
}

fn sim_log(path: &Path) -> Vec<Transition> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Transition {
                at: fields[0].parse().unwrap(),
                relay: fields[1].to_owned(),
                on: fields[2] == "on",
                level: fields[4].to_owned(),
            }
        })
        .collect()
}

/// The transitions of `relay` after `since`.
fn of(log: &[Transition], relay: &str, since: f64) -> Vec<Transition> {
    log.iter()
        .filter(|t| t.relay == relay && t.at >= since)
        .cloned()
        .collect()
}

fn assert_about(what: &str, measured: f64, expected: f64) {
    assert!(
        (measured - expected).abs() <= TOLERANCE,
        "{what}: {measured:.3} s, expected {expected} s ± {TOLERANCE}"
    );
}

/// The next item of `stream`, or a failure naming `what`.
async fn next<T>(stream: &mut (impl Stream<Item = T> + Unpin), what: &str) -> T {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("the stream of {what} ended"))
}

async fn opened(stream: &mut relay::DoorOpenedStream) -> (String, String) {
    let signal = next(stream, "DoorOpened").await;
    let args = signal.args().unwrap();
    (args.relay.to_owned(), args.source.to_owned())
}

async fn closed(stream: &mut relay::DoorClosedStream) -> String {
    let signal = next(stream, "DoorClosed").await;
    signal.args().unwrap().relay.to_owned()
}

async fn state_of(proxy: &Relay1Proxy<'_>, relay: &str) -> String {
    proxy.relays().await.unwrap()[relay].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_energises_after_the_delay_for_the_hold() {
    let rig = Rig::start().await;
    let proxy = rig.proxy().await;
    assert_eq!(proxy.relay_ids().await.unwrap(), ["A", "B", "T"]);
    assert_eq!(state_of(&proxy, "A").await, "closed");
    let mut opens = proxy.receive_door_opened().await.unwrap();
    let mut closes = proxy.receive_door_closed().await.unwrap();

    let (t0, wall0) = (Instant::now(), now());
    proxy.open("A", "api").await.unwrap();
    assert_eq!(opened(&mut opens).await, ("A".into(), "api".into()));
    assert_about("DoorOpened after Open", t0.elapsed().as_secs_f64(), 1.0);
    assert_eq!(state_of(&proxy, "A").await, "open");
    assert_eq!(state_of(&proxy, "B").await, "closed");
    assert_eq!(closed(&mut closes).await, "A");
    assert_about("DoorClosed after Open", t0.elapsed().as_secs_f64(), 3.0);
    assert_eq!(state_of(&proxy, "A").await, "closed");

    let a = of(&rig.sim_log(), "A", wall0);
    assert_eq!(
        a.iter()
            .map(|t| (t.on, t.level.as_str()))
            .collect::<Vec<_>>(),
        [(true, "level=1"), (false, "level=0")],
        "{a:?}"
    );
    assert_about("trigger delay in the sim log", a[0].at - wall0, 1.0);
    assert_about("hold in the sim log", a[1].at - a[0].at, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_relay_starts_and_stops_de_energised_and_active_low_is_inverted() {
    let mut rig = Rig::start().await;
    let start = rig.sim_log();
    for (relay, level) in [("A", "level=0"), ("B", "level=1"), ("T", "level=0")] {
        let t = of(&start, relay, 0.0);
        assert_eq!(t.len(), 1, "{relay}: {start:?}");
        assert!(!t[0].on && t[0].level == level, "{relay}: {t:?}");
    }
    let proxy = rig.proxy().await;
    let mut opens = proxy.receive_door_opened().await.unwrap();
    let wall0 = now();
    proxy.open("B", "dtmf").await.unwrap();
    assert_eq!(opened(&mut opens).await, ("B".into(), "dtmf".into()));
    let b = of(&rig.sim_log(), "B", wall0);
    assert!(b[0].on && b[0].level == "level=0", "{b:?}");

    // SIGTERM while B is open: it is released, and so is every other line.
    let wall1 = now();
    assert!(rig.relay.stop().unwrap().success(), "{}", rig.relay.log());
    let stop = rig.sim_log();
    for (relay, level) in [("A", "level=0"), ("B", "level=1"), ("T", "level=0")] {
        let t = of(&stop, relay, wall1);
        assert!(
            t.len() == 1 && !t[0].on && t[0].level == level,
            "{relay}: {stop:?}"
        );
    }
    let claims = std::fs::read_to_string(rig.dir.path().join("claims")).unwrap();
    assert_eq!(claims, "", "every line released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_release_all_and_the_next_start_drive_the_lines_inactive() {
    let mut rig = Rig::start().await;
    let proxy = rig.proxy().await;
    let mut opens = proxy.receive_door_opened().await.unwrap();
    proxy.open("B", "api").await.unwrap();
    opened(&mut opens).await;
    rig.relay.kill();
    let claims = rig.dir.path().join("claims");
    let left = std::fs::read_to_string(&claims).unwrap();
    assert_eq!(left.lines().count(), 3, "{left}");

    // What the unit's ExecStopPost= runs.
    let wall = now();
    let mut args = sim_args(rig.dir.path());
    args.push("--release-all".into());
    let out = rig
        .bus
        .command_as("doorphone-relay", &bin("doorphone-relay"))
        .args(&args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let log = rig.sim_log();
    let b = of(&log, "B", wall);
    assert!(
        b.len() == 1 && !b[0].on && b[0].level == "level=1",
        "{log:?}"
    );
    assert_eq!(std::fs::read_to_string(&claims).unwrap(), "");

    // A crash without ExecStopPost= (a power cut of the service alone): the next
    // start drives the lines the claims file names inactive before anything else.
    std::fs::write(&claims, "Old 9 1\n").unwrap();
    chown_to(&claims, "doorphone-relay").unwrap();
    let wall = now();
    let _relay = start_relay(&rig.bus, rig.dir.path()).await;
    let old = of(&rig.sim_log(), "Old", wall);
    assert!(
        old.len() == 1 && !old[0].on && old[0].level == "level=1",
        "{old:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_while_open_extends_the_hold_instead_of_stacking() {
    let rig = Rig::start().await;
    let proxy = rig.proxy().await;
    let mut opens = proxy.receive_door_opened().await.unwrap();
    let mut closes = proxy.receive_door_closed().await.unwrap();

    let (t0, wall0) = (Instant::now(), now());
    proxy.open("B", "api").await.unwrap();
    proxy.open("T", "api").await.unwrap();
    // T's 1 s hold ends while B (2 s hold) is open: open B again then.
    assert_eq!(closed(&mut closes).await, "T");
    assert_about("T's hold", t0.elapsed().as_secs_f64(), 1.0);
    let t1 = Instant::now();
    proxy.open("B", "dtmf").await.unwrap();
    assert_eq!(closed(&mut closes).await, "B");
    assert_about(
        "B's hold after the second Open",
        t1.elapsed().as_secs_f64(),
        2.0,
    );
    assert_about("B's hold in all", t0.elapsed().as_secs_f64(), 3.0);

    let mut sources = Vec::new();
    while let Ok(Some(signal)) = tokio::time::timeout(Duration::ZERO, opens.next()).await {
        let args = signal.args().unwrap();
        sources.push((args.relay.to_owned(), args.source.to_owned()));
    }
    sources.sort();
    assert_eq!(
        sources,
        [("B".into(), "api".into()), ("T".into(), "api".into())],
        "one DoorOpened per opening"
    );
    let b = of(&rig.sim_log(), "B", wall0);
    assert_eq!(b.iter().map(|t| t.on).collect::<Vec<_>>(), [true, false]);
    assert_about("B on to off in the sim log", b[1].at - b[0].at, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_relays_and_sources_are_refused() {
    let rig = Rig::start().await;
    let proxy = rig.proxy().await;
    match proxy.open("Z", "api").await {
        Err(relay::Error::NotFound(m)) => assert!(m.contains("Z"), "{m}"),
        other => panic!("an unknown relay: {other:?}"),
    }
    match proxy.open("A", "doorbell").await {
        Err(relay::Error::Invalid(m)) => assert!(m.contains("doorbell"), "{m}"),
        other => panic!("an unknown source: {other:?}"),
    }
    let out = rig.bus.busctl_as(
        "root",
        &[
            "call",
            relay::BUS_NAME,
            relay::OBJECT_PATH,
            relay::INTERFACE,
            "Open",
            "ss",
            "Z",
            "api",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no relay") && !out.status.success(),
        "{out:?}"
    );
    assert!(
        rig.sim_log().iter().all(|t| !t.on),
        "nothing opened: {:?}",
        rig.sim_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_property_follows_the_doors_and_tells_its_changes() {
    let rig = Rig::start().await;
    let proxy = Relay1Proxy::new(&rig.conn).await.unwrap();
    let mut changes = proxy.receive_relays_changed().await;
    // The first value is the current one.
    let first = next(&mut changes, "Relays").await.get().await.unwrap();
    assert!(first.values().all(|s| s == "closed"), "{first:?}");
    proxy.open("T", "input").await.unwrap();
    let mut seen = Vec::new();
    while seen.last().map(String::as_str) != Some("closed") || seen.len() < 2 {
        let relays = next(&mut changes, "Relays").await.get().await.unwrap();
        seen.push(relays["T"].clone());
    }
    assert_eq!(seen, ["open", "closed"]);

    // Everyone may read it.
    let out = rig.bus.busctl_as(
        "nobody",
        &[
            "get-property",
            relay::BUS_NAME,
            relay::OBJECT_PATH,
            relay::INTERFACE,
            "Relays",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("a{ss} 3 "),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_reloads_the_relays() {
    let rig = Rig::start().await;
    let proxy = Relay1Proxy::new(&rig.conn).await.unwrap();
    let mut ids = proxy.receive_relay_ids_changed().await;
    next(&mut ids, "RelayIds").await;
    let wall = now();
    set_relays(
        &rig.conn,
        json!([{ "id": "C", "name": "Garage", "gpio": 6, "hold": 1 }]),
    )
    .await;
    let fresh = next(&mut ids, "RelayIds").await.get().await.unwrap();
    assert_eq!(fresh, ["C"]);
    let log = rig.sim_log();
    for relay in ["A", "B", "T", "C"] {
        let t = of(&log, relay, wall);
        assert!(
            t.len() == 1 && !t[0].on,
            "{relay} released or claimed: {log:?}"
        );
    }
    assert!(matches!(
        proxy.open("A", "api").await,
        Err(relay::Error::NotFound(_))
    ));
    proxy.open("C", "api").await.unwrap();
    // A change elsewhere in the configuration leaves the relays alone.
    let config = Config1Proxy::new(&rig.conn).await.unwrap();
    config
        .set(
            "calls.max_call_time",
            &doorphone_interfaces::json::to_variant(&json!(120)).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(proxy.relay_ids().await.unwrap(), ["C"]);
    let _ = &rig.config;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_config_service_there_are_no_relays_until_it_appears() {
    let bus = Bus::start().unwrap();
    let dir = relay_dir();
    let relay = start_relay(&bus, dir.path()).await;
    assert!(
        relay.log().contains("config service is not reachable"),
        "{}",
        relay.log()
    );
    // Plain text, as the journal keeps it: no terminal colour codes.
    assert!(!relay.log().contains('\x1b'), "{:?}", relay.log());
    let conn = bus.connect().await.unwrap();
    let proxy = Relay1Proxy::new(&conn).await.unwrap();
    let mut ids = proxy.receive_relay_ids_changed().await;
    assert!(
        next(&mut ids, "RelayIds")
            .await
            .get()
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        proxy.open("A", "api").await,
        Err(relay::Error::NotFound(_))
    ));
    let db = ConfigDb::new().unwrap();
    let _config = start_config(&bus, &db).await.unwrap();
    // The default configuration has relay A.
    let fresh = next(&mut ids, "RelayIds").await.get().await.unwrap();
    assert_eq!(fresh, ["A"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_sip_agent_and_admins_may_open_doors() {
    let rig = Rig::start().await;
    let call = |user: &str| {
        rig.bus.busctl_as(
            user,
            &[
                "call",
                relay::BUS_NAME,
                relay::OBJECT_PATH,
                relay::INTERFACE,
                "Open",
                "ss",
                "T",
                "api",
            ],
        )
    };
    for user in ["nobody", "doorphone-media", "doorphone-pager"] {
        let denied = call(user);
        assert!(!denied.status.success(), "{user}: {denied:?}");
        assert!(
            String::from_utf8_lossy(&denied.stderr).contains("Access denied"),
            "{user}: {denied:?}"
        );
    }
    assert!(rig.sim_log().iter().all(|t| !t.on), "nobody opened a door");
    for user in ["doorphone-sip", "root"] {
        let out = call(user);
        assert!(out.status.success(), "{user}: {out:?}");
    }
    let introspect = rig.bus.busctl_as(
        "nobody",
        &["introspect", relay::BUS_NAME, relay::OBJECT_PATH],
    );
    assert!(introspect.status.success(), "{introspect:?}");
    let get_all = rig.bus.busctl_as(
        "nobody",
        &[
            "call",
            relay::BUS_NAME,
            relay::OBJECT_PATH,
            "org.freedesktop.DBus.Properties",
            "GetAll",
            "s",
            relay::INTERFACE,
        ],
    );
    assert!(get_all.status.success(), "{get_all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doorctl_door_open_and_status() {
    let rig = Rig::start().await;
    let proxy = rig.proxy().await;
    let mut opens = proxy.receive_door_opened().await.unwrap();
    let mut closes = proxy.receive_door_closed().await.unwrap();

    let out = rig.doorctl_as("root", &["door", "status"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "RELAY  STATE\nA      closed\nB      closed\nT      closed\n"
    );

    // Without a relay: the first one, A.
    let out = rig.doorctl_as("root", &["door", "open"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(opened(&mut opens).await, ("A".into(), "api".into()));
    let out = rig.doorctl_as("nobody", &["door", "status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status,
        json!([
            { "relay": "A", "state": "open" },
            { "relay": "B", "state": "closed" },
            { "relay": "T", "state": "closed" }
        ])
    );
    assert_eq!(closed(&mut closes).await, "A");

    let out = rig.doorctl_as("root", &["door", "open", "T"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(opened(&mut opens).await, ("T".into(), "api".into()));

    let out = rig.doorctl_as("root", &["door", "open", "Z"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "doorctl: no relay \"Z\"\n"
    );
    let out = rig.doorctl_as("nobody", &["door", "open", "B"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AccessDenied"),
        "{out:?}"
    );
    let out = rig.doorctl_as("root", &["door"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doorctl_says_when_the_relay_service_is_not_running() {
    let bus = Bus::start().unwrap();
    let out = bus
        .command_as("root", &bin("doorctl"))
        .args(["door", "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "doorctl: the relay service (org.doorphone.Relay1) is not running\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_released_interface_matches_the_code() {
    let rig = Rig::start().await;
    doorphone_system_tests::check_released_interface(
        &rig.conn,
        relay::BUS_NAME,
        relay::OBJECT_PATH,
        relay::INTERFACE,
        &repo_root().join("dbus/interfaces/org.doorphone.Relay1.xml"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// The relay service with `--gpio sysfs` in a private mount namespace whose
/// `/sys/class` is a tmpfs holding a fake GPIO tree. A shell in the namespace
/// builds the tree, runs the service as its user, and once it exits copies the
/// tree's files out, so what the service did on release can be read too.
struct SysfsRelay {
    shell: Child,
    dir: PathBuf,
}

const GPIO: &str = "/sys/class/gpio";

impl SysfsRelay {
    /// A tree with `lines` (GPIO number, level at rest), all inputs; the first
    /// one's `value` is copied out at the end.
    fn start(bus: &Bus, dir: &Path, lines: &[(u32, u8)]) -> SysfsRelay {
        let gpio = lines[0].0;
        let tree: String = lines
            .iter()
            .map(|(n, level)| {
                format!(
                    "mkdir -p {GPIO}/gpio{n}\n\
                     echo in > {GPIO}/gpio{n}/direction\n\
                     echo none > {GPIO}/gpio{n}/edge\n\
                     echo {level} > {GPIO}/gpio{n}/value\n"
                )
            })
            .collect();
        let script = format!(
            r#"set -e
mount -t tmpfs fake-sysfs /sys/class
mkdir -p {GPIO}
: > {GPIO}/export
: > {GPIO}/unexport
{tree}chown -R doorphone-relay:doorphone-relay {GPIO}
setpriv --reuid=doorphone-relay --regid=doorphone-relay --init-groups \
    {relay} --gpio sysfs --claims {dir}/claims 2> {dir}/relay.log &
echo $! > {dir}/pid
status=0
wait $! || status=$?
cp {GPIO}/gpio{gpio}/value {dir}/value.after
cp {GPIO}/unexport {dir}/unexport.after
exit $status
"#,
            relay = bin("doorphone-relay").display(),
            dir = dir.display(),
        );
        let shell = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare runs (util-linux)");
        SysfsRelay {
            shell,
            dir: dir.to_path_buf(),
        }
    }

    /// A file of the fake tree, read in the namespace.
    fn read(&self, file: &str) -> String {
        let out = Command::new("nsenter")
            .args(["--mount", "--target", &self.shell.id().to_string()])
            .args(["cat", &format!("{GPIO}/{file}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn relay_pid(&self) -> String {
        std::fs::read_to_string(self.dir.join("pid"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Writes a file of the fake tree in the namespace, as the kernel would
    /// change an input's `value`.
    fn write(&self, file: &str, text: &str) {
        let out = Command::new("nsenter")
            .args(["--mount", "--target", &self.shell.id().to_string()])
            .args(["sh", "-c", &format!("echo {text} > {GPIO}/{file}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {out:?}");
    }

    /// SIGTERM to the service; waits for the shell to copy the tree out.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.relay_pid()])
            .status();
        let status = self.shell.wait().unwrap();
        assert!(
            status.success(),
            "{status}: {}",
            std::fs::read_to_string(self.dir.join("relay.log")).unwrap_or_default()
        );
    }
}

impl Drop for SysfsRelay {
    fn drop(&mut self) {
        if let Ok(None) = self.shell.try_wait() {
            if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
            let _ = self.shell.kill();
            let _ = self.shell.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sysfs_backend_drives_a_fake_gpio_tree() {
    let bus = Bus::start().unwrap();
    let db = ConfigDb::new().unwrap();
    let _config = start_config(&bus, &db).await.unwrap();
    let conn = bus.connect().await.unwrap();
    set_relays(
        &conn,
        json!([{ "id": "A", "name": "Door", "gpio": 17, "active_low": false, "trigger_delay": 1, "hold": 2 }]),
    )
    .await;
    let dir = relay_dir();
    let mut relay = SysfsRelay::start(&bus, dir.path(), &[(17, 0)]);
    bus.wait_for_name(&conn, relay::BUS_NAME)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}\n{}",
                std::fs::read_to_string(dir.path().join("relay.log")).unwrap_or_default()
            )
        });
    assert_eq!(relay.read("gpio17/direction"), "out");
    assert_eq!(relay.read("gpio17/value"), "0");

    let proxy = Relay1Proxy::new(&conn).await.unwrap();
    let mut opens = proxy.receive_door_opened().await.unwrap();
    let mut closes = proxy.receive_door_closed().await.unwrap();
    let t0 = Instant::now();
    proxy.open("A", "api").await.unwrap();
    assert_eq!(relay.read("gpio17/value"), "0", "during the trigger delay");
    opened(&mut opens).await;
    assert_about("value 0 to 1", t0.elapsed().as_secs_f64(), 1.0);
    assert_eq!(relay.read("gpio17/value"), "1");
    assert_eq!(relay.read("gpio17/direction"), "out");
    closed(&mut closes).await;
    assert_about("value 1 to 0", t0.elapsed().as_secs_f64(), 3.0);
    assert_eq!(relay.read("gpio17/value"), "0");

    relay.stop();
    let after = |file: &str| {
        std::fs::read_to_string(dir.path().join(file))
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(after("value.after"), "0");
    assert_eq!(
        after("unexport.after"),
        "17",
        "the line is unexported on stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sysfs_backend_holds_an_active_low_line_high_at_rest() {
    let bus = Bus::start().unwrap();
    let db = ConfigDb::new().unwrap();
    let _config = start_config(&bus, &db).await.unwrap();
    let conn = bus.connect().await.unwrap();
    set_relays(
        &conn,
        json!([{ "id": "G", "name": "Gate", "gpio": 23, "active_low": true, "trigger_delay": 0, "hold": 1 }]),
    )
    .await;
    let dir = relay_dir();
    let mut relay = SysfsRelay::start(&bus, dir.path(), &[(23, 0)]);
    bus.wait_for_name(&conn, relay::BUS_NAME).await.unwrap();
    // `high`: an output that starts high, never passing through low (the kernel
    // reads it back as `out`).
    assert_eq!(relay.read("gpio23/direction"), "high");
    assert_eq!(relay.read("gpio23/value"), "1");
    let proxy = Relay1Proxy::new(&conn).await.unwrap();
    let mut closes = proxy.receive_door_closed().await.unwrap();
    proxy.open("G", "api").await.unwrap();
    assert_eq!(relay.read("gpio23/value"), "0");
    closed(&mut closes).await;
    assert_eq!(relay.read("gpio23/value"), "1");
    relay.stop();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("value.after"))
            .unwrap()
            .trim(),
        "1"
    );
}

/// T (gpio 5, 1 s hold) opened by an exit button on gpio 23; call button 1 on
/// gpio 24. Both active low, debounced for 100 ms.
fn test_inputs() -> Value {
    json!([
        { "gpio": 23, "active_low": true, "debounce_ms": 100, "opens": "T" },
        { "gpio": 24, "active_low": true, "debounce_ms": 100, "presses": 1 }
    ])
}

/// Whether `stream` yields anything within `wait`.
async fn quiet<T>(stream: &mut (impl Stream<Item = T> + Unpin), wait: Duration) -> bool {
    tokio::time::timeout(wait, stream.next()).await.is_err()
}

async fn button_pressed(stream: &mut relay::ButtonPressedStream) -> u16 {
    next(stream, "ButtonPressed").await.args().unwrap().button
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exit_button_opens_its_relay_with_source_input() {
    let rig = Rig::start_with_inputs(test_inputs()).await;
    let proxy = rig.proxy().await;
    let mut opens = proxy.receive_door_opened().await.unwrap();
    let mut buttons = proxy.receive_button_pressed().await.unwrap();
    let (t0, wall0) = (Instant::now(), now());
    press(rig.dir.path(), 23, Duration::from_millis(300)).await;
    assert_eq!(opened(&mut opens).await, ("T".into(), "input".into()));
    // The level counts once held for the debounce time: 100 ms after the press.
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    let t = of(&rig.sim_log(), "T", wall0);
    assert!(!t.is_empty() && t[0].on, "{t:?}");
    assert_about("press to energised", t[0].at - wall0, 0.1);
    assert!(quiet(&mut buttons, Duration::from_millis(200)).await);
    // The release opens nothing more.
    assert!(quiet(&mut opens, Duration::from_millis(500)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_shorter_than_the_debounce_time_opens_nothing() {
    let rig = Rig::start_with_inputs(test_inputs()).await;
    let proxy = rig.proxy().await;
    let mut opens = proxy.receive_door_opened().await.unwrap();
    let wall0 = now();
    // Contact bounce: 30 ms pulses, 30 ms apart, never 100 ms stable.
    for _ in 0..5 {
        press(rig.dir.path(), 23, Duration::from_millis(30)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(
        quiet(&mut opens, Duration::from_millis(600)).await,
        "a bounce opened the door"
    );
    assert!(of(&rig.sim_log(), "T", wall0).is_empty());
    // A press that lasts opens it.
    press(rig.dir.path(), 23, Duration::from_millis(200)).await;
    assert_eq!(opened(&mut opens).await, ("T".into(), "input".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_button_input_emits_button_pressed_once_per_press() {
    let rig = Rig::start_with_inputs(test_inputs()).await;
    let proxy = rig.proxy().await;
    let mut opens = proxy.receive_door_opened().await.unwrap();
    let mut buttons = proxy.receive_button_pressed().await.unwrap();
    // Held for a second: one press.
    press(rig.dir.path(), 24, Duration::from_secs(1)).await;
    assert_eq!(button_pressed(&mut buttons).await, 1);
    assert!(quiet(&mut buttons, Duration::from_millis(400)).await);
    press(rig.dir.path(), 24, Duration::from_millis(200)).await;
    assert_eq!(button_pressed(&mut buttons).await, 1);
    assert!(quiet(&mut opens, Duration::ZERO).await, "no door opened");
    // Lines that are not inputs, and junk, are ignored.
    set_lines(rig.dir.path(), &[(99, 0), (17, 0)]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(rig.dir.path().join("inputs"))
        .unwrap()
        .write_all(b"hello\n24\n")
        .unwrap();
    assert!(quiet(&mut buttons, Duration::from_millis(300)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_follow_the_configuration_and_refused_ones_change_nothing() {
    let rig = Rig::start_with_inputs(test_inputs()).await;
    let proxy = rig.proxy().await;
    let mut opens = proxy.receive_door_opened().await.unwrap();
    let mut buttons = proxy.receive_button_pressed().await.unwrap();
    // gpio 23 becomes call button 2; gpio 24 is no input any more.
    set_relays_and_inputs(
        &rig.conn,
        test_relays(),
        json!([{ "gpio": 23, "active_low": true, "debounce_ms": 50, "presses": 2 }]),
    )
    .await
    .unwrap();
    // The reload is asynchronous: press until it took.
    let pressed = tokio::time::timeout(PATIENCE, async {
        loop {
            press(rig.dir.path(), 23, Duration::from_millis(150)).await;
            if let Ok(Some(signal)) =
                tokio::time::timeout(Duration::from_millis(300), buttons.next()).await
            {
                return signal.args().unwrap().button;
            }
        }
    })
    .await
    .expect("gpio 23 presses a button");
    assert_eq!(pressed, 2);
    press(rig.dir.path(), 24, Duration::from_millis(200)).await;
    assert!(quiet(&mut buttons, Duration::from_millis(400)).await);
    assert!(quiet(&mut opens, Duration::ZERO).await);

    // A line that is both an output and an input, or an input of no relay, is
    // refused by the config service, naming the field.
    let refused = set_relays_and_inputs(
        &rig.conn,
        test_relays(),
        json!([{ "gpio": 22, "opens": "A" }]),
    )
    .await
    .unwrap_err();
    assert!(
        refused.contains("inputs[1].gpio: gpio 22 is the output of relay B"),
        "{refused}"
    );
    let refused = set_relays_and_inputs(
        &rig.conn,
        test_relays(),
        json!([{ "gpio": 30, "opens": "A" }, { "gpio": 31, "opens": "Z" }]),
    )
    .await
    .unwrap_err();
    assert!(
        refused.contains("inputs[2].opens: no relay \"Z\" is configured"),
        "{refused}"
    );
    press(rig.dir.path(), 23, Duration::from_millis(150)).await;
    assert_eq!(button_pressed(&mut buttons).await, 2, "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sysfs_backend_watches_inputs_in_a_fake_gpio_tree() {
    let bus = Bus::start().unwrap();
    let db = ConfigDb::new().unwrap();
    let _config = start_config(&bus, &db).await.unwrap();
    let conn = bus.connect().await.unwrap();
    set_relays_and_inputs(
        &conn,
        json!([{ "id": "A", "name": "Door", "gpio": 17, "trigger_delay": 0, "hold": 1 }]),
        json!([
            { "gpio": 23, "active_low": true, "debounce_ms": 50, "opens": "A" },
            { "gpio": 24, "active_low": false, "debounce_ms": 50, "presses": 3 }
        ]),
    )
    .await
    .unwrap();
    let dir = relay_dir();
    let relay = SysfsRelay::start(&bus, dir.path(), &[(17, 0), (23, 1), (24, 0)]);
    bus.wait_for_name(&conn, relay::BUS_NAME)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}\n{}",
                std::fs::read_to_string(dir.path().join("relay.log")).unwrap_or_default()
            )
        });
    let log = || std::fs::read_to_string(dir.path().join("relay.log")).unwrap_or_default();
    // Each input line is an input with both edges asked for.
    let deadline = Instant::now() + PATIENCE;
    while relay.read("gpio24/edge") != "both" {
        assert!(Instant::now() < deadline, "{}", log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(relay.read("gpio23/direction"), "in");
    assert_eq!(relay.read("gpio23/edge"), "both");
    assert_eq!(relay.read("gpio24/direction"), "in");
    // A tmpfs file is no kernel attribute: no POLLPRI, the value is polled.
    while !log().contains("reading it every 10 ms") {
        assert!(Instant::now() < deadline, "{}", log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let proxy = Relay1Proxy::new(&conn).await.unwrap();
    let mut opens = proxy.receive_door_opened().await.unwrap();
    let mut buttons = proxy.receive_button_pressed().await.unwrap();
    relay.write("gpio23/value", "0");
    assert_eq!(opened(&mut opens).await, ("A".into(), "input".into()));
    assert_eq!(relay.read("gpio17/value"), "1");
    relay.write("gpio23/value", "1");
    relay.write("gpio24/value", "1");
    assert_eq!(button_pressed(&mut buttons).await, 3);
    relay.write("gpio24/value", "0");
    assert!(quiet(&mut buttons, Duration::from_millis(300)).await);
}
