//! The harness of the system tests: a private `dbus-daemon` that loads the
//! project's own policy files (`dbus/test-bus.conf`), and the real service binaries
//! started on it as their production users, the way they run on a door.
//!
//! Everything here waits for events (the bus printing its address, a name gaining
//! an owner, a process exiting), never for a fixed time.

pub mod audio;
pub mod baresip;
pub mod bench;
pub mod capture;
pub mod compat;
pub mod fuzz;
pub mod kamailio;
pub mod linphone;
pub mod rig;
pub mod rtp;
pub mod servers;
pub mod sip;
pub mod web;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;
use zbus::fdo::DBusProxy;

/// How long any one expected event may take before a test gives up.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// The folder the workspace's binaries were built into (the test's own profile).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // Tests run from target/<profile>/deps, benchmark binaries from target/<profile>.
    let dir = exe.parent().expect("an executable sits in a folder");
    if dir.ends_with("deps") {
        dir.parent()
            .expect("deps sits in target/<profile>")
            .to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The path of one of the workspace's binaries; it must have been built
/// (`cargo xtask test` builds them before the tests run).
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --bins` (cargo xtask test does)",
        path.display()
    );
    path
}

/// The system tests run services as their own users and check what other users
/// may do: that takes root, as in CI.
pub fn require_root() {
    assert!(
        is_root(),
        "the system tests start services as their own users: run them as root (cargo xtask test)"
    );
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Waits up to `patience` for `check` to give a value, asking every
/// `every`: for what announces nothing but a file that grows (a peer's log, a
/// recording, SIPp's trace). `Err` says what was still missing.
pub async fn eventually<T>(
    patience: Duration,
    every: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> std::result::Result<T, Duration> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(patience);
        }
        tokio::time::sleep(every).await;
    }
}

/// A private system bus with the project's policy files.
pub struct Bus {
    pub dir: TempDir,
    child: Child,
    pub address: String,
}

impl Bus {
    pub fn start() -> Result<Bus> {
        require_root();
        let dir = tempfile::Builder::new().prefix("doorphone-bus").tempdir()?;
        // Service users reach the socket through this folder.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let socket = dir.path().join("bus");
        let mut child = Command::new("dbus-daemon")
            .arg(format!(
                "--config-file={}",
                repo_root().join("dbus/test-bus.conf").display()
            ))
            .arg(format!("--address=unix:path={}", socket.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start dbus-daemon (is the dbus package installed?)")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .context("dbus-daemon printed no address")?;
        let address = line.trim().to_owned();
        if address.is_empty() {
            let _ = child.kill();
            bail!(
                "dbus-daemon did not start; check dbus/test-bus.conf with dbus-daemon --config-file"
            );
        }
        Ok(Bus {
            dir,
            child,
            address,
        })
    }

    /// Kills the bus daemon, as a crash would: every client loses the bus.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The bus daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the bus daemon (SIGSTOP), as a wedged one would be: every call
    /// over the bus hangs until [`Bus::thaw`].
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen bus daemon run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} the bus daemon");
    }

    /// A client connection, as root.
    pub async fn connect(&self) -> Result<zbus::Connection> {
        Ok(zbus::connection::Builder::address(self.address.as_str())
            .build()
            .await?)
    }

    /// Waits until `name` has an owner on this bus.
    pub async fn wait_for_name(&self, conn: &zbus::Connection, name: &str) -> Result<()> {
        use futures_util::StreamExt;
        let dbus = DBusProxy::new(conn).await?;
        let mut changes = dbus
            .receive_name_owner_changed_with_args(&[(0, name)])
            .await?;
        if dbus.name_has_owner(name.try_into()?).await? {
            return Ok(());
        }
        tokio::time::timeout(PATIENCE, async {
            while let Some(change) = changes.next().await {
                if change.args()?.new_owner().is_some() {
                    return Ok(());
                }
            }
            bail!("the bus closed")
        })
        .await
        .with_context(|| format!("{name} did not appear on the bus"))?
    }

    /// Runs `command` as `user` (with the user's groups), pointed at this bus.
    pub fn command_as(&self, user: &str, program: &Path) -> Command {
        let mut cmd = Command::new("setpriv");
        if user == "nobody" {
            cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
        } else {
            cmd.args([
                &format!("--reuid={user}"),
                &format!("--regid={user}"),
                "--init-groups",
            ]);
        }
        cmd.arg(program)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &self.address)
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        cmd
    }

    /// `busctl` against this bus, as `user`.
    pub fn busctl_as(&self, user: &str, args: &[&str]) -> std::process::Output {
        let busctl = which("busctl");
        let mut cmd = self.command_as(user, &busctl);
        cmd.arg(format!("--address={}", self.address)).args(args);
        cmd.output().expect("busctl runs")
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{program} is not installed"))
}

/// A running service process.
pub struct Service {
    child: Option<Child>,
    pub stderr_path: PathBuf,
}

impl Service {
    /// Kills the process at once (SIGKILL), as a crash or power cut would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the process to stop (SIGTERM) and waits for it.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().ok()
    }

    /// Waits at most `patience` for the process to exit by itself.
    pub async fn exited(&mut self, patience: Duration) -> Result<ExitStatus> {
        let mut child = self.child.take().context("the service is not running")?;
        let waited = tokio::time::timeout(
            patience,
            tokio::task::spawn_blocking(move || {
                let status = child.wait();
                (child, status)
            }),
        )
        .await;
        match waited {
            Ok(joined) => Ok(joined?.1?),
            Err(_) => bail!("the service still runs after {patience:?}"),
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the service wrote to stderr (its log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The configuration service under test, with its database in a folder of its own.
pub struct ConfigDb {
    pub dir: TempDir,
}

impl ConfigDb {
    pub fn new() -> Result<ConfigDb> {
        let dir = tempfile::Builder::new()
            .prefix("doorphone-config")
            .tempdir()?;
        chown_to(dir.path(), "doorphone-config")?;
        Ok(ConfigDb { dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("config.db")
    }

    /// Makes every file in the folder the service user's (after a test wrote one).
    pub fn hand_over(&self) -> Result<()> {
        for entry in std::fs::read_dir(self.dir.path())? {
            chown_to(&entry?.path(), "doorphone-config")?;
        }
        Ok(())
    }
}

/// Changes the owner of `path` to `user` and the user's group.
pub fn chown_to(path: &Path, user: &str) -> Result<()> {
    let out = Command::new("id").args(["-u", user]).output()?;
    if !out.status.success() {
        bail!(
            "no user {user}: run `systemd-sysusers packaging/sysusers.d/doorphone.conf` (cargo xtask test does)"
        );
    }
    let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    let out = Command::new("id").args(["-g", user]).output()?;
    let gid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    Ok(())
}

/// Changes the configuration through `Config1`: the whole document exported,
/// changed by `change`, imported in one transaction. Returns the new revision.
pub async fn reconfigure(
    conn: &zbus::Connection,
    change: impl FnOnce(&mut serde_json::Value),
) -> Result<u64> {
    let config = doorphone_interfaces::config::Config1Proxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let mut doc: serde_json::Value = serde_json::from_str(&config.export().await?)?;
    change(&mut doc);
    config
        .import(&doc.to_string())
        .await
        .map_err(|e| anyhow::anyhow!("the configuration was refused: {e}"))?;
    Ok(config.revision().await?)
}

/// Waits until the service at `bus_name`, whose `interface` at `path` has a
/// `ConfigRevision` property, works with configuration `revision` or a newer one.
pub async fn applied(
    conn: &zbus::Connection,
    bus_name: &'static str,
    path: &'static str,
    interface: &'static str,
    revision: u64,
) -> Result<()> {
    use futures_util::StreamExt;
    let props = zbus::fdo::PropertiesProxy::builder(conn)
        .destination(bus_name)
        .path(path)
        .build()
        .await?;
    let mut changes = props.receive_properties_changed().await?;
    let interface = zbus::names::InterfaceName::try_from(interface)?;
    let current = || async {
        let value = props.get(interface.clone(), "ConfigRevision").await?;
        Ok::<u64, anyhow::Error>(u64::try_from(value)?)
    };
    tokio::time::timeout(PATIENCE, async {
        while current().await? < revision {
            changes.next().await;
        }
        Ok::<(), anyhow::Error>(())
    })
    .await
    .with_context(|| format!("{bus_name} did not apply configuration {revision}"))?
}

/// Starts `doorphone-media` on `bus` as its own user with its test microphone
/// (a tone) and `args` (the speaker, the camera, ...), logging to `log`.
pub async fn start_media(bus: &Bus, args: &[String], log: &Path) -> Result<Service> {
    let mut all = vec!["--audio-source".to_owned(), "test".to_owned()];
    all.extend_from_slice(args);
    let env = gst_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    start_service_env(
        bus,
        "doorphone-media",
        "doorphone-media",
        doorphone_interfaces::media::BUS_NAME,
        &all,
        &env,
        log,
    )
    .await
}

/// The GStreamer plugins of the door phone's image (the packages of
/// `yocto/meta-doorphone/files/gst-elements.txt`) as a folder of links to
/// this machine's, and a registry of those only, for the media service's
/// environment: it starts and runs with the plugins it has on the device,
/// not with every plugin of the build machine.
pub fn gst_env() -> Vec<(&'static str, String)> {
    static SCOPED: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    let (plugins, registry) = SCOPED.get_or_init(|| {
        scope_gst_plugins().expect("the image's GStreamer plugins are installed here")
    });
    vec![
        ("GST_PLUGIN_SYSTEM_PATH_1_0", plugins.display().to_string()),
        (
            "GST_REGISTRY_1_0",
            registry.join("registry.bin").display().to_string(),
        ),
    ]
}

/// The plugin file names of the image's GStreamer packages.
pub fn gst_plugins_of_image() -> Result<Vec<String>> {
    let table =
        std::fs::read_to_string(repo_root().join("yocto/meta-doorphone/files/gst-elements.txt"))?;
    let mut names: Vec<String> = table
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let element = fields.next()?;
            let plugin = match fields.next()? {
                "gstreamer1.0" => "coreelements",
                "-" => element,
                package => {
                    package
                        .strip_prefix("gstreamer1.0-plugins-")?
                        .split_once('-')?
                        .1
                }
            };
            Some(format!("libgst{plugin}.so"))
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

fn scope_gst_plugins() -> Result<(PathBuf, PathBuf)> {
    let out = Command::new("pkg-config")
        .args(["--variable=pluginsdir", "gstreamer-1.0"])
        .output()
        .context("pkg-config")?;
    let system = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !system.is_dir() {
        bail!("pkg-config names no GStreamer plugin folder");
    }
    let dir = tempfile::Builder::new()
        .prefix("doorphone-gst")
        .tempdir()?
        .keep();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins)?;
    for name in gst_plugins_of_image()? {
        let file = system.join(&name);
        if !file.exists() {
            bail!("{} is not installed", file.display());
        }
        std::os::unix::fs::symlink(&file, plugins.join(&name))?;
    }
    let registry = dir.join("registry");
    std::fs::create_dir(&registry)?;
    chown_to(&registry, "doorphone-media")?;
    Ok((plugins, registry))
}

/// Starts `doorphone-relay` on `bus` as its own user on simulated GPIO, its
/// files in `dir/relay/` (made here): `relays.log` (each transition),
/// `claims`, and the `inputs` pipe; logging to `dir/relay.log`.
pub async fn start_sim_relay(bus: &Bus, dir: &Path) -> Result<Service> {
    let relay_dir = dir.join("relay");
    std::fs::create_dir_all(&relay_dir)?;
    chown_to(&relay_dir, "doorphone-relay")?;
    let file = |name: &str| relay_dir.join(name).display().to_string();
    start_service(
        bus,
        "doorphone-relay",
        "doorphone-relay",
        doorphone_interfaces::relay::BUS_NAME,
        &[
            "--gpio".into(),
            "sim".into(),
            "--sim-log".into(),
            file("relays.log"),
            "--claims".into(),
            file("claims"),
            "--sim-inputs".into(),
            file("inputs"),
        ],
        &dir.join("relay.log"),
    )
    .await
}

/// Starts `doorphone-config` on `bus` as its own user and waits until it owns its name.
pub async fn start_config(bus: &Bus, db: &ConfigDb) -> Result<Service> {
    let stderr_path = db.dir.path().join(format!(
        "config-{}.log",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    ));
    let stderr = std::fs::File::create(&stderr_path)?;
    let child = bus
        .command_as("doorphone-config", &bin("doorphone-config"))
        .arg("--db")
        .arg(db.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()?;
    let mut service = Service {
        child: Some(child),
        stderr_path,
    };
    let conn = bus.connect().await?;
    if let Err(e) = bus
        .wait_for_name(&conn, doorphone_interfaces::config::BUS_NAME)
        .await
    {
        service.kill();
        bail!("{e:#}\n{}", service.log());
    }
    Ok(service)
}

/// Runs `doorphone-config` to its end (for start-up refusals) and returns its
/// exit status and log.
pub fn run_config_to_exit(bus: &Bus, db: &ConfigDb) -> Result<(ExitStatus, String)> {
    let out = bus
        .command_as("doorphone-config", &bin("doorphone-config"))
        .arg("--db")
        .arg(db.path())
        .stdin(Stdio::null())
        .output()?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The width and height in a JPEG's start-of-frame marker.
pub fn jpeg_size(jpeg: &[u8]) -> Option<(u16, u16)> {
    if jpeg.get(0..2)? != [0xff, 0xd8] || jpeg.get(jpeg.len() - 2..)? != [0xff, 0xd9] {
        return None;
    }
    let mut i = 2;
    while i + 9 < jpeg.len() {
        if jpeg[i] != 0xff {
            return None;
        }
        let marker = jpeg[i + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if matches!(marker, 0xc0..=0xc2) {
            let h = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]);
            let w = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]);
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}

/// The `<interface name="NAME">…</interface>` element of an introspection document.
pub fn interface_xml(introspection: &str, name: &str) -> Option<String> {
    let start = introspection.find(&format!("<interface name=\"{name}\">"))?;
    let end = introspection[start..].find("</interface>")? + start + "</interface>".len();
    Some(introspection[start..end].to_owned())
}

/// XML with each line trimmed and blank lines dropped, for comparisons that do not
/// depend on indentation.
pub fn normalize_xml(xml: &str) -> String {
    xml.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks `interface`, as `bus_name` serves it at `path`, against its released
/// contract `golden` (a file under `dbus/interfaces/`).
///
/// The live interface must first be compatible with the released one (see
/// [`compat`]): nothing a released client uses may be gone or changed. Then it
/// must equal the file. With `DOORPHONE_BLESS` set, a compatible interface is
/// written to `golden`, so additions are released; an incompatible one never is,
/// so the golden files only grow.
pub async fn check_released_interface(
    conn: &zbus::Connection,
    bus_name: &str,
    path: &str,
    interface: &str,
    golden: &Path,
) -> Result<()> {
    let introspectable = zbus::fdo::IntrospectableProxy::builder(conn)
        .destination(bus_name)
        .path(path)
        .build()
        .await?;
    let xml = introspectable.introspect().await?;
    let live = interface_xml(&xml, interface)
        .with_context(|| format!("{bus_name} does not serve {interface} at {path}"))?;
    let bless = std::env::var_os("DOORPHONE_BLESS").is_some();
    let released = match std::fs::read_to_string(golden) {
        Ok(text) => Some(
            interface_xml(&text, interface)
                .with_context(|| format!("{} has no {interface}", golden.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && bless => None,
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "{} is {interface}'s released contract; DOORPHONE_BLESS=1 writes the first one",
                    golden.display()
                )
            });
        }
    };
    if let Some(released) = &released {
        let breaks = compat::breaking_changes(released, &live)?;
        if !breaks.is_empty() {
            bail!(
                "{interface} as served breaks its released contract {}:\n  {}\n\
                 clients built against the release would fail; keep the released members \
                 and serve an incompatible version as a new interface beside it{}",
                golden.display(),
                breaks
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n  "),
                if bless {
                    " (DOORPHONE_BLESS never rewrites a released contract incompatibly)"
                } else {
                    ""
                }
            );
        }
    }
    if bless {
        std::fs::write(
            golden,
            format!(
                "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<node>\n  {}\n</node>\n",
                live.trim()
            ),
        )?;
    } else if let Some(released) = released
        && normalize_xml(&released) != normalize_xml(&live)
    {
        bail!(
            "{} differs from the code, compatibly; rerun with DOORPHONE_BLESS=1 to release \
             the change\n--- released\n{}\n+++ served\n{}",
            golden.display(),
            normalize_xml(&released),
            normalize_xml(&live)
        );
    }
    Ok(())
}

/// The packaging of one service of the appliance: the binary its unit starts,
/// the user it runs as, the bus name that user may own, the policy file that
/// says so, and the unit. The packaging tests check the files against these rows
/// and the rows against the code; a new service adds its row and its files.
pub struct Packaged {
    pub binary: &'static str,
    pub user: &'static str,
    pub bus_name: &'static str,
    /// Relative to the repository's root, as are the other paths.
    pub policy: &'static str,
    pub unit: &'static str,
}

pub const SERVICES: &[Packaged] = &[
    Packaged {
        binary: "doorphone-config",
        user: "doorphone-config",
        bus_name: doorphone_interfaces::config::BUS_NAME,
        policy: "dbus/system.d/org.doorphone.Config1.conf",
        unit: "packaging/systemd/doorphone-config.service",
    },
    Packaged {
        binary: "doorphone-media",
        user: "doorphone-media",
        bus_name: doorphone_interfaces::media::BUS_NAME,
        policy: "dbus/system.d/org.doorphone.Media1.conf",
        unit: "packaging/systemd/doorphone-media.service",
    },
    Packaged {
        binary: "doorphone-sip",
        user: "doorphone-sip",
        bus_name: doorphone_interfaces::sip::BUS_NAME,
        policy: "dbus/system.d/org.doorphone.Sip1.conf",
        unit: "packaging/systemd/doorphone-sip.service",
    },
    Packaged {
        binary: "doorphone-relay",
        user: "doorphone-relay",
        bus_name: doorphone_interfaces::relay::BUS_NAME,
        policy: "dbus/system.d/org.doorphone.Relay1.conf",
        unit: "packaging/systemd/doorphone-relay.service",
    },
    Packaged {
        binary: "doorphone-pager",
        user: "doorphone-pager",
        bus_name: doorphone_interfaces::pager::BUS_NAME,
        policy: "dbus/system.d/org.doorphone.Pager1.conf",
        unit: "packaging/systemd/doorphone-pager.service",
    },
];

/// The packaging of a service that owns no bus name (a client of the others,
/// as the web service is): the binary its unit starts, its user and its unit.
pub struct PackagedClient {
    pub binary: &'static str,
    pub user: &'static str,
    pub unit: &'static str,
}

pub const CLIENT_SERVICES: &[PackagedClient] = &[PackagedClient {
    binary: "doorphone-web",
    user: "doorphone-web",
    unit: "packaging/systemd/doorphone-web.service",
}];

/// Starts `binary` on `bus` as `user` with `args`, logging to `log`, and waits
/// until it owns `bus_name`.
pub async fn start_service(
    bus: &Bus,
    binary: &str,
    user: &str,
    bus_name: &str,
    args: &[String],
    log: &Path,
) -> Result<Service> {
    start_service_env(bus, binary, user, bus_name, args, &[], log).await
}

/// As [`start_service`], with `env` added to the service's environment.
pub async fn start_service_env(
    bus: &Bus,
    binary: &str,
    user: &str,
    bus_name: &str,
    args: &[String],
    env: &[(&str, &str)],
    log: &Path,
) -> Result<Service> {
    let child = bus
        .command_as(user, &bin(binary))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    let mut service = Service {
        child: Some(child),
        stderr_path: log.to_path_buf(),
    };
    let conn = bus.connect().await?;
    if let Err(e) = bus.wait_for_name(&conn, bus_name).await {
        service.kill();
        bail!("{e:#}\n{}", service.log());
    }
    Ok(service)
}
