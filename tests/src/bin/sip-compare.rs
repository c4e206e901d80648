//! The door phone side by side with baresip in one run: the same SIPp
//! scenario (sequential calls, auto-answer at once, PCMU with media) against
//! baresip answering and against the whole appliance (release binaries, each
//! service as its own user on a private bus, the web service among them: it
//! follows the calls for its live events), alternating, three rounds each
//! (the first warms up: the door phone's memory growth counts from it). It
//! prints one table: INVITE → 200 p50/p95/p99 (SIPp's µs message timestamps),
//! back-to-back calls per second, CPU per call (every door phone process and
//! the bus daemon against baresip's one), PSS of each service idle and after
//! the calls (`/proc/PID/smaps_rollup`), how much of each service's code is
//! resident idle (the release build links the code a service runs first: see
//! `services/text_order.rs`), CPU while nobody calls, and cold start (to every
//! bus name owned and the web service listening; baresip to its first SIP
//! answer). Ratios are the figures that count: both run on the same loaded
//! machine.
//!
//! Run with `cargo xtask bench`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use doorphone_interfaces::{pager, sip};
use doorphone_system_tests::baresip::Baresip;
use doorphone_system_tests::bench::{
    answer_at_once, code_kib, cpu_seconds, invite_to_ok, percentile, pss_kib,
};
use doorphone_system_tests::sip::{Caller, RawPeer, Sipp, caller, free_port, start_agent};
use doorphone_system_tests::web::start_web;
use doorphone_system_tests::{
    Bus, ConfigDb, applied, chown_to, reconfigure, start_config, start_media, start_service,
    start_sim_relay,
};
use serde_json::json;

/// Rounds per target: the first warms up, the figures after it count.
const ROUNDS: usize = 3;
/// How long the services are left alone before their memory is read: the SIP
/// stack keeps a finished transaction for 64 × T1 = 32 s (RFC 3261 timers H
/// and J, for the peer's retransmissions), and the services give what their
/// allocator freed back to the system every 30 s.
const SETTLE: Duration = Duration::from_secs(32 + 30 + 1);
/// Sequential calls per round (`--calls N` sets them; back-to-back calls are
/// twice as many).
const SEQUENTIAL: usize = 200;

/// How many calls each round makes.
#[derive(Clone, Copy)]
struct Counts {
    sequential: usize,
    back_to_back: usize,
}

impl Counts {
    /// `--calls N` from the command line, else the full run.
    fn from_args() -> Result<Counts> {
        let mut args = std::env::args().skip(1);
        let mut sequential = SEQUENTIAL;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--calls" => {
                    sequential = args.next().context("--calls N")?.parse()?;
                    if sequential == 0 {
                        bail!("--calls must be at least 1");
                    }
                }
                other => bail!("unknown argument {other}; usage: sip-compare [--calls N]"),
            }
        }
        Ok(Counts {
            sequential,
            back_to_back: 2 * sequential,
        })
    }
}

/// One target's figures of one round.
#[derive(Default, Clone)]
struct Round {
    p50: f64,
    p95: f64,
    p99: f64,
    calls_per_s: f64,
    cpu_ms_per_call: f64,
    /// CPU per call of each process, in the order of the pids given.
    cpu_ms_each: Vec<f64>,
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// SIPp's caller: `calls` sequential calls at `rate` per second, hung up at
/// once after the answer; the trace when `traced`.
async fn calls(
    target: SocketAddr,
    calls: usize,
    rate: u32,
    traced: bool,
) -> Result<(Duration, Option<Vec<f64>>)> {
    let dir = tempfile::tempdir()?;
    let scenario = caller(
        "door",
        "200",
        false,
        &Caller::Answered {
            hang_up_after: Duration::ZERO,
        },
    );
    let (count, rate) = (calls.to_string(), rate.to_string());
    let args = ["-m", &count, "-l", "1", "-r", &rate, "-timeout", "600"];
    let started = Instant::now();
    let mut sipp = if traced {
        Sipp::start(
            dir.path(),
            "compare",
            &scenario,
            free_port(),
            Some(target),
            &args,
        )?
    } else {
        Sipp::start_untraced(
            dir.path(),
            "compare",
            &scenario,
            free_port(),
            Some(target),
            &args,
        )?
    };
    let status = sipp.finish(Duration::from_secs(600)).await?;
    let took = started.elapsed();
    if !status.success() {
        bail!(
            "SIPp against {target} saw failures ({status}): {}",
            std::fs::read_to_string(dir.path().join("compare.err")).unwrap_or_default()
        );
    }
    Ok((took, traced.then(|| invite_to_ok(&sipp.messages()))))
}

/// One round against `target`, whose processes are `pids`.
async fn round(target: SocketAddr, pids: &[u32], counts: Counts) -> Result<Round> {
    let (_, times) = calls(target, counts.sequential, 50, true).await?;
    let times = times.context("traced")?;
    if times.len() < counts.sequential * 9 / 10 {
        bail!(
            "only {} of {} answers traced",
            times.len(),
            counts.sequential
        );
    }
    let cpu = || pids.iter().map(|&p| cpu_seconds(p)).collect::<Vec<f64>>();
    let before = cpu();
    let (took, _) = calls(target, counts.back_to_back, 10_000, false).await?;
    let cpu_ms_each: Vec<f64> = cpu()
        .iter()
        .zip(&before)
        .map(|(after, before)| (after - before) * 1e3 / counts.back_to_back as f64)
        .collect();
    Ok(Round {
        p50: percentile(&times, 0.50),
        p95: percentile(&times, 0.95),
        p99: percentile(&times, 0.99),
        calls_per_s: counts.back_to_back as f64 / took.as_secs_f64(),
        cpu_ms_per_call: cpu_ms_each.iter().sum(),
        cpu_ms_each,
    })
}

/// Waits until `target` answers an OPTIONS, asking every 5 ms.
async fn first_sip_answer(target: SocketAddr) -> Result<()> {
    let probe = RawPeer::bind("127.0.0.1").await?;
    let options = probe.request("OPTIONS", "door", target, "probe", &[], b"");
    for _ in 0..2000 {
        probe.send(target, &options).await?;
        if probe
            .final_response(Duration::from_millis(5))
            .await
            .is_some()
        {
            return Ok(());
        }
    }
    bail!("{target} never answered an OPTIONS")
}

/// The door phone's services, started at once as a cold boot would.
struct Appliance {
    _services: Vec<doorphone_system_tests::Service>,
    names: Vec<(&'static str, u32)>,
    target: SocketAddr,
    cold: Duration,
}

async fn appliance(bus: &Bus, db: &ConfigDb, dir: &Path) -> Result<Appliance> {
    let started = Instant::now();
    let media_args = [
        "--audio-sink".into(),
        "fake".into(),
        "--video-source".into(),
        "none".into(),
    ];
    let pager_args = ["--iface".into(), "lo".into()];
    let (media_log, pager_log) = (dir.join("media.log"), dir.join("pager.log"));
    let web_dir = dir.join("web");
    std::fs::create_dir_all(&web_dir)?;
    chown_to(&web_dir, "doorphone-web")?;
    let web_log = dir.join("web.log");
    let (config, media, relay, pager, agent, web) = tokio::join!(
        start_config(bus, db),
        start_media(bus, &media_args, &media_log),
        start_sim_relay(bus, dir),
        start_service(
            bus,
            "doorphone-pager",
            "doorphone-pager",
            pager::BUS_NAME,
            &pager_args,
            &pager_log,
        ),
        start_agent(bus, dir, &[]),
        start_web(bus, &web_dir, free_port(), free_port(), &web_log),
    );
    let cold = started.elapsed();
    let (agent, port) = agent?;
    let services = vec![config?, media?, relay?, pager?, agent, web?];
    let names = ["config", "media", "relay", "pager", "sip", "web"]
        .into_iter()
        .zip(&services)
        .map(|(name, s)| Ok((name, s.pid().context("a service exited")?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Appliance {
        _services: services,
        names,
        target: SocketAddr::from(([127, 0, 0, 1], port)),
        cold,
    })
}

fn cell(rounds: &[Round], f: impl Fn(&Round) -> f64, digits: usize) -> String {
    rounds
        .iter()
        .map(|r| format!("{:.*}", digits, f(r)))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The door phone's figure over baresip's, round by round; a figure of 0
/// (CPU time under one clock tick on a short run) has no ratio.
fn ratio(door: &[Round], baresip: &[Round], f: impl Fn(&Round) -> f64) -> String {
    door.iter()
        .zip(baresip)
        .map(|(d, b)| over(f(d), f(b)))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn over(door: f64, baresip: f64) -> String {
    if baresip > 0.0 {
        format!("{:.2}x", door / baresip)
    } else {
        "— (baresip 0)".to_owned()
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let counts = Counts::from_args()?;
    doorphone_system_tests::require_root();
    let bus = Bus::start()?;
    // The database is written first (the settings the calls need), so the
    // boot below is a cold start of every service at once.
    let db = ConfigDb::new()?;
    let revision = {
        let mut config = start_config(&bus, &db).await?;
        let conn = bus.connect().await?;
        let revision = reconfigure(&conn, |doc| {
            answer_at_once(doc);
            doc["media"]["audio_codecs"] = json!(["PCMU"]);
        })
        .await?;
        config.stop();
        revision
    };
    let mut dir = tempfile::Builder::new().prefix("sip-compare").tempdir()?;
    chown_to(dir.path(), "doorphone-media")?;
    let door = appliance(&bus, &db, dir.path()).await?;
    let conn = bus.connect().await?;
    applied(
        &conn,
        sip::BUS_NAME,
        sip::OBJECT_PATH,
        sip::INTERFACE,
        revision,
    )
    .await?;
    let door_first_answer = {
        let t = Instant::now();
        first_sip_answer(door.target).await?;
        t.elapsed()
    };

    let baresip_port = free_port();
    let started = Instant::now();
    let baresip = Baresip::answer("door", baresip_port, 40000..=40999)?;
    let baresip_target = SocketAddr::from(([127, 0, 0, 1], baresip_port));
    first_sip_answer(baresip_target).await?;
    let baresip_cold = started.elapsed();
    let baresip_pid = baresip.pid().context("baresip runs")?;

    let pss_door = |names: &[(&'static str, u32)]| {
        names
            .iter()
            .map(|&(name, pid)| (name, pss_kib(pid)))
            .collect::<Vec<_>>()
    };
    let idle = pss_door(&door.names);
    let idle_code: Vec<_> = door
        .names
        .iter()
        .map(|&(name, pid)| (name, code_kib(pid)))
        .collect();
    let idle_bus = pss_kib(bus.pid());
    let idle_baresip = pss_kib(baresip_pid);

    // CPU while nobody calls: every process's time over the same quiet span.
    let quiet = if counts.sequential < SEQUENTIAL {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    };
    let cpu_door = |names: &[(&'static str, u32)]| {
        names
            .iter()
            .map(|&(name, pid)| (name, cpu_seconds(pid)))
            .collect::<Vec<_>>()
    };
    let (door_before, baresip_before) = (cpu_door(&door.names), cpu_seconds(baresip_pid));
    tokio::time::sleep(quiet).await;
    let idle_cpu: Vec<(&str, f64)> = cpu_door(&door.names)
        .iter()
        .zip(&door_before)
        .map(|(&(name, after), &(_, before))| (name, after - before))
        .collect();
    let idle_cpu_baresip = cpu_seconds(baresip_pid) - baresip_before;

    let mut door_pids: Vec<u32> = door.names.iter().map(|&(_, pid)| pid).collect();
    door_pids.push(bus.pid());
    // A short run does not wait for the services' memory to settle.
    let settle = if counts.sequential < SEQUENTIAL {
        Duration::ZERO
    } else {
        SETTLE
    };
    let (mut b_rounds, mut d_rounds) = (Vec::new(), Vec::new());
    let mut warm = Vec::new();
    for n in 0..ROUNDS {
        b_rounds.push(
            round(baresip_target, &[baresip_pid], counts)
                .await
                .with_context(|| format!("baresip, round {}", n + 1))?,
        );
        let door_round = round(door.target, &door_pids, counts).await;
        if door_round.is_err() {
            // What the services logged stays for a look.
            dir.disable_cleanup(true);
        }
        d_rounds.push(door_round.with_context(|| {
            format!(
                "the door phone, round {} (its logs are kept in {})",
                n + 1,
                dir.path().display()
            )
        })?);
        if n == 0 {
            tokio::time::sleep(settle).await;
            warm = pss_door(&door.names);
        }
    }
    let per_round = counts.sequential + counts.back_to_back;
    let calls_made = ROUNDS * per_round;
    tokio::time::sleep(settle).await;
    let after = pss_door(&door.names);
    let after_bus = pss_kib(bus.pid());
    let after_baresip = pss_kib(baresip_pid);

    println!("| figure | baresip | door phone | ratio |");
    println!("|---|---|---|---|");
    type Pick = fn(&Round) -> f64;
    let rows: [(&str, Pick, usize); 5] = [
        ("INVITE→200 p50 (ms)", |r| r.p50, 2),
        ("INVITE→200 p95 (ms)", |r| r.p95, 2),
        ("INVITE→200 p99 (ms)", |r| r.p99, 2),
        ("back-to-back calls/s", |r| r.calls_per_s, 1),
        ("CPU per call, back to back (ms)", |r| r.cpu_ms_per_call, 2),
    ];
    for (name, pick, digits) in rows {
        println!(
            "| {name} | {} | {} | {} |",
            cell(&b_rounds, pick, digits),
            cell(&d_rounds, pick, digits),
            ratio(&d_rounds, &b_rounds, pick)
        );
    }
    let door_processes = door
        .names
        .iter()
        .map(|&(name, _)| name)
        .chain(["dbus-daemon"]);
    println!(
        "| — of which, by process (ms) | | {} | |",
        door_processes
            .enumerate()
            .map(|(i, name)| format!("{name} {}", cell(&d_rounds, |r| r.cpu_ms_each[i], 2)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let sum = |p: &[(&str, u64)]| p.iter().map(|(_, k)| k).sum::<u64>();
    let each = |p: &[(&str, u64)]| {
        p.iter()
            .map(|(n, k)| format!("{n} {:.1}", mb(*k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "| PSS idle (MB) | {:.1} | {:.1} ({}; +{:.1} dbus-daemon) | {:.1}x |",
        mb(idle_baresip),
        mb(sum(&idle)),
        each(&idle),
        mb(idle_bus),
        sum(&idle) as f64 / idle_baresip.max(1) as f64
    );
    println!(
        "| code resident idle, of the binary's (MB) | | {:.1} of {:.1} ({}) | |",
        mb(idle_code.iter().map(|(_, (resident, _))| resident).sum()),
        mb(idle_code.iter().map(|(_, (_, size))| size).sum()),
        idle_code
            .iter()
            .map(|(n, (resident, size))| format!("{n} {:.1} of {:.1}", mb(*resident), mb(*size)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| PSS after warm-up, {per_round} calls (MB) | | {:.1} ({}) | |",
        mb(sum(&warm)),
        each(&warm)
    );
    println!(
        "| PSS after {calls_made} calls (MB) | {:.1} | {:.1} ({}; +{:.1} dbus-daemon) | {:.1}x |",
        mb(after_baresip),
        mb(sum(&after)),
        each(&after),
        mb(after_bus),
        sum(&after) as f64 / after_baresip.max(1) as f64
    );
    let growth: Vec<(&str, f64)> = after
        .iter()
        .zip(&warm)
        .map(|(&(name, a), &(_, w))| (name, (a as f64 - w as f64) / 1024.0))
        .collect();
    println!(
        "| PSS growth over the last {} calls (MB) | | {:+.2} ({}) | |",
        calls_made - per_round,
        growth.iter().map(|(_, g)| g).sum::<f64>(),
        growth
            .iter()
            .map(|(n, g)| format!("{n} {g:+.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let idle_cpu_sum: f64 = idle_cpu.iter().map(|(_, s)| s).sum();
    println!(
        "| CPU while idle, {} s (s) | {:.2} | {:.2} ({}) | {} |",
        quiet.as_secs(),
        idle_cpu_baresip,
        idle_cpu_sum,
        idle_cpu
            .iter()
            .map(|(n, s)| format!("{n} {s:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        over(idle_cpu_sum, idle_cpu_baresip)
    );
    println!(
        "| cold start (ms) | {:.0} (to its first SIP answer) | {:.0} (every bus name owned, web listening; first SIP answer {:.0} after) | {:.0}x |",
        baresip_cold.as_secs_f64() * 1e3,
        door.cold.as_secs_f64() * 1e3,
        door_first_answer.as_secs_f64() * 1e3,
        door.cold.as_secs_f64() / baresip_cold.as_secs_f64()
    );
    drop(baresip);
    Ok(())
}
