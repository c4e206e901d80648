//! The door phone's D-Bus contract, shared by the services that serve it and the
//! clients (other services, `doorctl`, tests) that call it.
//!
//! Every service has a module here with its bus name, object path, `#[proxy]`
//! trait, the types it passes and its error enum. An interface is defined once.

pub mod config;
pub mod json;
pub mod media;
pub mod pager;
pub mod relay;
pub mod sip;

/// Prefix of every bus name the door phone owns.
pub const BUS_NAME_PREFIX: &str = "org.doorphone.";
