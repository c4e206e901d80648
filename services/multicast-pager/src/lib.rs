//! The door phone's multicast pager (`org.doorphone.Pager1`): it listens to the
//! configured multicast groups, decides which page may play and has media play
//! it, holding the SIP call while a page that may barge plays.

pub mod arbiter;
pub mod listener;
pub mod pager;
pub mod rtp;
pub mod service;
