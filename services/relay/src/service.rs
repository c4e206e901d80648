//! `org.doorphone.Relay1` on the bus: requests go to the controller, its events
//! come back as signals and property changes.

use std::collections::HashMap;

use doorphone_interfaces::relay::{Error, OBJECT_PATH, source, state};
use tokio::sync::mpsc;
use zbus::interface;
use zbus::object_server::SignalEmitter;

use crate::controller::{Event, Handle, OpenError};

pub struct RelayService {
    controller: Handle,
}

impl RelayService {
    pub fn new(controller: Handle) -> RelayService {
        RelayService { controller }
    }
}

#[interface(name = "org.doorphone.Relay1")]
impl RelayService {
    /// Opens `relay` for its hold time, after its trigger delay. `source` says
    /// why: `dtmf`, `api`, `input` or `no_answer`. Opening a relay that is open
    /// extends its hold.
    async fn open(&self, relay: &str, source: &str) -> Result<(), Error> {
        if !source::ALL.contains(&source) {
            return Err(Error::Invalid(format!(
                "source: {source:?} is not one of {}",
                source::ALL.join(", ")
            )));
        }
        match self.controller.open(relay, source).await {
            Ok(()) => Ok(()),
            Err(OpenError::NotFound) => Err(Error::NotFound(format!("no relay {relay:?}"))),
            Err(OpenError::Failed(why)) => Err(Error::Failed(why)),
        }
    }

    /// Every relay's state, `open` or `closed`, by relay id.
    #[zbus(property)]
    fn relays(&self) -> HashMap<String, String> {
        self.controller
            .states()
            .into_iter()
            .map(|(id, open)| {
                (
                    id,
                    if open { state::OPEN } else { state::CLOSED }.to_owned(),
                )
            })
            .collect()
    }

    /// The relay ids, in configuration order.
    #[zbus(property)]
    fn relay_ids(&self) -> Vec<String> {
        self.controller
            .states()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// `relay` was energised because of `source`.
    #[zbus(signal)]
    pub async fn door_opened(
        emitter: &SignalEmitter<'_>,
        relay: &str,
        source: &str,
    ) -> zbus::Result<()>;

    /// `relay` was released.
    #[zbus(signal)]
    pub async fn door_closed(emitter: &SignalEmitter<'_>, relay: &str) -> zbus::Result<()>;

    /// The input wired to call button `button` (1-16) was pressed.
    #[zbus(signal)]
    pub async fn button_pressed(emitter: &SignalEmitter<'_>, button: u16) -> zbus::Result<()>;
}

/// Emits the controller's events as signals and property changes.
pub async fn forward_events(conn: zbus::Connection, mut events: mpsc::UnboundedReceiver<Event>) {
    let server = conn.object_server();
    let mut last_ids: Option<Vec<String>> = None;
    while let Some(event) = events.recv().await {
        let Ok(iface) = server.interface::<_, RelayService>(OBJECT_PATH).await else {
            continue;
        };
        let emitter = iface.signal_emitter();
        let result = match event {
            Event::Opened { relay, source } => {
                RelayService::door_opened(emitter, &relay, &source).await
            }
            Event::Closed { relay } => RelayService::door_closed(emitter, &relay).await,
            Event::ButtonPressed { button } => RelayService::button_pressed(emitter, button).await,
            Event::StatesChanged => {
                let service = iface.get().await;
                let ids = service.relay_ids();
                let mut result = service.relays_changed(emitter).await;
                if last_ids.as_ref() != Some(&ids) {
                    result = result.and(service.relay_ids_changed(emitter).await);
                    last_ids = Some(ids);
                }
                result
            }
        };
        if let Err(e) = result {
            tracing::warn!("cannot emit a signal: {e}");
        }
    }
}
