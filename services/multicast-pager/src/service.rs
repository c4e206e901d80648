//! `org.doorphone.Pager1` on the bus: read-only state the pager keeps, and the
//! page signals.

use std::sync::{Arc, Mutex};

use doorphone_interfaces::pager::{Listening, OBJECT_PATH, Page};
use zbus::interface;
use zbus::object_server::SignalEmitter;

/// What the bus shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub listening: Vec<Listening>,
    pub page: Page,
    pub config_revision: u64,
}

#[derive(Clone, Default)]
pub struct PagerService {
    status: Arc<Mutex<Status>>,
}

impl PagerService {
    fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[interface(name = "org.doorphone.Pager1")]
impl PagerService {
    /// Every listened group in priority order, with its state: `idle`, `waiting`,
    /// `playing` or `failed`.
    #[zbus(property)]
    fn listening(&self) -> Vec<Listening> {
        self.status().listening
    }

    /// The page playing: address, port, priority, codec and since when (Unix
    /// milliseconds); port 0 when none plays.
    #[zbus(property)]
    fn page(&self) -> Page {
        self.status().page
    }

    /// The `Config1` revision the pager works with.
    #[zbus(property)]
    fn config_revision(&self) -> u64 {
        self.status().config_revision
    }

    /// A page started playing (again, after a pre-emption or a wait).
    #[zbus(signal)]
    pub async fn page_started(
        emitter: &SignalEmitter<'_>,
        address: &str,
        port: u16,
        priority: u32,
    ) -> zbus::Result<()>;

    /// A page stopped playing: `ended`, `preempted` or `call`.
    #[zbus(signal)]
    pub async fn page_ended(
        emitter: &SignalEmitter<'_>,
        address: &str,
        port: u16,
        reason: &str,
    ) -> zbus::Result<()>;
}

/// Publishes `status`, announcing the properties that changed.
pub async fn publish(conn: &zbus::Connection, service: &PagerService, status: Status) {
    let old = std::mem::replace(
        &mut *service.status.lock().unwrap_or_else(|e| e.into_inner()),
        status.clone(),
    );
    let Ok(iface) = conn
        .object_server()
        .interface::<_, PagerService>(OBJECT_PATH)
        .await
    else {
        return;
    };
    let emitter = iface.signal_emitter();
    let mut result = Ok(());
    if old.listening != status.listening {
        result = result.and(service.listening_changed(emitter).await);
    }
    if old.page != status.page {
        result = result.and(service.page_changed(emitter).await);
    }
    if old.config_revision != status.config_revision {
        result = result.and(service.config_revision_changed(emitter).await);
    }
    if let Err(e) = result {
        tracing::warn!("cannot announce a change: {e}");
    }
}
