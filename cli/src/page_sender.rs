//! A page sent from this device: 20 ms PCMU RTP packets, timed by the clock,
//! then an RTCP BYE so that listeners end the page at once.

use std::f64::consts::PI;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::time::Instant;

use crate::failure::Failure;
use crate::page::Send;

const RATE: u32 = 8000;
/// Samples in one 20 ms packet.
const FRAME: usize = 160;
const PCMU: u8 = 0;
const TONE_SECONDS: f64 = 10.0;

pub async fn send(send: Send) -> Result<(), Failure> {
    let audio = match &send.file {
        Some(path) => {
            let mut audio = read_wav(path)?;
            if let Some(seconds) = send.seconds {
                audio.truncate((seconds * f64::from(RATE)) as usize);
            }
            audio
        }
        None => tone(
            send.tone.unwrap_or(1000.0),
            send.seconds.unwrap_or(TONE_SECONDS),
        ),
    };
    let socket = socket(send.iface.as_deref())
        .map_err(|e| Failure::Message(format!("cannot send to {}: {e}", send.target)))?;
    let ssrc = ssrc();
    let rtcp = SocketAddrV4::new(*send.target.ip(), send.target.port().wrapping_add(1));
    let start = Instant::now();
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    for (n, frame) in audio.chunks(FRAME).enumerate() {
        let at = start + Duration::from_millis(20 * n as u64);
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            _ = &mut interrupted => break,
        }
        let packet = rtp(n, ssrc, frame);
        socket
            .send_to(&packet, send.target)
            .await
            .map_err(|e| Failure::Message(format!("cannot send to {}: {e}", send.target)))?;
    }
    socket
        .send_to(&bye(ssrc), rtcp)
        .await
        .map_err(|e| Failure::Message(format!("cannot send to {rtcp}: {e}")))?;
    Ok(())
}

/// A UDP socket whose multicast leaves through `iface` and loops back to this
/// host too (its own pager hears it).
fn socket(iface: Option<&str>) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    if let Some(iface) = iface {
        socket
            .bind_device(Some(iface.as_bytes()))
            .map_err(|e| std::io::Error::new(e.kind(), format!("interface {iface:?}: {e}")))?;
    }
    socket.set_multicast_loop_v4(true)?;
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into())?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// A source identifier that differs from run to run.
fn ssrc() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

fn rtp(n: usize, ssrc: u32, frame: &[i16]) -> Vec<u8> {
    let marker = if n == 0 { 0x80 } else { 0 };
    let mut packet = vec![0x80, marker | PCMU];
    packet.extend_from_slice(&(n as u16).to_be_bytes());
    packet.extend_from_slice(&((n * FRAME) as u32).to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend(frame.iter().map(|&s| ulaw(s)));
    packet
}

/// An RTCP compound packet: an empty receiver report, then BYE.
fn bye(ssrc: u32) -> Vec<u8> {
    let mut packet = vec![0x80, 201, 0, 1];
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(&[0x81, 203, 0, 1]);
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet
}

/// G.711 µ-law.
fn ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let s = i32::from(sample);
    let sign = if s < 0 { 0x80 } else { 0 };
    let magnitude = s.abs().min(CLIP) + BIAS;
    let exponent = (7 - (magnitude >> 7).leading_zeros().saturating_sub(24) as i32).clamp(0, 7);
    let mantissa = (magnitude >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

fn tone(freq: f64, seconds: f64) -> Vec<i16> {
    let n = (seconds * f64::from(RATE)) as usize;
    (0..n)
        .map(|i| (16000.0 * (2.0 * PI * freq * i as f64 / f64::from(RATE)).sin()) as i16)
        .collect()
}

/// A 16-bit PCM WAV file as 8 kHz mono samples.
fn read_wav(path: &Path) -> Result<Vec<i16>, Failure> {
    let bytes =
        std::fs::read(path).map_err(|e| Failure::Message(format!("{}: {e}", path.display())))?;
    let bad = |why: &str| Failure::Message(format!("{}: {why}", path.display()));
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(bad("not a WAV file"));
    }
    let mut offset = 12;
    let mut format = None;
    while offset + 8 <= bytes.len() {
        let id = &bytes[offset..offset + 4];
        let size =
            u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().expect("4 bytes")) as usize;
        let body = &bytes[offset + 8..(offset + 8 + size).min(bytes.len())];
        if id == b"fmt " && body.len() >= 16 {
            let word = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
            let rate = u32::from_le_bytes(body[4..8].try_into().expect("4 bytes"));
            format = Some((word(0), word(2), rate, word(14)));
        } else if id == b"data" {
            let Some((1, channels @ 1..=8, rate @ 1.., 16)) = format else {
                return Err(bad("only 16-bit PCM WAV files can be sent"));
            };
            let frames: Vec<f64> = body
                .chunks_exact(2 * usize::from(channels))
                .map(|frame| {
                    frame
                        .chunks_exact(2)
                        .map(|s| f64::from(i16::from_le_bytes([s[0], s[1]])))
                        .sum::<f64>()
                        / f64::from(channels)
                })
                .collect();
            return Ok(resample(&frames, rate));
        }
        offset += 8 + size + size % 2;
    }
    Err(bad("no audio data"))
}

/// `samples` at `rate` to 8 kHz, by linear interpolation.
fn resample(samples: &[f64], rate: u32) -> Vec<i16> {
    let step = f64::from(rate) / f64::from(RATE);
    let n = (samples.len() as f64 / step) as usize;
    (0..n)
        .map(|i| {
            let x = i as f64 * step;
            let (j, frac) = (x as usize, x.fract());
            let a = samples[j];
            let b = samples.get(j + 1).copied().unwrap_or(a);
            (a + (b - a) * frac) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_matches_g711() {
        // Reference values of the G.711 µ-law table.
        assert_eq!(ulaw(0), 0xff);
        assert_eq!(ulaw(-1), 0x7f);
        assert_eq!(ulaw(32767), 0x80);
        assert_eq!(ulaw(-32768), 0x00);
        assert_eq!(ulaw(1000), 0xce);
        assert_eq!(ulaw(-1000), 0x4e);
    }

    #[test]
    fn packets_carry_pcmu_with_running_sequence_and_timestamp() {
        let frame = [0i16; FRAME];
        let first = rtp(0, 7, &frame);
        let third = rtp(2, 7, &frame);
        assert_eq!(first.len(), 12 + FRAME);
        assert_eq!(&first[..2], &[0x80, 0x80]);
        assert_eq!(&third[..8], &[0x80, 0, 0, 2, 0, 0, 1, 64]);
        assert_eq!(&third[8..12], &7u32.to_be_bytes());
    }

    #[test]
    fn a_wav_file_is_mixed_down_and_resampled_to_8khz() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let samples: Vec<i16> = (0..3200).map(|i| (i % 100) as i16).collect();
        let mut data = Vec::new();
        for s in &samples {
            data.extend_from_slice(&s.to_le_bytes());
            data.extend_from_slice(&s.to_le_bytes());
        }
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&[1, 0, 2, 0]);
        wav.extend_from_slice(&16000u32.to_le_bytes());
        wav.extend_from_slice(&64000u32.to_le_bytes());
        wav.extend_from_slice(&[4, 0, 16, 0]);
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
        wav.extend_from_slice(&data);
        std::fs::write(&path, wav).unwrap();
        let audio = read_wav(&path).unwrap();
        assert_eq!(audio.len(), 1600);
        assert_eq!(&audio[..3], &[0, 2, 4]);
    }
}
