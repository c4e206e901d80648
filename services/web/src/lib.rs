//! The door phone's web service: the HTTPS API for building systems and the
//! web pages for installers. It is a client of the other services on the bus and keeps nothing
//! of its own but its TLS key; its users are the config document's
//! `web.users`.

pub mod account;
pub mod api;
pub mod auth;
pub mod backup;
pub mod basic;
pub mod call_feature;
pub mod contacts;
pub mod dial_plan;
pub mod digest;
pub mod error;
pub mod events;
pub mod form;
pub mod history;
pub mod listing;
pub mod lockout;
pub mod media;
pub mod multicast;
pub mod pages;
pub mod peers;
pub mod relays;
pub mod section;
pub mod serve;
pub mod sessions;
pub mod status;
pub mod table;
pub mod tls;
