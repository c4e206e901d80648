//! Why a command failed, and how that is told: one line on stderr, exit code 1.

use std::fmt;
use std::io;
use std::process::ExitCode;

use doorphone_interfaces::{config, pager, relay, sip};
use zbus::fdo;

/// A service of the door phone, as a failure names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// What it is, for people.
    pub what: &'static str,
    pub bus_name: &'static str,
}

pub const CONFIG: Service = Service {
    what: "the configuration service",
    bus_name: config::BUS_NAME,
};

pub const RELAY: Service = Service {
    what: "the relay service",
    bus_name: relay::BUS_NAME,
};

pub const PAGER: Service = Service {
    what: "the multicast pager",
    bus_name: pager::BUS_NAME,
};

pub const SIP: Service = Service {
    what: "the SIP agent",
    bus_name: sip::BUS_NAME,
};

#[derive(Debug)]
pub enum Failure {
    /// The system bus could not be reached.
    NoBus(zbus::Error),
    /// A service is not on the bus.
    NotRunning(Service),
    /// A refusal (by a service or by the bus policy) or another error, told as it is.
    Message(String),
    /// Standard output could not be written.
    Output(io::Error),
}

impl Failure {
    /// Tells the failure on stderr; returns the exit code for it.
    pub fn report(&self) -> ExitCode {
        // A reader that stopped reading (`doorctl config export | head`) needs no
        // explanation.
        if !matches!(self, Failure::Output(e) if e.kind() == io::ErrorKind::BrokenPipe) {
            eprintln!("doorctl: {self}");
        }
        ExitCode::FAILURE
    }

    /// An error of a call to `service`. Every reply error becomes its name and
    /// message, except the bus saying that nobody owns the service's name.
    pub fn from_bus(e: zbus::Error, service: Service) -> Failure {
        match fdo::Error::from(e) {
            fdo::Error::ServiceUnknown(_) | fdo::Error::NameHasNoOwner(_) => {
                Failure::NotRunning(service)
            }
            fdo::Error::ZBus(e) => Failure::Message(e.to_string()),
            refused => Failure::Message(refused.to_string()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NoBus(zbus::Error::Connection(e, address)) => {
                write!(f, "cannot reach the system bus at {address}: {e}")
            }
            Failure::NoBus(e) => write!(f, "cannot reach the system bus: {e}"),
            Failure::NotRunning(service) => {
                write!(f, "{} ({}) is not running", service.what, service.bus_name)
            }
            Failure::Message(message) => f.write_str(message),
            Failure::Output(e) => write!(f, "cannot write the output: {e}"),
        }
    }
}

impl From<config::Error> for Failure {
    fn from(e: config::Error) -> Self {
        match e {
            config::Error::Invalid(message)
            | config::Error::NotFound(message)
            | config::Error::Storage(message) => Failure::Message(message),
            config::Error::ZBus(e) => Failure::from_bus(e, CONFIG),
        }
    }
}

impl From<relay::Error> for Failure {
    fn from(e: relay::Error) -> Self {
        match e {
            relay::Error::NotFound(message)
            | relay::Error::Invalid(message)
            | relay::Error::Failed(message) => Failure::Message(message),
            relay::Error::ZBus(e) => Failure::from_bus(e, RELAY),
        }
    }
}

impl From<pager::Error> for Failure {
    fn from(e: pager::Error) -> Self {
        match e {
            pager::Error::ZBus(e) => Failure::from_bus(e, PAGER),
        }
    }
}

impl From<sip::Error> for Failure {
    fn from(e: sip::Error) -> Self {
        match e {
            sip::Error::Invalid(message)
            | sip::Error::NotFound(message)
            | sip::Error::Failed(message) => Failure::Message(message),
            sip::Error::ZBus(e) => Failure::from_bus(e, SIP),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_refusal_is_told_by_its_message_alone() {
        let failure = Failure::from(config::Error::Invalid(
            "calls.max_call_time: 4 is out of range (0 or 5-7200)".into(),
        ));
        assert_eq!(
            failure.to_string(),
            "calls.max_call_time: 4 is out of range (0 or 5-7200)"
        );
    }

    #[test]
    fn a_missing_name_owner_is_a_service_not_running() {
        let e = zbus::Error::from(fdo::Error::ServiceUnknown("not provided".into()));
        assert_eq!(
            Failure::from(config::Error::from(e)).to_string(),
            "the configuration service (org.doorphone.Config1) is not running"
        );
    }

    #[test]
    fn another_bus_error_is_told_by_name_and_message() {
        let e = zbus::Error::from(fdo::Error::AccessDenied("Rejected send message".into()));
        assert_eq!(
            Failure::from_bus(e, CONFIG).to_string(),
            "org.freedesktop.DBus.Error.AccessDenied: Rejected send message"
        );
    }
}
