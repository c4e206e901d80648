//! Every error the API answers with: JSON `{"error": ..., "field": ...}` and
//! its status. A service missing from the bus is a 503 that names it; what a
//! service refused comes back with its own message.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use doorphone_interfaces::{config, media, pager, relay, sip};

/// The services the web service talks to, as the errors name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Config,
    Sip,
    Media,
    Relay,
    Pager,
}

impl Peer {
    pub const ALL: [Peer; 5] = [
        Peer::Config,
        Peer::Sip,
        Peer::Media,
        Peer::Relay,
        Peer::Pager,
    ];

    /// The short name the status document and the errors use.
    pub const fn name(self) -> &'static str {
        match self {
            Peer::Config => "config",
            Peer::Sip => "sip",
            Peer::Media => "media",
            Peer::Relay => "relay",
            Peer::Pager => "pager",
        }
    }

    pub const fn bus_name(self) -> &'static str {
        match self {
            Peer::Config => config::BUS_NAME,
            Peer::Sip => sip::BUS_NAME,
            Peer::Media => media::BUS_NAME,
            Peer::Relay => relay::BUS_NAME,
            Peer::Pager => pager::BUS_NAME,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub field: Option<String>,
    pub headers: Vec<(&'static str, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            field: None,
            headers: Vec::new(),
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    pub fn with_header(mut self, name: &'static str, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn bad_request(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error)
    }

    pub fn not_found(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, error)
    }

    /// `peer` is not on the bus or does not answer.
    pub fn unavailable(peer: Peer) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the {} service ({}) is not available",
                peer.name(),
                peer.bus_name()
            ),
        )
        .with_field(peer.name())
    }

    /// A failure of the bus itself, or of `peer` at the protocol level.
    pub fn bus(peer: Peer, e: zbus::Error) -> ApiError {
        let name = match &e {
            zbus::Error::MethodError(name, _, _) => Some(name.to_string()),
            zbus::Error::FDO(fdo) => Some(zbus::DBusError::name(fdo.as_ref()).to_string()),
            _ => None,
        };
        match name.as_deref() {
            Some("org.freedesktop.DBus.Error.AccessDenied") => {
                // The bus policy does not let this service do that: a fault of
                // the installation, not of the request.
                tracing::error!("the bus refused a call to {}: {e}", peer.bus_name());
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the bus policy does not let the web service use the {} service",
                        peer.name()
                    ),
                )
                .with_field(peer.name())
            }
            // The object is gone (a call that ended).
            Some("org.freedesktop.DBus.Error.UnknownObject") => {
                ApiError::not_found(format!("the {} service has no such object", peer.name()))
            }
            Some(name) if !name.starts_with("org.freedesktop.DBus.Error.") => {
                ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())
            }
            _ => {
                tracing::warn!("{} does not answer: {e}", peer.bus_name());
                ApiError::unavailable(peer)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.error, "field": self.field});
        let mut response = (self.status, Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

/// The field a config service refusal names: its message is `path: rule`.
pub fn refused_field(message: &str) -> Option<&str> {
    let (field, _) = message.split_once(": ")?;
    (!field.is_empty() && !field.contains(char::is_whitespace)).then_some(field)
}

impl From<config::Error> for ApiError {
    fn from(e: config::Error) -> Self {
        match e {
            config::Error::ZBus(e) => ApiError::bus(Peer::Config, e),
            config::Error::Invalid(message) => {
                let field = refused_field(&message).map(str::to_owned);
                let mut error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message);
                error.field = field;
                error
            }
            config::Error::NotFound(message) => {
                let field = refused_field(&message).map(str::to_owned);
                let mut error = ApiError::not_found(message);
                error.field = field;
                error
            }
            config::Error::Storage(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).with_field("config")
            }
        }
    }
}

impl From<sip::Error> for ApiError {
    fn from(e: sip::Error) -> Self {
        match e {
            sip::Error::ZBus(e) => ApiError::bus(Peer::Sip, e),
            sip::Error::Invalid(message) => ApiError::bad_request(message),
            sip::Error::NotFound(message) => ApiError::not_found(message),
            sip::Error::Failed(message) => ApiError::new(StatusCode::CONFLICT, message),
        }
    }
}

impl From<relay::Error> for ApiError {
    fn from(e: relay::Error) -> Self {
        match e {
            relay::Error::ZBus(e) => ApiError::bus(Peer::Relay, e),
            relay::Error::NotFound(message) => ApiError::not_found(message),
            relay::Error::Invalid(message) => ApiError::bad_request(message),
            relay::Error::Failed(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).with_field("relay")
            }
        }
    }
}

impl From<media::Error> for ApiError {
    fn from(e: media::Error) -> Self {
        match e {
            media::Error::ZBus(e) => ApiError::bus(Peer::Media, e),
            media::Error::NotFound(message) => ApiError::not_found(message),
            media::Error::InvalidSdp(message)
            | media::Error::NoCommonCodec(message)
            | media::Error::Encryption(message) => ApiError::bad_request(message),
            media::Error::Failed(message) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).with_field("media")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_field_before_its_rule() {
        assert_eq!(
            refused_field("calls.max_call_time: must be 0 or 5-7200 (4 given)"),
            Some("calls.max_call_time")
        );
        assert_eq!(refused_field("no colon here"), None);
        assert_eq!(refused_field("two words: x"), None);
    }

    #[test]
    fn a_config_refusal_is_422_with_its_field() {
        let e = ApiError::from(config::Error::Invalid(
            "relays.A.hold: must be 1-600".to_owned(),
        ));
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.field.as_deref(), Some("relays.A.hold"));
    }
}
