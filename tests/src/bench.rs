//! Helpers of the whole-system benchmarks (`cargo xtask bench`).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The `p` quantile (0.0-1.0) of `samples`, nearest rank.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A process's resident memory (VmRSS), in KiB; 0 when it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A process's proportional set size (its share of the pages it maps), in
/// KiB, from `/proc/PID/smaps_rollup`; 0 when it is gone.
pub fn pss_kib(pid: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A process's own code: how much of its executable's text (the mapping that
/// runs) is resident, and the text's size, in KiB, from `/proc/PID/smaps`;
/// zeros when it is gone.
pub fn code_kib(pid: u32) -> (u64, u64) {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return (0, 0);
    };
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let kib = |line: &str| {
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (mut resident, mut size, mut in_text) = (0, 0, false);
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A mapping's first line: `START-END PERMS OFFSET DEV INODE PATH`.
        if fields.len() >= 5 && fields[0].contains('-') && !fields[0].ends_with(':') {
            in_text = fields[1] == "r-xp"
                && fields
                    .get(5)
                    .is_some_and(|path| std::path::Path::new(path) == exe);
        } else if in_text && line.starts_with("Rss:") {
            resident += kib(line);
        } else if in_text && line.starts_with("Size:") {
            size += kib(line);
        }
    }
    (resident, size)
}

/// The CPU time a process has used so far (user and system), in seconds; 0
/// when it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let per_second = clock_ticks_per_second().unwrap_or(100.0);
    cpu_ticks(pid).map_or(0.0, |t| t as f64 / per_second)
}

/// INVITE sent → 200 OK received, per call, from SIPp's message trace
/// (microsecond timestamps), in ms.
pub fn invite_to_ok(messages: &[crate::sip::Traced]) -> Vec<f64> {
    let call_id = |m: &crate::sip::Traced| {
        m.text
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID:").map(|v| v.trim().to_owned()))
    };
    let mut sent = std::collections::HashMap::new();
    let mut times = Vec::new();
    for m in messages {
        if m.sent && m.is_request("INVITE") {
            sent.insert(call_id(m), m.at);
        } else if !m.sent
            && m.is_response(200)
            && m.text.contains(" INVITE")
            && let Some(at) = sent.remove(&call_id(m))
        {
            times.push((m.at - at) * 1e3);
        }
    }
    times
}

/// Config, media (test microphone, fake speaker, no camera) and the SIP
/// agent on a private bus, answering every direct call at once with no call
/// time limit and no RTP timeout (SIPp's callers send no RTP, and sip-bench's
/// call outlives its two 31 s settling waits): what the SIP benchmarks call.
pub struct Answering {
    pub bus: crate::Bus,
    pub db: crate::ConfigDb,
    pub config: crate::Service,
    pub media: crate::Service,
    pub agent: crate::Service,
    pub dir: tempfile::TempDir,
    pub conn: zbus::Connection,
    pub target: std::net::SocketAddr,
}

impl Answering {
    pub async fn start(prefix: &str) -> Result<Answering> {
        let bus = crate::Bus::start()?;
        let db = crate::ConfigDb::new()?;
        let config = crate::start_config(&bus, &db).await?;
        let conn = bus.connect().await?;
        crate::reconfigure(&conn, answer_at_once).await?;
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        crate::chown_to(dir.path(), "doorphone-media")?;
        let media = crate::start_media(
            &bus,
            &[
                "--audio-sink".into(),
                "fake".into(),
                "--video-source".into(),
                "none".into(),
                "--address".into(),
                "127.0.0.1".into(),
                "--rtp-timeout".into(),
                "3600".into(),
            ],
            &dir.path().join("media.log"),
        )
        .await?;
        let (agent, port) = crate::sip::start_agent(&bus, dir.path(), &[]).await?;
        Ok(Answering {
            bus,
            db,
            config,
            media,
            agent,
            dir,
            conn,
            target: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }
}

/// The benchmarks' settings: direct calls answered at once (audio), no call
/// time limit.
pub fn answer_at_once(doc: &mut serde_json::Value) {
    doc["calls"]["auto_answer"] =
        serde_json::json!({"ip": true, "sip": false, "delay": 0, "mode": "audio"});
    doc["calls"]["max_call_time"] = serde_json::json!(0);
}

/// What a flood of strangers' INVITEs got.
#[derive(Debug)]
pub struct Flood {
    pub sent: usize,
    /// Refusals that came back (the rest met the per-source silence).
    pub refused: usize,
    /// From the first INVITE sent to the agent answering a probe sent after
    /// the last: the time it took to decide on all of them.
    pub took: std::time::Duration,
}

/// Sends `count` INVITEs for the door to `agent`, round robin from `sources`
/// loopback addresses (127.0.2.1 and up), as fast as they go; then an OPTIONS
/// from 127.0.0.9, whose answer says the agent has read everything before
/// (or dropped what its socket could not hold).
pub async fn flood(
    agent: std::net::SocketAddr,
    sources: usize,
    count: usize,
) -> anyhow::Result<Flood> {
    use crate::sip::{RawPeer, plain_offer};
    let mut peers = Vec::new();
    for i in 0..sources {
        peers.push(RawPeer::bind(&format!("127.0.2.{}", i + 1)).await?);
    }
    let sdp = plain_offer("127.0.2.1", 7000);
    let requests: Vec<Vec<u8>> = (0..count)
        .map(|n| peers[n % sources].request("INVITE", "door", agent, "666", &[], sdp.as_bytes()))
        .collect();
    let probe = RawPeer::bind("127.0.0.9").await?;
    let started = std::time::Instant::now();
    for (n, request) in requests.iter().enumerate() {
        peers[n % sources].send(agent, request).await?;
        if n % 256 == 255 {
            tokio::task::yield_now().await;
        }
    }
    // The probe may be lost with the flood's overflow of the socket buffer:
    // like any UDP request it is sent again until answered (RFC 3261's timer
    // E, at a fixed 500 ms).
    let options = probe.request("OPTIONS", "door", agent, "probe", &[], b"");
    let mut answered = false;
    for _ in 0..120 {
        probe.send(agent, &options).await?;
        if probe
            .final_response(std::time::Duration::from_millis(500))
            .await
            .is_some()
        {
            answered = true;
            break;
        }
    }
    anyhow::ensure!(
        answered,
        "the agent did not answer the probe after the flood"
    );
    let took = started.elapsed();
    let mut refused = 0;
    for peer in &peers {
        while let Some(answer) = peer.receive(std::time::Duration::from_millis(1)).await {
            if answer.starts_with("SIP/2.0 403") {
                refused += 1;
            }
        }
    }
    Ok(Flood {
        sent: count,
        refused,
        took,
    })
}

/// User plus system CPU time of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3,
    // utime 14 and stime 15.
    let rest = &stat[stat.rfind(')').context("no command name in stat")? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("no utime")?.parse()?;
    let stime: u64 = fields.get(12).context("no stime")?.parse()?;
    Ok(utime + stime)
}

pub fn clock_ticks_per_second() -> Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// The process's CPU use over `window`, in % of one core.
pub async fn cpu_percent(pid: u32, window: Duration) -> Result<f64> {
    let per_second = clock_ticks_per_second()?;
    let (start, ticks) = (Instant::now(), cpu_ticks(pid)?);
    tokio::time::sleep(window).await;
    let used = (cpu_ticks(pid)? - ticks) as f64 / per_second;
    Ok(100.0 * used / start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let samples = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile(&samples, 0.0), 1.0);
        assert_eq!(percentile(&samples, 0.5), 3.0);
        assert_eq!(percentile(&samples, 1.0), 5.0);
    }

    #[test]
    fn reads_its_own_memory_and_cpu() {
        let me = std::process::id();
        assert!(rss_kib(me) > 0);
        assert!(pss_kib(me) > 0);
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        assert!(cpu_seconds(me) > 0.0);
    }
}
