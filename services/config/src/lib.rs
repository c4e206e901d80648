//! The door phone's configuration service: the only writer of the configuration
//! database, the one place every value is validated, and the source of the change
//! signals the other services reload from.

pub mod path;
pub mod service;
pub mod store;
pub mod validate;

pub use service::ConfigService;
