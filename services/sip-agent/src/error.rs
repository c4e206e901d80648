//! What can go wrong with what a client asks of the agent, as one type; it
//! becomes a D-Bus error once, at the edge ([`From`] below), so the wording
//! of a message never decides what a client sees.

use doorphone_interfaces::{media, sip};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// A refused argument: a number that cannot be called, an unknown account.
    #[error("{0}")]
    Invalid(String),
    /// No such button or call.
    #[error("{0}")]
    NotFound(String),
    /// The media service is not on the bus (or does not answer).
    #[error("the media service ({bus}) is not reachable: {0}", bus = media::BUS_NAME)]
    MediaUnreachable(String),
    /// Media refused what the call needs.
    #[error("media: {0}")]
    Media(String),
    /// Another call or a button's plan has the door phone.
    #[error("{0}")]
    InProgress(String),
    /// The call is not in a state that allows it.
    #[error("{0}")]
    WrongState(&'static str),
    /// The call ended meanwhile.
    #[error("the call has ended")]
    CallEnded,
}

impl From<AgentError> for sip::Error {
    fn from(e: AgentError) -> sip::Error {
        let text = e.to_string();
        match e {
            AgentError::Invalid(_) => sip::Error::Invalid(text),
            AgentError::NotFound(_) => sip::Error::NotFound(text),
            AgentError::MediaUnreachable(_)
            | AgentError::Media(_)
            | AgentError::InProgress(_)
            | AgentError::WrongState(_)
            | AgentError::CallEnded => sip::Error::Failed(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_bus_error() {
        let bus = |e: AgentError| match sip::Error::from(e) {
            sip::Error::Invalid(m) => ("Invalid", m),
            sip::Error::NotFound(m) => ("NotFound", m),
            sip::Error::Failed(m) => ("Failed", m),
            sip::Error::ZBus(e) => panic!("{e}"),
        };
        assert_eq!(bus(AgentError::Invalid("x".into())).0, "Invalid");
        assert_eq!(bus(AgentError::NotFound("x".into())).0, "NotFound");
        let (kind, message) = bus(AgentError::MediaUnreachable("gone".into()));
        assert_eq!(kind, "Failed");
        assert_eq!(
            message,
            "the media service (org.doorphone.Media1) is not reachable: gone"
        );
        assert_eq!(bus(AgentError::InProgress("busy".into())).0, "Failed");
        assert_eq!(bus(AgentError::CallEnded).0, "Failed");
    }
}
