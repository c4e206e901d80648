//! `org.doorphone.Relay1`: the relay service, the only one that drives door
//! relays. Callers ask it to open a door and say why; it tells everyone when a
//! door opened (with that reason) and when it closed again. It also watches the
//! GPIO inputs: an exit button opens its relay (source `input`), a physical call
//! button is announced by `ButtonPressed` for the SIP agent to place its call.

use std::collections::HashMap;

use zbus::{DBusError, proxy};

pub const BUS_NAME: &str = "org.doorphone.Relay1";
pub const OBJECT_PATH: &str = "/org/doorphone/Relay1";
pub const INTERFACE: &str = "org.doorphone.Relay1";

/// Errors `org.doorphone.Relay1` replies with.
#[derive(Debug, DBusError)]
#[zbus(prefix = "org.doorphone.Relay1.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// No relay with that id is configured.
    NotFound(String),
    /// A refused argument (an unknown source).
    Invalid(String),
    /// The GPIO line could not be driven.
    Failed(String),
}

/// Why a door is opened, as `Open` takes it and `DoorOpened` gives it.
pub mod source {
    /// A DTMF code entered during a call.
    pub const DTMF: &str = "dtmf";
    /// A request over the bus (`doorctl door open`).
    pub const API: &str = "api";
    /// An exit button wired to a GPIO input.
    pub const INPUT: &str = "input";
    /// A call that nobody answered.
    pub const NO_ANSWER: &str = "no_answer";
    /// Every source `Open` accepts.
    pub const ALL: [&str; 4] = [DTMF, API, INPUT, NO_ANSWER];
}

/// Relay states, as the `Relays` property gives them.
pub mod state {
    /// Energised: the door can be pushed open.
    pub const OPEN: &str = "open";
    /// De-energised (also while a trigger delay runs).
    pub const CLOSED: &str = "closed";
}

#[proxy(
    interface = "org.doorphone.Relay1",
    default_service = "org.doorphone.Relay1",
    default_path = "/org/doorphone/Relay1"
)]
pub trait Relay1 {
    /// Opens `relay` for its hold time, after its trigger delay; `source` is one
    /// of [`source::ALL`]. Opening a relay that is open extends its hold.
    async fn open(&self, relay: &str, source: &str) -> Result<(), Error>;

    /// Every configured relay's state ([`state`]), by relay id.
    #[zbus(property)]
    fn relays(&self) -> zbus::Result<HashMap<String, String>>;
    /// The configured relay ids, in configuration order.
    #[zbus(property)]
    fn relay_ids(&self) -> zbus::Result<Vec<String>>;

    /// `relay` was energised because of `source`.
    #[zbus(signal)]
    fn door_opened(&self, relay: &str, source: &str) -> zbus::Result<()>;
    /// `relay` was released at the end of its hold.
    #[zbus(signal)]
    fn door_closed(&self, relay: &str) -> zbus::Result<()>;
    /// The input wired to call button `button` (1-16) was pressed.
    #[zbus(signal)]
    fn button_pressed(&self, button: u16) -> zbus::Result<()>;
}
