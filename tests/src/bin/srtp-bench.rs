//! What SRTP costs, measured on a private bus with the release binaries running as
//! their own users (config, media with its test microphone and a fake speaker, the
//! agent):
//! - INVITE → 200 OK with auto-answer at 0 s over 200 sequential SIPp calls: a
//!   plain offer to a door with media encryption off, against an `RTP/SAVP` offer
//!   with a key to a door with media encryption mandatory (media's answer, with a
//!   fresh key, included);
//! - the media service's CPU during a baresip call with tones both ways, plain
//!   RTP against SRTP (`mediaenc=srtp-mand`).
//!
//! Run with `cargo xtask bench`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use doorphone_interfaces::sip::{self, Sip1Proxy};
use doorphone_system_tests::baresip::Baresip;
use doorphone_system_tests::bench::{Answering, cpu_percent, invite_to_ok, percentile};
use doorphone_system_tests::sip::{Caller, Sipp, caller, free_port};
use doorphone_system_tests::{PATIENCE, applied, reconfigure};
use futures_util::StreamExt;
use serde_json::json;

const SEQUENTIAL: usize = 200;
/// How long each CPU figure is averaged over, inside a call.
const CPU_WINDOW: Duration = Duration::from_secs(10);

/// Sets `device.ip_call.media_encryption` and waits for the agent to take it.
async fn encryption(conn: &zbus::Connection, value: &str) -> Result<()> {
    let revision = reconfigure(conn, |doc| {
        doc["device"]["ip_call"]["media_encryption"] = json!(value);
    })
    .await?;
    applied(
        conn,
        sip::BUS_NAME,
        sip::OBJECT_PATH,
        sip::INTERFACE,
        revision,
    )
    .await
}

/// INVITE → 200 OK of `SEQUENTIAL` calls with `scenario`, in ms.
async fn answer_times(scenario: &str, target: SocketAddr) -> Result<Vec<f64>> {
    let run = tempfile::tempdir()?;
    let calls = SEQUENTIAL.to_string();
    let mut sipp = Sipp::start(
        run.path(),
        "bench",
        scenario,
        free_port(),
        Some(target),
        &["-m", &calls, "-l", "1", "-r", "50", "-timeout", "600"],
    )?;
    let status = sipp.finish(Duration::from_secs(600)).await?;
    if !status.success() {
        bail!(
            "SIPp saw failures ({status}): {}",
            std::fs::read_to_string(run.path().join("bench.err")).unwrap_or_default()
        );
    }
    let mut times = invite_to_ok(&sipp.messages());
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// The media service's CPU (% of a core) over [`CPU_WINDOW`] inside a baresip
/// call with `mediaenc`.
async fn call_cpu(
    proxy: &Sip1Proxy<'_>,
    target: SocketAddr,
    media_pid: u32,
    mediaenc: Option<&str>,
) -> Result<f64> {
    let mut states = proxy.receive_call_state_changed().await?;
    let seconds = CPU_WINDOW.as_secs() as u32 + 4;
    let mut baresip = Baresip::dial(
        &format!("sip:door@{target}"),
        mediaenc,
        40100..=40119,
        seconds,
    )?;
    tokio::time::timeout(PATIENCE, async {
        while let Some(s) = states.next().await {
            if s.args().is_ok_and(|a| a.state == sip::call_state::ANSWERED) {
                return;
            }
        }
    })
    .await
    .with_context(|| format!("baresip's call is not answered\n{}", baresip.log()))?;
    // The first second: the pipeline starts and the jitter buffer fills.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = cpu_percent(media_pid, CPU_WINDOW).await?;
    baresip.finish().await?;
    Ok(cpu)
}

#[tokio::main]
async fn main() -> Result<()> {
    doorphone_system_tests::require_root();
    let rig = Answering::start("srtp-bench").await?;
    let (conn, target) = (&rig.conn, rig.target);
    let media_pid = rig.media.pid().context("media runs")?;
    let proxy = Sip1Proxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await?;

    let plain = caller(
        "door",
        "200",
        false,
        &Caller::Answered {
            hang_up_after: Duration::ZERO,
        },
    );
    let keyed = plain.replace("RTP/AVP 0 101", "RTP/SAVP 0 101").replace(
        "a=sendrecv\n",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\na=sendrecv\n",
    );
    let mut figures = Vec::new();
    for (label, setting, scenario) in [
        ("plain RTP", "off", &plain),
        ("SRTP (RTP/SAVP, SDES)", "mandatory", &keyed),
    ] {
        encryption(conn, setting).await?;
        let times = answer_times(scenario, target).await?;
        println!(
            "INVITE -> 200 OK, {label}, {} sequential calls: p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
            times.len(),
            percentile(&times, 0.50),
            percentile(&times, 0.95),
            times.last().copied().unwrap_or(0.0)
        );
        figures.push(percentile(&times, 0.50));
    }
    println!(
        "SRTP adds {:+.2} ms to the p50 INVITE -> 200 OK",
        figures[1] - figures[0]
    );

    let mut cpu = Vec::new();
    for (label, setting, mediaenc) in [
        ("plain RTP", "off", None),
        ("SRTP", "mandatory", Some("srtp-mand")),
    ] {
        encryption(conn, setting).await?;
        let used = call_cpu(&proxy, target, media_pid, mediaenc).await?;
        println!(
            "media CPU in a baresip call (PCMU, tones both ways), {label}: {used:.2} % of a core"
        );
        cpu.push(used);
    }
    println!(
        "an SRTP call costs {:+.2} % of a core against a plain one",
        cpu[1] - cpu[0]
    );
    Ok(())
}
