//! A mutational fuzzer for the SIP agent's intake, over the network: seeds
//! (the committed corpus and well-formed requests) are mutated as an attacker
//! or a broken device would (bytes flipped, NULs and control bytes put in,
//! lines dropped, doubled and cut, numbers made huge or negative, messages
//! spliced) and sent to the running agent, with the real bus and media behind
//! it. Every so many datagrams the agent must still answer a well-formed
//! OPTIONS and a bus `Ping`; inputs that drew an answer not seen before are
//! kept, so a run can grow the corpus.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::sip::{RawPeer, plain_offer};

/// A small, fast, seeded generator: the same seed gives the same run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    pub sent: usize,
    /// Distinct first lines of the answers (or `silence`), with a count.
    pub answers: std::collections::BTreeMap<String, usize>,
    /// Inputs that drew an answer no earlier input drew.
    pub novel: Vec<Vec<u8>>,
}

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "4294967296",
    "99999999999999999999",
    "18446744073709551616",
    "1e9",
    "",
];

fn mutate(seed: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len().max(1);
        match rng.below(11) {
            0 => {
                let i = rng.below(len);
                if i < out.len() {
                    out[i] ^= 1 << rng.below(8);
                }
            }
            1 => {
                let i = rng.below(len);
                out.insert(i.min(out.len()), 0);
            }
            2 => {
                let i = rng.below(len);
                let bytes: &[u8] = match rng.below(5) {
                    0 => b"\r\n",
                    1 => b"\xff\xfe",
                    2 => b"\x7f",
                    3 => b"%00",
                    _ => b";;;;",
                };
                let i = i.min(out.len());
                out.splice(i..i, bytes.iter().copied());
            }
            3 => {
                let a = rng.below(len).min(out.len());
                let b = (a + rng.below(64)).min(out.len());
                out.drain(a..b);
            }
            4 => out.truncate(rng.below(len)),
            5 => {
                // A whole line doubled or dropped.
                let text = String::from_utf8_lossy(&out).into_owned();
                let mut lines: Vec<&str> = text.split("\r\n").collect();
                if lines.len() > 1 {
                    let i = rng.below(lines.len());
                    if rng.below(2) == 0 {
                        lines.insert(i, lines[i]);
                    } else {
                        lines.remove(i);
                    }
                }
                out = lines.join("\r\n").into_bytes();
            }
            6 => {
                // A number made huge, negative or empty.
                let text = String::from_utf8_lossy(&out).into_owned();
                let digits: Vec<usize> = text
                    .char_indices()
                    .filter(|(_, c)| c.is_ascii_digit())
                    .map(|(i, _)| i)
                    .collect();
                if !digits.is_empty() {
                    let start = digits[rng.below(digits.len())];
                    let end = text[start..]
                        .find(|c: char| !c.is_ascii_digit())
                        .map_or(text.len(), |e| start + e);
                    let with = NUMBERS[rng.below(NUMBERS.len())];
                    out = format!("{}{with}{}", &text[..start], &text[end..]).into_bytes();
                }
            }
            7 => {
                // A long header.
                let at = find(&out, b"\r\n").map_or(out.len(), |i| i + 2);
                let header = format!("X-{}: {}\r\n", rng.below(100), "A".repeat(rng.below(9000)));
                out.splice(at..at, header.into_bytes());
            }
            8 => {
                // Two messages spliced.
                let a = rng.below(len).min(out.len());
                let b = rng.below(other.len().max(1)).min(other.len());
                out.truncate(a);
                out.extend_from_slice(&other[b..]);
            }
            9 => {
                let i = rng.below(len).min(out.len());
                let byte = rng.below(32) as u8;
                out.insert(i, byte);
            }
            _ => {
                // A method or version word changed.
                let words: &[&[u8]] = &[b"INVITE", b"BYE", b"SIP/2.0", b"CANCEL", b"ACK"];
                let w = words[rng.below(words.len())];
                if let Some(i) = find(&out, w) {
                    let with: &[u8] = match rng.below(4) {
                        0 => b"SIP/9.9",
                        1 => b"XINVITE",
                        2 => b"",
                        _ => b"OPTIONS",
                    };
                    out.splice(i..i + w.len(), with.iter().copied());
                }
            }
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The seeds: every file of `corpus`, and well-formed requests.
pub fn seeds(corpus: &Path, peer: &RawPeer, agent: SocketAddr) -> Result<Vec<Vec<u8>>> {
    let mut seeds = Vec::new();
    if let Ok(dir) = std::fs::read_dir(corpus) {
        let mut files: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f)?;
            seeds.push(replace(&bytes, b"AGENT", agent.to_string().as_bytes()));
        }
    }
    let sdp = plain_offer("127.0.0.1", 7000);
    seeds.push(peer.request("INVITE", "door", agent, "666", &[], sdp.as_bytes()));
    seeds.push(peer.request("OPTIONS", "door", agent, "666", &[], b""));
    seeds.push(peer.request(
        "INVITE",
        "door",
        agent,
        "666",
        &["P-Asserted-Identity: <sip:200@pbx>"],
        sdp.as_bytes(),
    ));
    if seeds.is_empty() {
        bail!("no seeds");
    }
    Ok(seeds)
}

/// `haystack` with every `needle` replaced by `with`.
pub fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// Sends `count` mutated datagrams to `agent`; `alive` is asked every
/// `check_every` datagrams whether the agent still answers, and a run fails
/// the first time it does not.
pub async fn run<F, Fut>(
    agent: SocketAddr,
    corpus: &Path,
    count: usize,
    seed: u64,
    check_every: usize,
    mut alive: F,
) -> Result<Report>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let peer = RawPeer::bind("127.0.0.1").await?;
    let seeds = seeds(corpus, &peer, agent)?;
    let mut rng = Rng::new(seed);
    let mut report = Report::default();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for n in 0..count {
        let a = &seeds[rng.below(seeds.len())];
        let b = &seeds[rng.below(seeds.len())];
        let datagram = mutate(a, b, &mut rng);
        if datagram.len() > 65_000 {
            continue;
        }
        peer.send(agent, &datagram).await?;
        report.sent += 1;
        // Most hostile datagrams are answered at once or never: a short wait
        // tells which, without waiting out retransmissions.
        let answer = peer.receive(Duration::from_millis(2)).await;
        let key = answer
            .as_deref()
            .and_then(|a| a.lines().next())
            .map_or("silence".to_owned(), |l| l.chars().take(40).collect());
        *report.answers.entry(key.clone()).or_default() += 1;
        if seen.insert(key) {
            report.novel.push(datagram);
        }
        if (n + 1) % check_every == 0 {
            alive().await?;
        }
    }
    alive().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_mutations() {
        let seed = b"INVITE sip:door@x SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n".to_vec();
        let a: Vec<Vec<u8>> = {
            let mut r = Rng::new(7);
            (0..50).map(|_| mutate(&seed, &seed, &mut r)).collect()
        };
        let b: Vec<Vec<u8>> = {
            let mut r = Rng::new(7);
            (0..50).map(|_| mutate(&seed, &seed, &mut r)).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().any(|m| m != &seed), "mutations change the seed");
    }
}
