//! A page sent from this device: 20 ms PCMU RTP packets, timed by the clock,
//! then an RTCP BYE so that listeners end the page at once.

use std::f64::consts::PI;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use rtcp_types::{Bye, Compound, ReceiverReport, RtcpPacketWriterExt};
use rtp_types::RtpPacketBuilder;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, Resampler, SincInterpolationParameters};
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
    let payload: Vec<u8> = frame.iter().map(|&s| ulaw(s)).collect();
    RtpPacketBuilder::<&[u8], &[u8]>::new()
        .marker_bit(n == 0)
        .payload_type(PCMU)
        .sequence_number(n as u16)
        .timestamp((n * FRAME) as u32)
        .ssrc(ssrc)
        .payload(payload.as_slice())
        .write_vec()
        .expect("a PCMU packet of one frame fits an RTP packet")
}

/// An RTCP compound packet: an empty receiver report, then BYE.
fn bye(ssrc: u32) -> Vec<u8> {
    let compound = Compound::builder()
        .add_packet(ReceiverReport::builder(ssrc))
        .add_packet(Bye::builder().add_source(ssrc));
    let mut packet = vec![0; 16];
    let n = compound
        .write_into(&mut packet)
        .expect("a receiver report and a BYE of one source fit 16 bytes");
    packet.truncate(n);
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

/// A WAV file (integer samples of 8 to 32 bits or float, any rate, any number
/// of channels) as 8 kHz mono samples.
fn read_wav(path: &Path) -> Result<Vec<i16>, Failure> {
    let bad = |e: hound::Error| Failure::Message(format!("{}: {e}", path.display()));
    let mut reader = hound::WavReader::open(path).map_err(bad)?;
    let spec = reader.spec();
    let samples: Vec<f64> = match spec.sample_format {
        hound::SampleFormat::Int => {
            let full_scale = f64::from(1u32 << (spec.bits_per_sample.clamp(1, 32) - 1));
            reader
                .samples::<i32>()
                .map(|s| s.map(|s| f64::from(s) / full_scale))
                .collect::<Result<_, _>>()
        }
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .map(|s| s.map(f64::from))
            .collect::<Result<_, _>>(),
    }
    .map_err(bad)?;
    let channels = usize::from(spec.channels.max(1));
    let mono: Vec<f64> = samples
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f64>() / channels as f64)
        .collect();
    if mono.is_empty() {
        return Err(Failure::Message(format!(
            "{}: no audio data",
            path.display()
        )));
    }
    let audio = resample(&mono, spec.sample_rate)
        .map_err(|e| Failure::Message(format!("{}: cannot resample: {e}", path.display())))?;
    Ok(audio
        .iter()
        .map(|&s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect())
}

/// `samples` (full scale ±1) at `rate` to 8 kHz, through a windowed-sinc
/// resampler whose low-pass keeps what lies above 4 kHz from aliasing.
fn resample(samples: &[f64], rate: u32) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    if rate == RATE {
        return Ok(samples.to_vec());
    }
    if rate == 0 {
        return Err("the file's sample rate is 0".into());
    }
    let mut resampler = Async::<f64>::new_sinc(
        f64::from(RATE) / f64::from(rate),
        1.0,
        &SincInterpolationParameters::default(),
        1024,
        1,
        FixedAsync::Input,
    )?;
    let input = InterleavedSlice::new(samples, 1, samples.len())?;
    Ok(resampler
        .process_all(&input, samples.len(), None)?
        .take_data())
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
    fn the_bye_follows_an_empty_receiver_report() {
        let packet = bye(7);
        assert_eq!(
            packet,
            [0x80, 201, 0, 1, 0, 0, 0, 7, 0x81, 203, 0, 1, 0, 0, 0, 7]
        );
    }

    /// Writes `frames` (one `Vec` of channel values each) as a WAV file.
    fn write_wav<S: hound::Sample + Copy>(
        path: &Path,
        spec: hound::WavSpec,
        frames: impl IntoIterator<Item = Vec<S>>,
    ) {
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for frame in frames {
            for s in frame {
                writer.write_sample(s).unwrap();
            }
        }
        writer.finalize().unwrap();
    }

    fn spec(rate: u32, channels: u16, bits: u16, format: hound::SampleFormat) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        }
    }

    fn sine(freq: f64, rate: u32, i: usize) -> f64 {
        (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()
    }

    /// The amplitude (full scale 32768) of `freq` in 8 kHz `samples`, by Goertzel.
    fn amplitude(samples: &[i16], freq: f64) -> f64 {
        let w = 2.0 * PI * freq / f64::from(RATE);
        let (mut s1, mut s2) = (0.0, 0.0);
        for &x in samples {
            let s = f64::from(x) + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
        2.0 * power.sqrt() / samples.len() as f64
    }

    #[test]
    fn a_stereo_wav_file_is_mixed_down() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        // The left channel's tone and the right channel's silence average to half.
        let frames = (0..8000).map(|i| vec![(16000.0 * sine(1000.0, RATE, i)) as i16, 0]);
        write_wav(&path, spec(RATE, 2, 16, hound::SampleFormat::Int), frames);
        let audio = read_wav(&path).unwrap();
        assert_eq!(audio.len(), 8000);
        let a = amplitude(&audio, 1000.0);
        assert!((a - 8000.0).abs() < 20.0, "{a}");
    }

    #[test]
    fn wav_files_of_every_sample_format_read_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let tone = |i| 0.5 * sine(1000.0, 16000, i);
        let n = 16000;
        let mut heard = Vec::new();
        for bits in [8u16, 16, 24, 32] {
            let full = f64::from(1u32 << (bits - 1));
            let frames = (0..n).map(|i| vec![(tone(i) * full) as i32]);
            write_wav(
                &path,
                spec(16000, 1, bits, hound::SampleFormat::Int),
                frames,
            );
            heard.push((bits, read_wav(&path).unwrap()));
        }
        let frames = (0..n).map(|i| vec![tone(i) as f32]);
        write_wav(
            &path,
            spec(16000, 1, 32, hound::SampleFormat::Float),
            frames,
        );
        heard.push((0, read_wav(&path).unwrap()));
        for (bits, audio) in heard {
            assert!(
                (7900..=8100).contains(&audio.len()),
                "{bits}: {}",
                audio.len()
            );
            let a = amplitude(&audio, 1000.0);
            assert!((a - 16384.0).abs() < 400.0, "{bits} bits: {a}");
        }
    }

    #[test]
    fn resampling_to_8khz_keeps_speech_and_does_not_alias() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let rate = 48000;
        let file = |freq| {
            let frames = (0..rate as usize).map(|i| vec![(16000.0 * sine(freq, rate, i)) as i16]);
            write_wav(&path, spec(rate, 1, 16, hound::SampleFormat::Int), frames);
            read_wav(&path).unwrap()
        };
        // 1 kHz passes at its level.
        let kept = file(1000.0);
        assert!((7900..=8100).contains(&kept.len()), "{}", kept.len());
        let a = amplitude(&kept, 1000.0);
        assert!((a - 16000.0).abs() < 400.0, "1 kHz at {a}");
        // 6 kHz is above the 4 kHz that 8 kHz can carry: without a low-pass it
        // would fold to 2 kHz at its full level.
        let folded = file(6000.0);
        let alias = amplitude(&folded, 2000.0);
        assert!(alias < 16.0, "6 kHz folded to 2 kHz at {alias}");
        // Nothing else is left of it either, away from the file's first and
        // last 100 ms (a tone that starts or stops at once has a spectrum of
        // its own).
        let middle = &folded[800..folded.len() - 800];
        let rms = (middle.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / middle.len() as f64)
            .sqrt();
        assert!(rms < 4.0, "6 kHz left {rms} RMS");
    }

    #[test]
    fn files_that_are_not_wav_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        std::fs::write(&path, b"RIFF\0\0\0\0AVI LIST").unwrap();
        assert!(read_wav(&path).is_err());
        std::fs::write(&path, b"").unwrap();
        assert!(read_wav(&path).is_err());
        write_wav::<i16>(&path, spec(RATE, 1, 16, hound::SampleFormat::Int), []);
        assert!(read_wav(&path).is_err());
        assert!(read_wav(&dir.path().join("missing.wav")).is_err());
    }
}
