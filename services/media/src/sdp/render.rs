//! Writing our descriptions.

use std::fmt::Write as _;
use std::net::IpAddr;

use super::*;

/// RFC 4733 events we send and receive: the digits 0-9, `*`, `#` and A-D.
const EVENTS: &str = "0-15";
/// Packet duration for every audio codec we offer.
const PTIME_MS: u32 = 20;

/// One m-line of our description.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Line {
    pub(super) media: String,
    pub(super) proto: String,
    /// 0: the stream is rejected or disabled.
    pub(super) port: u16,
    /// The format written on a disabled m-line.
    pub(super) off_format: String,
    /// The codecs listed, with our format parameters.
    pub(super) codecs: Vec<Codec>,
    /// telephone-event payload types and their clock rates.
    pub(super) events: Vec<(u8, u32)>,
    pub(super) direction: Direction,
    /// Our `a=crypto` lines (SDES keys), empty for plain RTP.
    pub(super) crypto: Vec<Sdes>,
}

impl Line {
    pub(super) fn disabled(media: &str, proto: &str, off_format: &str) -> Line {
        Line {
            media: media.to_string(),
            proto: proto.to_string(),
            port: 0,
            off_format: off_format.to_string(),
            codecs: Vec::new(),
            events: Vec::new(),
            direction: Direction::Inactive,
            crypto: Vec::new(),
        }
    }

    pub(super) fn kind(&self) -> Option<MediaKind> {
        MediaKind::from_media(&self.media)
    }

    pub(super) fn disable(&mut self) {
        if let Some(c) = self.codecs.first() {
            self.off_format = c.pt.to_string();
        }
        self.port = 0;
        self.codecs.clear();
        self.events.clear();
        self.crypto.clear();
    }
}

/// Write a description.
pub(super) fn render(session_id: u64, version: u64, address: IpAddr, lines: &[Line]) -> String {
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
        for crypto in &line.crypto {
            let _ = write!(s, "a=crypto:{}\r\n", crypto.render());
        }
        let _ = write!(s, "a={}\r\n", line.direction.as_str());
    }
    s
}
