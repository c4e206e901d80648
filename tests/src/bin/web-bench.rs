//! Whole-system figures of the web service, measured on a private bus with
//! the release binaries running as their own users and curl as the client:
//! resident memory (and PSS) idle and under 50 concurrent API clients, the door
//! open round trip (request sent → answer's first byte, on a kept-alive TLS
//! connection over loopback) with Basic and with Digest, and the page load
//! of Intercom > Dial Plan holding 500 rules (request sent → last byte, its
//! first page of 50, and a search by prefix).
//!
//! Run with `cargo xtask bench`.

use std::time::Duration;

use doorphone_interfaces::config::Config1Proxy;
use doorphone_system_tests::bench::{percentile, pss_kib, rss_kib};
use doorphone_system_tests::web::{ADMIN, Browser, WebRig};

/// Per request of one curl run over `urls` on one connection: the time from
/// the request sent to the answer's first byte, in ms, and the status.
async fn round_trips(
    rig: &WebRig,
    extra: &[&str],
    path: &str,
    n: usize,
) -> anyhow::Result<Vec<f64>> {
    let url = rig.api.url(path);
    let credentials = format!("{}:{}", ADMIN.0, ADMIN.1);
    let mut args: Vec<&str> = vec!["-sk", "-u", &credentials, "-X", "POST"];
    args.extend_from_slice(extra);
    args.extend([
        "-w",
        "%{http_code} %{time_pretransfer} %{time_starttransfer}\n",
    ]);
    for _ in 0..n {
        args.extend(["-o", "/dev/null", &url]);
    }
    let out = tokio::process::Command::new("curl")
        .args(&args)
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut times = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        anyhow::ensure!(fields.first() == Some(&"200"), "curl: {line}");
        let (sent, first): (f64, f64) = (fields[1].parse()?, fields[2].parse()?);
        times.push((first - sent) * 1e3);
    }
    // The first one checks the password (Argon2id): not a round trip of a
    // client that logged in.
    times.remove(0);
    Ok(times)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rig = WebRig::start(true).await?;
    let pid = rig.api.web.pid().expect("running");
    let idle = rss_kib(pid);
    let idle_pss = pss_kib(pid);

    let basic = round_trips(&rig, &[], "/api/v1/doors/A/open", 300).await?;
    let digest = round_trips(&rig, &["--digest"], "/api/v1/doors/A/open", 300).await?;

    let credentials = format!("{}:{}", ADMIN.0, ADMIN.1);
    let status = rig.api.url("/api/v1/status");
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut args: Vec<String> = ["-sk", "-u", &credentials, "-w", "%{http_code}\n"]
            .map(str::to_owned)
            .to_vec();
        for _ in 0..40 {
            args.extend(["-o".into(), "/dev/null".into(), status.clone()]);
        }
        clients.push(tokio::process::Command::new("curl").args(&args).output());
    }
    let running = tokio::spawn(futures_util::future::join_all(clients));
    let mut peak = 0;
    while !running.is_finished() {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answers = running.await?;
    let ok = answers
        .iter()
        .filter_map(|a| a.as_ref().ok())
        .map(|o| String::from_utf8_lossy(&o.stdout).matches("200").count())
        .sum::<usize>();

    // Intercom > Dial Plan with 500 rules, as a logged-in browser loads it.
    let config = Config1Proxy::new(&rig.conn).await?;
    for n in 0..500 {
        config
            .add_dial_rule(
                &format!("Flat {n}"),
                &format!("{}", 1000 + n),
                "auto",
                &["sip:concierge@127.0.0.1", "192.168.1.20"],
            )
            .await?;
    }
    let browser = Browser::new(&rig, "bench");
    browser.log_in(ADMIN).await;
    let mut loads = Vec::new();
    for path in ["/intercom/dial-plan", "/intercom/dial-plan?q=14&page=1"] {
        let jar = browser.jar.display().to_string();
        let url = rig.api.url(path);
        let mut args: Vec<&str> = vec![
            "-sk",
            "-b",
            &jar,
            "-w",
            "%{http_code} %{time_pretransfer} %{time_total} %{size_download}\n",
        ];
        for _ in 0..101 {
            args.extend(["-o", "/dev/null", &url]);
        }
        let out = tokio::process::Command::new("curl")
            .args(&args)
            .output()
            .await?;
        let mut times = Vec::new();
        let mut size = 0;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            anyhow::ensure!(f.first() == Some(&"200"), "curl: {line}");
            times.push((f[2].parse::<f64>()? - f[1].parse::<f64>()?) * 1e3);
            size = f[3].parse()?;
        }
        // The first one also made the TLS connection's session.
        times.remove(0);
        loads.push((path, times, size));
    }

    let profile = doorphone_system_tests::bin_dir()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    println!("web service ({profile} build, as doorphone-web, curl over loopback TLS):");
    println!(
        "  resident memory idle: {:.1} MiB (PSS {:.1} MB)",
        idle as f64 / 1024.0,
        idle_pss as f64 / 1024.0
    );
    println!(
        "  resident memory under 50 concurrent clients: {:.1} MiB peak ({ok} of 2000 answered 200)",
        peak as f64 / 1024.0
    );
    for (name, times) in [("Basic", &basic), ("Digest", &digest)] {
        println!(
            "  door open round trip ({name}, kept-alive): p50 {:.2} ms, p99 {:.2} ms",
            percentile(times, 0.5),
            percentile(times, 0.99)
        );
    }
    for (path, times, size) in &loads {
        println!(
            "  page load of {path} (500 rules, kept-alive): p50 {:.2} ms, p99 {:.2} ms, {:.1} KiB",
            percentile(times, 0.5),
            percentile(times, 0.99),
            *size as f64 / 1024.0
        );
    }
    Ok(())
}
