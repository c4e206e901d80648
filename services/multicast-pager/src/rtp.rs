//! What a datagram on a listened port is: an RTP packet of a page codec, an RTCP
//! packet saying BYE, or something to ignore.

/// The codecs a page may arrive in, by their static RTP payload types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Pcmu,
    Pcma,
    G722,
}

impl Codec {
    /// The name media's `PlayStream` takes.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
        }
    }

    fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            9 => Some(Codec::G722),
            _ => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Datagram {
    /// Audio of a page, from the source `ssrc`.
    Rtp { codec: Codec, ssrc: u32 },
    /// An RTCP compound packet with a BYE from `ssrc`.
    Bye { ssrc: u32 },
    /// Anything else: other RTCP, other payload types, junk.
    Other,
}

/// Reads a datagram's headers (RFC 3550; RTCP told apart by RFC 5761's rule:
/// a second byte of 192 to 223 is an RTCP packet type, not a marker and payload type).
pub fn classify(packet: &[u8]) -> Datagram {
    match packet.get(1) {
        Some(192..=223) => rtcp_bye(packet).map_or(Datagram::Other, |ssrc| Datagram::Bye { ssrc }),
        Some(_) => rtp(packet).unwrap_or(Datagram::Other),
        None => Datagram::Other,
    }
}

/// An RTP packet of a page codec that carries some audio.
fn rtp(packet: &[u8]) -> Option<Datagram> {
    let rtp = rtp_types::RtpPacket::parse(packet).ok()?;
    if rtp.payload().is_empty() {
        return None;
    }
    let codec = Codec::from_payload_type(rtp.payload_type())?;
    Some(Datagram::Rtp {
        codec,
        ssrc: rtp.ssrc(),
    })
}

/// The source the first BYE in this compound packet names, if it holds one.
fn rtcp_bye(packet: &[u8]) -> Option<u32> {
    let compound = rtcp_types::Compound::parse(packet).ok()?;
    for part in compound {
        if let rtcp_types::Packet::Bye(bye) = part.ok()? {
            // A BYE with no source (count 0) is valid but names nobody.
            return bye.ssrcs().next();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(pt: u8) -> Vec<u8> {
        let mut p = vec![0x80, pt, 0, 1, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef];
        p.extend([0xff; 160]);
        p
    }

    #[test]
    fn page_codecs_come_from_the_payload_type() {
        let ssrc = 0xdeadbeef;
        let want = |codec| Datagram::Rtp { codec, ssrc };
        assert_eq!(classify(&rtp(0)), want(Codec::Pcmu));
        assert_eq!(classify(&rtp(0x80 | 8)), want(Codec::Pcma));
        assert_eq!(classify(&rtp(9)), want(Codec::G722));
    }

    #[test]
    fn other_payload_types_and_junk_are_ignored() {
        assert_eq!(classify(&rtp(96)), Datagram::Other);
        assert_eq!(classify(&rtp(3)), Datagram::Other);
        assert_eq!(classify(b"hello, door phone"), Datagram::Other);
        assert_eq!(classify(&[]), Datagram::Other);
        assert_eq!(classify(&rtp(0)[..12]), Datagram::Other);
        let mut v1 = rtp(0);
        v1[0] = 0x40;
        assert_eq!(classify(&v1), Datagram::Other);
    }

    #[test]
    fn a_bye_is_found_in_a_compound_packet() {
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 7];
        let bye = [0x81, 203, 0, 1, 0, 0, 0, 7];
        assert_eq!(classify(&[rr, bye].concat()), Datagram::Bye { ssrc: 7 });
        assert_eq!(classify(&rr), Datagram::Other);
        // A length that runs past the datagram.
        assert_eq!(classify(&[0x81, 203, 0, 9, 0, 0, 0, 7]), Datagram::Other);
        // A BYE that names nobody, and one after a packet of another version.
        assert_eq!(classify(&[0x80, 203, 0, 0]), Datagram::Other);
        let v1 = [0x40, 201, 0, 1, 0, 0, 0, 7];
        assert_eq!(classify(&[v1, bye].concat()), Datagram::Other);
        // A source count past the packet's length.
        assert_eq!(classify(&[0x83, 203, 0, 1, 0, 0, 0, 7]), Datagram::Other);
    }

    #[test]
    fn hostile_headers_are_ignored() {
        // Shorter than a header, or a header and nothing else.
        assert_eq!(classify(&[0x80]), Datagram::Other);
        assert_eq!(classify(&rtp(0)[..11]), Datagram::Other);
        // CSRCs announced past the end of the datagram, and exactly up to it.
        let mut csrcs = rtp(0)[..12].to_vec();
        csrcs[0] |= 0x0f;
        csrcs.extend([0; 4 * 14]);
        assert_eq!(classify(&csrcs), Datagram::Other);
        csrcs.extend([0; 4]);
        assert_eq!(classify(&csrcs), Datagram::Other);
        csrcs.extend([0xff; 160]);
        let want = Datagram::Rtp {
            codec: Codec::Pcmu,
            ssrc: 0xdeadbeef,
        };
        assert_eq!(classify(&csrcs), want);
        // An extension header whose length runs past the end.
        let mut extension = rtp(0);
        extension[0] |= 0x10;
        extension[14..16].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(classify(&extension), Datagram::Other);
        // Padding longer than the packet, padding of zero, and padding that
        // leaves no audio.
        let mut padded = rtp(0);
        padded[0] |= 0x20;
        *padded.last_mut().unwrap() = 255;
        assert_eq!(classify(&padded), Datagram::Other);
        *padded.last_mut().unwrap() = 0;
        assert_eq!(classify(&padded), Datagram::Other);
        *padded.last_mut().unwrap() = 160;
        assert_eq!(classify(&padded), Datagram::Other);
        *padded.last_mut().unwrap() = 4;
        assert_eq!(classify(&padded), want);
    }

    #[test]
    fn random_datagrams_never_panic() {
        // A fixed xorshift sequence: the same datagrams on every run.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 80) as usize;
            let mut packet: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(first) = packet.first_mut() {
                // Mostly version 2, where the parsers look further.
                *first = (*first & 0x3f) | 0x80;
            }
            if packet.len() > 1 && next() % 2 == 0 {
                packet[1] = 192 + (next() % 32) as u8;
            }
            let _ = classify(&packet);
        }
    }
}
