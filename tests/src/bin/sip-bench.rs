//! Whole-system figures of the SIP agent, measured on a private bus with the
//! release binaries running as their own users (config, media with its test
//! microphone and a fake speaker, the agent) and SIPp as the callers:
//! - INVITE → 200 OK with auto-answer at 0 s, media's answer included, over 200
//!   sequential calls (SIPp's response-time trace);
//! - sustained call rate: sequential calls as fast as SIPp and the agent go;
//! - a flood of strangers' INVITEs from 64 addresses while a call is active: how
//!   fast the agent decides, how many it answers, and the call's RTP pace and
//!   largest gap meanwhile; memory and log bytes after 100,000 of them;
//! - resident memory idle and after 1,000 calls.
//!
//! Run with `cargo xtask bench`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use doorphone_interfaces::sip::{self, CallProxy, Sip1Proxy};
use doorphone_system_tests::bench::{Answering, invite_to_ok, percentile, pss_kib, rss_kib};
use doorphone_system_tests::sip::{Caller, Sipp, caller, free_port};
use doorphone_system_tests::{PATIENCE, applied, reconfigure};
use futures_util::StreamExt;
use serde_json::json;

const SEQUENTIAL: usize = 200;
const THROUGHPUT: usize = 800;
const FLOOD: usize = 20_000;
/// Refused INVITEs memory is read after.
const HOSTILE: usize = 100_000;
/// How long the SIP stack keeps a completed transaction (64 x T1), and a margin.
const TRANSACTION_LINGER: Duration = Duration::from_secs(35);
/// How long until the agent has given back what its allocator freed (it
/// does every 30 s), and a margin.
const TRIM_SETTLE: Duration = Duration::from_secs(31);

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn run_sipp(
    dir: &Path,
    scenario: &str,
    target: SocketAddr,
    extra: &[&str],
    traced: bool,
) -> Result<(Duration, Sipp)> {
    let started = Instant::now();
    let mut sipp = if traced {
        Sipp::start(dir, "bench", scenario, free_port(), Some(target), extra)?
    } else {
        Sipp::start_untraced(dir, "bench", scenario, free_port(), Some(target), extra)?
    };
    let status = sipp.finish(Duration::from_secs(600)).await?;
    let took = started.elapsed();
    if !status.success() {
        bail!(
            "SIPp saw failures ({status}): {}",
            std::fs::read_to_string(dir.join("bench.err")).unwrap_or_default()
        );
    }
    Ok((took, sipp))
}

/// Waits until every call has ended (media stopped, history written).
async fn settle(proxy: &Sip1Proxy<'_>) -> Result<()> {
    let props = zbus::fdo::PropertiesProxy::builder(proxy.inner().connection())
        .destination(sip::BUS_NAME)
        .path(sip::OBJECT_PATH)
        .build()
        .await?;
    let mut changes = props.receive_properties_changed().await?;
    tokio::time::timeout(PATIENCE, async {
        while !proxy.calls().await.unwrap_or_default().is_empty() {
            changes.next().await;
        }
    })
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    doorphone_system_tests::require_root();
    let rig = Answering::start("sip-bench").await?;
    let (conn, dir, target) = (&rig.conn, &rig.dir, rig.target);
    let pid = rig.agent.pid().context("the agent runs")?;
    let rss_idle = rss_kib(pid);

    // INVITE → 200 OK, one call after the other.
    let quick = caller(
        "door",
        "200",
        false,
        &Caller::Answered {
            hang_up_after: Duration::ZERO,
        },
    );
    let run = tempfile::tempdir()?;
    let calls = SEQUENTIAL.to_string();
    let (_, sipp) = run_sipp(
        run.path(),
        &quick,
        target,
        &["-m", &calls, "-l", "1", "-r", "50", "-timeout", "600"],
        true,
    )
    .await?;
    let mut times = invite_to_ok(&sipp.messages());
    times.sort_by(f64::total_cmp);
    println!(
        "INVITE -> 200 OK (auto-answer 0 s, media answer included), {} sequential calls: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        times.len(),
        percentile(&times, 0.50),
        percentile(&times, 0.95),
        times.last().copied().unwrap_or(0.0)
    );

    // Sustained: sequential calls, as fast as they go.
    let run = tempfile::tempdir()?;
    let calls = THROUGHPUT.to_string();
    let (took, _) = run_sipp(
        run.path(),
        &quick,
        target,
        &["-m", &calls, "-l", "1", "-r", "10000", "-timeout", "600"],
        false,
    )
    .await?;
    println!(
        "sustained: {THROUGHPUT} calls (INVITE, 200, ACK, BYE, media session each) in {:.1} s = {:.0} calls/s, no failures",
        took.as_secs_f64(),
        THROUGHPUT as f64 / took.as_secs_f64()
    );
    // The calls' ends settle (media sessions stopped, history written).
    let proxy = Sip1Proxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    settle(&proxy).await?;
    // Completed transactions stay for RFC 3261's timers (64 x T1 = 32 s) to
    // absorb retransmissions; memory is read once they are gone.
    tokio::time::sleep(TRANSACTION_LINGER).await;
    let rss_after = rss_kib(pid);
    // A second thousand: what a leak would add beyond the first calls' warm-up.
    let run = tempfile::tempdir()?;
    let calls = (SEQUENTIAL + THROUGHPUT).to_string();
    run_sipp(
        run.path(),
        &quick,
        target,
        &["-m", &calls, "-l", "1", "-r", "10000", "-timeout", "600"],
        false,
    )
    .await?;
    settle(&proxy).await?;
    let rss_busy = rss_kib(pid);
    tokio::time::sleep(TRANSACTION_LINGER).await;
    let rss_second = rss_kib(pid);
    println!(
        "resident memory: idle {:.1} MiB; after {n} calls {:.1} MiB (+{:.2}); during a second {n} at full rate {:.1} MiB; after them {:.1} MiB (+{:.2} over the first {n})",
        mib(rss_idle),
        mib(rss_after),
        mib(rss_after) - mib(rss_idle),
        mib(rss_busy),
        mib(rss_second),
        mib(rss_second) - mib(rss_after),
        n = SEQUENTIAL + THROUGHPUT,
    );

    // A flood of strangers from 64 addresses while a whitelisted call talks:
    // only the resident's phone (127.0.0.2) may call directly.
    let revision = reconfigure(conn, |doc| {
        doc["device"]["ip_call"]["prevent_sip_hacking"] = json!(true);
        doc["contacts"] = json!([{"id": 1, "name": "Resident", "number": "127.0.0.2", "account": "auto", "whitelist": true}]);
    })
    .await?;
    applied(
        conn,
        sip::BUS_NAME,
        sip::OBJECT_PATH,
        sip::INTERFACE,
        revision,
    )
    .await?;
    let mut states = proxy.receive_call_state_changed().await?;
    // The resident's RTP comes here: the call's audio pace is measured on it.
    let rtp = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.2:0").await?);
    let rtp_port = rtp.local_addr()?.port();
    let talk = tempfile::tempdir()?;
    let mut resident = Sipp::start_at(
        talk.path(),
        "resident",
        &caller("door", "200", false, &Caller::AnsweredUntilBye)
            .replace("m=audio [auto_media_port]", &format!("m=audio {rtp_port}")),
        "127.0.0.2".parse()?,
        Some(target),
        &[],
    )?;
    let call = loop {
        let s = states.next().await.context("agent gone")?;
        let a = s.args()?;
        if a.state == sip::call_state::ANSWERED {
            break a.call.to_owned();
        }
    };
    let call = CallProxy::builder(conn)
        .path(call)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let (flowing, first) = tokio::sync::oneshot::channel();
    let watcher = {
        let (rtp, arrivals) = (rtp.clone(), arrivals.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut flowing = Some(flowing);
            while rtp.recv_from(&mut buf).await.is_ok() {
                arrivals.lock().expect("arrivals lock").push(Instant::now());
                if let Some(tx) = flowing.take() {
                    tx.send(()).ok();
                }
            }
        })
    };
    tokio::time::timeout(PATIENCE, first)
        .await
        .context("the call's RTP does not arrive")??;
    let flood_start = Instant::now();
    let flood = doorphone_system_tests::bench::flood(target, 64, FLOOD).await?;
    let flood_end = Instant::now();
    let during: Vec<Instant> = arrivals
        .lock()
        .expect("arrivals lock")
        .iter()
        .copied()
        .filter(|t| *t >= flood_start && *t <= flood_end)
        .collect();
    let largest_gap = during
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    let pace = during.len() as f64 / (flood_end - flood_start).as_secs_f64();
    println!(
        "flood: {} strangers' INVITEs from 64 addresses decided in {:.2} s = {:.0} per second ({} answered 403, the rest silenced past each source's budget); the active call's RTP meanwhile: {:.1} packets/s (50 due), largest gap {:.1} ms",
        flood.sent,
        flood.took.as_secs_f64(),
        flood.sent as f64 / flood.took.as_secs_f64(),
        flood.refused,
        pace,
        largest_gap.as_secs_f64() * 1e3
    );
    // Memory after 100,000 refused INVITEs: refusals are stateless, so
    // nothing lingers. Resident memory at once, and the agent's share (PSS)
    // settled before and after.
    tokio::time::sleep(TRIM_SETTLE).await;
    let settled_before = pss_kib(pid);
    let before_hostile = rss_kib(pid);
    let log_before = std::fs::metadata(dir.path().join("sip.log"))?.len();
    let big = doorphone_system_tests::bench::flood(target, 64, HOSTILE).await?;
    let after_hostile = rss_kib(pid);
    let log_after = std::fs::metadata(dir.path().join("sip.log"))?.len();
    tokio::time::sleep(TRIM_SETTLE).await;
    let settled_after = pss_kib(pid);
    println!(
        "{} refused INVITEs in {:.1} s: agent RSS {:.1} -> {:.1} MiB ({:+.2}), PSS settled {:.1} -> {:.1} MiB ({:+.2}); log {} bytes ({:.0} per 10,000)",
        big.sent,
        big.took.as_secs_f64(),
        mib(before_hostile),
        mib(after_hostile),
        mib(after_hostile) - mib(before_hostile),
        mib(settled_before),
        mib(settled_after),
        mib(settled_after) - mib(settled_before),
        log_after - log_before,
        (log_after - log_before) as f64 * 10_000.0 / big.sent as f64
    );
    watcher.abort();
    call.hangup().await?;
    resident.finish(PATIENCE).await?;
    Ok(())
}
