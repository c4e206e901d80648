//! The Yocto layer's generated file and its linter.
//!
//! - `cargo xtask yocto-crates` writes `doorphone-crates.inc` from `Cargo.lock`:
//!   every crates.io package as a `crate://` fetch, with the lock file's checksum
//!   as the sha256sum bitbake verifies, in the format of OE-core's
//!   `cargo-update-recipe-crates` class; and `doorphone-users.inc` from the
//!   sysusers file, the `useradd` arguments of every service user and of the
//!   admin group. `--check` fails when either file is stale.
//! - `cargo xtask test` also runs oelint-adv over every recipe, offline, with the
//!   rules of `yocto/.oelint.cfg`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{deps, root, run_step};

/// The generated file, relative to the repository's root.
const CRATES_INC: &str = "yocto/meta-doorphone/recipes-doorphone/doorphone/doorphone-crates.inc";

/// The users file generated from the sysusers file, both relative to the root.
const USERS_INC: &str = "yocto/meta-doorphone/recipes-doorphone/doorphone/doorphone-users.inc";
const SYSUSERS: &str = "packaging/sysusers.d/doorphone.conf";

/// The linter and the version whose rules the recipes are kept clean against.
const OELINT: &str = "oelint-adv";
const OELINT_VERSION: &str = "9.11.2";

/// Writes the crates file, or with `check` fails when it differs from what
/// `Cargo.lock` gives.
pub fn crates(check: bool) -> Result<()> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("Cargo.lock")?;
    generated(CRATES_INC, "Cargo.lock", &crates_inc(&lock)?, check)?;
    let sysusers = std::fs::read_to_string(root().join(SYSUSERS)).context(SYSUSERS)?;
    generated(USERS_INC, SYSUSERS, &users_inc(&sysusers)?, check)
}

/// Writes `wanted` to `file`, or with `check` fails when the file differs.
fn generated(file: &str, from: &str, wanted: &str, check: bool) -> Result<()> {
    let path = root().join(file);
    if check {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != wanted {
            bail!("{file} does not match {from}: run `cargo xtask yocto-crates`");
        }
        return Ok(());
    }
    std::fs::write(&path, wanted).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {file}");
    Ok(())
}

/// A line of the sysusers file: a user (`u`) or a group (`g`), its name and, for
/// a user, its home folder (`None` for `-`).
#[derive(Debug, PartialEq, Eq)]
pub struct SysUser {
    pub kind: char,
    pub name: String,
    pub home: Option<String>,
}

/// The users and groups of a sysusers.d file (`u NAME ID "GECOS" HOME`, `g NAME ID`).
pub fn sysusers(text: &str) -> Result<Vec<SysUser>> {
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = fields(line);
        let (kind, name) = match fields.as_slice() {
            [kind, name, ..] if kind == "u" || kind == "g" => (kind.as_str(), name),
            _ => bail!("{SYSUSERS}: {line:?}: only u and g lines are used for the door phone"),
        };
        let home = fields
            .get(4)
            .filter(|home| kind == "u" && *home != "-")
            .cloned();
        found.push(SysUser {
            kind: if kind == "u" { 'u' } else { 'g' },
            name: name.clone(),
            home,
        });
    }
    Ok(found)
}

/// The whitespace-separated fields of a sysusers line; a double-quoted field
/// may hold spaces.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    out.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(current);
    }
    out
}

/// The text of the users file for the sysusers file `text`: the admin group's
/// `groupadd` arguments, and each user's `useradd` arguments as a flag of
/// `DOORPHONE_USERADD` named after the user (`doorphone-service.inc` picks its
/// recipe's user). Users get a group of their own, as systemd-sysusers gives them.
fn users_inc(text: &str) -> Result<String> {
    let entries = sysusers(text)?;
    let groups: Vec<&SysUser> = entries.iter().filter(|e| e.kind == 'g').collect();
    let [group] = groups.as_slice() else {
        bail!("{SYSUSERS} must name exactly one group, the admin group");
    };
    let mut out = format!(
        "# Generated from {SYSUSERS} by `cargo xtask yocto-crates`; CI fails when it is stale.\n\n\
         # The admin group.\n\
         DOORPHONE_GROUPADD = \"--system {}\"\n\n\
         # Each service's user, by name.\n",
        group.name
    );
    for user in entries.iter().filter(|e| e.kind == 'u') {
        out.push_str(&format!(
            "DOORPHONE_USERADD[{0}] = \"--system --user-group --no-create-home --home-dir {1} \
             --shell ${{base_sbindir}}/nologin {0}\"\n",
            user.name,
            user.home.as_deref().unwrap_or("/"),
        ));
    }
    Ok(out)
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
    deps::ensure_pypi(&[(OELINT, OELINT_VERSION)])?;
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
    fn users_come_from_the_sysusers_file() {
        let text = "# users\n\
                    g doorphone        -  -\n\
                    u doorphone-config -  \"Door phone configuration service\" /var/lib/doorphone\n\
                    u doorphone-sip    -  \"Door phone SIP agent\"              -\n";
        assert_eq!(
            users_inc(text).unwrap(),
            "# Generated from packaging/sysusers.d/doorphone.conf by `cargo xtask yocto-crates`; \
             CI fails when it is stale.

# The admin group.
DOORPHONE_GROUPADD = \"--system doorphone\"

# Each service's user, by name.
DOORPHONE_USERADD[doorphone-config] = \"--system --user-group --no-create-home --home-dir /var/lib/doorphone --shell ${base_sbindir}/nologin doorphone-config\"
DOORPHONE_USERADD[doorphone-sip] = \"--system --user-group --no-create-home --home-dir / --shell ${base_sbindir}/nologin doorphone-sip\"
"
        );
    }

    #[test]
    fn the_users_file_matches_the_sysusers_file() {
        let sysusers = std::fs::read_to_string(root().join(SYSUSERS)).unwrap();
        let current = std::fs::read_to_string(root().join(USERS_INC)).unwrap();
        assert_eq!(current, users_inc(&sysusers).unwrap());
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
