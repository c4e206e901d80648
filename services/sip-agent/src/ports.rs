//! The agent's peers on the bus, as small traits: media (SDP and sessions)
//! and the relays (doors). The service implements them with the `Media1` and
//! `Relay1` proxies, each call bounded by a time-out, so no call path waits
//! forever on a peer that vanished; unit tests implement them with fakes.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use doorphone_interfaces::config::document::MediaEncryption;
use doorphone_interfaces::media::{self, Media1Proxy};
use doorphone_interfaces::relay::Relay1Proxy;
use zbus::Variant as Value;

use crate::error::AgentError;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long a bus call to media or the relays may take.
pub const BUS_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What a call asks of its media session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOptions {
    pub video: bool,
    /// The address the session's SDP gives (this door phone's).
    pub address: String,
    pub encryption: MediaEncryption,
}

/// How media refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaError {
    /// Media is not on the bus or did not answer in time.
    Unreachable(String),
    /// The SDP is unacceptable: answered 488 (Not Acceptable Here).
    NotAcceptable(String),
    /// Anything else media refused (no free ports, a pipeline that failed).
    Failed(String),
}

impl std::fmt::Display for MediaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaError::Unreachable(e) => write!(f, "media is not reachable: {e}"),
            MediaError::NotAcceptable(e) | MediaError::Failed(e) => f.write_str(e),
        }
    }
}

impl From<MediaError> for AgentError {
    fn from(e: MediaError) -> AgentError {
        match e {
            MediaError::Unreachable(e) => AgentError::MediaUnreachable(e),
            e => AgentError::Media(e.to_string()),
        }
    }
}

/// A media session: its object path and our SDP.
pub type Session = (String, String);

pub trait MediaPort: Send + Sync {
    fn create_offer(&self, options: MediaOptions) -> BoxFuture<'_, Result<Session, MediaError>>;
    fn create_answer(
        &self,
        offer: String,
        options: MediaOptions,
    ) -> BoxFuture<'_, Result<Session, MediaError>>;
    /// The peer's SDP; our answer when it was a re-offer (empty for an answer).
    fn set_remote(&self, session: String, sdp: String)
    -> BoxFuture<'_, Result<String, MediaError>>;
    /// Our re-offer holding (`true`) or resuming the session.
    fn hold(&self, session: String, hold: bool) -> BoxFuture<'_, Result<String, MediaError>>;
    fn stop(&self, session: String) -> BoxFuture<'_, ()>;
    fn snapshot(&self) -> BoxFuture<'_, Result<Vec<u8>, MediaError>>;
}

pub trait RelayPort: Send + Sync {
    /// Opens `relay` for `source` (one of `Relay1`'s sources).
    fn open(&self, relay: String, source: &'static str) -> BoxFuture<'_, Result<(), String>>;
}

/// The SIP side of an answered call: what the call's task asks of its
/// dialog. The stack's dialogs implement it; unit tests, a fake.
pub trait Leg: Send + Sync {
    /// Ends the answered call (BYE).
    fn bye(&self) -> BoxFuture<'_, Result<(), String>>;
    /// A re-INVITE with `sdp`; the peer's answer, if it gave one.
    fn reinvite(&self, sdp: String) -> BoxFuture<'_, Result<Option<String>, String>>;
    /// The dialog has ended, even if its task has not heard yet.
    fn ended(&self) -> bool;
}

impl Leg for crate::stack::Dialog {
    fn bye(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            crate::stack::Dialog::bye(self)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn reinvite(&self, sdp: String) -> BoxFuture<'_, Result<Option<String>, String>> {
        Box::pin(async move {
            crate::stack::Dialog::reinvite(self, &sdp)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn ended(&self) -> bool {
        crate::stack::Dialog::ended(self)
    }
}

/// Waits at most [`BUS_CALL_TIMEOUT`] for a bus call.
async fn bounded<T>(call: impl Future<Output = Result<T, media::Error>>) -> Result<T, MediaError> {
    match tokio::time::timeout(BUS_CALL_TIMEOUT, call).await {
        Err(_) => Err(MediaError::Unreachable(format!(
            "no answer in {} s",
            BUS_CALL_TIMEOUT.as_secs()
        ))),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(media::Error::ZBus(e))) => Err(MediaError::Unreachable(e.to_string())),
        Ok(Err(
            e @ (media::Error::NoCommonCodec(_)
            | media::Error::InvalidSdp(_)
            | media::Error::Encryption(_)),
        )) => Err(MediaError::NotAcceptable(e.to_string())),
        Ok(Err(e)) => Err(MediaError::Failed(e.to_string())),
    }
}

fn path(session: &str) -> Result<zbus::ObjectPath<'_>, MediaError> {
    zbus::ObjectPath::try_from(session).map_err(|e| MediaError::Failed(e.to_string()))
}

fn options(o: &MediaOptions) -> std::collections::HashMap<&'static str, Value<'static>> {
    let mut map = std::collections::HashMap::from([
        ("video", Value::from(o.video)),
        ("address", Value::from(o.address.clone())),
    ]);
    if o.encryption != MediaEncryption::Off {
        map.insert("encryption", Value::from(o.encryption.name()));
    }
    map
}

impl MediaPort for Media1Proxy<'static> {
    fn create_offer(&self, o: MediaOptions) -> BoxFuture<'_, Result<Session, MediaError>> {
        Box::pin(async move {
            let (p, sdp) = bounded(Media1Proxy::create_offer(self, options(&o))).await?;
            Ok((p.to_string(), sdp))
        })
    }

    fn create_answer(
        &self,
        offer: String,
        o: MediaOptions,
    ) -> BoxFuture<'_, Result<Session, MediaError>> {
        Box::pin(async move {
            let (p, sdp) = bounded(Media1Proxy::create_answer(self, &offer, options(&o))).await?;
            Ok((p.to_string(), sdp))
        })
    }

    fn set_remote(
        &self,
        session: String,
        sdp: String,
    ) -> BoxFuture<'_, Result<String, MediaError>> {
        Box::pin(
            async move { bounded(Media1Proxy::set_remote(self, &path(&session)?, &sdp)).await },
        )
    }

    fn hold(&self, session: String, hold: bool) -> BoxFuture<'_, Result<String, MediaError>> {
        Box::pin(async move {
            let p = path(&session)?;
            if hold {
                bounded(Media1Proxy::hold(self, &p)).await
            } else {
                bounded(Media1Proxy::resume(self, &p)).await
            }
        })
    }

    fn stop(&self, session: String) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Ok(p) = path(&session)
                && let Err(e) = bounded(Media1Proxy::stop(self, &p)).await
            {
                tracing::debug!("media stop {session}: {e}");
            }
        })
    }

    fn snapshot(&self) -> BoxFuture<'_, Result<Vec<u8>, MediaError>> {
        Box::pin(bounded(Media1Proxy::snapshot(self)))
    }
}

impl RelayPort for Relay1Proxy<'static> {
    fn open(&self, relay: String, source: &'static str) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            match tokio::time::timeout(BUS_CALL_TIMEOUT, Relay1Proxy::open(self, &relay, source))
                .await
            {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("the relay service did not answer".into()),
            }
        })
    }
}
