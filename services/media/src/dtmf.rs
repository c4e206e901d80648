//! RFC 4733 telephone-events: reading them from RTP packets, one digit per press.
//!
//! A sender repeats the packets of one event (and its end packet three times); they
//! all carry the event's RTP timestamp, so a press is one (SSRC, timestamp) pair.

/// The digit an RFC 4733 event code stands for.
pub fn digit(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => char::from(b'0' + event),
        10 => '*',
        11 => '#',
        12..=15 => char::from(b'A' + event - 12),
        _ => return None,
    })
}

/// The event code of a digit, for sending.
pub fn event(digit: char) -> Option<u8> {
    Some(match digit {
        '0'..='9' => digit as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => digit as u8 - b'A' + 12,
        'a'..='d' => digit as u8 - b'a' + 12,
        _ => return None,
    })
}

/// The (SSRC, timestamp, event) of an RTP packet carrying a telephone-event with
/// payload type `pt`, or `None` for anything else (other payloads, short packets).
pub fn parse(packet: &[u8], pt: u8) -> Option<(u32, u32, u8)> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    if packet[1] & 0x7f != pt {
        return None;
    }
    let csrc = usize::from(packet[0] & 0x0f);
    let mut offset = 12 + 4 * csrc;
    if packet[0] & 0x10 != 0 {
        let ext = packet.get(offset + 2..offset + 4)?;
        offset += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let payload = packet.get(offset..offset + 4)?;
    let timestamp = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    Some((ssrc, timestamp, payload[0]))
}

/// Remembers which presses were reported, so each is reported once.
#[derive(Debug, Default)]
pub struct Dedup {
    last: Option<(u32, u32)>,
}

impl Dedup {
    /// The digit of `packet` when it starts a press not seen before.
    pub fn digit(&mut self, packet: &[u8], pt: u8) -> Option<char> {
        let (ssrc, timestamp, event) = parse(packet, pt)?;
        if self.last == Some((ssrc, timestamp)) {
            return None;
        }
        let d = digit(event)?;
        self.last = Some((ssrc, timestamp));
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pt: u8, marker: bool, ts: u32, event: u8, end: bool) -> Vec<u8> {
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }, 0, 1];
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        p.extend_from_slice(&[event, if end { 0x80 } else { 0 } | 10, 0, 160]);
        p
    }

    #[test]
    fn one_digit_per_press_however_often_its_packets_repeat() {
        let mut dedup = Dedup::default();
        let mut got = String::new();
        for (ts, ev) in [(1000, 1), (2000, 11), (3000, 10)] {
            for i in 0..6 {
                let p = packet(101, i < 3, ts, ev, i >= 3);
                got.extend(dedup.digit(&p, 101));
            }
        }
        assert_eq!(got, "1#*");
    }

    #[test]
    fn other_payloads_and_junk_are_ignored() {
        let mut dedup = Dedup::default();
        assert_eq!(dedup.digit(&packet(0, false, 1, 5, false), 101), None);
        assert_eq!(dedup.digit(&[0x80, 101, 0], 101), None);
        assert_eq!(dedup.digit(&packet(101, true, 1, 200, false), 101), None);
        let mut short = packet(101, true, 1, 5, false);
        short.truncate(13);
        assert_eq!(dedup.digit(&short, 101), None);
    }

    #[test]
    fn events_and_digits_map_both_ways() {
        for d in "0123456789*#ABCD".chars() {
            assert_eq!(digit(event(d).unwrap()), Some(d));
        }
        assert_eq!(event('x'), None);
    }
}
