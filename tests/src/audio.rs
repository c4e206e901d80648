//! Which tone is in a stretch of audio: a Goertzel filter per candidate frequency,
//! and a WAV reader that also takes a file whose writer has not finished its header.

/// The power of `freq` in `samples` taken at `rate`.
pub fn goertzel(samples: &[i16], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len().max(1) as f64
}

/// The candidate with the most power, when it stands clearly above the others
/// (ten times) and above silence.
pub fn dominant(samples: &[i16], rate: u32, candidates: &[f64]) -> Option<f64> {
    let mut powers: Vec<(f64, f64)> = candidates
        .iter()
        .map(|&f| (f, goertzel(samples, rate, f)))
        .collect();
    powers.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (best, power) = powers[0];
    let runner_up = powers.get(1).map_or(0.0, |p| p.1);
    (power > 1e4 && power > 10.0 * runner_up).then_some(best)
}

/// Little-endian 16-bit samples from raw bytes.
pub fn samples(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// The sample rate and samples of a 16-bit mono WAV file. The data runs to the end
/// of the file whatever its header says, so a file still being written reads too.
pub fn read_wav(bytes: &[u8]) -> Option<(u32, Vec<i16>)> {
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut offset = 12;
    let mut rate = None;
    while offset + 8 <= bytes.len() {
        let id = &bytes[offset..offset + 4];
        let size = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().ok()?) as usize;
        let body = offset + 8;
        if id == b"fmt " {
            rate = Some(u32::from_le_bytes(
                bytes.get(body + 4..body + 8)?.try_into().ok()?,
            ));
        } else if id == b"data" {
            return Some((rate?, samples(&bytes[body..])));
        }
        offset = body + size + size % 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn finds_the_tone_that_is_there() {
        let s = tone(440.0, 8000, 1600);
        assert_eq!(dominant(&s, 8000, &[440.0, 1000.0]), Some(440.0));
        let s = tone(1000.0, 16000, 3200);
        assert_eq!(dominant(&s, 16000, &[440.0, 1000.0]), Some(1000.0));
        assert_eq!(dominant(&vec![0; 1600], 8000, &[440.0, 1000.0]), None);
    }
}
