//! The first look at every UDP datagram, before the SIP stack parses it
//! (RFC 3261 §8.2 and §18.3 on top of a lenient parser): a request the door
//! phone cannot act on safely is answered here, statelessly, or dropped, and
//! never reaches a transaction, a dialog or the bus.
//!
//! - `505` for a SIP version other than 2.0, `501` for an unknown method,
//!   `513` for a datagram over the stack's 8 KiB;
//! - `400` for a missing or contradictory mandatory header (Via, From with a
//!   tag, To, Call-ID, CSeq and its method, Content-Length against the body,
//!   Contact of an INVITE), or for bytes no SIP header holds (NUL and other
//!   control characters, invalid UTF-8);
//! - silence for what cannot be answered (no Via, no request line) and for a
//!   source past its budget of such answers.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::budget::{Budget, Spend};

/// The largest datagram the SIP stack reads.
const STACK_BUFFER: usize = 8192;
/// Stateless answers per source per window.
const ANSWERS_PER_WINDOW: u32 = 20;
const WINDOW: Duration = Duration::from_secs(10);

/// The methods the stack parses; anything else is answered 501 here.
const KNOWN_METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "MESSAGE",
    "NOTIFY",
    "SUBSCRIBE",
    "REFER",
    "REGISTER",
    "PUBLISH",
];

/// What the door phone does with a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the SIP stack.
    Pass,
    /// Answer it with this response (already built) and drop it.
    Answer {
        code: u16,
        why: &'static str,
        response: Vec<u8>,
    },
    /// Drop it without a word.
    Drop(&'static str),
}

/// A header line of the request, its name in long form and lower case.
struct Field<'a> {
    name: String,
    value: &'a str,
    /// The line as it came, for copying into a response.
    line: &'a str,
}

fn long_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    match lower.as_str() {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "l" => "content-length",
        "m" => "contact",
        "c" => "content-type",
        _ => return lower,
    }
    .to_owned()
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        501 => "Not Implemented",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Error",
    }
}

/// Builds a stateless response to a request from its own header lines: every
/// Via, From, To (with a tag of ours when it had none), Call-ID and CSeq.
fn answer(fields: &[Field<'_>], code: u16, why: &'static str) -> Verdict {
    let has = |name: &str| fields.iter().any(|f| f.name == name);
    if !has("via") || !has("from") || !has("to") || !has("call-id") || !has("cseq") {
        return Verdict::Drop(why);
    }
    let mut out = format!("SIP/2.0 {code} {}\r\n", reason(code));
    for f in fields.iter().filter(|f| f.name == "via") {
        out.push_str(f.line.trim_end());
        out.push_str("\r\n");
    }
    for name in ["from", "to", "call-id", "cseq"] {
        let Some(f) = fields.iter().find(|f| f.name == name) else {
            continue;
        };
        out.push_str(f.line.trim_end());
        if name == "to" && !has_param(f.value, "tag") {
            out.push_str(";tag=");
            out.push_str(&rsipstack::transaction::random_text(10));
        }
        out.push_str("\r\n");
    }
    if code == 501 {
        out.push_str("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r\n");
    }
    if code == 505 {
        out.push_str("Supported: \r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Verdict::Answer {
        code,
        why,
        response: out.into_bytes(),
    }
}

/// Whether a name-addr header value (`<sip:a@b>;tag=x`) has parameter `name`
/// outside its URI.
fn has_param(value: &str, name: &str) -> bool {
    let params = match value.rfind('>') {
        Some(end) => &value[end + 1..],
        None => value.split_once(';').map_or("", |(_, p)| p),
    };
    params.split(';').any(|p| {
        p.split('=')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
    })
}

/// A character a SIP header line may hold (RFC 3261 §25: UTF-8 text, tabs
/// and spaces; no other control characters).
fn header_char(c: char) -> bool {
    c == '\t' || !c.is_control()
}

/// Screens one datagram of `len` bytes (`len` may exceed the buffer the stack
/// reads into).
pub fn screen(datagram: &[u8]) -> Verdict {
    if datagram.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Pass;
    }
    // The header section ends at the first empty line.
    let (head, body) = match find(datagram, b"\r\n\r\n") {
        Some(at) => (&datagram[..at], &datagram[at + 4..]),
        None => match find(datagram, b"\n\n") {
            Some(at) => (&datagram[..at], &datagram[at + 2..]),
            None => (datagram, &datagram[datagram.len()..]),
        },
    };
    // Lines whose bytes are no UTF-8 text cannot be echoed back either.
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next().unwrap_or("");
    let utf8 = std::str::from_utf8(head).is_ok();
    if start.starts_with("SIP/") {
        // A response: the stack matches it to a transaction of ours or drops
        // it; it still must be text.
        let clean = utf8
            && text
                .split('\n')
                .all(|l| l.trim_end_matches('\r').chars().all(header_char));
        return if clean {
            Verdict::Pass
        } else {
            Verdict::Drop("a response with bytes no header holds")
        };
    }
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut clean = utf8;
    for line in lines {
        if !line.chars().all(header_char) {
            clean = false;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // A folded continuation belongs to the previous header.
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push(Field {
                name: long_name(name),
                value: value.trim(),
                line,
            });
        }
    }
    if datagram.len() > STACK_BUFFER {
        return answer(&fields, 513, "datagram larger than 8 KiB");
    }
    let parts: Vec<&str> = start.split(' ').collect();
    let [method, uri, version] = parts[..] else {
        return answer(&fields, 400, "no request line");
    };
    if !start.chars().all(header_char) || uri.is_empty() {
        return answer(&fields, 400, "a malformed request line");
    }
    if !clean {
        return answer(&fields, 400, "bytes no SIP header holds");
    }
    if !method
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c))
    {
        return answer(&fields, 400, "a method that is no token");
    }
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return answer(&fields, 505, "a SIP version other than 2.0");
    }
    if !KNOWN_METHODS.contains(&method) {
        return answer(&fields, 501, "an unknown method");
    }
    if !fields.iter().any(|f| f.name == "via") {
        return Verdict::Drop("no Via to answer to");
    }
    for name in ["from", "to", "call-id", "cseq"] {
        let mut values = fields.iter().filter(|f| f.name == name).map(|f| f.value);
        let Some(first) = values.next() else {
            return answer(&fields, 400, "a mandatory header is missing");
        };
        if first.is_empty() || values.any(|v| v != first) {
            return answer(
                &fields,
                400,
                "a mandatory header is empty or contradicts itself",
            );
        }
    }
    let value = |name: &str| {
        fields
            .iter()
            .find(|f| f.name == name)
            .map_or("", |f| f.value)
    };
    if !has_param(value("from"), "tag") {
        return answer(&fields, 400, "From has no tag");
    }
    let mut cseq = value("cseq").split_whitespace();
    let number_ok = cseq.next().is_some_and(|n| n.parse::<u32>().is_ok());
    if !number_ok || cseq.next() != Some(method) || cseq.next().is_some() {
        return answer(&fields, 400, "CSeq does not match the request");
    }
    let mut lengths = fields
        .iter()
        .filter(|f| f.name == "content-length")
        .map(|f| f.value.parse::<usize>());
    if let Some(first) = lengths.next() {
        let Ok(declared) = first else {
            return answer(&fields, 400, "Content-Length is not a number");
        };
        if lengths.any(|l| l != Ok(declared)) {
            return answer(&fields, 400, "Content-Length contradicts itself");
        }
        // Bytes past the declared body are discarded (RFC 3261 §18.3), but
        // only padding may follow it; a shorter body is an error.
        let fits = body.len() == declared
            || (body.len() > declared && body[declared..].iter().all(u8::is_ascii_whitespace));
        if !fits {
            return answer(&fields, 400, "Content-Length does not match the body");
        }
    }
    if method == "INVITE" && !fields.iter().any(|f| f.name == "contact") {
        return answer(&fields, 400, "INVITE without Contact");
    }
    Verdict::Pass
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The SIP stack's UDP socket, screening what it reads.
pub struct GuardedSocket {
    socket: tokio::net::UdpSocket,
    answers: Mutex<Budget>,
}

impl GuardedSocket {
    pub fn new(socket: tokio::net::UdpSocket) -> GuardedSocket {
        GuardedSocket {
            socket,
            answers: Mutex::new(Budget::new(ANSWERS_PER_WINDOW, WINDOW)),
        }
    }
}

/// A datagram as the trace log shows it: the SRTP keys of `a=crypto` lines
/// (`inline:<key>`) are replaced by `<key>`.
pub fn redacted(datagram: &[u8]) -> String {
    let text = String::from_utf8_lossy(datagram);
    if !text.contains("inline:") {
        return text.into_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest: &str = &text;
    while let Some(at) = rest.find("inline:") {
        let (head, tail) = rest.split_at(at + "inline:".len());
        out.push_str(head);
        out.push_str("<key>");
        let end = tail
            .find(|c: char| c == '|' || c == ';' || c.is_whitespace())
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[async_trait::async_trait]
impl rsipstack::platform::net::UdpSocket for GuardedSocket {
    async fn recv_from(&self, buf: &mut [u8]) -> rsipstack::Result<(usize, SocketAddr)> {
        // One byte more than the stack reads tells a datagram it would cut.
        let mut own = vec![0u8; STACK_BUFFER.max(buf.len()) + 1];
        loop {
            let (len, from) = self.socket.recv_from(&mut own).await?;
            let datagram = &own[..len];
            match screen(datagram) {
                Verdict::Pass => {
                    tracing::trace!(%from, message = %redacted(datagram), "SIP in");
                    if len > buf.len() {
                        continue;
                    }
                    buf[..len].copy_from_slice(datagram);
                    return Ok((len, from));
                }
                Verdict::Answer {
                    code,
                    why,
                    response,
                } => {
                    let (spend, summary) = self
                        .answers
                        .lock()
                        .expect("answer budget lock")
                        .spend(from.ip(), Instant::now());
                    if let Some(s) = summary {
                        tracing::info!(source = %s.source, answered = s.answered, withheld = s.withheld, "malformed requests from one source");
                    }
                    if spend == Spend::Answer {
                        tracing::debug!(%from, code, "refused before parsing: {why}");
                        self.socket.send_to(&response, from).await.ok();
                    }
                }
                Verdict::Drop(why) => tracing::debug!(%from, "dropped: {why}"),
            }
        }
    }

    async fn send_to(&self, buf: &[u8], addr: SocketAddr) -> rsipstack::Result<usize> {
        tracing::trace!(to = %addr, message = %redacted(buf), "SIP out");
        Ok(self.socket.send_to(buf, addr).await?)
    }

    fn local_addr(&self) -> rsipstack::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traced_messages_hide_srtp_keys() {
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";
        let body = format!(
            "m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^31\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{key}\r\n"
        );
        let shown = redacted(body.as_bytes());
        assert!(!shown.contains(key), "{shown}");
        assert!(shown.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<key>|2^31\r\n"));
        assert!(shown.ends_with("inline:<key>\r\n"), "{shown}");
        assert_eq!(redacted(b"OPTIONS sip:x SIP/2.0"), "OPTIONS sip:x SIP/2.0");
    }

    fn request(start: &str, headers: &[&str], body: &str) -> Vec<u8> {
        let mut s = format!("{start}\r\n");
        for h in headers {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.push_str(body);
        s.into_bytes()
    }

    const BASE: &[&str] = &[
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
        "From: <sip:a@192.0.2.1>;tag=1",
        "To: <sip:door@192.0.2.9>",
        "Call-ID: c1",
        "CSeq: 1 OPTIONS",
    ];

    fn code(v: &Verdict) -> Option<u16> {
        match v {
            Verdict::Answer { code, .. } => Some(*code),
            _ => None,
        }
    }

    #[test]
    fn a_well_formed_request_passes() {
        let r = request("OPTIONS sip:door@192.0.2.9 SIP/2.0", BASE, "");
        assert_eq!(screen(&r), Verdict::Pass);
        let mut h = BASE.to_vec();
        h.push("Content-Length: 4");
        assert_eq!(
            screen(&request("OPTIONS sip:door@192.0.2.9 SIP/2.0", &h, "abcd")),
            Verdict::Pass
        );
        // Compact forms count.
        let compact = [
            "v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
            "f: <sip:a@192.0.2.1>;tag=1",
            "t: <sip:door@192.0.2.9>",
            "i: c1",
            "CSeq: 1 INVITE",
            "m: <sip:a@192.0.2.1>",
            "l: 0",
        ];
        assert_eq!(
            screen(&request("INVITE sip:door@192.0.2.9 SIP/2.0", &compact, "")),
            Verdict::Pass
        );
    }

    #[test]
    fn other_versions_get_505_and_unknown_methods_501() {
        let v = screen(&request("OPTIONS sip:door@192.0.2.9 SIP/7.0", BASE, ""));
        assert_eq!(code(&v), Some(505));
        let Verdict::Answer { response, .. } = &v else {
            unreachable!()
        };
        let text = String::from_utf8(response.clone()).unwrap();
        assert!(
            text.starts_with("SIP/2.0 505 Version Not Supported\r\n"),
            "{text}"
        );
        assert!(text.contains("Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"));
        assert!(text.contains("To: <sip:door@192.0.2.9>;tag="), "{text}");
        let mut h = BASE.to_vec();
        h[4] = "CSeq: 1 FROBNICATE";
        let v = screen(&request("FROBNICATE sip:door@192.0.2.9 SIP/2.0", &h, ""));
        assert_eq!(code(&v), Some(501));
    }

    #[test]
    fn missing_and_contradictory_headers_get_400() {
        for drop in 1..5 {
            let mut h = BASE.to_vec();
            h.remove(drop);
            let v = screen(&request("OPTIONS sip:door@192.0.2.9 SIP/2.0", &h, ""));
            // Without the header a response needs, there is nothing to answer.
            assert!(matches!(v, Verdict::Drop(_)), "{h:?}: {v:?}");
        }
        let cases: Vec<(Vec<&str>, &str)> = vec![
            (vec!["CSeq: 1 INVITE"], ""),
            (vec!["CSeq: x OPTIONS"], ""),
            (vec!["Call-ID: other"], ""),
            (vec!["Content-Length: 10"], "short"),
            (vec!["Content-Length: 2"], "longer than two"),
            (vec!["Content-Length: 5", "Content-Length: 6"], "hello"),
            (vec!["Content-Length: -1"], ""),
        ];
        for (extra, body) in cases {
            let mut h = BASE.to_vec();
            if extra[0].starts_with("CSeq") {
                h[4] = extra[0];
            } else {
                h.extend(extra.iter());
            }
            let v = screen(&request("OPTIONS sip:door@192.0.2.9 SIP/2.0", &h, body));
            assert_eq!(code(&v), Some(400), "{h:?} {body:?}: {v:?}");
        }
        let mut h = BASE.to_vec();
        h[1] = "From: <sip:a@192.0.2.1>";
        assert_eq!(
            code(&screen(&request(
                "OPTIONS sip:door@192.0.2.9 SIP/2.0",
                &h,
                ""
            ))),
            Some(400)
        );
        let mut h = BASE.to_vec();
        h[4] = "CSeq: 1 INVITE";
        assert_eq!(
            code(&screen(&request(
                "INVITE sip:door@192.0.2.9 SIP/2.0",
                &h,
                ""
            ))),
            Some(400),
            "an INVITE without Contact"
        );
    }

    #[test]
    fn bytes_no_header_holds_get_400_and_junk_is_dropped() {
        let mut h = BASE.to_vec();
        h.push("Subject: a\u{0}b");
        assert_eq!(
            code(&screen(&request(
                "OPTIONS sip:door@192.0.2.9 SIP/2.0",
                &h,
                ""
            ))),
            Some(400)
        );
        let mut bad = request("OPTIONS sip:door@192.0.2.9 SIP/2.0", BASE, "");
        bad.splice(0..0, [0xff, 0xfe]);
        assert!(!matches!(screen(&bad), Verdict::Pass));
        assert!(matches!(screen(b"\x00\x01\x02garbage"), Verdict::Drop(_)));
        // A NUL in an SDP body is the agent's to refuse (488), not a header's.
        let mut h = BASE.to_vec();
        h.push("Content-Length: 3");
        assert_eq!(
            screen(&request("OPTIONS sip:door@192.0.2.9 SIP/2.0", &h, "a\0b")),
            Verdict::Pass
        );
    }

    #[test]
    fn datagrams_the_stack_would_cut_get_513() {
        let mut h = BASE.to_vec();
        let big = "x".repeat(9000);
        let line = format!("Subject: {big}");
        h.push(&line);
        assert_eq!(
            code(&screen(&request(
                "OPTIONS sip:door@192.0.2.9 SIP/2.0",
                &h,
                ""
            ))),
            Some(513)
        );
    }
}
