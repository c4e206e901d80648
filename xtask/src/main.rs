//! `cargo xtask`: the project's development tasks.
//!
//! - `run`: installs what is missing, builds, and runs the whole appliance on a
//!   private bus with simulated hardware until Ctrl-C.
//! - `test`: installs what is missing, then fmt, clippy, the Yocto layer's checks
//!   (crate list, oelint-adv, bitbake), unit and system tests.
//! - `bench`: the benchmarks, with the figures the issues ask for.
//! - `fuzz`: mutated hostile datagrams against the running SIP agent.
//! - `assets`: shell completions and the man page of `doorctl`.
//! - `yocto-crates`: the Yocto layer's crate list, generated from `Cargo.lock`,
//!   and its users, generated from the sysusers file.
//! - `text-order`: records the functions each service runs, which its release
//!   build links first (`services/*/text.order`).
//! - `yocto-check`: bitbake parses the layer against the pinned metadata and
//!   resolves the image; the recipes' expanded variables are checked.

mod appliance;
mod deps;
mod summary;
mod text_order;
mod yocto;
mod yocto_check;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Door phone development tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing, build, and run every service on a private bus
    /// with simulated hardware until Ctrl-C.
    Run {
        /// Build and run the release binaries.
        #[arg(long)]
        release: bool,
    },
    /// Install what is missing, then check formatting and lints and run every test.
    Test {
        /// Arguments passed on to `cargo test` (e.g. a test name filter).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Run the benchmarks and print the figures.
    Bench,
    /// Fuzz the SIP agent's intake with mutated hostile datagrams (the real
    /// bus, config and media behind it).
    Fuzz {
        /// Datagrams to send.
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        /// The run's seed (the same seed sends the same datagrams).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Keep inputs that drew a new answer in this folder.
        #[arg(long)]
        save: Option<PathBuf>,
    },
    /// Write shell completions and the man page of doorctl to target/assets.
    Assets,
    /// Record the functions each service runs at start, in calls, pages and
    /// requests (every service under Valgrind, worked by doorctl, SIPp and
    /// curl) and write them to its `text.order`, which its release build
    /// links first.
    TextOrder,
    /// Write the Yocto layer's doorphone-crates.inc from Cargo.lock and its
    /// doorphone-users.inc from the sysusers file.
    YoctoCrates {
        /// Only check that the files match Cargo.lock and the sysusers file.
        #[arg(long)]
        check: bool,
    },
    /// Check the layer with bitbake against the wrynose metadata the kas file
    /// pins (skipped when the metadata folder is missing).
    YoctoCheck {
        /// The metadata folder: bitbake, openembedded-core, meta-openembedded,
        /// meta-yocto and their PINS file [default: ../shared/yocto-layers].
        #[arg(long)]
        layers: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Run { release } => appliance::run(release),
        Task::Test { cargo_args } => test(&cargo_args),
        Task::Bench => bench(),
        Task::Fuzz { count, seed, save } => fuzz(count, seed, save),
        Task::Assets => assets().map(|dir| println!("wrote {}", dir.display())),
        Task::TextOrder => text_order::run(),
        Task::YoctoCrates { check } => yocto::crates(check),
        Task::YoctoCheck { layers } => yocto_check::run(yocto_check::Options { layers }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The repository's root folder.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the repository")
        .to_path_buf()
}

/// The cargo that runs this task, without the variables `cargo run` set for
/// xtask's own package (`CARGO_PKG_NAME=xtask`, `CARGO_MANIFEST_DIR`, ...).
/// Build scripts such as ring's and cc's are rerun when one of those changes, so
/// with them a build from here and a plain `cargo build` would each rebuild
/// what the other built.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(&*name);
        }
    }
    cmd
}

/// Runs `cmd`, failing with its name when it fails.
pub fn run_step(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {what}");
    let status = cmd
        .status()
        .with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Creates the service users and the admin group from the sysusers file.
pub fn ensure_users() -> Result<()> {
    let sysusers = root().join("packaging/sysusers.d/doorphone.conf");
    run_step(
        "service users (systemd-sysusers)",
        Command::new("systemd-sysusers").arg(&sysusers),
    )
}

fn test(cargo_args: &[String]) -> Result<()> {
    deps::ensure(&[deps::RUN, deps::TEST, deps::YOCTO])?;
    deps::ensure_pypi(deps::TEST_PYPI)?;
    if !is_root() {
        bail!(
            "the system tests run each service as its own user on a private bus and check \
             what other users may do: run `cargo xtask test` as root (CI does)"
        );
    }
    ensure_users()?;
    run_step(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    run_step(
        "cargo clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    eprintln!("xtask: yocto-crates --check");
    yocto::crates(true)?;
    yocto::lint()?;
    yocto_check::run(yocto_check::Options { layers: None })?;
    run_step(
        "cargo build",
        cargo().args(["build", "--workspace", "--bins"]),
    )?;
    assets()?;
    let mut tests = cargo();
    tests.args(["test", "--workspace"]).args(cargo_args);
    summary::cargo_test(tests)?;
    Ok(())
}

fn fuzz(count: usize, seed: u64, save: Option<PathBuf>) -> Result<()> {
    deps::ensure(&[deps::RUN, deps::TEST])?;
    if !is_root() {
        bail!("the fuzzer runs the services as their own users: run it as root");
    }
    ensure_users()?;
    run_step(
        "build",
        cargo().args(["build", "--release", "--workspace", "--bins"]),
    )?;
    let mut run = release("sip-fuzz");
    run.args(["--count", &count.to_string(), "--seed", &seed.to_string()]);
    if let Some(dir) = save {
        run.arg("--save").arg(dir);
    }
    run_step("fuzzing the SIP agent", &mut run)
}

fn bench() -> Result<()> {
    deps::ensure(&[deps::RUN, deps::TEST])?;
    if is_root() {
        ensure_users()?;
    }
    run_step(
        "build (release)",
        cargo().args(["build", "--release", "--workspace", "--bins"]),
    )?;
    release_bin("config service over the bus", "config-bench")?;
    release_bin("media service over the bus", "media-bench")?;
    release_bin("web service over HTTPS with curl", "web-bench")?;
    release_bin("SIP agent over the bus with SIPp", "sip-bench")?;
    release_bin(
        "SRTP against plain RTP, with SIPp and baresip",
        "srtp-bench",
    )?;
    release_bin(
        "the door phone against baresip, side by side",
        "sip-compare",
    )?;
    run_step(
        "Resolve in process (criterion)",
        cargo().args(["bench", "-p", "doorphone-config", "--bench", "resolve"]),
    )?;
    run_step(
        "the SIP agent's intake in process: guard, identity, policy (criterion)",
        cargo().args(["bench", "-p", "doorphone-sip", "--bench", "intake"]),
    )
}

/// Runs one of the whole-system benchmarks (a binary of the system tests'
/// crate) on the release build.
fn release_bin(what: &str, bin: &str) -> Result<()> {
    run_step(what, &mut release(bin))
}

/// A binary of the workspace's release build, as `cargo build --release
/// --workspace --bins` made it. (`cargo run -p` would build the system tests'
/// crate again with that package's features alone.)
fn release(bin: &str) -> Command {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let mut cmd = Command::new(target.join("release").join(bin));
    cmd.current_dir(root());
    cmd
}

/// Shell completions and the man page, generated from doorctl's clap definition.
fn assets() -> Result<PathBuf> {
    let dir = root().join("target/assets");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        let mut cmd = doorctl::command();
        clap_complete::generate_to(shell, &mut cmd, "doorctl", &completions)?;
    }
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(doorctl::command(), &man)?;
    Ok(dir)
}
