//! `org.doorphone.Media1`: the media service. It speaks SDP and RTP; its callers
//! carry SDP bodies without reading them.

use std::collections::HashMap;

use zbus::{DBusError, OwnedObjectPath, Variant, proxy};

pub const BUS_NAME: &str = "org.doorphone.Media1";
pub const OBJECT_PATH: &str = "/org/doorphone/Media1";
pub const INTERFACE: &str = "org.doorphone.Media1";
/// Interface of each session object, `/org/doorphone/Media1/session/N`.
pub const SESSION_INTERFACE: &str = "org.doorphone.Media1.Session";

/// Errors `org.doorphone.Media1` replies with.
#[derive(Debug, DBusError)]
#[zbus(prefix = "org.doorphone.Media1.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The SDP could not be read or is not acceptable (bad ports, payload types...).
    InvalidSdp(String),
    /// The offer and this door phone have no codec in common.
    NoCommonCodec(String),
    /// The session's media encryption refuses the description: a plain offer or
    /// answer when SRTP is mandatory, SRTP keys that cannot be used.
    Encryption(String),
    /// No such session or stream.
    NotFound(String),
    /// The request is valid but cannot be carried out now (no free ports, a
    /// pipeline that would not start).
    Failed(String),
}

/// Session states, as the `State` property and `SessionStateChanged` give them.
pub mod state {
    /// Ports bound, pipeline built, waiting for the remote description.
    pub const PREPARED: &str = "prepared";
    /// Media flowing as negotiated.
    pub const ACTIVE: &str = "active";
    /// Our side holds the call (sendonly or inactive).
    pub const HELD: &str = "held";
    /// No RTP from the peer for the RTP timeout.
    pub const TIMEOUT: &str = "timeout";
    /// Stopped; the object goes away.
    pub const STOPPED: &str = "stopped";
    /// The pipeline failed; the session was stopped.
    pub const FAILED: &str = "failed";
}

#[proxy(
    interface = "org.doorphone.Media1",
    default_service = "org.doorphone.Media1",
    default_path = "/org/doorphone/Media1"
)]
pub trait Media1 {
    /// A new session and our SDP offer. Options: `video` (b), `address` (s, our
    /// address for the c= line).
    async fn create_offer(
        &self,
        options: HashMap<&str, Variant<'_>>,
    ) -> Result<(OwnedObjectPath, String), Error>;
    /// A new session answering `offer`. Options as for `CreateOffer`.
    async fn create_answer(
        &self,
        offer: &str,
        options: HashMap<&str, Variant<'_>>,
    ) -> Result<(OwnedObjectPath, String), Error>;
    /// Gives a session the remote description: the answer to our offer (returns an
    /// empty string) or a re-offer (returns our answer).
    async fn set_remote(&self, session: &zbus::ObjectPath<'_>, sdp: &str) -> Result<String, Error>;
    /// Holds the session; returns the re-offer to send.
    async fn hold(&self, session: &zbus::ObjectPath<'_>) -> Result<String, Error>;
    /// Resumes a held session; returns the re-offer to send.
    async fn resume(&self, session: &zbus::ObjectPath<'_>) -> Result<String, Error>;
    /// Stops the session and frees its ports.
    async fn stop(&self, session: &zbus::ObjectPath<'_>) -> Result<(), Error>;
    /// Sends DTMF digits (`0-9`, `*`, `#`, `A-D`) as RFC 4733 events.
    async fn send_dtmf(&self, session: &zbus::ObjectPath<'_>, digits: &str) -> Result<(), Error>;

    /// Plays an RTP stream (a page) arriving at `address`:`port` in `codec`
    /// (`PCMU`, `PCMA`, `G722`). Options: `solo` (b), only this stream is heard.
    async fn play_stream(
        &self,
        address: &str,
        port: u16,
        codec: &str,
        options: HashMap<&str, Variant<'_>>,
    ) -> Result<OwnedObjectPath, Error>;
    /// Stops a stream that `PlayStream` started.
    async fn stop_stream(&self, stream: &zbus::ObjectPath<'_>) -> Result<(), Error>;

    /// The camera's current frame as a JPEG.
    async fn snapshot(&self) -> Result<Vec<u8>, Error>;

    /// One DTMF digit received from the peer.
    #[zbus(signal)]
    fn dtmf_received(&self, session: zbus::ObjectPath<'_>, digit: &str) -> zbus::Result<()>;
    /// A session changed state (see [`state`]); `reason` says why.
    #[zbus(signal)]
    fn session_state_changed(
        &self,
        session: zbus::ObjectPath<'_>,
        state: &str,
        reason: &str,
    ) -> zbus::Result<()>;
}

#[proxy(
    interface = "org.doorphone.Media1.Session",
    default_service = "org.doorphone.Media1"
)]
pub trait Session {
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn audio_codec(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn video_codec(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn local_rtp(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn remote_rtp(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn packets_sent(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn packets_received(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn bytes_sent(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn bytes_received(&self) -> zbus::Result<u64>;
    /// RTP and RTCP packets dropped because they came from another source than
    /// the call's peer: the address and port its SDP gives (`c=`, `m=`, `a=rtcp`,
    /// following re-offers), or with `media.rtp_latching` the source it latched to.
    #[zbus(property)]
    fn packets_rejected(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn jitter_ms(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn packets_lost(&self) -> zbus::Result<i64>;
}
