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
//! - plain RTP (`RTP/AVP`, or `RTP/AVPF` answered as such), RTCP on the next port or where
//!   `a=rtcp` says; no SRTP, no ICE, no `rtcp-mux`.
//!
//! Hold follows RFC 3264 §8.4: the holding side marks its stream `sendonly` (or `inactive`
//! when it was already only receiving) and keeps its real address in `c=`. The old
//! `c=IN IP4 0.0.0.0` hold of a far end is understood as "do not send to me".

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use doorphone_interfaces::config::document::{AudioCodec, Media, VideoCodec};
use gstreamer as gst;
use gstreamer_sdp as gst_sdp;

/// Largest SDP body accepted.
const MAX_BODY: usize = 64 * 1024;
/// Longest SDP line accepted.
const MAX_LINE: usize = 4096;
/// Payload types we use in our own offers.
const PT_OPUS: u8 = 96;
const PT_H264: u8 = 97;
const PT_EVENT_8000: u8 = 101;
const PT_EVENT_48000: u8 = 102;
/// RFC 4733 events we send and receive: the digits 0-9, `*`, `#` and A-D.
const EVENTS: &str = "0-15";
/// Constrained Baseline, level 3.1: what the camera's encoder produces.
const H264_PROFILE: &str = "42e01f";
/// Packet duration for every audio codec we offer.
const PTIME_MS: u32 = 20;

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

/// A codec this door phone can send and receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Pcmu,
    Pcma,
    G722,
    Opus,
    H264,
}

const ALL_ENCODINGS: [Encoding; 5] = [
    Encoding::Pcmu,
    Encoding::Pcma,
    Encoding::G722,
    Encoding::Opus,
    Encoding::H264,
];

impl Encoding {
    /// The name as in the configuration and in `a=rtpmap`: `PCMU`, `PCMA`, `G722`, `opus`,
    /// `H264`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Pcmu => "PCMU",
            Encoding::Pcma => "PCMA",
            Encoding::G722 => "G722",
            Encoding::Opus => "opus",
            Encoding::H264 => "H264",
        }
    }

    pub fn kind(self) -> MediaKind {
        match self {
            Encoding::H264 => MediaKind::Video,
            _ => MediaKind::Audio,
        }
    }

    /// The RTP clock rate. G.722 samples at 16 kHz but its RTP clock is 8000 (RFC 3551).
    pub fn clock_rate(self) -> u32 {
        match self {
            Encoding::Pcmu | Encoding::Pcma | Encoding::G722 => 8000,
            Encoding::Opus => 48000,
            Encoding::H264 => 90000,
        }
    }

    /// The channel count written in `a=rtpmap`: 2 for opus (RFC 7587, even for mono),
    /// 1 otherwise.
    pub fn channels(self) -> u32 {
        match self {
            Encoding::Opus => 2,
            _ => 1,
        }
    }

    /// The static payload type of RFC 3551, if there is one.
    pub fn static_pt(self) -> Option<u8> {
        match self {
            Encoding::Pcmu => Some(0),
            Encoding::Pcma => Some(8),
            Encoding::G722 => Some(9),
            Encoding::Opus | Encoding::H264 => None,
        }
    }

    /// The codec an `a=rtpmap` line names, when it is one of ours with the right clock and
    /// channels.
    fn from_rtpmap(name: &str, clock: u32, channels: Option<u32>) -> Option<Encoding> {
        let encoding = ALL_ENCODINGS
            .into_iter()
            .find(|e| name.eq_ignore_ascii_case(e.name()))?;
        if clock != encoding.clock_rate() {
            return None;
        }
        // opus is always `/2`; a missing channel count is tolerated for every codec.
        match channels {
            None => Some(encoding),
            Some(n) if n == encoding.channels() => Some(encoding),
            Some(_) => None,
        }
    }

    /// The payload type we give this codec in our own offers.
    fn offer_pt(self) -> u8 {
        match self {
            Encoding::Opus => PT_OPUS,
            Encoding::H264 => PT_H264,
            other => other.static_pt().unwrap_or(PT_OPUS),
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<AudioCodec> for Encoding {
    fn from(codec: AudioCodec) -> Encoding {
        match codec {
            AudioCodec::Pcmu => Encoding::Pcmu,
            AudioCodec::Pcma => Encoding::Pcma,
            AudioCodec::G722 => Encoding::G722,
            AudioCodec::Opus => Encoding::Opus,
        }
    }
}

impl From<VideoCodec> for Encoding {
    fn from(codec: VideoCodec) -> Encoding {
        match codec {
            VideoCodec::H264 => Encoding::H264,
        }
    }
}

/// A codec on a payload type, as used on one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Codec {
    pub encoding: Encoding,
    /// The payload type both ends use for it (the offerer's number).
    pub pt: u8,
    /// The RTP clock rate.
    pub clock_rate: u32,
    /// As written in `a=rtpmap` (2 for opus).
    pub channels: u32,
    /// The peer's format parameters for this payload type (`a=fmtp`), as it wrote them.
    /// For H.264 they hold `packetization-mode=1` and usually `profile-level-id`.
    pub fmtp: Option<String>,
}

impl Codec {
    fn new(encoding: Encoding, pt: u8, fmtp: Option<String>) -> Codec {
        Codec {
            encoding,
            pt,
            clock_rate: encoding.clock_rate(),
            channels: encoding.channels(),
            fmtp,
        }
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
    /// Valid, but not something this door phone can do (encrypted media, an audio stream
    /// disabled with port 0).
    #[error("{0}")]
    Unsupported(String),
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

// ---------------------------------------------------------------------------------------
// Reading the far end's description
// ---------------------------------------------------------------------------------------

/// A parsed, validated remote description.
#[derive(Clone, Debug)]
pub struct Remote {
    session_id: String,
    version: String,
    media: Vec<RemoteMedia>,
}

impl Remote {
    /// The `o=` session id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The `o=` session version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The number of m-lines.
    pub fn media_count(&self) -> usize {
        self.media.len()
    }

    /// Whether the description carries an enabled video stream.
    pub fn has_video(&self) -> bool {
        self.media
            .iter()
            .any(|m| m.kind() == Some(MediaKind::Video) && m.port != 0)
    }
}

#[derive(Clone, Debug)]
struct RtpMap {
    pt: u8,
    name: String,
    clock: u32,
    channels: Option<u32>,
}

#[derive(Clone, Debug)]
struct RemoteMedia {
    media: String,
    port: u16,
    proto: String,
    /// The format tokens as written.
    formats: Vec<String>,
    /// The payload types, in order, for RTP protocols.
    pts: Vec<u8>,
    rtpmaps: Vec<RtpMap>,
    fmtps: Vec<(u8, String)>,
    /// `c=` of the m-line, else of the session.
    address: Option<IpAddr>,
    /// `a=rtcp`: port and optional address.
    rtcp: Option<(u16, Option<IpAddr>)>,
    /// As written: the m-line's attribute, else the session's, else sendrecv.
    direction: Direction,
}

/// What a payload type of an offer or answer stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Codec(Encoding),
    Event(u32),
    Other,
}

impl RemoteMedia {
    fn kind(&self) -> Option<MediaKind> {
        MediaKind::from_media(&self.media)
    }

    /// Plain RTP, the only transport we speak.
    fn plain_rtp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/AVP") || self.proto.eq_ignore_ascii_case("RTP/AVPF")
    }

    fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|r| r.pt == pt)
    }

    fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, f)| f.as_str())
    }

    /// The direction that matters: a peer holding with `c=0.0.0.0` does not receive.
    fn effective_direction(&self) -> Direction {
        match self.address {
            Some(a) if a.is_unspecified() => Direction::from_flags(self.direction.sends(), false),
            _ => self.direction,
        }
    }

    fn rtp_addr(&self) -> SocketAddr {
        SocketAddr::new(
            self.address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            self.port,
        )
    }

    fn rtcp_addr(&self) -> SocketAddr {
        let rtp = self.rtp_addr();
        match self.rtcp {
            Some((port, address)) => SocketAddr::new(address.unwrap_or(rtp.ip()), port),
            None => SocketAddr::new(rtp.ip(), self.port.saturating_add(1)),
        }
    }

    fn classify(&self, pt: u8) -> Format {
        let dynamic = (96..=127).contains(&pt);
        match self.rtpmap(pt) {
            Some(map) => {
                if map.name.eq_ignore_ascii_case("telephone-event") {
                    return if dynamic {
                        Format::Event(map.clock)
                    } else {
                        Format::Other
                    };
                }
                let Some(encoding) = Encoding::from_rtpmap(&map.name, map.clock, map.channels)
                else {
                    return Format::Other;
                };
                let pt_fits = encoding.static_pt() == Some(pt) || dynamic;
                if !pt_fits {
                    return Format::Other;
                }
                if encoding == Encoding::H264 && !h264_mode_1(self.fmtp(pt)) {
                    return Format::Other;
                }
                Format::Codec(encoding)
            }
            None => match pt {
                0 => Format::Codec(Encoding::Pcmu),
                8 => Format::Codec(Encoding::Pcma),
                9 => Format::Codec(Encoding::G722),
                _ => Format::Other,
            },
        }
    }

    /// The first telephone-event payload type at this clock rate.
    fn event_for(&self, clock: u32) -> Option<u8> {
        self.pts
            .iter()
            .copied()
            .find(|&pt| self.classify(pt) == Format::Event(clock))
    }

    fn has_events(&self) -> bool {
        self.pts
            .iter()
            .any(|&pt| matches!(self.classify(pt), Format::Event(_)))
    }

    /// A name for a payload type in messages: the rtpmap name, the static name, or `PT n`.
    fn label(&self, pt: u8) -> String {
        match (self.rtpmap(pt), self.classify(pt)) {
            (Some(map), Format::Codec(_)) => map.name.clone(),
            (Some(map), _) => {
                let ours = ALL_ENCODINGS
                    .iter()
                    .any(|e| map.name.eq_ignore_ascii_case(e.name()));
                if !ours {
                    map.name.clone()
                } else if map.name.eq_ignore_ascii_case("H264") {
                    format!("{} (not packetization-mode 1)", map.name)
                } else {
                    format!("{}/{} on PT {pt}", map.name, map.clock)
                }
            }
            (None, _) => static_name(pt)
                .map(str::to_string)
                .unwrap_or_else(|| format!("PT {pt}")),
        }
    }

    /// The formats of this m-line for messages, telephone-event left out.
    fn labels(&self) -> String {
        let mut names: Vec<String> = Vec::new();
        for &pt in &self.pts {
            if matches!(self.classify(pt), Format::Event(_)) {
                continue;
            }
            let name = self.label(pt);
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if names.is_empty() {
            "no codec".to_string()
        } else {
            names.join(", ")
        }
    }
}

/// RFC 3551 names of the static payload types.
fn static_name(pt: u8) -> Option<&'static str> {
    Some(match pt {
        0 => "PCMU",
        3 => "GSM",
        4 => "G723",
        5 | 6 | 16 | 17 => "DVI4",
        7 => "LPC",
        8 => "PCMA",
        9 => "G722",
        10 | 11 => "L16",
        12 => "QCELP",
        13 => "CN",
        14 => "MPA",
        15 => "G728",
        18 => "G729",
        25 => "CelB",
        26 => "JPEG",
        28 => "nv",
        31 => "H261",
        32 => "MPV",
        33 => "MP2T",
        34 => "H263",
        _ => return None,
    })
}

/// A `key=value` parameter of an `a=fmtp` value (`;`-separated, keys case-insensitive).
fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// H.264 with `packetization-mode=1` (a missing parameter means mode 0).
fn h264_mode_1(fmtp: Option<&str>) -> bool {
    fmtp.and_then(|f| fmtp_param(f, "packetization-mode")) == Some("1")
}

/// A payload type: a number in 0-127.
fn parse_pt(token: &str) -> Option<u8> {
    if token.is_empty() || token.len() > 3 || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse::<u8>().ok().filter(|pt| *pt <= 127)
}

/// A port: a number in 0-65535.
fn parse_port(token: &str) -> Option<u16> {
    if token.is_empty() || token.len() > 5 || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse::<u16>().ok()
}

/// A line cut to a length fit for an error message.
fn shorten(line: &str) -> String {
    const MAX: usize = 60;
    if line.chars().count() <= MAX {
        line.to_string()
    } else {
        let cut: String = line.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

/// The m-line as read from the text itself.
struct RawMedia {
    media: String,
    port: u16,
    proto: String,
    formats: Vec<String>,
}

/// The line-by-line checks the GStreamer parser does not make: line shape, order of the
/// session lines, m= fields, size.
fn scan(text: &str) -> Result<Vec<RawMedia>, SdpError> {
    if text.trim().is_empty() {
        return Err(malformed("the body is empty"));
    }
    if text.len() > MAX_BODY {
        return Err(malformed(format!(
            "the body is {} bytes, more than {MAX_BODY}",
            text.len()
        )));
    }
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, "v=0")) => {}
        Some((_, line)) => {
            return Err(malformed(format!(
                "the body must start with v=0, not {:?}",
                shorten(line)
            )));
        }
        None => return Err(malformed("the body is empty")),
    }
    let (mut origin, mut name, mut time) = (false, false, false);
    let mut media = Vec::new();
    for (n, line) in lines {
        if line.len() > MAX_LINE {
            return Err(malformed(format!(
                "line {n} is longer than {MAX_LINE} characters"
            )));
        }
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(malformed(format!("line {n} holds control characters")));
        }
        let bytes = line.as_bytes();
        if bytes.len() < 2 || !bytes[0].is_ascii_lowercase() || bytes[1] != b'=' {
            return Err(malformed(format!(
                "line {n} is not an SDP line: {:?}",
                shorten(line)
            )));
        }
        let value = &line[2..];
        let in_media = !media.is_empty();
        match bytes[0] {
            b'v' => return Err(malformed(format!("line {n}: a second v= line"))),
            b'o' => {
                if origin || in_media {
                    return Err(malformed(format!("line {n}: misplaced o= line")));
                }
                let fields: Vec<&str> = value.split_ascii_whitespace().collect();
                if fields.len() != 6 {
                    return Err(malformed(format!(
                        "line {n}: o= needs 6 fields, not {:?}",
                        shorten(line)
                    )));
                }
                origin = true;
            }
            b's' => {
                if name || in_media {
                    return Err(malformed(format!("line {n}: misplaced s= line")));
                }
                name = true;
            }
            b'c' if value.split_ascii_whitespace().count() != 3 => {
                return Err(malformed(format!(
                    "line {n}: c= needs a network type, an address type and an address, not {:?}",
                    shorten(line)
                )));
            }
            b't' => {
                if in_media {
                    return Err(malformed(format!("line {n}: t= after the first m= line")));
                }
                time = true;
            }
            b'm' => {
                let missing = [(origin, "o="), (name, "s="), (time, "t=")]
                    .into_iter()
                    .filter(|(seen, _)| !seen)
                    .map(|(_, l)| l)
                    .collect::<Vec<_>>();
                if !missing.is_empty() {
                    return Err(malformed(format!(
                        "line {n}: m= line before the session's {} line",
                        missing.join(", ")
                    )));
                }
                media.push(scan_media(n, line)?);
            }
            _ => {}
        }
    }
    for (seen, what) in [(origin, "o="), (name, "s="), (time, "t=")] {
        if !seen {
            return Err(malformed(format!(
                "no {what} line: the body is cut short or incomplete"
            )));
        }
    }
    if media.is_empty() {
        return Err(malformed(
            "no m= line: the body is cut short or describes no media",
        ));
    }
    Ok(media)
}

fn scan_media(n: usize, line: &str) -> Result<RawMedia, SdpError> {
    let fields: Vec<&str> = line[2..].split_ascii_whitespace().collect();
    if fields.len() < 4 {
        return Err(malformed(format!(
            "line {n}: {:?} is incomplete (media, port, protocol and formats needed)",
            shorten(line)
        )));
    }
    let (port_text, count) = match fields[1].split_once('/') {
        Some((p, c)) => (p, Some(c)),
        None => (fields[1], None),
    };
    let port = parse_port(port_text).ok_or_else(|| {
        malformed(format!(
            "line {n}: port {} is not in 1-65535 (or 0 for a disabled stream)",
            shorten(fields[1])
        ))
    })?;
    if let Some(count) = count
        && count != "1"
    {
        return Err(malformed(format!(
            "line {n}: port ranges ({}) are not supported",
            shorten(fields[1])
        )));
    }
    let proto = fields[2];
    let formats: Vec<String> = fields[3..].iter().map(|f| f.to_string()).collect();
    if proto.to_ascii_uppercase().contains("RTP/") {
        for f in &formats {
            if parse_pt(f).is_none() {
                return Err(malformed(format!(
                    "line {n}: payload type {} is not a number in 0-127",
                    shorten(f)
                )));
            }
        }
    }
    Ok(RawMedia {
        media: fields[0].to_string(),
        port,
        proto: proto.to_string(),
        formats,
    })
}

/// The address of a `c=` line; `None` when there is no such line.
fn connection_address(
    connection: Option<&gst_sdp::SDPConnection>,
    place: &str,
) -> Result<Option<IpAddr>, SdpError> {
    let Some(connection) = connection else {
        return Ok(None);
    };
    let nettype = connection.nettype().unwrap_or("");
    let addrtype = connection.addrtype().unwrap_or("");
    let address = connection.address().unwrap_or("");
    if nettype.is_empty() && addrtype.is_empty() && address.is_empty() {
        return Ok(None);
    }
    let written = shorten(&format!("c={nettype} {addrtype} {address}"));
    if nettype != "IN" {
        return Err(malformed(format!(
            "{place}: {written}: the network type must be IN"
        )));
    }
    let address = address.split('/').next().unwrap_or("");
    let parsed = match addrtype {
        "IP4" => address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
        "IP6" => address.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        _ => {
            return Err(malformed(format!(
                "{place}: {written}: the address type must be IP4 or IP6"
            )));
        }
    };
    match parsed {
        Some(a) => Ok(Some(a)),
        None => Err(malformed(format!(
            "{place}: {written}: not an {addrtype} address"
        ))),
    }
}

/// `a=rtpmap:<pt> <name>/<clock>[/<channels>]`.
fn parse_rtpmap(value: &str, place: &str) -> Result<RtpMap, SdpError> {
    let bad = |why: &str| malformed(format!("{place}: a=rtpmap:{}: {why}", shorten(value)));
    let (pt, rest) = value
        .trim()
        .split_once(|c: char| c.is_ascii_whitespace())
        .ok_or_else(|| bad("no encoding"))?;
    let pt = parse_pt(pt).ok_or_else(|| bad("the payload type is not a number in 0-127"))?;
    let mut parts = rest.trim().split('/');
    let name = parts.next().unwrap_or("").trim();
    if name.is_empty() {
        return Err(bad("no encoding name"));
    }
    let clock = match parts.next().map(str::trim) {
        None | Some("") => return Err(bad("no clock rate")),
        Some(c) => c
            .parse::<u32>()
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| bad("the clock rate is not a number"))?,
    };
    let channels = match parts.next() {
        None => None,
        Some(c) => Some(
            c.trim()
                .parse::<u32>()
                .map_err(|_| bad("the channel count is not a number"))?,
        ),
    };
    Ok(RtpMap {
        pt,
        name: name.to_string(),
        clock,
        channels,
    })
}

/// `a=rtcp:<port> [IN IP4 <address>]` (RFC 3605).
fn parse_rtcp(value: &str, place: &str) -> Result<(u16, Option<IpAddr>), SdpError> {
    let bad = || malformed(format!("{place}: a=rtcp:{} is not valid", shorten(value)));
    let fields: Vec<&str> = value.split_ascii_whitespace().collect();
    let port = fields
        .first()
        .and_then(|p| parse_port(p))
        .filter(|p| *p != 0)
        .ok_or_else(bad)?;
    let address = match fields.as_slice() {
        [_] => None,
        [_, "IN", "IP4", a] => Some(IpAddr::V4(a.parse().map_err(|_| bad())?)),
        [_, "IN", "IP6", a] => Some(IpAddr::V6(a.parse().map_err(|_| bad())?)),
        _ => return Err(bad()),
    };
    Ok((port, address))
}

fn direction_of<'a>(attributes: impl Iterator<Item = &'a str>) -> Option<Direction> {
    attributes.into_iter().find_map(Direction::from_attribute)
}

/// Parse and check a remote description (an offer or an answer).
///
/// Refused: anything that is not SDP, bodies cut short (no o=/s=/t=/m= line, an incomplete
/// m= line), ports outside 0-65535, payload types outside 0-127, a stream without a
/// `c=` line, addresses that are not IPv4 or IPv6, and descriptions without an audio
/// stream. A port of 0 (a disabled stream) is accepted.
pub fn parse(text: &str) -> Result<Remote, SdpError> {
    let raw = scan(text)?;
    gst::init().map_err(|e| SdpError::Parser(e.to_string()))?;
    // NUL-terminated: older parsers read up to the terminator, not the given size.
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    let message = gst_sdp::SDPMessage::parse_buffer(&bytes)
        .map_err(|_| malformed("the body is not a session description"))?;
    if message.medias_len() as usize != raw.len() {
        return Err(malformed("unreadable m= lines"));
    }
    let origin = message.origin().ok_or_else(|| malformed("no o= line"))?;
    let session_id = origin.sess_id().unwrap_or("").to_string();
    let version = origin.sess_version().unwrap_or("").to_string();
    let session_address = connection_address(message.connection(), "session")?;
    let session_direction = direction_of(message.attributes().map(|a| a.key()));

    let mut media = Vec::with_capacity(raw.len());
    for (index, (gm, rm)) in message.medias().zip(raw).enumerate() {
        let place = format!("m={} (m-line {})", rm.media, index + 1);
        let mut address = None;
        for connection in gm.connections() {
            let a = connection_address(Some(connection), &place)?;
            if address.is_none() {
                address = a;
            }
        }
        let address = address.or(session_address);
        let rtp = rm.proto.to_ascii_uppercase().contains("RTP/");
        let mut rtpmaps: Vec<RtpMap> = Vec::new();
        let mut fmtps: Vec<(u8, String)> = Vec::new();
        let mut rtcp = None;
        for attribute in gm.attributes() {
            let key = attribute.key();
            let value = attribute.value().unwrap_or("");
            if rtp && key.eq_ignore_ascii_case("rtpmap") {
                let map = parse_rtpmap(value, &place)?;
                if !rtpmaps.iter().any(|r| r.pt == map.pt) {
                    rtpmaps.push(map);
                }
            } else if rtp && key.eq_ignore_ascii_case("fmtp") {
                let value = value.trim();
                let (pt, params) = value
                    .split_once(|c: char| c.is_ascii_whitespace())
                    .unwrap_or((value, ""));
                if pt.bytes().all(|b| b.is_ascii_digit()) {
                    let pt = parse_pt(pt).ok_or_else(|| {
                        malformed(format!(
                            "{place}: a=fmtp:{}: the payload type is not a number in 0-127",
                            shorten(value)
                        ))
                    })?;
                    if !fmtps.iter().any(|(p, _)| *p == pt) {
                        fmtps.push((pt, params.trim().to_string()));
                    }
                }
            } else if key.eq_ignore_ascii_case("rtcp") && rm.port != 0 && rtcp.is_none() {
                rtcp = Some(parse_rtcp(value, &place)?);
            }
        }
        if rm.port != 0 && address.is_none() {
            return Err(malformed(format!("{place}: no c= line")));
        }
        if rtp && rm.port == u16::MAX && rtcp.is_none() {
            return Err(malformed(format!(
                "{place}: port 65535 leaves no port for RTCP"
            )));
        }
        let direction = direction_of(gm.attributes().map(|a| a.key()))
            .or(session_direction)
            .unwrap_or(Direction::SendRecv);
        let mut pts = Vec::new();
        if rtp {
            for f in &rm.formats {
                if let Some(pt) = parse_pt(f)
                    && !pts.contains(&pt)
                {
                    pts.push(pt);
                }
            }
        }
        media.push(RemoteMedia {
            media: rm.media,
            port: rm.port,
            proto: rm.proto,
            formats: rm.formats,
            pts,
            rtpmaps,
            fmtps,
            address,
            rtcp,
            direction,
        });
    }
    if !media.iter().any(|m| m.kind() == Some(MediaKind::Audio)) {
        return Err(malformed("no audio stream (m=audio)"));
    }
    Ok(Remote {
        session_id,
        version,
        media,
    })
}

// ---------------------------------------------------------------------------------------
// Our side
// ---------------------------------------------------------------------------------------

/// One m-line of our description.
#[derive(Clone, Debug, PartialEq)]
struct Line {
    media: String,
    proto: String,
    /// 0: the stream is rejected or disabled.
    port: u16,
    /// The format written on a disabled m-line.
    off_format: String,
    /// The codecs listed, with our format parameters.
    codecs: Vec<Codec>,
    /// telephone-event payload types and their clock rates.
    events: Vec<(u8, u32)>,
    direction: Direction,
}

impl Line {
    fn disabled(media: &str, proto: &str, off_format: &str) -> Line {
        Line {
            media: media.to_string(),
            proto: proto.to_string(),
            port: 0,
            off_format: off_format.to_string(),
            codecs: Vec::new(),
            events: Vec::new(),
            direction: Direction::Inactive,
        }
    }

    fn kind(&self) -> Option<MediaKind> {
        MediaKind::from_media(&self.media)
    }

    fn disable(&mut self) {
        if let Some(c) = self.codecs.first() {
            self.off_format = c.pt.to_string();
        }
        self.port = 0;
        self.codecs.clear();
        self.events.clear();
    }
}

/// The codec and telephone-event agreed on one m-line, as we write them.
#[derive(Clone, Debug, PartialEq)]
struct Agreed {
    codec: Codec,
    event: Option<(u8, u32)>,
}

/// The result of answering one offer.
struct Outcome {
    lines: Vec<Line>,
    agreed: Vec<Option<Agreed>>,
    remote_direction: Vec<Option<Direction>>,
    negotiated: Negotiated,
}

/// State of our side of one session across offers and answers: the session id, the
/// version (incremented whenever our description changes), the last description we
/// sent, and the codecs agreed.
#[derive(Clone, Debug)]
pub struct Local {
    session_id: u64,
    version: u64,
    caps: LocalCaps,
    transport: LocalTransport,
    /// The session's m-lines.
    lines: Vec<Line>,
    /// Per m-line, what the last completed exchange agreed.
    agreed: Vec<Option<Agreed>>,
    /// Per m-line, the far end's direction in the last completed exchange.
    remote_direction: Vec<Option<Direction>>,
    negotiated: Negotiated,
    /// Our offer that waits for its answer.
    pending: Option<Vec<Line>>,
    /// The m-lines of the last description sent, and its text.
    sent: Vec<Line>,
    text: String,
}

impl Local {
    /// Answer a remote offer that opens a session (first INVITE).
    ///
    /// The answer has the offer's m-lines in the same order; a stream we do not take gets
    /// port 0. Audio takes the first codec of our preference order that the offer carries
    /// (among those for which the offer also has a telephone-event at the same clock rate,
    /// when it has telephone-event at all), on the offer's payload type. Video is taken
    /// only in audio+video mode with a video port. An offer whose audio has no codec in
    /// common is refused with [`SdpError::NoCommonCodec`].
    pub fn answer(
        caps: &LocalCaps,
        transport: &LocalTransport,
        offer: &Remote,
    ) -> Result<(Local, Negotiated, String), SdpError> {
        let outcome = answer_offer(caps, transport, offer, false, &[])?;
        let mut local = Local::new(caps, transport);
        let negotiated = local.settle(outcome);
        let text = local.describe(local.lines.clone());
        Ok((local, negotiated, text))
    }

    /// Make an offer for an outgoing call: every configured audio codec in preference
    /// order, a telephone-event for each of their clock rates, and H.264 video in
    /// audio+video mode when a video port is given.
    ///
    /// With no audio codec in `caps`, PCMU is offered.
    pub fn offer(caps: &LocalCaps, transport: &LocalTransport) -> (Local, String) {
        let mut audio = caps.audio();
        if audio.is_empty() {
            audio.push(Encoding::Pcmu);
        }
        let codecs: Vec<Codec> = audio
            .iter()
            .map(|&e| Codec::new(e, e.offer_pt(), offer_fmtp(e)))
            .collect();
        let mut events: Vec<(u8, u32)> = Vec::new();
        for codec in &codecs {
            if !events.iter().any(|(_, clock)| *clock == codec.clock_rate) {
                events.push((event_pt(codec.clock_rate), codec.clock_rate));
            }
        }
        let mut lines = vec![Line {
            media: MediaKind::Audio.as_str().to_string(),
            proto: "RTP/AVP".to_string(),
            port: transport.audio_port,
            off_format: codecs[0].pt.to_string(),
            codecs,
            events,
            direction: Direction::SendRecv,
        }];
        let video = caps.video();
        if caps.want_video
            && let Some(port) = transport.video_port
            && !video.is_empty()
        {
            let codecs: Vec<Codec> = video
                .iter()
                .map(|&e| Codec::new(e, e.offer_pt(), offer_fmtp(e)))
                .collect();
            lines.push(Line {
                media: MediaKind::Video.as_str().to_string(),
                proto: "RTP/AVP".to_string(),
                port,
                off_format: codecs[0].pt.to_string(),
                codecs,
                events: Vec::new(),
                direction: Direction::SendRecv,
            });
        }
        let mut local = Local::new(caps, transport);
        local.lines = lines.clone();
        local.agreed = vec![None; lines.len()];
        local.remote_direction = vec![None; lines.len()];
        local.pending = Some(lines.clone());
        let text = local.describe(lines);
        (local, text)
    }

    /// Take the remote answer to our offer (from [`Local::offer`] or [`Local::reoffer`]).
    ///
    /// The answer must have our m-lines in our order; of each stream we use the first
    /// codec of the answer that we offered, on the answer's payload type. An answer that
    /// refuses the audio stream or has no audio codec we offered is refused with
    /// [`SdpError::NoCommonCodec`]; the state is then unchanged.
    pub fn accept_answer(&mut self, answer: &Remote) -> Result<Negotiated, SdpError> {
        let Some(offer) = self.pending.clone() else {
            return Err(SdpError::WrongState(
                "no offer of ours is waiting for an answer".to_string(),
            ));
        };
        if answer.media.len() != offer.len() {
            return Err(malformed(format!(
                "the answer has {} m-lines, our offer had {}",
                answer.media.len(),
                offer.len()
            )));
        }
        let mut lines = offer.clone();
        let mut agreed = vec![None; offer.len()];
        let mut remote_direction = vec![None; offer.len()];
        let mut negotiated = Negotiated::default();
        for (i, (ours, theirs)) in offer.iter().zip(&answer.media).enumerate() {
            if !theirs.media.eq_ignore_ascii_case(&ours.media) {
                return Err(malformed(format!(
                    "m-line {}: the answer has m={} where our offer had m={}",
                    i + 1,
                    theirs.media,
                    ours.media
                )));
            }
            let Some(kind) = ours.kind() else {
                continue;
            };
            if ours.port == 0 {
                continue;
            }
            let slot = match kind {
                MediaKind::Audio => &mut negotiated.audio,
                MediaKind::Video => &mut negotiated.video,
            };
            if theirs.port == 0 || slot.is_some() {
                lines[i].disable();
                continue;
            }
            let found = theirs.pts.iter().find_map(|&pt| match theirs.classify(pt) {
                Format::Codec(e) => ours
                    .codecs
                    .iter()
                    .find(|c| c.encoding == e)
                    .map(|c| (pt, c.clone())),
                _ => None,
            });
            let Some((pt, our_codec)) = found else {
                if kind == MediaKind::Audio {
                    return Err(SdpError::NoCommonCodec(format!(
                        "no common audio codec: answer has {}, we offered {}",
                        theirs.labels(),
                        names(ours.codecs.iter().map(|c| c.encoding))
                    )));
                }
                lines[i].disable();
                continue;
            };
            let clock = our_codec.clock_rate;
            let event = match kind {
                MediaKind::Audio => theirs.event_for(clock),
                MediaKind::Video => None,
            };
            let remote = theirs.effective_direction();
            let direction = remote.reversed().intersect(ours.direction);
            *slot = Some(Stream {
                codec: Codec::new(our_codec.encoding, pt, theirs.fmtp(pt).map(str::to_string)),
                telephone_event: event,
                remote_rtp: theirs.rtp_addr(),
                remote_rtcp: theirs.rtcp_addr(),
                direction,
                local_port: ours.port,
            });
            agreed[i] = Some(Agreed {
                codec: Codec { pt, ..our_codec },
                event: event.map(|pt| (pt, clock)),
            });
            remote_direction[i] = Some(remote);
        }
        if negotiated.audio.is_none() {
            return Err(SdpError::NoCommonCodec(
                "the answer refuses the audio stream (port 0)".to_string(),
            ));
        }
        self.lines = lines;
        self.agreed = agreed;
        self.remote_direction = remote_direction;
        self.negotiated = negotiated.clone();
        self.pending = None;
        Ok(negotiated)
    }

    /// Answer a re-offer within this session (the far end holds, resumes, or refreshes).
    ///
    /// The codecs agreed before are kept when the re-offer still carries them. `hold`: we
    /// are holding the call, so our direction is at most sendonly. The version goes up
    /// when the answer differs from our last description.
    pub fn reanswer(
        &mut self,
        offer: &Remote,
        hold: bool,
    ) -> Result<(Negotiated, String), SdpError> {
        if self.pending.is_some() {
            return Err(SdpError::WrongState(
                "an offer of ours is waiting for its answer (glare)".to_string(),
            ));
        }
        if offer.media.len() < self.lines.len() {
            return Err(malformed(format!(
                "the re-offer has {} m-lines, the session has {}",
                offer.media.len(),
                self.lines.len()
            )));
        }
        let outcome = answer_offer(&self.caps, &self.transport, offer, hold, &self.agreed)?;
        let negotiated = self.settle(outcome);
        let text = self.describe(self.lines.clone());
        Ok((negotiated, text))
    }

    /// A re-offer of our own with a new direction, keeping the agreed codecs: hold is
    /// sendonly, or inactive when the far end was already only sending (it holds us);
    /// resume is sendrecv. The answer goes to [`Local::accept_answer`].
    pub fn reoffer(&mut self, hold: bool) -> String {
        let lines: Vec<Line> = self
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| {
                let mut line = line.clone();
                if line.port == 0 {
                    return line;
                }
                if let Some(Some(agreed)) = self.agreed.get(i) {
                    line.codecs = vec![agreed.codec.clone()];
                    line.events = agreed.event.into_iter().collect();
                }
                line.direction = if !hold {
                    Direction::SendRecv
                } else {
                    match self.remote_direction.get(i).copied().flatten() {
                        Some(remote) if !remote.receives() => Direction::Inactive,
                        _ => Direction::SendOnly,
                    }
                };
                line
            })
            .collect();
        self.pending = Some(lines.clone());
        self.describe(lines)
    }

    /// Forget our offer that waits for an answer (the far end refused it); the session
    /// goes on as agreed before.
    pub fn cancel_offer(&mut self) {
        self.pending = None;
    }

    /// Whether an offer of ours waits for its answer.
    pub fn awaiting_answer(&self) -> bool {
        self.pending.is_some()
    }

    /// The last description we sent.
    pub fn sdp(&self) -> &str {
        &self.text
    }

    /// What the last completed exchange agreed.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// The `o=` session id.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The `o=` version of the last description we sent.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn new(caps: &LocalCaps, transport: &LocalTransport) -> Local {
        Local {
            session_id: new_session_id(),
            version: 1,
            caps: caps.clone(),
            transport: *transport,
            lines: Vec::new(),
            agreed: Vec::new(),
            remote_direction: Vec::new(),
            negotiated: Negotiated::default(),
            pending: None,
            sent: Vec::new(),
            text: String::new(),
        }
    }

    fn settle(&mut self, outcome: Outcome) -> Negotiated {
        self.lines = outcome.lines;
        self.agreed = outcome.agreed;
        self.remote_direction = outcome.remote_direction;
        self.negotiated = outcome.negotiated.clone();
        outcome.negotiated
    }

    /// The text of a new description; the version goes up when it differs from the last
    /// one sent (RFC 3264 §8).
    fn describe(&mut self, lines: Vec<Line>) -> String {
        if !self.text.is_empty() {
            if lines == self.sent {
                return self.text.clone();
            }
            self.version += 1;
        }
        self.text = render(
            self.session_id,
            self.version,
            self.transport.address,
            &lines,
        );
        self.sent = lines;
        self.text.clone()
    }
}

/// Answer an offer: one answer m-line per offered m-line.
fn answer_offer(
    caps: &LocalCaps,
    transport: &LocalTransport,
    offer: &Remote,
    hold: bool,
    keep: &[Option<Agreed>],
) -> Result<Outcome, SdpError> {
    let audio_prefs = caps.audio();
    let video_prefs = caps.video();
    let limit = if hold {
        Direction::SendOnly
    } else {
        Direction::SendRecv
    };
    let count = offer.media.len();
    let mut outcome = Outcome {
        lines: Vec::with_capacity(count),
        agreed: vec![None; count],
        remote_direction: vec![None; count],
        negotiated: Negotiated::default(),
    };
    let mut audio_problem: Option<SdpError> = None;
    for (i, m) in offer.media.iter().enumerate() {
        let off_format = m.formats.first().map(String::as_str).unwrap_or("0");
        let kept = keep
            .get(i)
            .and_then(Option::as_ref)
            .map(|a| a.codec.encoding);
        let taken: Option<(MediaKind, u16, &[Encoding])> = match m.kind() {
            Some(MediaKind::Audio) if outcome.negotiated.audio.is_none() => {
                if m.port == 0 {
                    audio_problem.get_or_insert_with(|| {
                        SdpError::Unsupported(
                            "the offer disables its audio stream (port 0)".to_string(),
                        )
                    });
                    None
                } else if !m.plain_rtp() {
                    audio_problem.get_or_insert_with(|| {
                        SdpError::Unsupported(format!(
                            "the offer's audio stream uses {}; this door phone speaks plain RTP/AVP",
                            m.proto
                        ))
                    });
                    None
                } else {
                    Some((
                        MediaKind::Audio,
                        transport.audio_port,
                        audio_prefs.as_slice(),
                    ))
                }
            }
            Some(MediaKind::Video)
                if outcome.negotiated.video.is_none()
                    && caps.want_video
                    && m.port != 0
                    && m.plain_rtp() =>
            {
                transport
                    .video_port
                    .map(|port| (MediaKind::Video, port, video_prefs.as_slice()))
            }
            _ => None,
        };
        let Some((kind, port, prefs)) = taken else {
            outcome
                .lines
                .push(Line::disabled(&m.media, &m.proto, off_format));
            continue;
        };
        let Some((pt, encoding, event)) = choose(prefs, kind, m, kept) else {
            if kind == MediaKind::Audio {
                audio_problem.get_or_insert_with(|| {
                    SdpError::NoCommonCodec(format!(
                        "no common audio codec: offer has {}, we take {}",
                        m.labels(),
                        names(prefs.iter().copied())
                    ))
                });
            }
            outcome
                .lines
                .push(Line::disabled(&m.media, &m.proto, off_format));
            continue;
        };
        let remote = m.effective_direction();
        let direction = remote.reversed().intersect(limit);
        let their_fmtp = m.fmtp(pt).map(str::to_string);
        let ours = Codec::new(encoding, pt, answer_fmtp(encoding, their_fmtp.as_deref()));
        let events: Vec<(u8, u32)> = event.map(|e| (e, ours.clock_rate)).into_iter().collect();
        outcome.lines.push(Line {
            media: m.media.clone(),
            proto: m.proto.clone(),
            port,
            off_format: pt.to_string(),
            codecs: vec![ours.clone()],
            events: events.clone(),
            direction,
        });
        let stream = Stream {
            codec: Codec::new(encoding, pt, their_fmtp),
            telephone_event: event,
            remote_rtp: m.rtp_addr(),
            remote_rtcp: m.rtcp_addr(),
            direction,
            local_port: port,
        };
        match kind {
            MediaKind::Audio => outcome.negotiated.audio = Some(stream),
            MediaKind::Video => outcome.negotiated.video = Some(stream),
        }
        outcome.agreed[i] = Some(Agreed {
            codec: ours,
            event: events.first().copied(),
        });
        outcome.remote_direction[i] = Some(remote);
    }
    if outcome.negotiated.audio.is_none() {
        return Err(audio_problem.unwrap_or_else(|| malformed("no audio stream (m=audio)")));
    }
    Ok(outcome)
}

/// The codec to take from an offered m-line: the one agreed before if it is still
/// offered, else the first of our preference order that is offered, preferring those
/// that have a telephone-event at their clock rate when the offer has telephone-event.
/// Returns the offer's payload type, the codec and the telephone-event payload type.
fn choose(
    prefs: &[Encoding],
    kind: MediaKind,
    m: &RemoteMedia,
    keep: Option<Encoding>,
) -> Option<(u8, Encoding, Option<u8>)> {
    let offered: Vec<(u8, Encoding)> = m
        .pts
        .iter()
        .filter_map(|&pt| match m.classify(pt) {
            Format::Codec(e) if e.kind() == kind => Some((pt, e)),
            _ => None,
        })
        .collect();
    let pt_of = |e: Encoding| offered.iter().find(|(_, x)| *x == e).map(|(pt, _)| *pt);
    let event = |e: Encoding| match kind {
        MediaKind::Audio => m.event_for(e.clock_rate()),
        MediaKind::Video => None,
    };
    if let Some(k) = keep
        && prefs.contains(&k)
        && let Some(pt) = pt_of(k)
    {
        return Some((pt, k, event(k)));
    }
    let candidates: Vec<(u8, Encoding)> = prefs
        .iter()
        .filter_map(|&e| pt_of(e).map(|pt| (pt, e)))
        .collect();
    let with_event = if kind == MediaKind::Audio && m.has_events() {
        candidates.iter().find(|(_, e)| event(*e).is_some())
    } else {
        None
    };
    with_event
        .or(candidates.first())
        .map(|&(pt, e)| (pt, e, event(e)))
}

/// Our format parameters in an offer.
fn offer_fmtp(encoding: Encoding) -> Option<String> {
    match encoding {
        Encoding::H264 => Some(format!(
            "profile-level-id={H264_PROFILE};packetization-mode=1"
        )),
        _ => None,
    }
}

/// Our format parameters in an answer: for H.264 the offer's profile-level-id and
/// packetization-mode 1.
fn answer_fmtp(encoding: Encoding, theirs: Option<&str>) -> Option<String> {
    match encoding {
        Encoding::H264 => Some(
            match theirs.and_then(|f| fmtp_param(f, "profile-level-id")) {
                Some(profile) => format!("profile-level-id={profile};packetization-mode=1"),
                None => "packetization-mode=1".to_string(),
            },
        ),
        _ => None,
    }
}

/// The telephone-event payload type we offer at a clock rate (our audio codecs run at
/// 8000 or 48000).
fn event_pt(clock: u32) -> u8 {
    if clock == 48000 {
        PT_EVENT_48000
    } else {
        PT_EVENT_8000
    }
}

fn names(encodings: impl Iterator<Item = Encoding>) -> String {
    let list: Vec<&str> = encodings.map(Encoding::name).collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

/// A session id: a number below 2^31, as some stacks read `o=` fields as 32-bit.
fn new_session_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x % 0x7FFF_FFFE) + 1
}

/// Write a description.
fn render(session_id: u64, version: u64, address: IpAddr, lines: &[Line]) -> String {
    let family = if address.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = String::with_capacity(512);
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=- {session_id} {version} IN {family} {address}\r\ns=-\r\nc=IN {family} {address}\r\nt=0 0\r\n"
    );
    for line in lines {
        if line.port == 0 {
            let _ = write!(
                s,
                "m={} 0 {} {}\r\n",
                line.media, line.proto, line.off_format
            );
            continue;
        }
        let _ = write!(s, "m={} {} {}", line.media, line.port, line.proto);
        for codec in &line.codecs {
            let _ = write!(s, " {}", codec.pt);
        }
        for (pt, _) in &line.events {
            let _ = write!(s, " {pt}");
        }
        s.push_str("\r\n");
        for codec in &line.codecs {
            let _ = write!(
                s,
                "a=rtpmap:{} {}/{}",
                codec.pt,
                codec.encoding.name(),
                codec.clock_rate
            );
            if codec.channels > 1 {
                let _ = write!(s, "/{}", codec.channels);
            }
            s.push_str("\r\n");
            if let Some(fmtp) = &codec.fmtp {
                let _ = write!(s, "a=fmtp:{} {fmtp}\r\n", codec.pt);
            }
        }
        for (pt, clock) in &line.events {
            let _ = write!(
                s,
                "a=rtpmap:{pt} telephone-event/{clock}\r\na=fmtp:{pt} {EVENTS}\r\n"
            );
        }
        if line.kind() == Some(MediaKind::Audio) {
            let _ = write!(s, "a=ptime:{PTIME_MS}\r\n");
        }
        let _ = write!(s, "a={}\r\n", line.direction.as_str());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(lines: &[&str]) -> String {
        let mut s = lines.join("\r\n");
        s.push_str("\r\n");
        s
    }

    fn minimal(media: &[&str]) -> String {
        let mut lines = vec![
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
        ];
        lines.extend_from_slice(media);
        body(&lines)
    }

    fn caps() -> LocalCaps {
        LocalCaps::from_config(&Media::default(), false)
    }

    fn transport() -> LocalTransport {
        LocalTransport {
            address: "192.0.2.10".parse().unwrap(),
            audio_port: 10000,
            video_port: Some(10002),
        }
    }

    #[test]
    fn directions() {
        use Direction::*;
        assert_eq!(SendOnly.reversed(), RecvOnly);
        assert_eq!(RecvOnly.reversed(), SendOnly);
        assert_eq!(SendRecv.reversed(), SendRecv);
        assert_eq!(Inactive.reversed(), Inactive);
        assert!(SendRecv.sends() && SendRecv.receives());
        assert!(SendOnly.sends() && !SendOnly.receives());
        assert!(!RecvOnly.sends() && RecvOnly.receives());
        assert!(!Inactive.sends() && !Inactive.receives());
        assert_eq!(SendRecv.intersect(SendOnly), SendOnly);
        assert_eq!(RecvOnly.intersect(SendOnly), Inactive);
        for d in [SendRecv, SendOnly, RecvOnly, Inactive] {
            assert_eq!(Direction::from_attribute(d.as_str()), Some(d));
            assert_eq!(Direction::from_flags(d.sends(), d.receives()), d);
        }
    }

    #[test]
    fn encodings() {
        let names: Vec<&str> = [
            Encoding::Pcmu,
            Encoding::Pcma,
            Encoding::G722,
            Encoding::Opus,
            Encoding::H264,
        ]
        .iter()
        .map(|e| e.name())
        .collect();
        assert_eq!(names, ["PCMU", "PCMA", "G722", "opus", "H264"]);
        assert_eq!(Encoding::G722.clock_rate(), 8000);
        assert_eq!(Encoding::Opus.clock_rate(), 48000);
        assert_eq!(Encoding::H264.kind(), MediaKind::Video);
        assert_eq!(
            Encoding::from_rtpmap("OPUS", 48000, Some(2)),
            Some(Encoding::Opus)
        );
        assert_eq!(Encoding::from_rtpmap("opus", 48000, Some(1)), None);
        assert_eq!(Encoding::from_rtpmap("G722", 16000, None), None);
        assert_eq!(
            Encoding::from_rtpmap("pcmu", 8000, Some(1)),
            Some(Encoding::Pcmu)
        );
    }

    #[test]
    fn config_order_is_kept() {
        let media = Media {
            audio_codecs: vec![AudioCodec::Opus, AudioCodec::Pcma, AudioCodec::Opus],
            ..Media::default()
        };
        let caps = LocalCaps::from_config(&media, true);
        assert_eq!(caps.audio, [Encoding::Opus, Encoding::Pcma]);
        assert_eq!(caps.video, [Encoding::H264]);
        assert!(caps.want_video);
    }

    #[test]
    fn fmtp_parameters() {
        let f = "profile-level-id=42801F; packetization-mode=1";
        assert_eq!(fmtp_param(f, "PACKETIZATION-MODE"), Some("1"));
        assert_eq!(fmtp_param(f, "profile-level-id"), Some("42801F"));
        assert!(h264_mode_1(Some(f)));
        assert!(!h264_mode_1(Some("profile-level-id=42801F")));
        assert!(!h264_mode_1(None));
    }

    #[test]
    fn static_payload_types_without_rtpmap() {
        let remote = parse(&minimal(&["m=audio 4000 RTP/AVP 8 0 18"])).unwrap();
        let m = &remote.media[0];
        assert_eq!(m.classify(8), Format::Codec(Encoding::Pcma));
        assert_eq!(m.classify(0), Format::Codec(Encoding::Pcmu));
        assert_eq!(m.classify(18), Format::Other);
        assert_eq!(m.label(18), "G729");
    }

    #[test]
    fn dynamic_codecs_need_dynamic_payload_types() {
        let remote = parse(&minimal(&[
            "m=audio 4000 RTP/AVP 40 96 120 0",
            "a=rtpmap:40 opus/48000/2",
            "a=rtpmap:96 telephone-event/8000",
            "a=rtpmap:120 PCMU/8000",
            "a=rtpmap:0 PCMA/8000",
        ]))
        .unwrap();
        let m = &remote.media[0];
        assert_eq!(m.classify(40), Format::Other);
        assert_eq!(m.classify(96), Format::Event(8000));
        assert_eq!(m.classify(120), Format::Codec(Encoding::Pcmu));
        // A static payload type whose rtpmap says something else is not trusted.
        assert_eq!(m.classify(0), Format::Other);
    }

    #[test]
    fn scan_reports_the_line() {
        let err = parse(&minimal(&["m=audio 4000 RTP/AVP 0", "junk"])).unwrap_err();
        assert_eq!(
            err,
            SdpError::Malformed("line 7 is not an SDP line: \"junk\"".to_string())
        );
        let err = parse("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n")
            .unwrap_err();
        assert!(err.to_string().contains("t="), "{err}");
    }

    #[test]
    fn control_characters_and_huge_bodies_are_refused() {
        let nul = minimal(&["m=audio 4000 RTP/AVP 0", "a=x\u{0}y"]);
        assert!(matches!(parse(&nul), Err(SdpError::Malformed(_))));
        let long = format!("a={}", "x".repeat(MAX_LINE));
        let text = minimal(&["m=audio 4000 RTP/AVP 0", &long]);
        assert!(matches!(parse(&text), Err(SdpError::Malformed(_))));
        let huge = minimal(&["m=audio 4000 RTP/AVP 0"]) + &"a=x\r\n".repeat(MAX_BODY / 5 + 1);
        assert!(matches!(parse(&huge), Err(SdpError::Malformed(_))));
    }

    #[test]
    fn rtcp_attribute_and_default() {
        let remote = parse(&minimal(&[
            "m=audio 4000 RTP/AVP 0",
            "a=rtcp:4555 IN IP4 198.51.100.7",
            "m=video 5000 RTP/AVP 96",
            "a=rtpmap:96 H264/90000",
        ]))
        .unwrap();
        assert_eq!(
            remote.media[0].rtcp_addr(),
            "198.51.100.7:4555".parse().unwrap()
        );
        assert_eq!(
            remote.media[1].rtcp_addr(),
            "192.0.2.1:5001".parse().unwrap()
        );
        let err = parse(&minimal(&["m=audio 65535 RTP/AVP 0"])).unwrap_err();
        assert!(err.to_string().contains("RTCP"), "{err}");
        let err = parse(&minimal(&["m=audio 4000 RTP/AVP 0", "a=rtcp:0"])).unwrap_err();
        assert!(matches!(err, SdpError::Malformed(_)));
    }

    #[test]
    fn rendered_offer_is_exact() {
        let mut caps = caps();
        caps.want_video = true;
        let (local, text) = Local::offer(&caps, &transport());
        let id = local.session_id();
        assert!(id > 0 && id < 1 << 31);
        let expected = format!(
            "v=0\r\n\
             o=- {id} 1 IN IP4 192.0.2.10\r\n\
             s=-\r\n\
             c=IN IP4 192.0.2.10\r\n\
             t=0 0\r\n\
             m=audio 10000 RTP/AVP 0 8 9 96 101 102\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:9 G722/8000\r\n\
             a=rtpmap:96 opus/48000/2\r\n\
             a=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-15\r\n\
             a=rtpmap:102 telephone-event/48000\r\n\
             a=fmtp:102 0-15\r\n\
             a=ptime:20\r\n\
             a=sendrecv\r\n\
             m=video 10002 RTP/AVP 97\r\n\
             a=rtpmap:97 H264/90000\r\n\
             a=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n\
             a=sendrecv\r\n"
        );
        assert_eq!(text, expected);
        assert_eq!(local.sdp(), expected);
        assert!(local.awaiting_answer());
    }

    #[test]
    fn ipv6_transport() {
        let t = LocalTransport {
            address: "2001:db8::10".parse().unwrap(),
            audio_port: 10000,
            video_port: None,
        };
        let (_, text) = Local::offer(&caps(), &t);
        assert!(text.contains("IN IP6 2001:db8::10\r\n"));
        assert!(text.contains("c=IN IP6 2001:db8::10\r\n"));
        let remote = parse(&text).unwrap();
        assert_eq!(remote.media_count(), 1);
        assert_eq!(remote.media[0].address, Some(t.address));
    }

    #[test]
    fn session_ids_differ() {
        let a = Local::offer(&caps(), &transport()).0.session_id();
        let b = Local::offer(&caps(), &transport()).0.session_id();
        assert_ne!(a, b);
    }

    #[test]
    fn unchanged_descriptions_keep_their_version() {
        let offer = parse(&minimal(&[
            "m=audio 4000 RTP/AVP 0 101",
            "a=rtpmap:101 telephone-event/8000",
        ]))
        .unwrap();
        let (mut local, _, first) = Local::answer(&caps(), &transport(), &offer).unwrap();
        assert_eq!(local.version(), 1);
        let (_, again) = local.reanswer(&offer, false).unwrap();
        assert_eq!(again, first);
        assert_eq!(local.version(), 1);
        let (_, held) = local.reanswer(&offer, true).unwrap();
        assert_eq!(local.version(), 2);
        assert!(held.contains("a=sendonly"));
        assert!(held.contains(&format!("o=- {} 2 IN IP4", local.session_id())));
    }

    #[test]
    fn answers_without_a_pending_offer_are_refused() {
        let offer = parse(&minimal(&["m=audio 4000 RTP/AVP 0"])).unwrap();
        let (mut local, _, _) = Local::answer(&caps(), &transport(), &offer).unwrap();
        assert!(matches!(
            local.accept_answer(&offer),
            Err(SdpError::WrongState(_))
        ));
        local.reoffer(true);
        assert!(matches!(
            local.reanswer(&offer, false),
            Err(SdpError::WrongState(_))
        ));
        local.cancel_offer();
        assert!(local.reanswer(&offer, false).is_ok());
    }
}
