//! The door phone's SIP agent.
//!
//! - [`stack`]: the SIP stack (rsipstack) behind the agent's own types, with
//!   the [`stack::guard`] that screens every datagram before it is parsed;
//! - [`identity`]: who is calling, from what the network proves;
//!   [`policy`]: what the door phone does with a call; [`lockout`]: wrong door
//!   codes counted per caller; [`budget`]: how much a source is answered;
//! - [`machine`]: the call logic as pure state machines; [`calls`]: the tasks
//!   that drive them; [`agent`]: intake, the call registry and the history;
//!   [`routes`]: where a dialled number goes;
//! - [`ports`]: media and the relays as traits; [`events`]: what the agent
//!   tells the world; [`service`]: the D-Bus face of both;
//! - [`accounts`]: registrations; [`buttons`] and [`actions`]: call buttons
//!   and what happens when nobody answers ([`ftp`]: its FTP client); [`history`]: the call history.

pub mod accounts;
pub mod actions;
pub mod agent;
pub mod budget;
pub mod buttons;
pub mod call;
pub mod calls;
pub mod codes;
pub mod error;
pub mod events;
pub mod ftp;
pub mod health;
pub mod history;
pub mod identity;
pub mod lockout;
pub mod machine;
pub mod policy;
pub mod ports;
pub mod routes;
pub mod service;
pub mod settings;
pub mod stack;
