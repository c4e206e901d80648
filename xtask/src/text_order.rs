//! `cargo xtask text-order`: records which functions each service runs, and
//! writes them to the service's `text.order`, which its release build links
//! first (see `services/text_order.rs`).
//!
//! It builds the release binaries as `cargo build --release --workspace` does
//! (the same profile and features, so the same symbol names), with their
//! symbols kept, in `target/text-order`. It runs the whole appliance from them,
//! each service under Valgrind's callgrind, and works it as a building does:
//! `doorctl` reads and changes the configuration and opens a door, the exit
//! button is pressed, SIPp calls the door and it answers, a page plays, and a
//! browser's client (curl) logs in, reads the pages and uses the HTTP API with
//! Basic and Digest logins, its events stream open. The appliance starts twice:
//! first on no state, as a new door, then on what that start made, as after a
//! reboot. What a service ran in either is its list.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::appliance::{self, Appliance, Launch, set_mode};
use crate::{deps, ensure_users, is_root, root, run_step};

/// The profiler and the tools the run drives.
const TOOLS: &[&str] = &["valgrind", "binutils", "sip-tester", "curl"];

/// The web user's password for the run.
const PASSWORD: &str = "text-order-run-1";

pub fn run() -> Result<()> {
    deps::ensure(&[deps::RUN, TOOLS])?;
    if !is_root() {
        bail!("the services run as their own users: run `cargo xtask text-order` as root");
    }
    ensure_users()?;
    let target = root().join("target/text-order");
    let mut build = crate::cargo();
    build
        .args([
            "build",
            "--release",
            "--workspace",
            "--bins",
            "--target-dir",
        ])
        .arg(&target)
        // RUSTFLAGS take the place of .cargo/config.toml's flags, so its one is
        // repeated. Neither changes a symbol's name (cargo keeps them out of
        // `-C metadata`); the profile would, so `strip` is set here.
        .env(
            "RUSTFLAGS",
            "-C link-arg=-Wl,-z,pack-relative-relocs -C strip=none",
        );
    run_step("release build with symbols", &mut build)?;
    let bins = target.join("release");

    let profiles = target.join("callgrind");
    let _ = std::fs::remove_dir_all(&profiles);
    std::fs::create_dir_all(&profiles)?;
    set_mode(&profiles, 0o1777)?;
    let out = profiles.clone();
    let launch = Launch {
        wrapper: Some(Box::new(move |binary: &str| {
            vec![
                "valgrind".into(),
                "--tool=callgrind".into(),
                "--demangle=no".into(),
                format!("--callgrind-out-file={}/{binary}.%p", out.display()),
            ]
        })),
        // Valgrind runs a program some fifty times slower.
        start_patience: Duration::from_secs(180),
        stop_patience: Duration::from_secs(120),
    };
    // A first start makes the state (the databases, the web service's TLS
    // certificate), as a new door's does; the second finds it, as after a
    // reboot, and is worked.
    let state = target.join("appliance");
    let _ = std::fs::remove_dir_all(&state);
    Appliance::start(&bins, &state, &launch)?.stop();
    let appliance = Appliance::start(&bins, &state, &launch)?;
    let worked = work(&appliance, &bins, &state);
    appliance.stop();
    worked?;

    for (binary, crate_dir) in appliance::binaries() {
        let executable = bins.join(binary);
        let ran = ran(&profiles, binary)?;
        let (listed, bytes, total) = write_order(&executable, &ran, binary, crate_dir)?;
        println!(
            "{binary}: {listed} functions, {:.2} MB of {:.2} MB of code",
            bytes as f64 / 1e6,
            total as f64 / 1e6
        );
    }
    Ok(())
}

/// Works the appliance as a building does, through its own tools and real
/// clients; fails when a step does.
fn work(appliance: &Appliance, bins: &Path, state: &Path) -> Result<()> {
    let (sip_port, web_port) = appliance::ports();
    let doorctl = |args: &[&str]| -> Result<()> {
        run_step(
            &format!("doorctl {}", args.join(" ")),
            Command::new(bins.join("doorctl"))
                .args(args)
                .env("DBUS_SYSTEM_BUS_ADDRESS", &appliance.address)
                .stdout(Stdio::null()),
        )
    };
    doorctl(&["status"])?;
    doorctl(&["config", "get", "calls.max_call_time"])?;
    doorctl(&["config", "set", "calls.max_call_time", "120"])?;
    doorctl(&["config", "set", "calls.auto_answer.ip", "true"])?;
    doorctl(&[
        "config",
        "set",
        "multicast.listen",
        r#"[{"address":"239.1.1.1","port":5000,"label":"Lobby"}]"#,
    ])?;
    doorctl(&[
        "config",
        "set",
        "inputs",
        r#"[{"gpio":23,"active_low":true,"opens":"A"}]"#,
    ])?;
    doorctl(&["door", "open"])?;
    let mut passwd = Command::new(bins.join("doorctl"))
        .args(["web", "passwd", "admin", "--role", "admin"])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &appliance.address)
        .stdin(Stdio::piped())
        .spawn()?;
    writeln!(
        passwd.stdin.take().context("doorctl's stdin")?,
        "{PASSWORD}"
    )?;
    if !passwd.wait()?.success() {
        bail!("doorctl web passwd failed");
    }

    // The exit button: pressed (low) for longer than its debounce, released.
    let inputs = state.join("doorphone-relay/inputs");
    std::fs::write(&inputs, "23 0\n")?;
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&inputs, "23 1\n")?;

    let web = format!("https://127.0.0.1:{web_port}");
    let login = format!("admin:{PASSWORD}");
    // The events stream stays open over the calls and the page.
    let events = Command::new("curl")
        .args(["-sk", "-N", "--max-time", "120", "-u", &login])
        .arg(format!("{web}/api/v1/events"))
        .stdout(Stdio::null())
        .spawn()?;

    let target = format!("127.0.0.1:{sip_port}");
    run_step(
        "SIPp calls the door",
        Command::new("sipp")
            .args(["-sn", "uac", "-s", "door", "-m", "10", "-l", "1", "-r", "2"])
            .args(["-timeout", "120", "-timeout_error", "-nostdin"])
            .arg(&target)
            .stdout(Stdio::null()),
    )?;
    doorctl(&["history"])?;
    doorctl(&["calls"])?;
    doorctl(&[
        "page",
        "send",
        "239.1.1.1:5000",
        "--tone",
        "800",
        "--seconds",
        "3",
        "--iface",
        "lo",
    ])?;
    doorctl(&["page", "status"])?;

    let curl = |what: &str, args: &[&str], path: &str| -> Result<()> {
        run_step(
            what,
            Command::new("curl")
                .args(["-sfk", "--max-time", "60", "-o", "/dev/null"])
                .args(args)
                .arg(format!("{web}{path}")),
        )
    };
    let basic = ["-u", login.as_str()];
    curl("API status", &basic, "/api/v1/status")?;
    curl("API calls", &basic, "/api/v1/calls")?;
    curl("API history", &basic, "/api/v1/history")?;
    curl("API configuration", &basic, "/api/v1/config")?;
    curl("API snapshot", &basic, "/api/v1/snapshot.jpg")?;
    curl("API description", &[], "/api/v1/openapi.json")?;
    curl(
        "API door open (Digest)",
        &["--digest", "-u", &login, "-X", "POST"],
        "/api/v1/doors/A/open",
    )?;
    curl(
        "API setting changed",
        &["-u", &login, "-X", "PATCH", "--data-binary", "180"],
        "/api/v1/config/calls.max_call_time",
    )?;

    // The pages, logged in as a browser is: a session cookie and its CSRF token.
    let jar = state.join("cookies");
    let jar = jar.to_str().context("the cookie jar's path")?;
    let form = Command::new("curl")
        .args(["-sfk", "--max-time", "60", "-c", jar, "-b", jar])
        .arg(format!("{web}/login"))
        .output()?;
    let form = String::from_utf8_lossy(&form.stdout);
    let csrf = form
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("no CSRF token in the login page")?;
    curl(
        "page login",
        &[
            "-c",
            jar,
            "-b",
            jar,
            "--data-urlencode",
            &format!("csrf={csrf}"),
            "--data-urlencode",
            "name=admin",
            "--data-urlencode",
            &format!("password={PASSWORD}"),
        ],
        "/login",
    )?;
    for page in [
        "/status",
        "/history",
        "/account/basic",
        "/account/advanced",
        "/intercom/basic",
        "/relays",
        "/system/config",
        "/style.css",
    ] {
        curl(&format!("page {page}"), &["-c", jar, "-b", jar], page)?;
    }

    // Refusals: a wrong password, no login at all, a value out of range.
    let wrong = ["-u", "admin:wrong", "-X", "POST"];
    let none = ["-X", "POST"];
    let out_of_range = ["-u", login.as_str(), "-X", "PATCH", "--data-binary", "4"];
    for (args, path, expected) in [
        (&wrong[..], "/api/v1/doors/A/open", "401"),
        (&none[..], "/api/v1/doors/A/open", "401"),
        (
            &out_of_range[..],
            "/api/v1/config/calls.max_call_time",
            "422",
        ),
    ] {
        let status = Command::new("curl")
            .args([
                "-sk",
                "--max-time",
                "60",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(args)
            .arg(format!("{web}{path}"))
            .output()?;
        if status.stdout != expected.as_bytes() {
            bail!(
                "{path} answered {} where {expected} was due",
                String::from_utf8_lossy(&status.stdout)
            );
        }
    }
    let mut events = events;
    let _ = events.kill();
    let _ = events.wait();
    Ok(())
}

/// The functions `binary` ran: every name in its callgrind profiles (one per
/// process; the name is the binary's).
fn ran(profiles: &Path, binary: &str) -> Result<HashSet<String>> {
    let mut names = HashSet::new();
    let mut found = false;
    for entry in std::fs::read_dir(profiles)? {
        let path = entry?.path();
        let is_its = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(binary))
            .is_some_and(|rest| rest.starts_with('.'));
        if is_its {
            found = true;
            names.extend(function_names(&std::fs::read_to_string(&path)?));
        }
    }
    if !found {
        bail!("no callgrind profile of {binary} in {}", profiles.display());
    }
    Ok(names)
}

/// The function names of one callgrind profile: `fn=` and `cfn=` lines, which
/// name a function the first time as `(id) name` and later by `(id)` alone.
fn function_names(profile: &str) -> HashSet<String> {
    let mut ids: HashMap<&str, &str> = HashMap::new();
    let mut names = HashSet::new();
    for line in profile.lines() {
        let Some(rest) = line
            .strip_prefix("fn=")
            .or_else(|| line.strip_prefix("cfn="))
        else {
            continue;
        };
        let name = match rest.strip_prefix('(').and_then(|r| r.split_once(')')) {
            Some((id, name)) if !name.trim().is_empty() => {
                ids.insert(id, name.trim());
                name.trim()
            }
            Some((id, _)) => ids.get(id).copied().unwrap_or_default(),
            None => rest.trim(),
        };
        if !name.is_empty() {
            names.insert(name.to_string());
        }
    }
    names
}

/// Writes the functions of `executable` that ran, in the order they have in
/// it, to `text.order` in `crate_dir`; returns how many, their bytes and the
/// bytes of all its functions.
fn write_order(
    executable: &Path,
    ran: &HashSet<String>,
    binary: &str,
    crate_dir: &str,
) -> Result<(usize, u64, u64)> {
    let nm = Command::new("nm")
        .args(["--defined-only", "--print-size", "--numeric-sort"])
        .arg(executable)
        .output()
        .context("cannot run nm")?;
    if !nm.status.success() {
        bail!("nm {} failed", executable.display());
    }
    let mut total = 0;
    let mut bytes = 0;
    let mut listed = Vec::new();
    let mut seen = HashSet::new();
    let symbols = String::from_utf8_lossy(&nm.stdout);
    for line in symbols.lines() {
        let [_, size, kind, name] = line.split_whitespace().collect::<Vec<_>>()[..] else {
            continue;
        };
        if !matches!(kind, "t" | "T" | "w" | "W") {
            continue;
        }
        let size = u64::from_str_radix(size, 16).unwrap_or(0);
        total += size;
        if ran.contains(name) && seen.insert(name) {
            bytes += size;
            listed.push(name);
        }
    }
    if listed.is_empty() {
        bail!(
            "none of the functions {binary} ran is in {}",
            executable.display()
        );
    }
    let path = root().join(crate_dir).join("text.order");
    let mut text = format!(
        "# The functions {binary} ran at start, in calls, pages and requests: its\n\
         # release build links them first. Written by `cargo xtask text-order`.\n"
    );
    for name in &listed {
        text.push_str(name);
        text.push('\n');
    }
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((listed.len(), bytes, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_names_a_function_once_and_then_by_its_id() {
        let profile =
            "ob=(1) /bin/x\nfn=(1) _ZN1a1f\ncfn=(2) _ZN1a1g\ncalls=1 0\nfn=(2)\ncfn=(1)\nfn=main\n";
        let names = function_names(profile);
        let mut names: Vec<_> = names.into_iter().collect();
        names.sort();
        assert_eq!(names, ["_ZN1a1f", "_ZN1a1g", "main"]);
    }
}
