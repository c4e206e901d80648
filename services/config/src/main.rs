use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use doorphone_config::ConfigService;
use doorphone_interfaces::config::{BUS_NAME, OBJECT_PATH};
use tokio::signal::unix::{SignalKind, signal};

/// The door phone's configuration service (org.doorphone.Config1 on the system bus).
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The configuration database; its folder is created when missing.
    #[arg(long, default_value = "/var/lib/doorphone/config.db")]
    db: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let service = ConfigService::open(&args.db)?;
    let revision = service.revision_now();
    let _conn = zbus::connection::Builder::system()
        .serve_at(OBJECT_PATH, service)
        .name(BUS_NAME)
        .build()
        .await
        .map_err(|e| format!("cannot own {BUS_NAME} on the system bus: {e}"))?;
    tracing::info!(db = %args.db.display(), revision, "serving {BUS_NAME}");
    notify_ready();

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping");
    Ok(())
}

/// Tells systemd the service is up, and pings its watchdog at half the interval.
fn notify_ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::debug!("sd_notify: {e}");
    }
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval / 2);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
}
