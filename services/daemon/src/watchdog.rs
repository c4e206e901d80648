//! Readiness and the systemd watchdog, pinged only while the service works.
//!
//! A ping says more than "the process runs": before each one the service sends
//! itself a `Peer.Ping` through the bus daemon (which needs the bus, the
//! connection's reader and the runtime to answer) and runs its own check (the
//! SIP agent asks its SIP loop). When either fails, the ping is withheld, and
//! systemd restarts the service after `WatchdogSec`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A service's own health check: `Err` names what does not answer.
pub type Check =
    Box<dyn FnMut() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send>;

/// Tells systemd the service is up (call it once the bus name is owned), and
/// pings its watchdog at half the interval for as long as the bus and `check`
/// answer.
pub fn notify_ready(conn: &zbus::Connection, check: Option<Check>) {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::debug!("sd_notify: {e}");
    }
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tokio::spawn(run(conn.clone(), interval / 2, check));
    }
}

/// Each `period`: the bus round trip, then the check, then the ping.
async fn run(conn: zbus::Connection, period: Duration, mut check: Option<Check>) {
    // A check answers well within the period, or it counts as failed.
    let patience = (period / 2).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let health = async {
            bus_round_trip(&conn).await?;
            match check.as_mut() {
                Some(check) => check().await,
                None => Ok(()),
            }
        };
        let health = tokio::time::timeout(patience, health)
            .await
            .unwrap_or_else(|_| Err(format!("no answer in {patience:?}")));
        match health {
            Ok(()) => {
                if failing {
                    tracing::info!("healthy again: watchdog pinged");
                    failing = false;
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            Err(e) => {
                if !failing {
                    tracing::error!("unhealthy ({e}): watchdog not pinged");
                    failing = true;
                }
            }
        }
    }
}

/// A `Peer.Ping` to our own unique name: out to the bus daemon and back in.
async fn bus_round_trip(conn: &zbus::Connection) -> Result<(), String> {
    let me = conn
        .unique_name()
        .ok_or_else(|| "no unique name on the bus".to_owned())?;
    zbus::fdo::PeerProxy::builder(conn)
        .destination(me.to_owned())
        .path("/")
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|e| format!("bus: {e}"))?
        .ping()
        .await
        .map_err(|e| format!("bus: {e}"))
}
