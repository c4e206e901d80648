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

const RTCP_BYE: u8 = 203;

/// Reads a datagram's headers (RFC 3550; RTCP told apart by RFC 5761's rule).
pub fn classify(packet: &[u8]) -> Datagram {
    if packet.len() < 8 || packet[0] >> 6 != 2 {
        return Datagram::Other;
    }
    if (192..=223).contains(&packet[1]) {
        return rtcp_bye(packet).map_or(Datagram::Other, |ssrc| Datagram::Bye { ssrc });
    }
    let csrcs = usize::from(packet[0] & 0x0f);
    let header = 12 + 4 * csrcs;
    if packet.len() <= header {
        return Datagram::Other;
    }
    match Codec::from_payload_type(packet[1] & 0x7f) {
        Some(codec) => Datagram::Rtp {
            codec,
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        },
        None => Datagram::Other,
    }
}

/// The source a BYE in this compound packet names, if it holds one.
fn rtcp_bye(mut packet: &[u8]) -> Option<u32> {
    while packet.len() >= 4 {
        if packet[0] >> 6 != 2 {
            return None;
        }
        let len = (usize::from(u16::from_be_bytes([packet[2], packet[3]])) + 1) * 4;
        let body = packet.get(..len)?;
        if body[1] == RTCP_BYE {
            // A BYE with no source (count 0) is valid but names nobody.
            return (body[0] & 0x1f > 0 && body.len() >= 8)
                .then(|| u32::from_be_bytes([body[4], body[5], body[6], body[7]]));
        }
        packet = &packet[len..];
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
    }
}
