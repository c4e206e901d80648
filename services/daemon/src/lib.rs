//! What every door phone service does the same way: logging to stderr (journald
//! picks it up), telling systemd it is ready and pinging its watchdog, and
//! stopping on SIGTERM or SIGINT.

use std::future::Future;
use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};

/// Logs to stderr at `RUST_LOG`'s levels (`info` when unset, the SIP stack's
/// own at `error`), runs `service`,
/// and turns its outcome into the exit code (an error is logged first).
pub async fn run<E: std::fmt::Display>(service: impl Future<Output = Result<(), E>>) -> ExitCode {
    // The SIP stack logs every message it handles at INFO, which under attack
    // would fill a device's flash: only its errors unless asked for.
    let default = || tracing_subscriber::EnvFilter::new("info,rsipstack=error");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default()),
        )
        .with_writer(std::io::stderr)
        .init();
    match service.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Tells systemd the service is up (call it once the bus name is owned), and
/// pings its watchdog at half the interval for as long as the runtime runs.
pub fn notify_ready() {
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

/// Returns when the service is asked to stop (SIGTERM from systemd, or Ctrl-C).
pub async fn stop_requested() -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping");
    Ok(())
}
