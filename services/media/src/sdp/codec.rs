//! The codecs the door phone speaks, their payload types and format parameters.

use std::fmt;

use doorphone_interfaces::config::document::{AudioCodec, VideoCodec};

use super::*;

/// Payload types we use in our own offers.
pub(super) const PT_OPUS: u8 = 96;
pub(super) const PT_H264: u8 = 97;
pub(super) const PT_EVENT_8000: u8 = 101;
pub(super) const PT_EVENT_48000: u8 = 102;
/// Constrained Baseline, level 3.1: what the camera's encoder produces.
pub(super) const H264_PROFILE: &str = "42e01f";

/// A codec this door phone can send and receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Pcmu,
    Pcma,
    G722,
    Opus,
    H264,
}

pub(super) const ALL_ENCODINGS: [Encoding; 5] = [
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
    pub(super) fn from_rtpmap(name: &str, clock: u32, channels: Option<u32>) -> Option<Encoding> {
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
    pub(super) fn offer_pt(self) -> u8 {
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
    pub(super) fn new(encoding: Encoding, pt: u8, fmtp: Option<String>) -> Codec {
        Codec {
            encoding,
            pt,
            clock_rate: encoding.clock_rate(),
            channels: encoding.channels(),
            fmtp,
        }
    }
}

/// RFC 3551 names of the static payload types.
pub(super) fn static_name(pt: u8) -> Option<&'static str> {
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
pub(super) fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// H.264 with `packetization-mode=1` (a missing parameter means mode 0).
pub(super) fn h264_mode_1(fmtp: Option<&str>) -> bool {
    fmtp.and_then(|f| fmtp_param(f, "packetization-mode")) == Some("1")
}

/// A payload type: a number in 0-127.
pub(super) fn parse_pt(token: &str) -> Option<u8> {
    if token.is_empty() || token.len() > 3 || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse::<u8>().ok().filter(|pt| *pt <= 127)
}

/// Our format parameters in an offer.
pub(super) fn offer_fmtp(encoding: Encoding) -> Option<String> {
    match encoding {
        Encoding::H264 => Some(format!(
            "profile-level-id={H264_PROFILE};packetization-mode=1"
        )),
        _ => None,
    }
}

/// Our format parameters in an answer: for H.264 the offer's profile-level-id and
/// packetization-mode 1.
pub(super) fn answer_fmtp(encoding: Encoding, theirs: Option<&str>) -> Option<String> {
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
pub(super) fn event_pt(clock: u32) -> u8 {
    if clock == 48000 {
        PT_EVENT_48000
    } else {
        PT_EVENT_8000
    }
}

pub(super) fn names(encodings: impl Iterator<Item = Encoding>) -> String {
    let list: Vec<&str> = encodings.map(Encoding::name).collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}
