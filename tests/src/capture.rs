//! What crosses the loopback interface: an `AF_PACKET` socket (the tests run as
//! root) records the UDP datagrams to or from a range of ports while a call runs,
//! and a detector tells whether an RTP payload is plain PCMU of a known tone.

use std::io::Read;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Result;
use socket2::{Domain, Protocol, Socket, Type};

use crate::audio::goertzel;

/// `ETH_P_ALL`: every protocol.
const ETH_P_ALL: u16 = 0x0003;

/// One UDP datagram seen on loopback.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub from_port: u16,
    pub to_port: u16,
    pub payload: Vec<u8>,
}

/// Records UDP datagrams between 127.0.0.0/8 addresses whose source or
/// destination port is in a range, until dropped or [`Capture::stop`]ped.
pub struct Capture {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Datagram>>>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    pub fn start(ports: RangeInclusive<u16>) -> Result<Capture> {
        let socket = Socket::new(
            Domain::PACKET,
            Type::RAW,
            Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
        )?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stopping, record) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let mut socket = socket;
            let mut frame = [0u8; 65536];
            while !stopping.load(Ordering::Relaxed) {
                let Ok(n) = socket.read(&mut frame) else {
                    continue;
                };
                if let Some(d) = udp(&frame[..n])
                    && (ports.contains(&d.from_port) || ports.contains(&d.to_port))
                {
                    record.lock().unwrap().push(d);
                }
            }
        });
        Ok(Capture {
            stop,
            seen,
            thread: Some(thread),
        })
    }

    /// Stops recording and returns what was seen. Loopback shows each datagram
    /// twice (going out and coming in).
    pub fn stop(mut self) -> Vec<Datagram> {
        self.halt();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.halt();
    }
}

/// An Ethernet-framed IPv4 UDP datagram between loopback addresses.
fn udp(frame: &[u8]) -> Option<Datagram> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 || *ip.get(9)? != 17 {
        return None;
    }
    if *ip.get(12)? != 127 || *ip.get(16)? != 127 {
        return None;
    }
    let header = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let udp = ip.get(header..total.min(ip.len()))?;
    Some(Datagram {
        from_port: u16::from_be_bytes([*udp.first()?, *udp.get(1)?]),
        to_port: u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]),
        payload: udp.get(8..)?.to_vec(),
    })
}

/// A G.711 µ-law byte as a linear sample.
pub fn ulaw(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// The RTP payload of a datagram with payload type `pt` (no CSRC, no extension),
/// whatever follows it (an SRTP authentication tag).
pub fn rtp_payload(datagram: &[u8], pt: u8) -> Option<&[u8]> {
    let first = *datagram.first()?;
    if first >> 6 != 2 || first & 0x1f != 0 || datagram.get(1)? & 0x7f != pt {
        return None;
    }
    datagram.get(12..)
}

/// Whether the first 20 ms (160 bytes) of `payload`, read as plain PCMU, are a
/// tone of one of `freqs`: a single frequency that carries at least a quarter of
/// the energy. A pure tone carries half; noise (what a cipher makes of it) a
/// hundred and sixtieth.
pub fn plain_pcmu_tone(payload: &[u8], freqs: &[f64]) -> bool {
    let Some(block) = payload.get(..160) else {
        return false;
    };
    let samples: Vec<i16> = block.iter().map(|&b| ulaw(b)).collect();
    let energy: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    energy > 0.0
        && freqs
            .iter()
            .any(|&f| goertzel(&samples, 8000, f) > 0.25 * energy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulaw_encode(sample: i16) -> u8 {
        let sign = if sample < 0 { 0x80 } else { 0 };
        let magnitude = (i32::from(sample).abs().min(32635) + 0x84) as u32;
        let exponent = (31 - magnitude.leading_zeros()).saturating_sub(7).min(7);
        let mantissa = (magnitude >> (exponent + 3)) & 0x0f;
        !(sign | ((exponent as u8) << 4) | mantissa as u8)
    }

    #[test]
    fn the_detector_finds_a_plain_tone_and_not_noise() {
        let tone: Vec<u8> = (0..160)
            .map(|n| {
                let x = (2.0 * std::f64::consts::PI * 440.0 * f64::from(n) / 8000.0).sin();
                ulaw_encode((x * 8000.0) as i16)
            })
            .collect();
        assert!(plain_pcmu_tone(&tone, &[440.0, 1000.0]));
        assert!(!plain_pcmu_tone(&tone, &[1000.0]));
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..1000 {
            let noise: Vec<u8> = (0..160)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            assert!(!plain_pcmu_tone(&noise, &[440.0, 1000.0]));
        }
    }
}
