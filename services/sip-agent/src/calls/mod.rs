//! The tasks that drive calls: each owns one call, runs its state machine
//! from [`crate::machine`] and carries out what it says over SIP, media and
//! the relays.
//!
//! - [`incoming`]: from the 180 to the answer;
//! - [`outgoing`]: from the first INVITE to the answer, over every branch;
//! - [`active`]: the answered call, either way, to its end.

pub mod active;
pub mod incoming;
pub mod outgoing;

#[cfg(test)]
mod tests;
