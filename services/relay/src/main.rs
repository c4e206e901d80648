use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use doorphone_daemon::config::{Access, Snapshot};
use doorphone_interfaces::relay::{BUS_NAME, OBJECT_PATH};
use doorphone_relay::controller::{self, Handle, RelayConfig};
use doorphone_relay::gpio::{Backend, Cdev, Claims, Sim, Sysfs};
use doorphone_relay::input::{
    self, CdevInputs, InputConfig, Inputs, NoInputs, SimInputs, SysfsInputs, Watcher,
};
use doorphone_relay::service::{RelayService, forward_events};
use tokio::sync::watch;

const HELP: &str = "\
The door phone's relay service (org.doorphone.Relay1 on the system bus).

A door must never stay open because the service failed. At start it drives
every configured line inactive, and every line a previous run left claimed
(the claims file); on SIGTERM it drives them inactive and releases them. For a
crash, the unit runs `doorphone-relay --release-all` after every stop: it
drives every line of the claims file inactive.

Usage: doorphone-relay [--gpio sysfs|cdev|sim] [--gpio-chip PATH] [--sim-log PATH]
                       [--sim-inputs PATH] [--claims PATH [--release-all]]

Options:
      --gpio KIND          How relay lines are driven [default: cdev]:
                           sysfs: the kernel's sysfs GPIO interface (/sys/class/gpio);
                           cdev: the GPIO character device (/dev/gpiochipN);
                           sim: no hardware: states in memory, transitions logged to
                           --sim-log, input levels read from --sim-inputs
      --gpio-chip PATH     The GPIO chip of `--gpio cdev`; a relay's `gpio` is a line
                           offset on it. With `--gpio sysfs` it is the kernel's global
                           GPIO number [default: /dev/gpiochip0]
      --sim-log PATH       The file `--gpio sim` appends each transition to, with a
                           timestamp
      --sim-inputs PATH    The named pipe `--gpio sim` reads its input levels from, one
                           `GPIO LEVEL` line each (`echo 23 0 > PATH` sets gpio 23 low);
                           made when missing
      --claims PATH        Where the lines in use are recorded, for `--release-all`
      --release-all        Drive every line recorded in the claims file inactive,
                           release it, and exit (needs --claims)
  -h, --help               Print help
  -V, --version            Print version
";

struct Args {
    gpio: Gpio,
    gpio_chip: PathBuf,
    sim_log: Option<PathBuf>,
    sim_inputs: Option<PathBuf>,
    claims: Option<PathBuf>,
    release_all: bool,
}

impl Args {
    fn parse() -> Args {
        use doorphone_daemon::args::{flag, from_env, value};
        let known = [
            value("gpio"),
            value("gpio-chip"),
            value("sim-log"),
            value("sim-inputs"),
            value("claims"),
            flag("release-all"),
        ];
        from_env(NAME, VERSION, HELP, &known, |o| {
            let args = Args {
                gpio: o.value_or("gpio", "cdev")?,
                gpio_chip: o.value_or("gpio-chip", "/dev/gpiochip0")?,
                sim_log: o.value("sim-log")?,
                sim_inputs: o.value("sim-inputs")?,
                claims: o.value("claims")?,
                release_all: o.given("release-all"),
            };
            if args.release_all && args.claims.is_none() {
                return Err("--release-all needs --claims".to_owned());
            }
            Ok(args)
        })
    }
}

const NAME: &str = env!("CARGO_BIN_NAME");
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Copy)]
enum Gpio {
    Sysfs,
    Cdev,
    Sim,
}

impl std::str::FromStr for Gpio {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Gpio, Self::Err> {
        match s {
            "sysfs" => Ok(Gpio::Sysfs),
            "cdev" => Ok(Gpio::Cdev),
            "sim" => Ok(Gpio::Sim),
            _ => Err("one of sysfs, cdev, sim"),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    doorphone_daemon::main(doorphone_daemon::Runtime::CurrentThread, || run(args))
}

fn backend(args: &Args) -> Box<dyn Backend> {
    match args.gpio {
        Gpio::Sysfs => Box::new(Sysfs::new()),
        Gpio::Cdev => Box::new(Cdev::new(args.gpio_chip.clone())),
        Gpio::Sim => Box::new(Sim::new(args.sim_log.clone())),
    }
}

fn watcher(
    args: &Args,
    readings: tokio::sync::mpsc::UnboundedSender<input::Reading>,
) -> std::io::Result<Box<dyn Watcher>> {
    Ok(match (args.gpio, &args.sim_inputs) {
        (Gpio::Sysfs, _) => Box::new(SysfsInputs::new(readings)),
        (Gpio::Cdev, _) => Box::new(CdevInputs::new(args.gpio_chip.clone(), readings)),
        (Gpio::Sim, Some(path)) => Box::new(SimInputs::new(path, readings)?),
        (Gpio::Sim, None) => Box::new(NoInputs),
    })
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let claims = Claims::load(args.claims.clone())?;
    if args.release_all {
        return release_all(backend(&args), claims);
    }

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = controller::spawn(backend(&args), claims, tx.clone());
    let (readings_tx, readings) = tokio::sync::mpsc::unbounded_channel();
    let inputs = input::spawn(watcher(&args, readings_tx)?, readings, handle.clone(), tx);
    let conn = doorphone_daemon::bus::system().await?;
    let mut config = doorphone_daemon::config::follow(&conn, Access::Public).await?;
    let (first_relays, first_inputs) = settings(&config.borrow_and_update());
    handle.configure(first_relays).await;
    // The first relays are what clients read when the name appears: no change
    // to announce.
    while rx.try_recv().is_ok() {}
    conn.object_server()
        .at(OBJECT_PATH, RelayService::new(handle.clone()))
        .await?;
    tokio::spawn(forward_events(conn.clone(), rx));
    // The inputs are watched before the name is owned: whoever sees the service
    // on the bus may press them.
    inputs.configure(first_inputs).await;
    conn.request_name(BUS_NAME)
        .await
        .map_err(|e| format!("cannot own {BUS_NAME} on the system bus: {e}"))?;
    tokio::spawn(follow_config(config, handle.clone(), inputs.clone()));
    tracing::info!(relays = ?handle.states().iter().map(|(id, _)| id).collect::<Vec<_>>(), "serving {BUS_NAME}");
    doorphone_daemon::watchdog::notify_ready(&conn, None);

    let stopped = doorphone_daemon::bus::until_stopped(&conn).await?;
    inputs.shutdown().await;
    handle.shutdown().await;
    stopped.outcome()
}

/// Drives every claimed line inactive and releases it.
fn release_all(
    mut backend: Box<dyn Backend>,
    mut claims: Claims,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut failed = 0;
    for line in claims.lines() {
        match backend.release(&line) {
            Ok(()) => {
                tracing::info!(relay = %line.relay, gpio = line.gpio, "released");
                claims.remove(&line)?;
            }
            Err(e) => {
                tracing::error!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} lines could not be released").into());
    }
    Ok(())
}

/// The relays and inputs of a configuration reading (none while the config
/// service was never reachable).
fn settings(snapshot: &Snapshot) -> (Vec<RelayConfig>, Vec<InputConfig>) {
    if !snapshot.from_service {
        tracing::warn!("the config service is not reachable: no relays and no inputs until it is");
        return (Vec::new(), Vec::new());
    }
    (
        RelayConfig::from_document(&snapshot.document.relays),
        InputConfig::from_document(&snapshot.document.inputs),
    )
}

/// Applies the relays and inputs of every reading that may have changed them.
async fn follow_config(mut config: watch::Receiver<Arc<Snapshot>>, handle: Handle, inputs: Inputs) {
    while config.changed().await.is_ok() {
        let snapshot = config.borrow_and_update().clone();
        if snapshot.touches("relays") || snapshot.touches("inputs") {
            let (relays, new_inputs) = settings(&snapshot);
            handle.configure(relays).await;
            inputs.configure(new_inputs).await;
            tracing::info!("relays and inputs reloaded");
        }
    }
}
