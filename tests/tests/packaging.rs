//! The packaging of the appliance: systemd units, service users, bus policies and
//! the Yocto recipes, checked against each other, against [`SERVICES`] and
//! against the code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use doorphone_system_tests::{CLIENT_SERVICES, SERVICES, bin, repo_root};

const SYSUSERS: &str = "packaging/sysusers.d/doorphone.conf";
const RECIPES: &str = "yocto/meta-doorphone/recipes-doorphone/doorphone";

/// Every file in `dir` (relative to the repository) whose name ends in `suffix`.
fn files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(repo_root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The values of `key` in the `[section]` of a unit file, in order.
fn unit_values(unit: &str, section: &str, key: &str) -> Vec<String> {
    let mut current = "";
    let mut values = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name;
        } else if let Some((k, v)) = line.split_once('=')
            && current == section
            && k.trim() == key
        {
            values.push(v.trim().to_owned());
        }
    }
    values
}

/// The program an `ExecStart=` runs, without systemd's prefix characters.
fn exec_program(exec_start: &str) -> &str {
    exec_start
        .trim_start_matches(['-', '@', ':', '+', '!'])
        .split_whitespace()
        .next()
        .unwrap_or_default()
}

/// Every unit in packaging/systemd passes `systemd-analyze verify`, warnings
/// included. The unit is checked as installed: in a root that holds it under
/// /etc/systemd/system, the binary its ExecStart names (the workspace's build)
/// and a copy of the host's own units, which its dependencies name.
#[test]
fn every_unit_passes_systemd_analyze_verify() {
    let units = files("packaging/systemd", "");
    assert!(!units.is_empty(), "no units in packaging/systemd");
    for unit in units {
        let name = unit.file_name().unwrap().to_str().unwrap().to_owned();
        let root = tempfile::tempdir().unwrap();
        let unit_dir = root.path().join("etc/systemd/system");
        std::fs::create_dir_all(&unit_dir).unwrap();
        std::fs::copy(&unit, unit_dir.join(&name)).unwrap();
        for exec in unit_values(&read(&unit), "Service", "ExecStart") {
            let program = Path::new(exec_program(&exec));
            let file_name = program.file_name().unwrap().to_str().unwrap();
            let target = root.path().join(program.strip_prefix("/").unwrap());
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(bin(file_name), &target).unwrap();
        }
        let host_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
            .into_iter()
            .find(|d| Path::new(d).join("sysinit.target").exists())
            .expect("the host's systemd units (sysinit.target)");
        std::fs::create_dir_all(root.path().join("usr/lib/systemd")).unwrap();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(host_units)
            .arg(root.path().join("usr/lib/systemd/system"))
            .status()
            .unwrap();
        assert!(copied.success(), "cannot copy {host_units}");
        // Their links name /lib or /usr/lib, as on a merged-/usr system.
        std::os::unix::fs::symlink("usr/lib", root.path().join("lib")).unwrap();

        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.path().display()))
            .arg(format!("/etc/systemd/system/{name}"))
            .output()
            .expect("systemd-analyze runs (the systemd package)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify {name}: {}\n{stderr}",
            out.status
        );
    }
}

/// Every option a unit passes to its service is one the service knows and
/// documents (the unit's command line with `--help` after it is read up to the
/// help, which names each option), and a wrong option stops the service with
/// status 2 before it starts anything, naming the option.
#[test]
fn services_read_their_units_command_lines_and_refuse_wrong_ones() {
    let mut lines = 0;
    for unit in files("packaging/systemd", ".service") {
        let text = read(&unit);
        for key in ["ExecStart", "ExecStopPost"] {
            for exec in unit_values(&text, "Service", key) {
                let program = Path::new(exec_program(&exec)).file_name().unwrap();
                let args: Vec<String> = exec
                    .split_whitespace()
                    .skip(1)
                    .map(|w| w.replace("%t", "/run").replace("%S", "/var/lib"))
                    .collect();
                let program = bin(program.to_str().unwrap());
                let out = Command::new(&program)
                    .args(&args)
                    .arg("--help")
                    .output()
                    .unwrap();
                let help = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success(), "{exec} --help: {out:?}");
                for option in args.iter().filter(|a| a.starts_with("--")) {
                    assert!(
                        help.contains(&format!("{option} ")),
                        "{exec}: {option} in\n{help}"
                    );
                }
                let out = Command::new(&program)
                    .args(&args)
                    .arg("--no-such-option")
                    .output()
                    .unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(2), "{exec}: {out:?}");
                assert!(
                    stderr.contains("unknown option --no-such-option") && stderr.contains("Usage:"),
                    "{exec}: {stderr}"
                );
                lines += 1;
            }
        }
    }
    // Six services, and the relay's ExecStopPost.
    assert!(lines >= 7, "{lines} command lines");
}

/// The users and groups `systemd-sysusers` creates from the sysusers file in an
/// empty root: name → the passwd or group line's fields.
fn sysusers_in_empty_root() -> (BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>) {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(repo_root().join(SYSUSERS))
        .output()
        .expect("systemd-sysusers runs (the systemd package)");
    assert!(out.status.success(), "systemd-sysusers: {out:?}");
    let table = |file: &str| -> BTreeMap<String, Vec<String>> {
        read(&root.path().join("etc").join(file))
            .lines()
            .map(|line| {
                let fields: Vec<String> = line.split(':').map(str::to_owned).collect();
                (fields[0].clone(), fields)
            })
            .collect()
    };
    (table("passwd"), table("group"))
}

#[test]
fn systemd_sysusers_creates_every_user_and_the_admin_group() {
    let (passwd, group) = sysusers_in_empty_root();
    let declared: Vec<String> = read(&repo_root().join(SYSUSERS))
        .lines()
        .filter_map(|l| l.strip_prefix("u "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert!(!declared.is_empty(), "{SYSUSERS} declares no user");
    for user in &declared {
        let entry = passwd
            .get(user)
            .unwrap_or_else(|| panic!("{user} was not created: {passwd:?}"));
        let uid: u32 = entry[2].parse().unwrap();
        assert!(uid < 1000, "{user} is not a system user: {entry:?}");
        assert!(
            entry[6].ends_with("/nologin"),
            "{user} may log in: {entry:?}"
        );
        assert!(group.contains_key(user), "{user} has no group of its own");
    }
    for service in SERVICES {
        assert!(
            declared.iter().any(|u| u == service.user),
            "{SYSUSERS} does not declare {}",
            service.user
        );
    }
    assert!(group.contains_key("doorphone"), "no admin group: {group:?}");
    assert_eq!(
        passwd["doorphone-config"][5], "/var/lib/doorphone",
        "the config service's home is its state directory"
    );
}

/// The names of every binary target of the workspace's crates.
fn workspace_binaries() -> BTreeSet<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {out:?}");
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// (policy user, name it may own) for every `<allow own=…>` or `own_prefix`
/// in a bus policy file; `None` for a policy that is not a user's.
fn owners(policy: &str) -> Vec<(Option<String>, String)> {
    let doc = roxmltree::Document::parse_with_options(
        policy,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("allow"))
        .filter_map(|allow| {
            let name = allow
                .attribute("own")
                .or_else(|| allow.attribute("own_prefix"))?;
            let user = allow
                .ancestors()
                .find(|n| n.has_tag_name("policy"))
                .and_then(|p| p.attribute("user"))
                .map(str::to_owned);
            Some((user, name.to_owned()))
        })
        .collect()
}

/// Each row of SERVICES names a real binary, user and bus name, and every
/// packaging file agrees with it: the unit starts that binary as that user, the
/// policy lets that user own exactly that name (the one the interfaces crate
/// declares), the sysusers file creates the user, and the service's recipe
/// installs the same unit, policy and interface. Every unit and every policy
/// belongs to a row, so a service cannot be left out of the packaging.
#[test]
fn units_policies_users_and_recipes_agree_with_the_code() {
    let binaries = workspace_binaries();
    let sysusers = read(&repo_root().join(SYSUSERS));
    let root = repo_root();

    for s in SERVICES {
        assert!(
            binaries.contains(s.binary),
            "{} is not a binary of the workspace: {binaries:?}",
            s.binary
        );

        let unit = read(&root.join(s.unit));
        let exec = unit_values(&unit, "Service", "ExecStart");
        assert_eq!(exec.len(), 1, "{}: one ExecStart", s.unit);
        assert_eq!(
            exec_program(&exec[0]),
            format!("/usr/bin/{}", s.binary),
            "{}",
            s.unit
        );
        assert_eq!(
            unit_values(&unit, "Service", "User"),
            [s.user],
            "{}: User=",
            s.unit
        );
        assert_eq!(
            unit_values(&unit, "Service", "Group"),
            [s.user],
            "{}: Group=",
            s.unit
        );

        let policy = read(&root.join(s.policy));
        assert_eq!(
            owners(&policy),
            [(Some(s.user.to_owned()), s.bus_name.to_owned())],
            "{}: exactly {} may own exactly {}",
            s.policy,
            s.user,
            s.bus_name
        );

        assert!(
            sysusers
                .lines()
                .any(|l| l.split_whitespace().take(2).eq(["u", s.user])),
            "{SYSUSERS} does not create {}",
            s.user
        );

        // The recipe installs packaging/systemd/<binary>.service,
        // dbus/system.d/<bus name>.conf and dbus/interfaces/<bus name>.xml.
        assert_eq!(s.unit, format!("packaging/systemd/{}.service", s.binary));
        assert_eq!(s.policy, format!("dbus/system.d/{}.conf", s.bus_name));
        let interface = root.join(format!("dbus/interfaces/{}.xml", s.bus_name));
        assert!(interface.exists(), "{} is missing", interface.display());
        let recipes = files(RECIPES, ".bb");
        let recipe = recipes
            .iter()
            .find(|r| {
                r.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{}_", s.binary))
            })
            .unwrap_or_else(|| panic!("no recipe {RECIPES}/{}_<version>.bb", s.binary));
        let recipe_text = read(recipe);
        for line in [
            format!("DOORPHONE_BUS_NAME = \"{}\"", s.bus_name),
            format!("DOORPHONE_USER = \"{}\"", s.user),
            "require doorphone-service.inc".to_owned(),
        ] {
            assert!(
                recipe_text.lines().any(|l| l == line),
                "{} lacks `{line}`",
                recipe.display()
            );
        }
    }

    // A client service owns no name: its unit starts its binary as its user.
    for c in CLIENT_SERVICES {
        assert!(
            binaries.contains(c.binary),
            "{} is not a binary of the workspace: {binaries:?}",
            c.binary
        );
        assert_eq!(c.unit, format!("packaging/systemd/{}.service", c.binary));
        let unit = read(&root.join(c.unit));
        let exec = unit_values(&unit, "Service", "ExecStart");
        assert_eq!(exec.len(), 1, "{}: one ExecStart", c.unit);
        assert_eq!(
            exec_program(&exec[0]),
            format!("/usr/bin/{}", c.binary),
            "{}",
            c.unit
        );
        for key in ["User", "Group"] {
            assert_eq!(
                unit_values(&unit, "Service", key),
                [c.user],
                "{}: {key}=",
                c.unit
            );
        }
        assert!(
            sysusers
                .lines()
                .any(|l| l.split_whitespace().take(2).eq(["u", c.user])),
            "{SYSUSERS} does not create {}",
            c.user
        );
        // Its recipe installs its unit and makes its user; it has no bus name
        // or policy of its own.
        let recipe = files(RECIPES, ".bb")
            .into_iter()
            .find(|r| {
                r.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{}_", c.binary))
            })
            .unwrap_or_else(|| panic!("no recipe {RECIPES}/{}_<version>.bb", c.binary));
        let recipe_text = read(&recipe);
        for line in [
            format!("DOORPHONE_USER = \"{}\"", c.user),
            "require doorphone.inc".to_owned(),
            "SYSTEMD_SERVICE:${PN} = \"${BPN}.service\"".to_owned(),
        ] {
            assert!(
                recipe_text.lines().any(|l| l == line),
                "{} lacks `{line}`",
                recipe.display()
            );
        }
    }

    let listed = |path: &Path| {
        SERVICES
            .iter()
            .any(|s| root.join(s.unit) == path || root.join(s.policy) == path)
            || CLIENT_SERVICES.iter().any(|c| root.join(c.unit) == path)
    };
    for unit in files("packaging/systemd", "") {
        assert!(
            listed(&unit),
            "{} belongs to no row of SERVICES",
            unit.display()
        );
    }
    for policy in files("dbus/system.d", ".conf") {
        assert!(
            listed(&policy),
            "{} belongs to no row of SERVICES: a service needs its unit, recipe and row",
            policy.display()
        );
    }
}

/// The recipes' LIC_FILES_CHKSUM points at the license line of the workspace's
/// Cargo.toml; it must still be there, with the same text.
#[test]
fn the_recipes_license_checksum_matches_cargo_toml() {
    let inc = read(&repo_root().join(RECIPES).join("doorphone.inc"));
    let chksum = inc
        .lines()
        .find_map(|l| l.strip_prefix("LIC_FILES_CHKSUM = \"file://Cargo.toml;"))
        .expect("doorphone.inc checksums Cargo.toml")
        .trim_end_matches('"');
    let params: BTreeMap<&str, &str> = chksum
        .split(';')
        .map(|p| p.split_once('=').unwrap())
        .collect();
    let (begin, end): (usize, usize) = (
        params["beginline"].parse().unwrap(),
        params["endline"].parse().unwrap(),
    );
    let cargo_toml = read(&repo_root().join("Cargo.toml"));
    let text: String = cargo_toml
        .split_inclusive('\n')
        .skip(begin - 1)
        .take(end + 1 - begin)
        .collect();
    assert!(
        text.starts_with("license = "),
        "Cargo.toml line {begin}: {text}"
    );
    let mut md5sum = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut md5sum.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = md5sum.wait_with_output().unwrap();
    let digest = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        digest.split_whitespace().next(),
        Some(params["md5"]),
        "the license line of Cargo.toml changed: update LIC_FILES_CHKSUM in doorphone.inc"
    );
}

/// No unit's `StateDirectory=` lies inside another's. systemd gives each listed
/// directory to its unit's user at every start (the whole tree, when the top is
/// not that user's) and sets its mode, so a nested one would be taken from its
/// service or locked out of reach by the outer service's mode.
#[test]
fn no_state_directory_lies_inside_another_units() {
    let mut dirs: Vec<(String, PathBuf)> = Vec::new();
    for unit in files("packaging/systemd", "") {
        for value in unit_values(&read(&unit), "Service", "StateDirectory") {
            for dir in value.split_whitespace() {
                dirs.push((dir.to_owned(), unit.clone()));
            }
        }
    }
    for (dir, unit) in &dirs {
        for (other, other_unit) in &dirs {
            assert!(
                unit == other_unit || !Path::new(other).starts_with(dir),
                "StateDirectory={other} of {} lies inside StateDirectory={dir} of {}",
                other_unit.display(),
                unit.display()
            );
        }
    }
}

/// The SIP agent, as its user, serves `org.doorphone.Sip1` and, on each call,
/// `org.doorphone.Sip1.Call` as released in `dbus/interfaces/`, and its bus
/// policy lets each user do exactly its part: everyone reads and lists the
/// history, the pager holds and resumes calls, root places and ends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sip_agent_serves_its_released_interfaces_to_the_callers_its_policy_names() {
    use doorphone_interfaces::sip;
    use doorphone_system_tests::{Bus, check_released_interface, chown_to};

    let bus = Bus::start().unwrap();
    let dir = tempfile::Builder::new()
        .prefix("doorphone-sip")
        .tempdir()
        .unwrap();
    let media_dir = dir.path().join("media");
    std::fs::create_dir(&media_dir).unwrap();
    chown_to(&media_dir, "doorphone-media").unwrap();
    // Dialling asks media for an offer; the configuration may stay absent.
    let _media = doorphone_system_tests::start_media(
        &bus,
        &[
            "--audio-sink".into(),
            "fake".into(),
            "--video-source".into(),
            "none".into(),
        ],
        &media_dir.join("media.log"),
    )
    .await
    .unwrap();
    let _sip = doorphone_system_tests::sip::start_agent(&bus, dir.path(), &[])
        .await
        .unwrap();

    // A callee that never answers keeps the call dialling while it is looked at.
    let callee = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let conn = bus.connect().await.unwrap();
    let agent = sip::Sip1Proxy::new(&conn).await.unwrap();
    let call = agent
        .dial(
            &callee.local_addr().unwrap().to_string(),
            [("account", zbus::Variant::from("ip"))].into(),
        )
        .await
        .unwrap();

    for (path, interface) in [
        (sip::OBJECT_PATH, sip::INTERFACE),
        (call.as_str(), sip::CALL_INTERFACE),
    ] {
        check_released_interface(
            &conn,
            sip::BUS_NAME,
            path,
            interface,
            &repo_root().join(format!("dbus/interfaces/{interface}.xml")),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    }

    let busctl = |user: &str, args: &[&str]| {
        let mut full = vec![args[0], sip::BUS_NAME];
        full.extend(&args[1..]);
        bus.busctl_as(user, &full)
    };
    let on_call = |method: &'static str| ["call", call.as_str(), sip::CALL_INTERFACE, method];
    let dial = [
        "call",
        sip::OBJECT_PATH,
        sip::INTERFACE,
        "Dial",
        "sa{sv}",
        "127.0.0.1:9",
        "0",
    ];
    let allowed: [(&str, Vec<&str>); 6] = [
        ("nobody", vec!["introspect", call.as_str()]),
        (
            "nobody",
            vec!["call", sip::OBJECT_PATH, sip::INTERFACE, "History"],
        ),
        (
            "nobody",
            vec!["get-property", sip::OBJECT_PATH, sip::INTERFACE, "Calls"],
        ),
        (
            "nobody",
            vec!["get-property", call.as_str(), sip::CALL_INTERFACE, "State"],
        ),
        // The call is not answered: the agent refuses, the bus lets it ask.
        ("doorphone-pager", on_call("Hold").to_vec()),
        ("doorphone-pager", on_call("Resume").to_vec()),
    ];
    for (user, args) in allowed {
        let out = busctl(user, &args);
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("Access denied"),
            "{user} {args:?}: {out:?}"
        );
        if args[0] != "call" || user == "nobody" {
            assert!(out.status.success(), "{user} {args:?}: {out:?}");
        }
    }
    let denied: [(&str, Vec<&str>); 6] = [
        ("nobody", dial.to_vec()),
        ("nobody", on_call("Hold").to_vec()),
        ("nobody", on_call("Hangup").to_vec()),
        ("doorphone-pager", dial.to_vec()),
        ("doorphone-pager", on_call("Hangup").to_vec()),
        ("doorphone-media", on_call("Answer").to_vec()),
    ];
    for (user, args) in denied {
        let out = busctl(user, &args);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Access denied"),
            "{user} {args:?}: {out:?}"
        );
    }
    let out = busctl("root", &on_call("Hangup"));
    assert!(out.status.success(), "{out:?}");
}

/// The media tests run media with the image's GStreamer plugins only: the
/// plugin files named from the packages of gst-elements.txt are this
/// machine's plugins.
#[test]
fn the_images_gstreamer_packages_name_plugins_this_machine_has() {
    let names = doorphone_system_tests::gst_plugins_of_image().unwrap();
    for wanted in [
        "libgstcoreelements.so",
        "libgstrtpmanager.so",
        "libgstvideoconvertscale.so",
        "libgstsrtp.so",
        "libgstvolume.so",
    ] {
        assert!(names.iter().any(|n| n == wanted), "{wanted}: {names:?}");
    }
    let env = doorphone_system_tests::gst_env();
    let plugins = std::path::Path::new(&env[0].1);
    for name in &names {
        assert!(plugins.join(name).exists(), "{name} is not linked");
    }
}
