//! `cargo xtask fuzz`: the SIP agent's intake under mutated hostile
//! datagrams, with the real bus, config and media behind it, for as long as
//! asked. Prints what the agent answered, its resident memory before and
//! after, and its log bytes; with `--save DIR`, keeps the inputs that drew an
//! answer no earlier one drew (to grow `tests/fuzz/sip-corpus`).
//!
//! `sip-fuzz [--count N] [--seed S] [--save DIR]`

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use doorphone_interfaces::sip;
use doorphone_system_tests::bench::rss_kib;
use doorphone_system_tests::rig::Rig;
use doorphone_system_tests::sip::RawPeer;
use doorphone_system_tests::{PATIENCE, repo_root};

/// The agent answers a well-formed OPTIONS and a bus Ping.
async fn alive(rig: &Rig, peer: &RawPeer) -> Result<()> {
    let options = peer.request("OPTIONS", "door", rig.agent(), "probe", &[], b"");
    peer.send(rig.agent(), &options).await?;
    let answer = peer
        .final_response(PATIENCE)
        .await
        .context("the agent did not answer OPTIONS")?;
    if !answer.starts_with("SIP/2.0 200") {
        bail!("OPTIONS got {}", answer.lines().next().unwrap_or(""));
    }
    let ping = zbus::fdo::PeerProxy::builder(&rig.conn)
        .destination(sip::BUS_NAME)
        .path(sip::OBJECT_PATH)
        .build()
        .await?;
    tokio::time::timeout(PATIENCE, ping.ping())
        .await
        .context("the agent did not answer Ping")??;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut count = 100_000usize;
    let mut seed = 1u64;
    let mut save = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--count" => count = args.next().context("--count N")?.parse()?,
            "--seed" => seed = args.next().context("--seed S")?.parse()?,
            "--save" => save = Some(std::path::PathBuf::from(args.next().context("--save DIR")?)),
            other => bail!(
                "unknown argument {other}; usage: sip-fuzz [--count N] [--seed S] [--save DIR]"
            ),
        }
    }
    doorphone_system_tests::require_root();
    let rig = Rig::start(30, |_| {}).await;
    // The probes come from an address of their own: the fuzzer's flood must
    // not spend their answers.
    let probe = RawPeer::bind("127.0.0.9").await?;
    alive(&rig, &probe).await?;
    let pid = rig
        .sip
        .as_ref()
        .and_then(|s| s.pid())
        .context("the agent runs")?;
    let log_before = rig.sip_log().len();
    let rss_before = rss_kib(pid);
    let started = Instant::now();
    let report = doorphone_system_tests::fuzz::run(
        rig.agent(),
        &repo_root().join("tests/fuzz/sip-corpus"),
        count,
        seed,
        1000,
        || alive(&rig, &probe),
    )
    .await?;
    let took = started.elapsed();
    let rss_after = rss_kib(pid);
    println!(
        "sent {} hostile datagrams in {:.1} s ({:.0}/s), seed {seed}",
        report.sent,
        took.as_secs_f64(),
        report.sent as f64 / took.as_secs_f64()
    );
    println!("the agent answered (first line: count):");
    for (line, n) in &report.answers {
        println!("  {line}: {n}");
    }
    println!(
        "agent RSS {:.1} MiB before, {:.1} MiB after ({:+.2} MiB)",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        (rss_after as f64 - rss_before as f64) / 1024.0
    );
    println!(
        "agent log: {} bytes for {} datagrams",
        rig.sip_log().len() - log_before,
        report.sent
    );
    // The door still answers a real call, once the calls the fuzzer's
    // INVITEs started (auto-answered) are hung up.
    rig.hang_up_all().await;
    rig.call_through(
        "after-fuzz",
        "200",
        doorphone_system_tests::sip::Caller::Answered {
            hang_up_after: Duration::from_millis(200),
        },
    )
    .await;
    println!("a call after the run was answered");
    // What the agent still holds once every transaction the run opened has
    // ended: a final answer's server transaction lives 32 s (RFC 3261 timers
    // H and J at T1 = 500 ms).
    tokio::time::sleep(Duration::from_secs(33)).await;
    let rss_settled = rss_kib(pid);
    println!(
        "agent RSS {:.1} MiB once its transactions ended ({:+.2} MiB over the start)",
        rss_settled as f64 / 1024.0,
        (rss_settled as f64 - rss_before as f64) / 1024.0
    );
    if let Some(dir) = save {
        std::fs::create_dir_all(&dir)?;
        for (n, input) in report.novel.iter().enumerate() {
            let bytes = doorphone_system_tests::fuzz::replace(
                input,
                rig.agent().to_string().as_bytes(),
                b"AGENT",
            );
            std::fs::write(dir.join(format!("fuzz-{seed}-{n:03}.sip")), bytes)?;
        }
        println!("kept {} inputs in {}", report.novel.len(), dir.display());
    }
    Ok(())
}
