//! Reading the far end's description: one `SDPMessage` from gstreamer-sdp is the
//! model every value is read from. GStreamer's parser accepts nearly anything, so
//! the text is first checked line by line (shape, order, sizes and the numbers of
//! the m= lines): a body that passes reads the same in the model as in the text.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use gstreamer as gst;
use gstreamer_sdp as gst_sdp;

use super::*;

/// Largest SDP body accepted.
pub(super) const MAX_BODY: usize = 64 * 1024;
/// Longest SDP line accepted.
pub(super) const MAX_LINE: usize = 4096;

/// A parsed, validated remote description.
#[derive(Clone, Debug)]
pub struct Remote {
    pub(super) session_id: String,
    pub(super) version: String,
    pub(super) media: Vec<RemoteMedia>,
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
pub(super) struct RtpMap {
    pub(super) pt: u8,
    pub(super) name: String,
    pub(super) clock: u32,
    pub(super) channels: Option<u32>,
}

#[derive(Clone, Debug)]
pub(super) struct RemoteMedia {
    pub(super) media: String,
    pub(super) port: u16,
    pub(super) proto: String,
    /// The format tokens as written.
    pub(super) formats: Vec<String>,
    /// The payload types, in order, for RTP protocols.
    pub(super) pts: Vec<u8>,
    pub(super) rtpmaps: Vec<RtpMap>,
    pub(super) fmtps: Vec<(u8, String)>,
    /// `c=` of the m-line, else of the session.
    pub(super) address: Option<IpAddr>,
    /// `a=rtcp`: port and optional address.
    pub(super) rtcp: Option<(u16, Option<IpAddr>)>,
    /// As written: the m-line's attribute, else the session's, else sendrecv.
    pub(super) direction: Direction,
    /// The usable `a=crypto` lines, in order, one per tag.
    pub(super) crypto: Vec<Sdes>,
    /// Why the first unusable `a=crypto` line was not used.
    pub(super) crypto_refused: Option<String>,
}

/// What a payload type of an offer or answer stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    Codec(Encoding),
    Event(u32),
    Other,
}

impl RemoteMedia {
    pub(super) fn kind(&self) -> Option<MediaKind> {
        MediaKind::from_media(&self.media)
    }

    /// Plain RTP.
    pub(super) fn plain_rtp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/AVP") || self.proto.eq_ignore_ascii_case("RTP/AVPF")
    }

    /// SRTP (`RTP/SAVP`, `RTP/SAVPF`).
    pub(super) fn secure_rtp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/SAVP") || self.proto.eq_ignore_ascii_case("RTP/SAVPF")
    }

    /// Why this m-line has no usable `a=crypto` line, for messages.
    pub(super) fn no_crypto(&self) -> String {
        match &self.crypto_refused {
            Some(why) => format!("no usable a=crypto line ({why})"),
            None => "no a=crypto line".to_string(),
        }
    }

    pub(super) fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|r| r.pt == pt)
    }

    pub(super) fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, f)| f.as_str())
    }

    /// The direction that matters: a peer holding with `c=0.0.0.0` does not receive.
    pub(super) fn effective_direction(&self) -> Direction {
        match self.address {
            Some(a) if a.is_unspecified() => Direction::from_flags(self.direction.sends(), false),
            _ => self.direction,
        }
    }

    pub(super) fn rtp_addr(&self) -> SocketAddr {
        SocketAddr::new(
            self.address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            self.port,
        )
    }

    pub(super) fn rtcp_addr(&self) -> SocketAddr {
        let rtp = self.rtp_addr();
        match self.rtcp {
            Some((port, address)) => SocketAddr::new(address.unwrap_or(rtp.ip()), port),
            None => SocketAddr::new(rtp.ip(), self.port.saturating_add(1)),
        }
    }

    pub(super) fn classify(&self, pt: u8) -> Format {
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
    pub(super) fn event_for(&self, clock: u32) -> Option<u8> {
        self.pts
            .iter()
            .copied()
            .find(|&pt| self.classify(pt) == Format::Event(clock))
    }

    pub(super) fn has_events(&self) -> bool {
        self.pts
            .iter()
            .any(|&pt| matches!(self.classify(pt), Format::Event(_)))
    }

    /// A name for a payload type in messages: the rtpmap name, the static name, or `PT n`.
    pub(super) fn label(&self, pt: u8) -> String {
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
    pub(super) fn labels(&self) -> String {
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

/// A port: a number in 0-65535.
pub(super) fn parse_port(token: &str) -> Option<u16> {
    if token.is_empty() || token.len() > 5 || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse::<u16>().ok()
}

/// A line cut to a length fit for an error message.
pub(super) fn shorten(line: &str) -> String {
    const MAX: usize = 60;
    if line.chars().count() <= MAX {
        line.to_string()
    } else {
        let cut: String = line.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

/// The line-by-line checks the GStreamer parser does not make: line shape, order of the
/// session lines, m= fields, size. Nothing is read from the text here but its
/// faults; returns the number of m= lines, which the model must have too.
pub(super) fn scan(text: &str) -> Result<usize, SdpError> {
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
    let mut media = 0usize;
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
        let in_media = media > 0;
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
                scan_media(n, line)?;
                media += 1;
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
    if media == 0 {
        return Err(malformed(
            "no m= line: the body is cut short or describes no media",
        ));
    }
    Ok(media)
}

pub(super) fn scan_media(n: usize, line: &str) -> Result<(), SdpError> {
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
    parse_port(port_text).ok_or_else(|| {
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
    if fields[2].to_ascii_uppercase().contains("RTP/") {
        for f in &fields[3..] {
            if parse_pt(f).is_none() {
                return Err(malformed(format!(
                    "line {n}: payload type {} is not a number in 0-127",
                    shorten(f)
                )));
            }
        }
    }
    Ok(())
}

/// The address of a `c=` line; `None` when there is no such line.
pub(super) fn connection_address(
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
pub(super) fn parse_rtpmap(value: &str, place: &str) -> Result<RtpMap, SdpError> {
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
pub(super) fn parse_rtcp(value: &str, place: &str) -> Result<(u16, Option<IpAddr>), SdpError> {
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

pub(super) fn direction_of<'a>(attributes: impl Iterator<Item = &'a str>) -> Option<Direction> {
    attributes.into_iter().find_map(Direction::from_attribute)
}

/// Parse and check a remote description (an offer or an answer).
///
/// Refused: anything that is not SDP, bodies cut short (no o=/s=/t=/m= line, an incomplete
/// m= line), ports outside 0-65535, payload types outside 0-127, a stream without a
/// `c=` line, addresses that are not IPv4 or IPv6, and descriptions without an audio
/// stream. A port of 0 (a disabled stream) is accepted.
pub fn parse(text: &str) -> Result<Remote, SdpError> {
    let lines = scan(text)?;
    gst::init().map_err(|e| SdpError::Parser(e.to_string()))?;
    // NUL-terminated: older parsers read up to the terminator, not the given size.
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    let message = gst_sdp::SDPMessage::parse_buffer(&bytes)
        .map_err(|_| malformed("the body is not a session description"))?;
    if message.medias_len() as usize != lines {
        return Err(malformed("unreadable m= lines"));
    }
    let origin = message.origin().ok_or_else(|| malformed("no o= line"))?;
    let session_id = origin.sess_id().unwrap_or("").to_string();
    let version = origin.sess_version().unwrap_or("").to_string();
    let session_address = connection_address(message.connection(), "session")?;
    let session_direction = direction_of(message.attributes().map(|a| a.key()));

    let mut media = Vec::with_capacity(lines);
    for (index, gm) in message.medias().enumerate() {
        // The line check saw to it that these read as written.
        let kind = gm.media().unwrap_or_default().to_string();
        let port = u16::try_from(gm.port()).map_err(|_| malformed("unreadable m= lines"))?;
        let proto = gm.proto().unwrap_or_default().to_string();
        let formats: Vec<String> = gm.formats().map(str::to_string).collect();
        let place = format!("m={kind} (m-line {})", index + 1);
        let mut address = None;
        for connection in gm.connections() {
            let a = connection_address(Some(connection), &place)?;
            if address.is_none() {
                address = a;
            }
        }
        let address = address.or(session_address);
        let rtp = proto.to_ascii_uppercase().contains("RTP/");
        let mut rtpmaps: Vec<RtpMap> = Vec::new();
        let mut fmtps: Vec<(u8, String)> = Vec::new();
        let mut rtcp = None;
        let mut crypto: Vec<Sdes> = Vec::new();
        let mut crypto_refused = None;
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
            } else if rtp && key.eq_ignore_ascii_case("crypto") {
                match parse_crypto(value) {
                    Ok(line) if !crypto.iter().any(|c| c.tag == line.tag) => crypto.push(line),
                    Ok(line) => {
                        crypto_refused.get_or_insert_with(|| {
                            format!("a=crypto tag {}: the tag is used twice", line.tag)
                        });
                    }
                    Err(why) => {
                        crypto_refused.get_or_insert(why);
                    }
                }
            } else if key.eq_ignore_ascii_case("rtcp") && port != 0 && rtcp.is_none() {
                rtcp = Some(parse_rtcp(value, &place)?);
            }
        }
        if port != 0 && address.is_none() {
            return Err(malformed(format!("{place}: no c= line")));
        }
        if rtp && port == u16::MAX && rtcp.is_none() {
            return Err(malformed(format!(
                "{place}: port 65535 leaves no port for RTCP"
            )));
        }
        let direction = direction_of(gm.attributes().map(|a| a.key()))
            .or(session_direction)
            .unwrap_or(Direction::SendRecv);
        let mut pts = Vec::new();
        if rtp {
            for f in &formats {
                if let Some(pt) = parse_pt(f)
                    && !pts.contains(&pt)
                {
                    pts.push(pt);
                }
            }
        }
        media.push(RemoteMedia {
            media: kind,
            port,
            proto,
            formats,
            pts,
            rtpmaps,
            fmtps,
            address,
            rtcp,
            direction,
            crypto,
            crypto_refused,
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
