//! The Debian and PyPI packages the appliance and its tests need, installed when
//! missing.

use std::process::Command;

use anyhow::{Result, bail};

use crate::{is_root, run_step};

/// What `cargo xtask run` needs: a bus daemon and the tools to look at it, the
/// SQLite library the config service links against, and GStreamer with the plugins
/// the media service loads (no gst-libav: G.722 goes through spandsp).
pub const RUN: &[&str] = &[
    "dbus-daemon",
    "libsqlite3-dev",
    "pkg-config",
    "systemd",
    "util-linux",
    "libgstreamer1.0-dev",
    "libgstreamer-plugins-base1.0-dev",
    "libgstreamer-plugins-bad1.0-dev",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-bad",
    "gstreamer1.0-alsa",
    "libspandsp-dev",
];

/// What `cargo xtask test` needs besides `RUN`: the far ends of calls (libav's
/// G.722 is an independent implementation to talk to, never used by the product;
/// SIPp and baresip as callers, callees and registrars; Kamailio as a real SIP
/// registrar and proxy; linphonec as a second real phone; curl as the HTTP API's
/// client, with Basic and Digest logins; Chromium and chromedriver as the real
/// browser of the web pages' test).
pub const TEST: &[&str] = &[
    "gstreamer1.0-tools",
    "gstreamer1.0-libav",
    "sip-tester",
    "baresip-core",
    "kamailio",
    "linphone-cli",
    "python3-pyftpdlib",
    "python3-aiosmtpd",
    "socat",
    "curl",
    "chromium",
    "chromium-driver",
];

/// What `cargo xtask yocto-check` needs to run bitbake: python3, the host
/// tools openembedded-core's `HOSTTOOLS` requires of every build (bitbake
/// stops at its configuration when one is missing), `useradd` and `su` for the
/// unprivileged user bitbake runs as, and `gst-inspect-1.0` for the element
/// table.
pub const YOCTO: &[&str] = &[
    "python3",
    "build-essential",
    "bzip2",
    "chrpath",
    "cpio",
    "debianutils",
    "diffstat",
    "file",
    "gawk",
    "git",
    "hostname",
    "passwd",
    "patch",
    "rpcsvc-proto",
    "util-linux",
    "wget",
    "xz-utils",
    "zstd",
    "gstreamer1.0-tools",
    "locales",
];

/// The locale bitbake insists on (it exits without it).
pub const YOCTO_LOCALE: (&str, &str) = ("en_US", "UTF-8");

/// Makes the locale `(name, charset)` available (as root), or says how to.
pub fn ensure_locale((name, charset): (&str, &str)) -> Result<()> {
    let listed = Command::new("locale").arg("-a").output()?;
    let wanted = format!("{name}.{}", charset.to_lowercase().replace('-', ""));
    if String::from_utf8_lossy(&listed.stdout)
        .lines()
        .any(|l| l.trim() == wanted)
    {
        return Ok(());
    }
    let locale = format!("{name}.{charset}");
    if !is_root() {
        bail!(
            "the locale {locale} is missing; make it with:\n  sudo localedef -i {name} -f {charset} {locale}"
        );
    }
    run_step(
        &format!("localedef {locale}"),
        Command::new("localedef").args(["-i", name, "-f", charset, &locale]),
    )
}

/// What `cargo xtask test` needs from PyPI, pinned: SIPVicious scans and floods
/// the SIP agent as an attacker would.
pub const TEST_PYPI: &[(&str, &str)] = &[("sipvicious", "0.3.8")];

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", package])
        .output()
        .is_ok_and(|out| out.status.success() && out.stdout == b"installed")
}

/// Installs the packages of `lists` that are missing (as root), or says how to.
pub fn ensure(lists: &[&[&str]]) -> Result<()> {
    let missing: Vec<&str> = lists
        .iter()
        .flat_map(|l| l.iter().copied())
        .filter(|p| !installed(p))
        .collect();
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

/// Installs the PyPI packages of `packages` (name, version) that `python3` does
/// not have at that version.
pub fn ensure_pypi(packages: &[(&str, &str)]) -> Result<()> {
    for (name, version) in packages {
        let installed = Command::new("python3")
            .args([
                "-c",
                "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))",
                name,
            ])
            .output()
            .is_ok_and(|out| {
                out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == *version
            });
        if !installed {
            run_step(
                &format!("pip install {name}=={version}"),
                Command::new("python3").args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    &format!("{name}=={version}"),
                ]),
            )?;
        }
    }
    Ok(())
}
