//! The door phone's SIP agent: the SIP stack behind [`stack`], the call policy
//! in [`policy`], calls in [`agent`], registrations in [`accounts`], and the
//! D-Bus face in [`service`].

pub mod accounts;
pub mod actions;
pub mod agent;
pub mod buttons;
pub mod history;
pub mod policy;
pub mod service;
pub mod stack;
