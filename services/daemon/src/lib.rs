//! What every door phone service does the same way: its command line
//! ([`args`]), logging to stderr (journald
//! picks it up), the bus connection ([`bus`]), following the configuration
//! ([`config`]), telling systemd it is ready and pinging its watchdog while the
//! service is healthy ([`watchdog`]), and stopping on SIGTERM or SIGINT, or
//! with an error when the bus is lost.

pub mod args;
pub mod bus;
pub mod config;
pub mod files;
pub mod memory;
pub mod watchdog;

use std::future::Future;
use std::process::ExitCode;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// What the services log unless `RUST_LOG` says otherwise.
pub const DEFAULT_LOG: &str = "info,rsipstack=error";

/// The log filter of `RUST_LOG` (`level` or `target=level`, comma-separated,
/// as env_logger reads it), or [`DEFAULT_LOG`] when it is unset or unreadable.
pub fn log_filter(rust_log: Option<&str>) -> Targets {
    rust_log
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| DEFAULT_LOG.parse().expect("the default log filter parses"))
}

/// How a service's tokio runtime runs its tasks.
#[derive(Debug, Clone, Copy)]
pub enum Runtime {
    /// On the main thread alone: a service with no parallel work.
    CurrentThread,
    /// On worker threads, as many as the machine has cores unless given.
    MultiThread { workers: Option<usize> },
}

/// A service's `main`: caps the allocator's arenas ([`memory::limit_arenas`],
/// before any other thread exists), builds the tokio runtime, and runs
/// `service` through [`run`].
pub fn main<E, F>(runtime: Runtime, service: impl FnOnce() -> F) -> ExitCode
where
    E: std::fmt::Display,
    F: Future<Output = Result<(), E>>,
{
    memory::limit_arenas(memory::ARENAS);
    let built = match runtime {
        Runtime::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Runtime::MultiThread { workers } => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(workers) = workers {
                builder.worker_threads(workers);
            }
            builder.enable_all().build()
        }
    };
    match built {
        // The service's future on the heap: on the main thread's stack, the
        // pages its start-up touched would stay resident for good.
        Ok(rt) => rt.block_on(Box::pin(run(service()))),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at `RUST_LOG`'s levels ([`log_filter`]: `info` when unset,
/// the SIP stack's own at `error`), gives freed memory back to the system every 30 s
/// ([`memory`]), runs `service`,
/// and turns its outcome into the exit code (an error is logged first).
pub async fn run<E: std::fmt::Display>(service: impl Future<Output = Result<(), E>>) -> ExitCode {
    // The SIP stack logs every message it handles at INFO, which under attack
    // would fill a device's flash: only its errors unless asked for.
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn rust_log_names_levels_per_target_and_the_sip_stack_stays_quiet_by_default() {
        let default = log_filter(None);
        assert!(default.would_enable("doorphone_sip::agent", &Level::INFO));
        assert!(!default.would_enable("doorphone_sip::agent", &Level::DEBUG));
        assert!(!default.would_enable("rsipstack::transaction", &Level::WARN));
        assert!(default.would_enable("rsipstack::transaction", &Level::ERROR));
        let asked = log_filter(Some("warn,doorphone_sip=trace"));
        assert!(asked.would_enable("doorphone_sip::stack", &Level::TRACE));
        assert!(!asked.would_enable("doorphone_media", &Level::INFO));
        // A filter that does not parse falls back to the default.
        let bad = log_filter(Some("doorphone_sip=loud"));
        assert!(!bad.would_enable("doorphone_sip", &Level::DEBUG));
        assert!(bad.would_enable("doorphone_sip", &Level::INFO));
    }
}
