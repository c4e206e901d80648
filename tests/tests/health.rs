//! Services that lose the bus exit so that systemd restarts them, the watchdog
//! is pinged only while a service works, and the files holding secrets are the
//! services' alone whatever the umask they start with.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use doorphone_interfaces::{pager, sip};
use doorphone_system_tests::rig::Rig;
use doorphone_system_tests::sip::{Caller, start_agent_env};
use doorphone_system_tests::{Bus, ConfigDb, PATIENCE, eventually, start_config, start_service};

/// How long a service may take to notice the lost bus and stop, on a busy machine.
const EXIT_PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread")]
async fn every_service_that_loses_the_bus_exits_non_zero() {
    doorphone_system_tests::require_root();
    let mut rig = Rig::start_full(30, None, true, &[], |_| {}).await;
    let mut pager = start_service(
        &rig.bus,
        "doorphone-pager",
        "doorphone-pager",
        pager::BUS_NAME,
        &["--iface".into(), "lo".into()],
        &rig.dir.path().join("pager.log"),
    )
    .await
    .unwrap();
    rig.bus.kill();
    let services = [
        ("config", rig.config.as_mut().unwrap()),
        ("media", rig.media.as_mut().unwrap()),
        ("relay", rig.relay.as_mut().unwrap()),
        ("sip", rig.sip.as_mut().unwrap()),
        ("pager", &mut pager),
    ];
    for (name, service) in services {
        let status = service
            .exited(EXIT_PATIENCE)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", service.log()));
        assert!(!status.success(), "{name}: {status:?}");
        assert!(
            service
                .log()
                .contains("lost the connection to the system bus"),
            "{name}: {}",
            service.log()
        );
    }
}

/// The service manager's side of `sd_notify`: a datagram socket the service
/// writes `READY=1` and `WATCHDOG=1` to.
struct Manager {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: String,
}

impl Manager {
    fn new() -> Manager {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        // The service writes to it as its own user.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        Manager {
            socket,
            path: path.display().to_string(),
            _dir: dir,
        }
    }

    /// The next notification within `patience`, `None` when none came.
    async fn next(&self, patience: Duration) -> Option<String> {
        let socket = self.socket.try_clone().unwrap();
        socket.set_read_timeout(Some(patience)).unwrap();
        tokio::task::spawn_blocking(move || {
            let mut buf = [0; 512];
            let n = socket.recv(&mut buf).ok()?;
            Some(String::from_utf8_lossy(&buf[..n]).into_owned())
        })
        .await
        .unwrap()
    }

    /// Waits up to `patience` for a `WATCHDOG=1`.
    async fn ping(&self, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.next(left).await {
                Some(message) if message.contains("WATCHDOG=1") => return true,
                Some(_) => {}
                None => return false,
            }
        }
    }
}

/// Waits until `path`'s text contains `needle`, polling every 10 ms.
async fn logged(path: &Path, needle: &str) {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    eventually(PATIENCE, Duration::from_millis(10), || {
        read().contains(needle).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in the log:\n{}", read()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_pings_its_watchdog_only_while_the_bus_answers() {
    doorphone_system_tests::require_root();
    let bus = Bus::start().unwrap();
    let db = ConfigDb::new().unwrap();
    let _config = start_config(&bus, &db).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::new();
    // A ping every 2 s (half the interval), each after the bus round trip and
    // the SIP probe.
    let (mut agent, _port) = start_agent_env(
        &bus,
        dir.path(),
        &[],
        &[
            ("NOTIFY_SOCKET", &manager.path),
            ("WATCHDOG_USEC", "4000000"),
        ],
    )
    .await
    .unwrap();
    let log = dir.path().join("sip.log");
    let period = Duration::from_secs(2);
    assert!(
        manager.ping(PATIENCE).await,
        "a healthy agent pings its watchdog\n{}",
        agent.log()
    );

    bus.freeze();
    logged(&log, "watchdog not pinged").await;
    // Whatever was sent before the check failed is read first; from then on
    // three periods pass without a ping.
    while manager.next(Duration::from_millis(1)).await.is_some() {}
    let pinged = manager.ping(3 * period).await;
    bus.thaw();
    assert!(!pinged, "pinged while the bus was frozen\n{}", agent.log());

    assert!(
        manager.ping(PATIENCE).await,
        "pings resume once the bus answers again\n{}",
        agent.log()
    );
    logged(&log, "healthy again").await;
    let conn = bus.connect().await.unwrap();
    let sip = sip::Sip1Proxy::new(&conn).await.unwrap();
    sip.calls().await.expect("the agent still serves the bus");
    agent.stop();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn the_databases_are_their_services_alone_whatever_the_umask() {
    doorphone_system_tests::require_root();
    // The usual umask, which would leave new files readable by every user.
    // SAFETY: umask only changes the mode of files created afterwards.
    let old = unsafe { umask(0o022) };
    let mut rig = Rig::start(30, |doc| {
        doc["calls"]["max_call_time"] = serde_json::json!(120);
    })
    .await;
    // A call leaves a history entry.
    let mut caller = rig.call(
        "modes",
        "door",
        "200",
        false,
        Caller::Answered {
            hang_up_after: Duration::from_millis(200),
        },
    );
    caller
        .succeeds(PATIENCE)
        .await
        .expect("the call is answered");
    unsafe { umask(old) };
    let history = rig.dir.path().join("sip/history.db");
    for db in [rig.db.path(), history.clone()] {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = db.as_os_str().to_owned();
            path.push(suffix);
            let path = std::path::PathBuf::from(path);
            if suffix.is_empty() || path.exists() {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
            }
        }
    }
    for folder in [rig.db.dir.path(), history.parent().unwrap()] {
        assert_eq!(mode(folder), 0o700, "{}", folder.display());
    }
    rig.hang_up_all().await;
    rig.sip.as_mut().unwrap().stop();
}

unsafe extern "C" {
    fn umask(mask: u32) -> u32;
}
