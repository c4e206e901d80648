use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use doorphone_daemon::config::{Access, Snapshot};
use doorphone_interfaces::relay::{BUS_NAME, OBJECT_PATH};
use doorphone_relay::controller::{self, Handle, RelayConfig};
use doorphone_relay::gpio::{Backend, Cdev, Claims, Sim, Sysfs};
use doorphone_relay::input::{
    self, CdevInputs, InputConfig, Inputs, NoInputs, SimInputs, SysfsInputs, Watcher,
};
use doorphone_relay::service::{RelayService, forward_events};
use tokio::sync::watch;

/// The door phone's relay service (org.doorphone.Relay1 on the system bus).
///
/// A door must never stay open because the service failed. At start it drives
/// every configured line inactive, and every line a previous run left claimed
/// (the claims file); on SIGTERM it drives them inactive and releases them. For a
/// crash, the unit runs `doorphone-relay --release-all` after every stop: it
/// drives every line of the claims file inactive.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// How relay lines are driven.
    #[arg(long, value_enum, default_value = "cdev")]
    gpio: Gpio,
    /// The GPIO chip of `--gpio cdev`; a relay's `gpio` is a line offset on it.
    /// With `--gpio sysfs` it is the kernel's global GPIO number.
    #[arg(long, default_value = "/dev/gpiochip0")]
    gpio_chip: PathBuf,
    /// The file `--gpio sim` appends each transition to, with a timestamp.
    #[arg(long)]
    sim_log: Option<PathBuf>,
    /// The named pipe `--gpio sim` reads its input levels from, one `GPIO LEVEL`
    /// line each (`echo 23 0 > PATH` sets gpio 23 low); made when missing.
    #[arg(long)]
    sim_inputs: Option<PathBuf>,
    /// Where the lines in use are recorded, for `--release-all`.
    #[arg(long)]
    claims: Option<PathBuf>,
    /// Drive every line recorded in the claims file inactive, release it, and exit.
    #[arg(long, requires = "claims")]
    release_all: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Gpio {
    /// The kernel's sysfs GPIO interface (/sys/class/gpio).
    Sysfs,
    /// The GPIO character device (/dev/gpiochipN).
    Cdev,
    /// No hardware: states in memory, transitions logged to --sim-log, input
    /// levels read from --sim-inputs.
    Sim,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    doorphone_daemon::run(run(Args::parse())).await
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
