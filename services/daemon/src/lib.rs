//! What every door phone service does the same way: logging to stderr (journald
//! picks it up), the bus connection ([`bus`]), following the configuration
//! ([`config`]), telling systemd it is ready and pinging its watchdog while the
//! service is healthy ([`watchdog`]), and stopping on SIGTERM or SIGINT, or
//! with an error when the bus is lost.

pub mod bus;
pub mod config;
pub mod files;
pub mod memory;
pub mod watchdog;

use std::future::Future;
use std::process::ExitCode;

/// Logs to stderr at `RUST_LOG`'s levels (`info` when unset, the SIP stack's
/// own at `error`), gives freed memory back to the system every 30 s
/// ([`memory`]), runs `service`,
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
    memory::trim_every(memory::TRIM_PERIOD);
    match service.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
