//! The door phone's media service: the only owner of the microphone, speaker and
//! camera. It answers and makes SDP offers (the SIP agent never reads SDP), runs one
//! GStreamer pipeline per call, and reports DTMF digits as signals.

pub mod camera;
pub mod devices;
pub mod dtmf;
pub mod g722;
pub mod ports;
pub mod sdp;
pub mod service;
pub mod session;
pub mod silence;
pub mod stream;
pub mod trust;
