//! `org.doorphone.Pager1`: the multicast pager. It listens to the configured
//! multicast groups, decides by paging priority, the barge level and the SIP
//! agent's call which page may play, and has media play it.

use serde::{Deserialize, Serialize};
use zbus::{DBusError, Type, proxy};

pub const BUS_NAME: &str = "org.doorphone.Pager1";
pub const OBJECT_PATH: &str = "/org/doorphone/Pager1";
pub const INTERFACE: &str = "org.doorphone.Pager1";

/// Errors `org.doorphone.Pager1` replies with.
#[derive(Debug, DBusError)]
#[zbus(prefix = "org.doorphone.Pager1.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
}

/// States of a listened group, as `Listening` gives them.
pub mod listen_state {
    /// Joined; no page arrives.
    pub const IDLE: &str = "idle";
    /// A page arrives but does not play (a page of higher priority plays, the
    /// one playing is not over, or a call does not let it barge).
    pub const WAITING: &str = "waiting";
    /// A page arrives and plays.
    pub const PLAYING: &str = "playing";
    /// The group could not be joined (the log says why).
    pub const FAILED: &str = "failed";
}

/// Why a page stopped playing, as `PageEnded` gives it.
pub mod end_reason {
    /// No packet for 2 s, an RTCP BYE, or its group is no longer listened to.
    pub const ENDED: &str = "ended";
    /// A page of higher priority took the speaker; it resumes if it still
    /// arrives when that one ends.
    pub const PREEMPTED: &str = "preempted";
    /// A SIP call that the page may not barge into.
    pub const CALL: &str = "call";
}

/// One listened group, as `Listening` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Listening {
    pub address: String,
    pub port: u16,
    /// 1 is the highest: the position in `multicast.listen`.
    pub priority: u32,
    pub label: String,
    /// See [`listen_state`].
    pub state: String,
}

/// The page playing, as `Page` gives it; `port` 0 when none plays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Page {
    pub address: String,
    pub port: u16,
    pub priority: u32,
    /// `PCMU`, `PCMA` or `G722`.
    pub codec: String,
    /// Unix milliseconds at which it started playing.
    pub since: u64,
}

#[proxy(
    interface = "org.doorphone.Pager1",
    default_service = "org.doorphone.Pager1",
    default_path = "/org/doorphone/Pager1"
)]
pub trait Pager1 {
    /// Every listened group, in priority order.
    #[zbus(property)]
    fn listening(&self) -> zbus::Result<Vec<Listening>>;
    /// The page playing (`port` 0 when none).
    #[zbus(property)]
    fn page(&self) -> zbus::Result<Page>;
    /// The `Config1` revision the pager works with.
    #[zbus(property)]
    fn config_revision(&self) -> zbus::Result<u64>;

    /// A page started playing (again, after a pre-emption or a wait).
    #[zbus(signal)]
    fn page_started(&self, address: &str, port: u16, priority: u32) -> zbus::Result<()>;
    /// A page stopped playing; `reason` is one of [`end_reason`].
    #[zbus(signal)]
    fn page_ended(&self, address: &str, port: u16, reason: &str) -> zbus::Result<()>;
}
