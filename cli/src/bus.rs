//! The connection to the system bus and the proxies of the door phone's services.

use doorphone_interfaces::config::Config1Proxy;
use doorphone_interfaces::pager::Pager1Proxy;
use doorphone_interfaces::relay::Relay1Proxy;
use doorphone_interfaces::sip::{CallProxy, Sip1Proxy};
use zbus::Connection;
use zbus::ObjectPath;
use zbus::proxy::CacheProperties;

use crate::failure::Failure;

/// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` when set).
pub async fn connect() -> Result<Connection, Failure> {
    Connection::system().await.map_err(Failure::NoBus)
}

/// The configuration service. A command reads a property at most once, so caching
/// would only cost a subscription.
pub async fn config(conn: &Connection) -> Result<Config1Proxy<'_>, Failure> {
    Ok(Config1Proxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(doorphone_interfaces::config::Error::from)?)
}

/// The relay service, without a property cache for the same reason.
pub async fn relay(conn: &Connection) -> Result<Relay1Proxy<'_>, Failure> {
    Ok(Relay1Proxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(doorphone_interfaces::relay::Error::from)?)
}

/// The multicast pager, without a property cache for the same reason.
pub async fn pager(conn: &Connection) -> Result<Pager1Proxy<'_>, Failure> {
    Ok(Pager1Proxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(doorphone_interfaces::pager::Error::from)?)
}

/// The SIP agent, without a property cache for the same reason.
pub async fn sip(conn: &Connection) -> Result<Sip1Proxy<'_>, Failure> {
    Ok(Sip1Proxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(doorphone_interfaces::sip::Error::from)?)
}

/// One call of the SIP agent, at `path`.
pub async fn call<'a>(
    conn: &'a Connection,
    path: ObjectPath<'a>,
) -> Result<CallProxy<'a>, Failure> {
    Ok(CallProxy::builder(conn)
        .path(path)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(doorphone_interfaces::sip::Error::from)?)
}
