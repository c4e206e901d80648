//! The Yocto layer's generated file and its linter.
//!
//! - `cargo xtask yocto-crates` writes `doorphone-crates.inc` from `Cargo.lock`:
//!   every crates.io package as a `crate://` fetch, with the lock file's checksum
//!   as the sha256sum bitbake verifies, in the format of OE-core's
//!   `cargo-update-recipe-crates` class. `--check` fails when the file is stale.
//! - `cargo xtask test` also runs oelint-adv over every recipe, offline, with the
//!   rules of `yocto/.oelint.cfg`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{root, run_step};

/// The generated file, relative to the repository's root.
const CRATES_INC: &str = "yocto/meta-doorphone/recipes-doorphone/doorphone/doorphone-crates.inc";

/// The linter and the version whose rules the recipes are kept clean against.
const OELINT: &str = "oelint-adv";
const OELINT_VERSION: &str = "9.11.2";

/// Writes the crates file, or with `check` fails when it differs from what
/// `Cargo.lock` gives.
pub fn crates(check: bool) -> Result<()> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("Cargo.lock")?;
    let wanted = crates_inc(&lock)?;
    let path = root().join(CRATES_INC);
    if check {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != wanted {
            bail!("{CRATES_INC} does not match Cargo.lock: run `cargo xtask yocto-crates`");
        }
        return Ok(());
    }
    std::fs::write(&path, wanted).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {CRATES_INC}");
    Ok(())
}

/// A package of `Cargo.lock` that bitbake fetches from crates.io.
#[derive(Debug, PartialEq, Eq)]
struct Crate {
    name: String,
    version: String,
    checksum: String,
}

/// The crates.io packages of a `Cargo.lock`, in its order; workspace members,
/// path and git dependencies are not fetched as crates.
fn registry_crates(lock: &str) -> Result<Vec<Crate>> {
    let mut crates = Vec::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|line| {
                let (k, v) = line.split_once(" = ")?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        if !field("source").is_some_and(|s| s.starts_with("registry+") && s.contains("crates.io")) {
            continue;
        }
        let name = field("name").context("a package without a name in Cargo.lock")?;
        let version = field("version").with_context(|| format!("{name} has no version"))?;
        let checksum = field("checksum")
            .with_context(|| format!("{name} {version} has no checksum in Cargo.lock"))?;
        crates.push(Crate {
            name,
            version,
            checksum,
        });
    }
    if crates.is_empty() {
        bail!("Cargo.lock names no crates.io package");
    }
    Ok(crates)
}

/// The text of the crates file for `lock`.
fn crates_inc(lock: &str) -> Result<String> {
    let crates = registry_crates(lock)?;
    let mut out = String::from(
        "# Generated from Cargo.lock by `cargo xtask yocto-crates`; CI fails when it is stale.\n\n\
         # from Cargo.lock\nSRC_URI += \"\\\n",
    );
    for c in &crates {
        out.push_str(&format!(
            "    crate://crates.io/{0}/{1};name={0}-{1} \\\n",
            c.name, c.version
        ));
    }
    out.push_str("\"\n\n");
    for c in &crates {
        out.push_str(&format!(
            "SRC_URI[{}-{}.sha256sum] = \"{}\"\n",
            c.name, c.version, c.checksum
        ));
    }
    Ok(out)
}

/// Lints every recipe, include file, append and configuration file of the
/// layer with oelint-adv, installing it from PyPI first when it is missing.
pub fn lint() -> Result<()> {
    let installed = Command::new("python3")
        .args(["-m", "oelint_adv", "--version"])
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).trim()
                    == format!("{OELINT} {OELINT_VERSION}")
        });
    if !installed {
        run_step(
            &format!("pip install {OELINT}=={OELINT_VERSION}"),
            Command::new("python3").args([
                "-m",
                "pip",
                "install",
                "--quiet",
                &format!("{OELINT}=={OELINT_VERSION}"),
            ]),
        )?;
    }
    let yocto = root().join("yocto");
    let mut files = Vec::new();
    recipes(&yocto, &mut files)?;
    files.sort();
    run_step(
        "oelint-adv",
        Command::new("python3")
            .args(["-m", "oelint_adv", "--quiet", "--relpaths"])
            .args(&files)
            // The rules and the release to check against: yocto/.oelint.cfg.
            .current_dir(&yocto)
            .env_remove("OELINT_CONFIG"),
    )
}

fn recipes(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            recipes(&path, found)?;
        } else if path
            .extension()
            .is_some_and(|e| ["bb", "bbappend", "inc", "conf"].iter().any(|x| e == *x))
        {
            found.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"# This file is automatically @generated by Cargo.
# It is not intended for manual editing.
version = 4

[[package]]
name = "aho-corasick"
version = "1.1.4"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "ddd31a130427c27518df266943a5308ed92d4b226cc639f5a8f1002816174301"
dependencies = [
 "memchr",
]

[[package]]
name = "doorphone-config"
version = "0.1.0"
dependencies = [
 "aho-corasick",
]

[[package]]
name = "forked"
version = "0.3.0"
source = "git+https://example.invalid/forked?rev=1#0123"

[[package]]
name = "memchr"
version = "2.7.6"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "f52b00d39961fc5b2736ea853c9cc86238e165017a493d1d5c8eac6bdc4cc273"
"#;

    #[test]
    fn only_crates_io_packages_are_fetched_with_their_checksums() {
        assert_eq!(
            crates_inc(LOCK).unwrap(),
            "# Generated from Cargo.lock by `cargo xtask yocto-crates`; CI fails when it is stale.

# from Cargo.lock
SRC_URI += \"\\
    crate://crates.io/aho-corasick/1.1.4;name=aho-corasick-1.1.4 \\
    crate://crates.io/memchr/2.7.6;name=memchr-2.7.6 \\
\"

SRC_URI[aho-corasick-1.1.4.sha256sum] = \"ddd31a130427c27518df266943a5308ed92d4b226cc639f5a8f1002816174301\"
SRC_URI[memchr-2.7.6.sha256sum] = \"f52b00d39961fc5b2736ea853c9cc86238e165017a493d1d5c8eac6bdc4cc273\"
"
        );
    }

    #[test]
    fn a_crate_without_a_checksum_is_refused() {
        let lock = LOCK.replace(
            "checksum = \"f52b00d39961fc5b2736ea853c9cc86238e165017a493d1d5c8eac6bdc4cc273\"\n",
            "",
        );
        let err = crates_inc(&lock).unwrap_err();
        assert!(
            err.to_string().contains("memchr 2.7.6 has no checksum"),
            "{err}"
        );
    }
}
