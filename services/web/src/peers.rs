//! The services the web service asks, by their well-known names: each call
//! reaches whoever owns the name then, so a service that restarts is used
//! again as soon as it is back. Nothing is cached: every answer is the
//! service's own.

use doorphone_interfaces::config::Config1Proxy;
use doorphone_interfaces::media::Media1Proxy;
use doorphone_interfaces::pager::Pager1Proxy;
use doorphone_interfaces::relay::Relay1Proxy;
use doorphone_interfaces::sip::{CALL_PATH_PREFIX, CallProxy, Sip1Proxy};
use zbus::fdo::DBusProxy;
use zbus::proxy::CacheProperties;

use crate::error::{ApiError, Peer};

#[derive(Clone)]
pub struct Peers {
    pub conn: zbus::Connection,
    pub dbus: DBusProxy<'static>,
    pub config: Config1Proxy<'static>,
    pub sip: Sip1Proxy<'static>,
    pub media: Media1Proxy<'static>,
    pub relay: Relay1Proxy<'static>,
    pub pager: Pager1Proxy<'static>,
}

impl Peers {
    pub async fn new(conn: &zbus::Connection) -> zbus::Result<Peers> {
        Ok(Peers {
            conn: conn.clone(),
            dbus: DBusProxy::new(conn).await?,
            config: Config1Proxy::builder(conn)
                .cache_properties(CacheProperties::No)
                .build()
                .await?,
            sip: Sip1Proxy::builder(conn)
                .cache_properties(CacheProperties::No)
                .build()
                .await?,
            media: Media1Proxy::builder(conn)
                .cache_properties(CacheProperties::No)
                .build()
                .await?,
            relay: Relay1Proxy::builder(conn)
                .cache_properties(CacheProperties::No)
                .build()
                .await?,
            pager: Pager1Proxy::builder(conn)
                .cache_properties(CacheProperties::No)
                .build()
                .await?,
        })
    }

    /// Whether `peer` owns its name on the bus now.
    pub async fn is_up(&self, peer: Peer) -> bool {
        match zbus::names::BusName::try_from(peer.bus_name()) {
            Ok(name) => self.dbus.name_has_owner(name).await.unwrap_or(false),
            Err(_) => false,
        }
    }

    /// The call object `id` (the number its path ends in).
    pub async fn call(&self, id: &str) -> Result<CallProxy<'static>, ApiError> {
        if id.is_empty() || id.len() > 10 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::not_found(format!("no call {id:?}")).with_field("id"));
        }
        CallProxy::builder(&self.conn)
            .path(format!("{CALL_PATH_PREFIX}{id}"))
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(|e| ApiError::bus(Peer::Sip, e))
    }
}

/// A call's id: the last element of its object path.
pub fn call_id(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
