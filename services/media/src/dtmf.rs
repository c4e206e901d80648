//! RFC 4733 telephone-events: reading them from RTP packets, one digit per press.
//!
//! A sender repeats the packets of one event (and its end packet three times); they
//! all carry the event's RTP timestamp, so a press is one (SSRC, timestamp) pair.
//! GStreamer's `RTPBuffer` reads the packets.

use gstreamer as gst;
use gstreamer_rtp as gst_rtp;

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
/// payload type `pt`, or `None` for anything else (other payloads, packets that are
/// not RTP or too short for an event).
pub fn parse(packet: &gst::BufferRef, pt: u8) -> Option<(u32, u32, u8)> {
    let rtp = gst_rtp::RTPBuffer::from_buffer_readable(packet).ok()?;
    if rtp.payload_type() != pt {
        return None;
    }
    let event = *rtp
        .payload()
        .ok()?
        .first()
        .filter(|_| rtp.payload_size() >= 4)?;
    Some((rtp.ssrc(), rtp.timestamp(), event))
}

/// Remembers which presses were reported, so each is reported once.
#[derive(Debug, Default)]
pub struct Dedup {
    last: Option<(u32, u32)>,
}

impl Dedup {
    /// The digit of `packet` when it starts a press not seen before.
    pub fn digit(&mut self, packet: &gst::BufferRef, pt: u8) -> Option<char> {
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

    use gst_rtp::prelude::*;

    /// An RFC 4733 packet built with `RTPBuffer`: event, end bit, volume 10,
    /// duration 160.
    fn packet(pt: u8, marker: bool, ts: u32, event: u8, end: bool) -> gst::Buffer {
        gst::init().unwrap();
        let mut buffer = gst::Buffer::new_rtp_with_sizes(4, 0, 0).unwrap();
        {
            let mut rtp =
                gst_rtp::RTPBuffer::from_buffer_writable(buffer.get_mut().unwrap()).unwrap();
            rtp.set_payload_type(pt);
            rtp.set_marker(marker);
            rtp.set_seq(1);
            rtp.set_timestamp(ts);
            rtp.set_ssrc(0x1234_5678);
            rtp.payload_mut().unwrap().copy_from_slice(&[
                event,
                if end { 0x80 } else { 0 } | 10,
                0,
                160,
            ]);
        }
        buffer
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
        assert_eq!(
            dedup.digit(&gst::Buffer::from_slice([0x80, 101, 0]), 101),
            None
        );
        assert_eq!(dedup.digit(&packet(101, true, 1, 200, false), 101), None);
        let mut short = packet(101, true, 1, 5, false);
        short.get_mut().unwrap().set_size(13);
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
