//! The system bus connection every service holds, and the two ways a service's
//! life ends: a stop signal, or the bus gone.
//!
//! A service that lost the bus can serve nobody and would never be asked
//! anything again: it exits with an error, and systemd restarts it.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

/// How long any method call on the bus may wait for its answer: a peer that
/// vanished or hangs fails the call instead of holding its caller forever.
pub const METHOD_TIMEOUT: Duration = Duration::from_secs(25);

/// A connection to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` when set) whose
/// method calls time out after [`METHOD_TIMEOUT`].
pub async fn system() -> zbus::Result<zbus::Connection> {
    zbus::connection::Builder::system()
        .method_timeout(METHOD_TIMEOUT)
        .build()
        .await
}

/// Why a service stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM from systemd, or Ctrl-C.
    Signal,
    /// The bus connection closed (the bus daemon went away or dropped us).
    BusLost,
}

impl Stopped {
    /// The service's outcome: `Ok` for a requested stop, an error (logged by
    /// [`crate::run`], exit code 1) for a lost bus.
    pub fn outcome(self) -> Result<(), Box<dyn std::error::Error>> {
        match self {
            Stopped::Signal => Ok(()),
            Stopped::BusLost => Err("lost the connection to the system bus".into()),
        }
    }
}

/// Returns when the service is asked to stop or its bus connection is gone.
pub async fn until_stopped(conn: &zbus::Connection) -> std::io::Result<Stopped> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let stopped = tokio::select! {
        _ = term.recv() => Stopped::Signal,
        _ = int.recv() => Stopped::Signal,
        () = conn.closed() => Stopped::BusLost,
    };
    match stopped {
        Stopped::Signal => tracing::info!("stopping"),
        Stopped::BusLost => tracing::error!("lost the connection to the system bus: stopping"),
    }
    Ok(stopped)
}

/// A service's object served on one end of a peer-to-peer connection over a
/// socket pair, and the client connection at the other end: an interface is
/// called through its proxy, signals included, without a bus daemon (feature
/// `p2p`, for the services' own tests). Returns `(server, client)`; the object
/// lives as long as the server connection.
#[cfg(feature = "p2p")]
pub async fn peer_to_peer<I>(
    path: &str,
    object: I,
) -> zbus::Result<(zbus::Connection, zbus::Connection)>
where
    I: zbus::object_server::Interface,
{
    let (server, client) = std::os::unix::net::UnixStream::pair()?;
    let server = zbus::connection::Builder::unix_stream(server)
        .server(zbus::Guid::generate())
        .p2p()
        .method_timeout(METHOD_TIMEOUT)
        .serve_at(path, object)
        .build();
    let client = zbus::connection::Builder::unix_stream(client)
        .p2p()
        .method_timeout(METHOD_TIMEOUT)
        .build();
    // Each end's handshake waits for the other's.
    let (server, client) = tokio::join!(server, client);
    Ok((server?, client?))
}
