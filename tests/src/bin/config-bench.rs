//! Whole-system figures of the configuration service, measured on a private bus
//! with the release binary running as its own user:
//! `Set` round trip p50/p99, `Import` of 500 dial-plan rules and 1000 contacts,
//! `Resolve` round trip, and the service's resident memory.
//!
//! Run with `cargo xtask bench`.

use std::time::{Duration, Instant};

use doorphone_interfaces::config::Config1Proxy;
use doorphone_system_tests::bench::{percentile, rss_kib};
use doorphone_system_tests::{Bus, ConfigDb, start_config};
use serde_json::{Value, json};

fn big_document(base: &Value, tag: u32) -> String {
    let mut doc = base.clone();
    doc["contacts"] = Value::Array(
        (1..=1000)
            .map(|i| json!({"id": i, "name": format!("Flat {i} {tag}"), "number": format!("{}", 10000 + i), "account": "auto", "whitelist": i % 3 == 0}))
            .collect(),
    );
    doc["dial_plan"] = Value::Array(
        (1..=500)
            .map(|i| json!({"id": i, "name": format!("Rule {i}"), "prefix": format!("8{i}"), "account": "auto",
                "replace": (0..5).map(|t| format!("sip:{}{}@pbx.example.com", i, t + tag)).collect::<Vec<_>>()}))
            .collect(),
    );
    doc.to_string()
}

/// Durations in milliseconds.
fn ms(samples: &[Duration]) -> Vec<f64> {
    samples.iter().map(|d| d.as_secs_f64() * 1e3).collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bus = Bus::start()?;
    let db = ConfigDb::new()?;
    let service = start_config(&bus, &db).await?;
    let pid = service.pid().expect("running");
    let conn = bus.connect().await?;
    let proxy = Config1Proxy::new(&conn).await?;
    // Let start-up settle, then read the idle figure.
    proxy.export().await?;
    let idle_rss = rss_kib(pid);

    let mut set = Vec::new();
    for i in 0..1000u32 {
        let value = zbus::Variant::from(i64::from(60 + i % 2));
        let start = Instant::now();
        proxy.set("calls.max_call_time", &value).await?;
        set.push(start.elapsed());
    }

    let base: Value = serde_json::from_str(&proxy.export().await?)?;
    let mut import = Vec::new();
    for tag in 0..6 {
        let doc = big_document(&base, tag);
        let start = Instant::now();
        proxy.import(&doc).await?;
        import.push(start.elapsed());
    }

    let mut resolve = Vec::new();
    for i in 0..1000u32 {
        let number = format!("8{}", 1 + i % 500);
        let start = Instant::now();
        let (_, targets) = proxy.resolve(&number).await?;
        resolve.push(start.elapsed());
        assert_eq!(targets.len(), 5);
    }
    let loaded_rss = rss_kib(pid);

    println!(
        "config service, release build, private bus, {} cores",
        std::thread::available_parallelism()?
    );
    println!(
        "  Set round trip (1000 sequential, each a durable commit): p50 {:.3} ms, p99 {:.3} ms",
        percentile(&ms(&set), 0.5),
        percentile(&ms(&set), 0.99)
    );
    println!(
        "  Import 500 dial-plan rules + 1000 contacts (6 runs): p50 {:.1} ms, max {:.1} ms",
        percentile(&ms(&import), 0.5),
        percentile(&ms(&import), 1.0)
    );
    println!(
        "  Resolve round trip over the bus, 500 rules: p50 {:.3} ms",
        percentile(&ms(&resolve), 0.5)
    );
    println!(
        "  resident memory: idle {:.1} MiB, after the runs above {:.1} MiB",
        idle_rss as f64 / 1024.0,
        loaded_rss as f64 / 1024.0
    );
    drop(service);
    Ok(())
}
