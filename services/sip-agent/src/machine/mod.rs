//! The call logic as pure state machines: each takes events and the time
//! they happened at and says what to do; none does I/O, so every timer is
//! tested in milliseconds of a paused clock. The drivers in [`crate::calls`]
//! carry the actions out over SIP, media and the relays.
//!
//! - [`ringing`]: an incoming call until it is answered (auto-answer delay,
//!   max dial-in time);
//! - [`active`]: an answered call (max call time, hang-up after opening,
//!   door codes and their inter-digit time);
//! - [`plan`]: an outgoing call's targets (group, sequence, dial-plan fork;
//!   max dial-out time from the INVITE sent, per-number time-outs, refusals).

pub mod active;
pub mod plan;
pub mod ringing;

use tokio::time::Instant;

/// The earliest of some deadlines.
pub(crate) fn earliest(deadlines: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    deadlines.into_iter().flatten().min()
}
