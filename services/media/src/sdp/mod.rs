//! SDP offer/answer (RFC 3264) for the door phone's calls.
//!
//! Pure negotiation: this module reads the far end's session descriptions, checks them
//! strictly (the GStreamer SDP parser accepts nearly anything), chooses the codecs in the
//! order the configuration's `media` section gives, and writes our own descriptions. It
//! starts no pipeline and knows nothing of D-Bus; the result of a negotiation is a
//! [`Negotiated`] value that says what to send where and what to expect.
//!
//! What the door phone speaks:
//! - audio: PCMU (PT 0), PCMA (PT 8), G.722 (PT 9, RTP clock 8000), opus (`opus/48000/2`,
//!   a dynamic payload type);
//! - video: H.264 with `packetization-mode=1` only;
//! - DTMF: RFC 4733 `telephone-event` on the payload type the peer chose, at the RTP clock
//!   of the audio codec;
//! - RTP (`RTP/AVP`, or `RTP/AVPF` answered as such), RTCP on the next port or where
//!   `a=rtcp` says; no ICE, no `rtcp-mux`;
//! - SRTP (RFC 3711) with keys in the SDP (SDES, RFC 4568, see [`Encryption`]): offered
//!   and accepted as the session's `encryption` asks, on `RTP/SAVP` or on `RTP/AVP` with
//!   `a=crypto` lines.
//!
//! Hold follows RFC 3264 §8.4: the holding side marks its stream `sendonly` (or `inactive`
//! when it was already only receiving) and keeps its real address in `c=`. The old
//! `c=IN IP4 0.0.0.0` hold of a far end is understood as "do not send to me".

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use doorphone_interfaces::config::document::Media;

mod codec;
mod crypto;
#[cfg(test)]
mod crypto_tests;
mod negotiate;
mod parse;
mod render;
#[cfg(test)]
mod tests;

use codec::*;
pub use codec::{Codec, Encoding};
pub use crypto::{Crypto, KEY_LEN, Key, Suite};
use crypto::{Sdes, parse_crypto};
pub use negotiate::Local;
use parse::*;
pub use parse::{Remote, parse};
use render::*;

/// Audio or video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    /// The SDP media name: `audio` or `video`.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }

    fn from_media(media: &str) -> Option<MediaKind> {
        if media.eq_ignore_ascii_case("audio") {
            Some(MediaKind::Audio)
        } else if media.eq_ignore_ascii_case("video") {
            Some(MediaKind::Video)
        } else {
            None
        }
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Direction of a media stream, always seen from the side that writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The same stream seen from the other end: sendonly becomes recvonly and back.
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// Whether this side sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether this side receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The SDP attribute name: `sendrecv`, `sendonly`, `recvonly` or `inactive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction that sends and receives as told.
    pub fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// What both directions allow.
    pub fn intersect(self, other: Direction) -> Direction {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }

    fn from_attribute(key: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| key.eq_ignore_ascii_case(d.as_str()))
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One negotiated m-line.
#[derive(Clone, Debug, PartialEq)]
pub struct Stream {
    pub codec: Codec,
    /// RFC 4733 payload type, audio only, at a clock rate equal to the codec's RTP clock.
    pub telephone_event: Option<u8>,
    /// Where to send RTP. The address is `0.0.0.0` when the peer put the stream on hold
    /// the old way; `direction` then does not send.
    pub remote_rtp: SocketAddr,
    /// Where to send RTCP: `a=rtcp`, or the RTP port + 1.
    pub remote_rtcp: SocketAddr,
    /// OUR direction: whether we send and whether we receive.
    pub direction: Direction,
    /// Our RTP port (RTCP on the next one).
    pub local_port: u16,
    /// SRTP: the suite and both keys; `None` for plain RTP.
    pub crypto: Option<Crypto>,
}

/// The outcome of one offer/answer exchange.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Negotiated {
    pub audio: Option<Stream>,
    pub video: Option<Stream>,
}

/// What this door phone can do for one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalCaps {
    /// Audio codecs in order of preference.
    pub audio: Vec<Encoding>,
    /// Video codecs in order of preference.
    pub video: Vec<Encoding>,
    /// The session is in audio+video mode: video is offered, or accepted when offered.
    pub want_video: bool,
    /// Whether media is encrypted.
    pub encryption: Encryption,
}

/// A session's media encryption (SRTP with SDES keys), as the SIP agent asks for it
/// from the account's or the IP calls' `media_encryption`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encryption {
    /// Plain RTP: an `RTP/SAVP` offer is refused, `a=crypto` lines are ignored.
    #[default]
    Off,
    /// Offers are `RTP/AVP` with `a=crypto` lines; an offer or answer with a usable
    /// `a=crypto` line gets SRTP, one without gets plain RTP.
    Optional,
    /// Offers are `RTP/SAVP`; an offer or answer without a usable `a=crypto` line on
    /// its audio stream is refused ([`SdpError::Encryption`]).
    Mandatory,
}

impl Encryption {
    /// The `encryption` option of `CreateOffer` and `CreateAnswer`: `optional`,
    /// `mandatory`, anything else (or nothing) is off.
    pub fn from_option(value: Option<&str>) -> Encryption {
        match value {
            Some(v) if v.eq_ignore_ascii_case("mandatory") => Encryption::Mandatory,
            Some(v) if v.eq_ignore_ascii_case("optional") => Encryption::Optional,
            _ => Encryption::Off,
        }
    }
}

impl LocalCaps {
    /// The codecs and their order from the configuration's `media` section.
    pub fn from_config(media: &Media, want_video: bool) -> LocalCaps {
        let mut audio = Vec::new();
        for codec in &media.audio_codecs {
            let encoding = Encoding::from(*codec);
            if !audio.contains(&encoding) {
                audio.push(encoding);
            }
        }
        let mut video = Vec::new();
        for codec in &media.video_codecs {
            let encoding = Encoding::from(*codec);
            if !video.contains(&encoding) {
                video.push(encoding);
            }
        }
        LocalCaps {
            audio,
            video,
            want_video,
            encryption: Encryption::Off,
        }
    }

    fn audio(&self) -> Vec<Encoding> {
        self.of_kind(&self.audio, MediaKind::Audio)
    }

    fn video(&self) -> Vec<Encoding> {
        self.of_kind(&self.video, MediaKind::Video)
    }

    fn of_kind(&self, list: &[Encoding], kind: MediaKind) -> Vec<Encoding> {
        let mut out = Vec::new();
        for &e in list {
            if e.kind() == kind && !out.contains(&e) {
                out.push(e);
            }
        }
        out
    }
}

/// Our side's transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTransport {
    /// The address written in `o=` and `c=`.
    pub address: IpAddr,
    /// Our audio RTP port (RTCP on the next one).
    pub audio_port: u16,
    /// Our video RTP port, if a video stream can be carried.
    pub video_port: Option<u16>,
}

/// Why a description was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is not a valid session description.
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// Nothing in common with the other end, e.g. "no common audio codec: offer has G729,
    /// we take PCMU, PCMA".
    #[error("{0}")]
    NoCommonCodec(String),
    /// Valid, but not something this door phone can do (SRTP when encryption is off, an
    /// audio stream disabled with port 0).
    #[error("{0}")]
    Unsupported(String),
    /// The session's encryption refuses it: a plain offer or answer when encryption is
    /// mandatory, SRTP keys that cannot be used, a change between SRTP and plain RTP
    /// within a call.
    #[error("{0}")]
    Encryption(String),
    /// The call order is wrong, e.g. an answer when no offer of ours is waiting.
    #[error("{0}")]
    WrongState(String),
    /// The SDP parser could not be started.
    #[error("the SDP parser is unavailable: {0}")]
    Parser(String),
}

fn malformed(message: impl Into<String>) -> SdpError {
    SdpError::Malformed(message.into())
}
