//! The Debian packages the appliance and its tests need, installed when missing.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{is_root, run_step};

/// What `cargo xtask run` needs: a bus daemon and the tools to look at it, and the
/// SQLite library the config service links against.
pub const RUN: &[&str] = &[
    "dbus-daemon",
    "libsqlite3-dev",
    "pkg-config",
    "systemd",
    "util-linux",
];

/// What `cargo xtask test` needs: everything `run` does.
pub const TEST: &[&str] = RUN;

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", package])
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout == b"installed")
}

/// Installs the packages of `list` that are missing (as root), or says how to.
pub fn ensure(list: &[&str]) -> Result<()> {
    let missing: Vec<&str> = list.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages; install them with:\n  sudo apt-get install -y {}",
            missing.join(" ")
        );
    }
    run_step(
        "apt-get update",
        Command::new("apt-get").args(["update", "-q"]),
    )?;
    run_step(
        &format!("apt-get install {}", missing.join(" ")),
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
