//! The door phone's relay service: every door relay on a GPIO line, opened on
//! request after its trigger delay and released after its hold time.
//!
//! [`door`] is the timing of one relay as a pure state machine, [`gpio`] the
//! backends that drive the lines, [`controller`] the task that runs the doors on
//! a backend, [`input`] the buttons on GPIO inputs (exit buttons and call
//! buttons), and [`service`] the `org.doorphone.Relay1` interface.

pub mod controller;
pub mod door;
pub mod gpio;
pub mod input;
pub mod service;
