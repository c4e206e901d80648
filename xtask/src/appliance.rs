//! `cargo xtask run`: the whole appliance on a development machine. A private
//! `dbus-daemon` loads the project's policy files; every service runs as its own
//! user with simulated hardware; state lives under `target/appliance/`.

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{deps, ensure_users, is_root, root, run_step};

/// One service of the appliance: binary, production user, what says it is up,
/// and its options for a machine without door hardware, given a folder of its own.
struct ServiceSpec {
    binary: &'static str,
    /// The workspace folder that builds it.
    crate_dir: &'static str,
    user: &'static str,
    ready: Ready,
    args: fn(&Path) -> Vec<String>,
}

/// What shows that a service is up.
enum Ready {
    /// It owns this name on the bus.
    BusName(&'static str),
    /// It accepts TCP connections at this loopback port (a bus client).
    Listening(u16),
}

impl Ready {
    fn is_up(&self, address: &str) -> bool {
        match self {
            Ready::BusName(name) => name_has_owner(address, name),
            Ready::Listening(port) => std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Ready::BusName(name) => format!("{name} on the bus"),
            Ready::Listening(port) => format!("port {port} on 127.0.0.1"),
        }
    }
}

/// Where the web service serves HTTPS, and where its plain HTTP redirects from.
const WEB_PORT: u16 = 8443;
const WEB_HTTP_PORT: u16 = 8080;

const SERVICES: &[ServiceSpec] = &[
    ServiceSpec {
        binary: "doorphone-config",
        crate_dir: "services/config",
        user: "doorphone-config",
        ready: Ready::BusName("org.doorphone.Config1"),
        args: |dir| vec!["--db".into(), dir.join("config.db").display().to_string()],
    },
    ServiceSpec {
        binary: "doorphone-media",
        crate_dir: "services/media",
        user: "doorphone-media",
        ready: Ready::BusName("org.doorphone.Media1"),
        args: |dir| {
            vec![
                "--audio-source".into(),
                "test".into(),
                "--audio-sink".into(),
                format!("file:{}", dir.join("speaker.wav").display()),
                "--video-source".into(),
                "test".into(),
                // Pages arrive on loopback, as `doorctl page send --iface lo` sends them.
                "--multicast-iface".into(),
                "lo".into(),
            ]
        },
    },
    ServiceSpec {
        binary: "doorphone-relay",
        crate_dir: "services/relay",
        user: "doorphone-relay",
        ready: Ready::BusName("org.doorphone.Relay1"),
        args: |dir| {
            vec![
                "--gpio".into(),
                "sim".into(),
                "--sim-log".into(),
                dir.join("relays.log").display().to_string(),
                "--claims".into(),
                dir.join("claims").display().to_string(),
                // A named pipe the service makes: `echo GPIO LEVEL > inputs`
                // sets an input line.
                "--sim-inputs".into(),
                dir.join("inputs").display().to_string(),
            ]
        },
    },
    // Last, so the peers it asks (config, media, relay) are already there.
    ServiceSpec {
        binary: "doorphone-sip",
        crate_dir: "services/sip-agent",
        user: "doorphone-sip",
        ready: Ready::BusName("org.doorphone.Sip1"),
        args: |dir| {
            vec![
                "--address".into(),
                "127.0.0.1".into(),
                "--port".into(),
                sip_port().to_string(),
                "--history".into(),
                dir.join("history.db").display().to_string(),
            ]
        },
    },
    // After media and the SIP agent, which it drives.
    ServiceSpec {
        binary: "doorphone-pager",
        crate_dir: "services/multicast-pager",
        user: "doorphone-pager",
        ready: Ready::BusName("org.doorphone.Pager1"),
        args: |_| vec!["--iface".into(), "lo".into()],
    },
    // Last: a client of all the others.
    ServiceSpec {
        binary: "doorphone-web",
        crate_dir: "services/web",
        user: "doorphone-web",
        ready: Ready::Listening(WEB_PORT),
        args: |dir| {
            vec![
                "--listen".into(),
                format!("127.0.0.1:{WEB_PORT}"),
                "--http".into(),
                format!("127.0.0.1:{WEB_HTTP_PORT}"),
                "--state-dir".into(),
                dir.display().to_string(),
            ]
        },
    },
];

/// The SIP agent's port on loopback: 5060 when it is free for UDP and TCP, else
/// one the system picks. Chosen once, before the agent binds it.
fn sip_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let free = |port: u16| {
            let udp = UdpSocket::bind(("127.0.0.1", port)).ok()?;
            let port = udp.local_addr().ok()?.port();
            TcpListener::bind(("127.0.0.1", port)).ok().map(|_| port)
        };
        free(5060)
            .or_else(|| (0..20).find_map(|_| free(0)))
            .unwrap_or(5060)
    })
}

struct Running {
    name: String,
    child: Child,
}

pub fn run(release: bool) -> Result<()> {
    deps::ensure(&[deps::RUN])?;
    if !is_root() {
        bail!(
            "the appliance runs each service as its own system user, as on a door: \
             run `cargo xtask run` as root"
        );
    }
    ensure_users()?;
    let mut build = crate::cargo();
    build.args(["build", "--workspace", "--bins"]);
    if release {
        build.arg("--release");
    }
    run_step("build", &mut build)?;
    let bins = root()
        .join("target")
        .join(if release { "release" } else { "debug" });

    let state = root().join("target/appliance");
    let mut appliance = Appliance::start(&bins, &state, &Launch::default())?;
    let env_file = state.join("env");
    std::fs::write(
        &env_file,
        format!("DBUS_SYSTEM_BUS_ADDRESS={}\n", appliance.address),
    )?;
    print_usage(&env_file, &appliance.address, &bins);
    wait_for_ctrl_c(&mut appliance.running)
}

/// The command line a service's binary is given to (a profiler), from the
/// binary's name.
pub type Wrapper = Box<dyn Fn(&str) -> Vec<String>>;

/// How the services are started: a program each runs under, and how long one
/// may take to come up and to stop.
pub struct Launch {
    /// The program each service runs under; none runs it alone.
    pub wrapper: Option<Wrapper>,
    /// How long a service may take to be up.
    pub start_patience: Duration,
    /// How long a service may take to stop after SIGTERM, before SIGKILL.
    pub stop_patience: Duration,
}

impl Default for Launch {
    fn default() -> Launch {
        Launch {
            wrapper: None,
            start_patience: Duration::from_secs(15),
            stop_patience: Duration::from_secs(5),
        }
    }
}

/// The appliance running: its bus daemon and services, stopped in reverse
/// order when it is dropped.
pub struct Appliance {
    /// The private bus's address.
    pub address: String,
    running: Vec<Running>,
    stop_patience: Duration,
}

impl Appliance {
    /// Starts a private bus in `state` and every service from `bins` on it, each
    /// as its own user with a folder of its own in `state`.
    pub fn start(bins: &Path, state: &Path, launch: &Launch) -> Result<Appliance> {
        std::fs::create_dir_all(state)?;
        set_mode(state, 0o755)?;
        let socket = state.join("bus");
        let _ = std::fs::remove_file(&socket);
        let address = format!("unix:path={}", socket.display());
        let bus = Command::new("dbus-daemon")
            .arg(format!(
                "--config-file={}",
                root().join("dbus/test-bus.conf").display()
            ))
            .arg(format!("--address={address}"))
            .args(["--nofork", "--nopidfile"])
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start dbus-daemon")?;
        let mut appliance = Appliance {
            address,
            running: vec![Running {
                name: "dbus-daemon".into(),
                child: bus,
            }],
            stop_patience: launch.stop_patience,
        };
        let started = wait_until(|| socket.exists(), "the bus socket", launch.start_patience)
            .and_then(|()| {
                start_services(
                    bins,
                    state,
                    &appliance.address,
                    launch,
                    &mut appliance.running,
                )
            });
        started.map(|()| appliance)
    }

    /// Stops the services in reverse order (SIGTERM, then SIGKILL when one
    /// takes longer than it may), the bus last.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        while let Some(mut r) = self.running.pop() {
            let _ = Command::new("kill")
                .args(["-TERM", &r.child.id().to_string()])
                .status();
            let deadline = Instant::now() + self.stop_patience;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = r.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

/// The services' binaries, each with the workspace folder that builds it, in
/// the order they start.
pub fn binaries() -> impl Iterator<Item = (&'static str, &'static str)> {
    SERVICES.iter().map(|spec| (spec.binary, spec.crate_dir))
}

/// The SIP agent's port and the web service's HTTPS port on loopback.
pub fn ports() -> (u16, u16) {
    (sip_port(), WEB_PORT)
}

fn start_services(
    bins: &Path,
    state: &Path,
    address: &str,
    launch: &Launch,
    running: &mut Vec<Running>,
) -> Result<()> {
    for spec in SERVICES {
        let dir = state.join(spec.binary);
        std::fs::create_dir_all(&dir)?;
        chown(&dir, spec.user)?;
        let log = std::fs::File::create(state.join(format!("{}.log", spec.binary)))?;
        let binary = bins.join(spec.binary);
        let command = match &launch.wrapper {
            Some(wrapper) => wrapper(spec.binary),
            None => Vec::new(),
        };
        let child = Command::new("setpriv")
            .args([
                &format!("--reuid={}", spec.user),
                &format!("--regid={}", spec.user),
                "--init-groups",
            ])
            .args(command)
            .arg(binary)
            .args((spec.args)(&dir))
            .env("DBUS_SYSTEM_BUS_ADDRESS", address)
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", spec.binary))?;
        running.push(Running {
            name: spec.binary.into(),
            child,
        });
        wait_until(
            || spec.ready.is_up(address),
            &format!(
                "{} (see target/appliance/{}.log)",
                spec.ready.describe(),
                spec.binary
            ),
            launch.start_patience,
        )?;
        eprintln!("xtask: {} is up as {}", spec.binary, spec.user);
    }
    Ok(())
}

fn name_has_owner(address: &str, name: &str) -> bool {
    Command::new("busctl")
        .arg(format!("--address={address}"))
        .args([
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            "s",
            name,
        ])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"b true"))
}

/// Polls `ready` every 50 ms for up to 15 s: start-up of a development tool, not a test.
fn wait_until(mut ready: impl FnMut() -> bool, what: &str, patience: Duration) -> Result<()> {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("timed out waiting for {what}")
}

fn print_usage(env_file: &Path, address: &str, bins: &Path) {
    println!(
        "\nThe door phone is running on a private bus (Ctrl-C stops it).\n\n\
         Point your shell at it:\n  export $(cat {env})\n\n\
         Then, for example:\n  \
         {doorctl} status\n  \
         {doorctl} config get calls.max_call_time\n  \
         {doorctl} config set calls.max_call_time 120\n  \
         {doorctl} door open\n  \
         tail -f {state}/doorphone-relay/relays.log\n  \
         busctl --address={address} introspect org.doorphone.Config1 /org/doorphone/Config1\n  \
         busctl --address={address} monitor org.doorphone.Config1\n\n\
         The SIP agent listens at sip:door@127.0.0.1:{sip_port} (UDP and TCP). Call it\n\
         with SIPp, answered at once:\n  \
         {doorctl} config set calls.auto_answer.ip true\n  \
         sipp -sn uac -m 1 127.0.0.1:{sip_port}\n\
         or have it call a phone (here one at 127.0.0.1:5062), and look at its calls:\n  \
         {doorctl} dial 127.0.0.1:5062\n  \
         {doorctl} calls\n  \
         {doorctl} history\n  \
         busctl --address={address} monitor org.doorphone.Sip1\n\n\
         The pager listens on loopback to the groups of multicast.listen. Page it:\n  \
         {doorctl} config set multicast.listen '[{{\"address\":\"239.1.1.1\",\"port\":5000,\"label\":\"Lobby\"}}]'\n  \
         {doorctl} page send 239.1.1.1:5000 --tone 800 --seconds 5 --iface lo\n  \
         {doorctl} page status\n\n\
         Buttons on GPIO inputs are simulated by a named pipe taking `GPIO LEVEL` lines.\n\
         Wire an exit button (gpio 23) to relay A and a call button (gpio 24) to button 1:\n  \
         {doorctl} config set inputs '[{{\"gpio\":23,\"active_low\":true,\"opens\":\"A\"}},{{\"gpio\":24,\"active_low\":true,\"presses\":1}}]'\n\
         then press the exit button (low is pressed; held longer than debounce_ms, 50 ms):\n  \
         echo 23 0 > {state}/doorphone-relay/inputs; sleep 0.2; echo 23 1 > {state}/doorphone-relay/inputs\n\
         and the call button, which places button 1's call once `{doorctl} button set 1 ...` made one:\n  \
         echo 24 0 > {state}/doorphone-relay/inputs; sleep 0.2; echo 24 1 > {state}/doorphone-relay/inputs\n  \
         busctl --address={address} monitor org.doorphone.Relay1\n\n\
         The HTTP API is at https://127.0.0.1:{web_port}/api/v1 (a self-signed certificate;\n\
         its fingerprint is in {state}/doorphone-web.log). Add a user, then open a door:\n  \
         {doorctl} web passwd admin --role admin\n  \
         curl -k --digest -u admin -X POST https://127.0.0.1:{web_port}/api/v1/doors/A/open\n  \
         curl -k -u admin -N https://127.0.0.1:{web_port}/api/v1/events\n\n\
         Logs and state: {state}\n",
        web_port = WEB_PORT,
        env = env_file.display(),
        doorctl = bins.join("doorctl").display(),
        sip_port = sip_port(),
        state = env_file
            .parent()
            .map(Path::display)
            .map(|d| d.to_string())
            .unwrap_or_default(),
    );
}

fn wait_for_ctrl_c(running: &mut [Running]) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
    while !stop.load(Ordering::SeqCst) {
        for r in running.iter_mut() {
            if let Some(status) = r.child.try_wait()? {
                bail!(
                    "{} stopped ({status}); see target/appliance/{}.log",
                    r.name,
                    r.name
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("\nxtask: stopping");
    Ok(())
}

pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn chown(path: &Path, user: &str) -> Result<()> {
    run_step(
        &format!("chown {user} {}", path.display()),
        Command::new("chown")
            .arg(format!("{user}:{user}"))
            .arg(path),
    )
}
