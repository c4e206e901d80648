//! `cargo xtask yocto-check`: bitbake itself checks the layer against the
//! metadata the kas file pins.
//!
//! Before bitbake runs, the kas file is checked on its own: every repository
//! with a URL pinned to the commit of the metadata folder's `PINS` file, and
//! every layer's `LAYERDEPENDS` among the layers it enables; the GStreamer
//! element table of the layer against the media service's sources and the media
//! recipe. Then, as an unprivileged user (bitbake refuses root), in
//! `target/yocto-check` with `BB_NO_NETWORK`: `bitbake -p`, `bitbake -g
//! doorphone-image`, and the expanded variables of every door phone recipe and
//! of the GStreamer recipes the media package needs (through bitbake's tinfoil,
//! the datastore `bitbake -e` prints).
//!
//! bitbake reads the configuration the kas file gives (its machine, distro,
//! layers and `local_conf_header`), so the kas file is the one description of
//! the build. Recipes of meta-openembedded folders the image does not use are
//! masked to keep the parse short; the parse cache in the build folder is kept
//! between runs.
//!
//! Last, the check checks itself: each way the image once failed to build is
//! put back, one at a time (meta-python left out of the kas file, a pin that is
//! not the metadata's commit, `SRC_URI` at a remote that does not exist, `opus`
//! taken out of the plugins-base append), in the kas file's text or in the
//! checkout's copy, and must be refused for that reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use crate::{deps, is_root, root, run_step, yocto};

/// The kas file and the layer, relative to the repository's root.
const KAS: &str = "yocto/kas/doorphone.yml";
const LAYER: &str = "yocto/meta-doorphone";
const ELEMENTS: &str = "yocto/meta-doorphone/files/gst-elements.txt";
const MEDIA_RECIPE: &str =
    "yocto/meta-doorphone/recipes-doorphone/doorphone/doorphone-media_0.1.1.bb";
const MEDIA_SOURCES: &str = "services/media/src";

/// The user bitbake runs as when the check runs as root, and its home.
const USER: &str = "doorphone-bitbake";
const HOME: &str = "/var/lib/doorphone-bitbake";

/// The folders of meta-openembedded's layers whose recipes the image uses; every
/// other recipe of these layers is masked. When the image needs another one,
/// `bitbake -g` says which recipe nothing provides: add its folder here.
const KEEP: &[(&str, &[&str])] = &[
    ("meta-openembedded/meta-oe", &["recipes-multimedia/libopus"]),
    ("meta-openembedded/meta-python", &[]),
    (
        "meta-openembedded/meta-multimedia",
        &[
            "recipes-multimedia/openh264",
            "recipes-multimedia/spandsp",
            "recipes-support/libsrtp",
        ],
    ),
];

/// The libraries the recipes must depend on, by the `-sys` crate (or the
/// pkg-config name a crate's build script probes) that links them.
const NATIVE_LIBS: &[(&str, &str)] = &[
    ("libsqlite3-sys", "sqlite3"),
    ("gstreamer-sys", "gstreamer1.0"),
    ("gstreamer-base-sys", "gstreamer1.0"),
    ("gstreamer-net-sys", "gstreamer1.0"),
    ("gstreamer-app-sys", "gstreamer1.0-plugins-base"),
    ("gstreamer-audio-sys", "gstreamer1.0-plugins-base"),
    ("gstreamer-rtp-sys", "gstreamer1.0-plugins-base"),
    ("gstreamer-sdp-sys", "gstreamer1.0-plugins-base"),
    ("gstreamer-video-sys", "gstreamer1.0-plugins-base"),
    ("spandsp", "spandsp"),
];

/// A repository of the kas file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub name: String,
    pub url: Option<String>,
    pub commit: Option<String>,
    /// Its enabled layers, relative to the repository (`.` for its root).
    pub layers: Vec<String>,
}

/// What the check reads from the kas file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Kas {
    pub machine: String,
    pub distro: String,
    pub target: String,
    pub repos: Vec<Repo>,
    /// The `local_conf_header` sections, in order.
    pub local_conf: Vec<(String, String)>,
}

/// Parses the subset of YAML the kas file uses: top-level scalars, `repos` with
/// `url`, `commit` and `layers`, and `local_conf_header` with block scalars.
pub fn parse_kas(text: &str) -> Result<Kas> {
    let mut kas = Kas::default();
    let mut section = String::new();
    let mut repo: Option<Repo> = None;
    let mut in_layers = false;
    let mut block: Option<(String, String)> = None;
    let scalar = |v: &str| v.trim().trim_matches('"').to_owned();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let content = line.trim();
        if let Some((_, body)) = block.as_mut() {
            if content.is_empty() || indent >= 4 {
                body.push_str(line.get(4..).unwrap_or(""));
                body.push('\n');
                continue;
            }
            kas.local_conf.extend(block.take());
        }
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let (key, value) = content
            .split_once(':')
            .map(|(k, v)| (k.trim(), v.trim()))
            .with_context(|| format!("{KAS}: {content:?} is not a key"))?;
        match indent {
            0 => {
                kas.repos.extend(repo.take());
                section = key.to_owned();
                match key {
                    "machine" => kas.machine = scalar(value),
                    "distro" => kas.distro = scalar(value),
                    "target" => kas.target = scalar(value),
                    _ => {}
                }
            }
            2 if section == "repos" => {
                kas.repos.extend(repo.take());
                repo = Some(Repo {
                    name: key.to_owned(),
                    url: None,
                    commit: None,
                    layers: Vec::new(),
                });
                in_layers = false;
            }
            2 if section == "local_conf_header" => {
                ensure!(
                    value == "|",
                    "{KAS}: local_conf_header {key} is not a block"
                );
                block = Some((key.to_owned(), String::new()));
            }
            4 if section == "repos" => {
                let r = repo
                    .as_mut()
                    .context("a repository field outside a repository")?;
                in_layers = key == "layers";
                match key {
                    "url" => r.url = Some(scalar(value)),
                    "commit" => r.commit = Some(scalar(value)),
                    _ => {}
                }
            }
            6 if section == "repos" && in_layers => {
                let r = repo.as_mut().context("a layer outside a repository")?;
                if scalar(value) != "disabled" {
                    r.layers.push(key.to_owned());
                }
            }
            _ => {}
        }
    }
    kas.local_conf.extend(block.take());
    kas.repos.extend(repo.take());
    ensure!(
        !kas.machine.is_empty() && !kas.distro.is_empty() && !kas.target.is_empty(),
        "{KAS} names no machine, distro or target"
    );
    Ok(kas)
}

/// The commits of the metadata folder's `PINS` file, by repository.
pub fn parse_pins(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4).then(|| (f[0].to_owned(), f[3].to_owned()))
        })
        .collect()
}

/// Every repository fetched by URL is pinned to the commit of `PINS`.
pub fn check_pins(kas: &Kas, pins: &BTreeMap<String, String>) -> Result<()> {
    let mut wrong = Vec::new();
    for r in kas.repos.iter().filter(|r| r.url.is_some()) {
        match (pins.get(&r.name), &r.commit) {
            (Some(pin), Some(commit)) if pin == commit => {}
            (Some(pin), commit) => wrong.push(format!(
                "{} is pinned to {}, the metadata is at {pin}",
                r.name,
                commit.as_deref().unwrap_or("no commit")
            )),
            (None, _) => wrong.push(format!("{} is not in PINS", r.name)),
        }
    }
    for name in pins.keys() {
        if !kas.repos.iter().any(|r| &r.name == name) {
            wrong.push(format!("{name} of PINS is not in the kas file"));
        }
    }
    ensure!(wrong.is_empty(), "{KAS}: {}", wrong.join("; "));
    Ok(())
}

/// A layer's collection and the collections it needs, from its `layer.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerConf {
    pub collection: String,
    pub depends: Vec<String>,
}

pub fn parse_layer_conf(text: &str) -> Result<LayerConf> {
    let value = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            let k = k.trim().trim_end_matches(['+', '?', ':', '.']).trim();
            (k == key).then(|| v.trim().trim_matches('"').to_owned())
        })
    };
    let collection = value("BBFILE_COLLECTIONS")
        .context("layer.conf sets no BBFILE_COLLECTIONS")?
        .trim()
        .to_owned();
    let depends = value(&format!("LAYERDEPENDS_{collection}"))
        .unwrap_or_default()
        .split_whitespace()
        // A version constraint, "core (>= 12)", follows the name.
        .filter(|w| !w.starts_with('(') && !w.ends_with(')'))
        .map(str::to_owned)
        .collect();
    Ok(LayerConf {
        collection,
        depends,
    })
}

/// Every enabled layer's `LAYERDEPENDS` is among the enabled layers.
pub fn check_layer_depends(layers: &[(PathBuf, LayerConf)]) -> Result<()> {
    let enabled: BTreeSet<&str> = layers.iter().map(|(_, l)| l.collection.as_str()).collect();
    let mut missing = Vec::new();
    for (path, layer) in layers {
        for dep in &layer.depends {
            if !enabled.contains(dep.as_str()) {
                missing.push(format!(
                    "layer '{}' ({}) depends on layer '{dep}', which the kas file does not enable",
                    layer.collection,
                    path.display()
                ));
            }
        }
    }
    ensure!(missing.is_empty(), "{KAS}: {}", missing.join("; "));
    Ok(())
}

/// The layer folders of the kas file: the door phone's own repository (the one
/// without a URL) at `checkout`, the others under `metadata`.
fn layer_dirs(kas: &Kas, checkout: &Path, metadata: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for r in &kas.repos {
        let base = match r.url {
            None => checkout.to_path_buf(),
            Some(_) => metadata.join(&r.name),
        };
        for layer in &r.layers {
            dirs.push(if layer == "." {
                base.clone()
            } else {
                base.join(layer)
            });
        }
    }
    dirs
}

/// A row of the GStreamer element table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    /// `None` for a name of the sources that is not an element.
    pub package: Option<String>,
    pub recipe: Option<String>,
    pub option: Option<String>,
}

pub fn parse_elements(text: &str) -> Result<Vec<Element>> {
    let dash = |s: &str| (s != "-").then(|| s.to_owned());
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(
            |l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
                [name, package, recipe, option] => Ok(Element {
                    name: (*name).to_owned(),
                    package: dash(package),
                    recipe: dash(recipe),
                    option: dash(option),
                }),
                _ => bail!("{ELEMENTS}: {l:?}: expected element, package, recipe and option"),
            },
        )
        .collect()
}

/// The string literals of Rust source (before its `#[cfg(test)]` module),
/// with `\` line continuations and escapes resolved as far as names need.
fn string_literals(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or(source);
    let mut out = Vec::new();
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\'' => {
                // A char literal ('"', '\\') or a lifetime: skip what could hide a quote.
                let mut lookahead = chars.clone();
                match (lookahead.next(), lookahead.next(), lookahead.next()) {
                    (Some('\\'), Some(_), Some('\'')) => {
                        chars.nth(2);
                    }
                    (Some(_), Some('\''), _) => {
                        chars.nth(1);
                    }
                    _ => {}
                }
            }
            '"' => {
                let mut lit = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('\n') => {
                                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                                    chars.next();
                                }
                            }
                            Some('n') => lit.push('\n'),
                            Some(c) => lit.push(c),
                            None => {}
                        },
                        c => lit.push(c),
                    }
                }
                out.push(lit);
            }
            _ => {}
        }
    }
    out
}

/// The names in the media service's string literals that may be GStreamer
/// elements: a literal that is one word (`"udpsrc"`), the first word of a
/// literal followed by properties (`"alsasink device=…"`), and the first word
/// of every part of a pipeline description (`"a ! b name=x ! c"`).
pub fn element_candidates(source: &str) -> BTreeSet<String> {
    let is_name = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    let mut names = BTreeSet::new();
    for lit in string_literals(source) {
        for part in lit.split('!') {
            let mut words = part.split_whitespace();
            let Some(first) = words.next() else { continue };
            let rest_are_properties = words.all(|w| w.contains('='));
            if is_name(first) && rest_are_properties {
                names.insert(first.to_owned());
            }
        }
    }
    names
}

/// The element factories the host's GStreamer knows (`gst-inspect-1.0`).
pub fn host_factories() -> Result<BTreeSet<String>> {
    let out = Command::new("gst-inspect-1.0")
        .output()
        .context("gst-inspect-1.0 (gstreamer1.0-tools) lists the element factories")?;
    ensure!(out.status.success(), "gst-inspect-1.0 failed");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split(": ");
            let _plugin = f.next()?;
            let element = f.next()?.trim();
            f.next()?;
            Some(element.to_owned())
        })
        .collect())
}

/// The media service's elements are all in the table, and the media recipe's
/// GStreamer packages are exactly the table's.
pub fn check_elements(
    table: &[Element],
    sources: &str,
    factories: &BTreeSet<String>,
    recipe: &str,
) -> Result<()> {
    let listed: BTreeSet<&str> = table.iter().map(|e| e.name.as_str()).collect();
    let missing: Vec<String> = element_candidates(sources)
        .into_iter()
        .filter(|n| factories.contains(n) && !listed.contains(n.as_str()))
        .collect();
    ensure!(
        missing.is_empty(),
        "the media service creates {} but {ELEMENTS} does not list them: add each with its \
         plugin package, recipe and PACKAGECONFIG option",
        missing.join(", ")
    );
    let wanted: BTreeSet<&str> = table.iter().filter_map(|e| e.package.as_deref()).collect();
    let packages = recipe_list(recipe, "DOORPHONE_GST_PACKAGES")?;
    let have: BTreeSet<&str> = packages.iter().map(String::as_str).collect();
    ensure!(
        wanted == have,
        "{MEDIA_RECIPE}: DOORPHONE_GST_PACKAGES must be the packages of {ELEMENTS}: \
         missing {:?}, not in the table {:?}",
        wanted.difference(&have).collect::<Vec<_>>(),
        have.difference(&wanted).collect::<Vec<_>>()
    );
    Ok(())
}

/// The words of a recipe's `NAME = "…"` assignment (with continuations).
fn recipe_list(recipe: &str, name: &str) -> Result<Vec<String>> {
    let start = recipe
        .find(&format!("{name} = \""))
        .with_context(|| format!("the recipe sets no {name}"))?;
    let value = &recipe[start + name.len() + 4..];
    let end = value.find('"').context("an unterminated value")?;
    Ok(value[..end]
        .split_whitespace()
        .filter(|w| *w != "\\")
        .map(str::to_owned)
        .collect())
}

/// The media service's sources, concatenated.
fn media_sources() -> Result<String> {
    let mut files = Vec::new();
    rust_files(&root().join(MEDIA_SOURCES), &mut files)?;
    files.sort();
    let mut all = String::new();
    for f in files {
        let text = std::fs::read_to_string(&f).with_context(|| f.display().to_string())?;
        // Each file's code, without its test module.
        all.push_str(text.split("#[cfg(test)]").next().unwrap_or_default());
        all.push('\n');
    }
    Ok(all)
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, found)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    Ok(())
}

/// The checks that need no bitbake: the element table.
pub fn check_element_table() -> Result<()> {
    let table = parse_elements(&std::fs::read_to_string(root().join(ELEMENTS)).context(ELEMENTS)?)?;
    let recipe = std::fs::read_to_string(root().join(MEDIA_RECIPE)).context(MEDIA_RECIPE)?;
    check_elements(&table, &media_sources()?, &host_factories()?, &recipe)
}

/// The libraries each workspace crate links, from `Cargo.lock` (its dependency
/// closure's `-sys` crates) and its build script's pkg-config probes.
fn native_libs(lock: &str, krate: &str, build_rs: Option<&str>) -> BTreeSet<String> {
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for block in lock.split("[[package]]").skip(1) {
        let name = block
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_owned());
        let Some(name) = name else { continue };
        let list: Vec<String> = block
            .split_once("dependencies = [")
            .and_then(|(_, rest)| rest.split_once(']'))
            .map(|(list, _)| {
                list.lines()
                    .map(|l| l.trim().trim_end_matches(',').trim_matches('"'))
                    .filter_map(|l| l.split_whitespace().next())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        deps.entry(name).or_default().extend(list);
    }
    let mut seen = BTreeSet::new();
    let mut todo = vec![krate.to_owned()];
    while let Some(c) = todo.pop() {
        if seen.insert(c.clone()) {
            todo.extend(deps.get(&c).cloned().unwrap_or_default());
        }
    }
    if let Some(build) = build_rs {
        for probe in build.split(".probe(\"").skip(1) {
            if let Some((name, _)) = probe.split_once('"') {
                seen.insert(name.to_owned());
            }
        }
    }
    NATIVE_LIBS
        .iter()
        .filter(|(c, _)| seen.contains(*c))
        .map(|(_, recipe)| (*recipe).to_owned())
        .collect()
}

/// `../shared/yocto-layers` beside the checkout (or beside a folder above it,
/// for a checkout in a subfolder of the project's folder).
pub fn default_metadata() -> PathBuf {
    let root = root();
    root.ancestors()
        .skip(1)
        .map(|a| a.join("shared/yocto-layers"))
        .find(|m| m.join("PINS").is_file())
        .unwrap_or_else(|| root.join("../shared/yocto-layers"))
}

/// Options of the check.
pub struct Options {
    pub layers: Option<PathBuf>,
}

/// The door phone's shared include (where the sources come from) and the
/// append that gives gstreamer1.0-plugins-base its options, in the layer.
const SHARED_INC: &str = "recipes-doorphone/doorphone/doorphone.inc";
const BASE_APPEND: &str = "recipes-multimedia/gstreamer/gstreamer1.0-plugins-base_%.bbappend";

/// The checks of the kas file itself: its pins against `PINS`, and every
/// enabled layer's `LAYERDEPENDS` among the enabled layers (the door phone's
/// own layer read from `checkout`, the others from `metadata`).
fn check_kas(
    kas_text: &str,
    pins_text: &str,
    checkout: &Path,
    metadata: &Path,
) -> Result<(Kas, Vec<(PathBuf, LayerConf)>)> {
    let kas = parse_kas(kas_text)?;
    check_pins(&kas, &parse_pins(pins_text))?;
    let mut layers = Vec::new();
    for dir in layer_dirs(&kas, checkout, metadata) {
        let conf = dir.join("conf/layer.conf");
        let text = std::fs::read_to_string(&conf)
            .with_context(|| format!("{KAS} enables {}, which has no layer.conf", dir.display()))?;
        layers.push((dir, parse_layer_conf(&text)?));
    }
    check_layer_depends(&layers)?;
    Ok((kas, layers))
}

/// The metadata folder: the one `given` on the command line, which must hold
/// the metadata, else `default` when it does; `None` (the check is skipped, and
/// says why) when the default folder holds none.
fn metadata_folder(given: Option<PathBuf>, default: PathBuf) -> Result<Option<PathBuf>> {
    let named = given.is_some();
    let metadata = given.unwrap_or(default);
    if metadata.join("PINS").is_file() && metadata.join("bitbake/bin/bitbake").is_file() {
        return Ok(Some(metadata));
    }
    let why = format!(
        "{} holds no wrynose metadata (bitbake, openembedded-core, meta-openembedded, \
         meta-yocto and their PINS file)",
        metadata.display()
    );
    // A folder named on the command line must be there; the default one is
    // only beside checkouts that have it (CI's).
    ensure!(!named, "yocto-check: {why}");
    println!(
        "yocto-check: cannot run: {why}; give it with --layers DIR. \
         Skipped: bitbake did not check the layer."
    );
    Ok(None)
}

pub fn run(options: Options) -> Result<()> {
    let started = Instant::now();
    let Some(metadata) = metadata_folder(options.layers, default_metadata())? else {
        return Ok(());
    };
    let pins_file = metadata.join("PINS");
    deps::ensure(&[deps::YOCTO])?;
    deps::ensure_locale(deps::YOCTO_LOCALE)?;
    let metadata = metadata.canonicalize()?;
    let kas_text = std::fs::read_to_string(root().join(KAS)).context(KAS)?;
    let pins_text = std::fs::read_to_string(&pins_file)?;
    check_element_table()?;

    let user = prepare_user()?;
    let build = build_dir(user.as_deref(), &metadata)?;
    let checkout = build.join("checkout");
    copy_checkout(&checkout)?;
    let (kas, layers) = check_kas(&kas_text, &pins_text, &checkout, &metadata)?;
    println!("yocto-check: the kas file's pins and layers are right");

    write_conf(&build, &kas, &layers, &metadata)?;
    // The layers without meta-multimedia's meta-python, for the self-check.
    let no_python: Vec<(PathBuf, LayerConf)> = layers
        .iter()
        .filter(|(_, l)| l.collection != "meta-python")
        .map(|(d, l)| (d.clone(), l.clone()))
        .collect();
    write_if_changed(&build.join("conf/seed.conf"), SEED)?;
    let broken_layers = build.join("without-meta-python");
    write_conf(&broken_layers, &kas, &no_python, &metadata)?;
    give(&build, user.as_deref())?;
    let bitbake = Bitbake {
        build: build.clone(),
        metadata: metadata.clone(),
        user,
    };
    let _server = Server(&bitbake);
    if !build.join("cache/bb_codeparser.dat").is_file() {
        bitbake.seed()?;
    }
    bitbake.run("bitbake -p", &["bitbake", "-p"])?;
    bitbake.run(
        &format!("bitbake -g {}", kas.target),
        &["bitbake", "-g", &kas.target],
    )?;
    let buildlist: BTreeSet<String> = std::fs::read_to_string(build.join("pn-buildlist"))
        .context("bitbake -g wrote no pn-buildlist")?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let recipes = doorphone_recipes(&checkout.join(LAYER))?;
    let target = Target {
        name: &kas.target,
        buildlist: &buildlist,
        checkout: &checkout,
        recipes: &recipes,
    };
    check_recipes(&bitbake, &target)?;
    println!(
        "yocto-check: bitbake parses the layer, resolves {} ({} recipes) and expands the {} \
         door phone recipes ({}) and the GStreamer options right, in {:.0} s",
        kas.target,
        buildlist.len(),
        recipes.len(),
        recipes.join(" "),
        started.elapsed().as_secs_f64()
    );

    let breaks = Instant::now();
    let broken = Bitbake {
        build: broken_layers,
        ..bitbake.clone()
    };
    self_check(&bitbake, &broken, &kas_text, &pins_text, &metadata, &target)?;
    println!(
        "yocto-check: each break put back was refused, in {:.0} s; the whole check took {:.0} s",
        breaks.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What the recipe checks compare bitbake's view with.
struct Target<'a> {
    /// The image.
    name: &'a str,
    /// The recipes of its graph (`bitbake -g`).
    buildlist: &'a BTreeSet<String>,
    /// The copy of the checkout bitbake builds.
    checkout: &'a Path,
    /// The door phone recipes of the layer.
    recipes: &'a [String],
}

/// Every door phone recipe's and every needed GStreamer recipe's expanded
/// variables, as bitbake sees the layer of `target.checkout`.
fn check_recipes(bitbake: &Bitbake, target: &Target) -> Result<()> {
    let checkout = target.checkout;
    let table = parse_elements(&std::fs::read_to_string(checkout.join(ELEMENTS))?)?;
    let gst_recipes: BTreeSet<String> = table.iter().filter_map(|e| e.recipe.clone()).collect();
    let mut wanted: Vec<String> = target.recipes.to_vec();
    wanted.extend(gst_recipes.iter().cloned());
    let vars = bitbake.variables(&wanted)?;

    let mut problems = Vec::new();
    for pn in target.recipes.iter().chain(gst_recipes.iter()) {
        if !target.buildlist.contains(pn) {
            problems.push(format!("{pn} is not in the graph of {}", target.name));
        }
    }
    let lock = std::fs::read_to_string(checkout.join("Cargo.lock"))?;
    let sysusers = yocto::sysusers(&std::fs::read_to_string(
        checkout.join("packaging/sysusers.d/doorphone.conf"),
    )?)?;
    // The GStreamer packages the door phone packages pull in.
    let mut gst_packages = BTreeSet::new();
    for pn in target.recipes {
        let v = vars
            .get(pn)
            .with_context(|| format!("no variables of {pn}"))?;
        check_recipe(pn, v, checkout, &lock, &sysusers, &mut problems);
        if let Some(rdepends) = v.get(&format!("RDEPENDS:{pn}")) {
            gst_packages.extend(
                rdepends
                    .split_whitespace()
                    .filter(|p| p.starts_with("gstreamer1.0"))
                    .map(str::to_owned),
            );
        }
    }
    for package in &gst_packages {
        if !table.iter().any(|e| e.package.as_ref() == Some(package)) {
            problems.push(format!(
                "{package} is in the RDEPENDS of a door phone package but not in {ELEMENTS}, \
                 which says which recipe and option build it"
            ));
        }
    }
    for e in &table {
        let (Some(package), Some(recipe)) = (&e.package, &e.recipe) else {
            continue;
        };
        if !gst_packages.contains(package) {
            problems.push(format!(
                "{package} (for {}) is in no door phone package's RDEPENDS",
                e.name
            ));
        }
        let v = vars
            .get(recipe)
            .with_context(|| format!("no variables of {recipe}"))?;
        if let Some(option) = &e.option {
            let config = v.get("PACKAGECONFIG").map(String::as_str).unwrap_or("");
            if !config.split_whitespace().any(|o| o == option) {
                problems.push(format!(
                    "{package} (for {}) is only built with '{option}' in the PACKAGECONFIG \
                     of {recipe}, which is {config:?}",
                    e.name
                ));
            }
        }
        let packages = format!(
            "{} {}",
            v.get("PACKAGES").map(String::as_str).unwrap_or(""),
            v.get("PACKAGES_DYNAMIC").map(String::as_str).unwrap_or("")
        );
        if !provides_package(&packages, package) {
            problems.push(format!("{recipe} makes no package {package}"));
        }
    }
    problems.dedup();
    ensure!(
        problems.is_empty(),
        "yocto-check:\n  {}",
        problems.join("\n  ")
    );
    Ok(())
}

/// Puts back, one at a time, each way the image once failed to build, and makes
/// sure the check refuses it for that reason: the kas file's text for its own
/// checks, a temporary change to the checkout's copy for bitbake's.
fn self_check(
    bitbake: &Bitbake,
    without_python: &Bitbake,
    kas_text: &str,
    pins_text: &str,
    metadata: &Path,
    target: &Target,
) -> Result<()> {
    let checkout = target.checkout;
    // 1. meta-python left out of the kas file: meta-multimedia needs it.
    let text = replace_once(kas_text, "      meta-python:\n", "")?;
    let err = refused(
        "the kas file without meta-python",
        check_kas(&text, pins_text, checkout, metadata).map(|_| ()),
        "depends on layer 'meta-python', which the kas file does not enable",
    )?;
    println!("yocto-check: self-check: without meta-python, the kas check refuses: {err}");
    let started = Instant::now();
    let _server = Server(without_python);
    let out = without_python
        .command(&["bitbake", "-p"])
        .output()
        .context("bitbake")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let needle = "Layer 'multimedia-layer' depends on layer 'meta-python', but this layer is \
                  not enabled";
    ensure!(
        !out.status.success() && said.contains(needle),
        "yocto-check: self-check: bitbake -p without meta-python did not stop at the layers \
         ({}):\n{said}",
        out.status
    );
    println!(
        "yocto-check: self-check: without meta-python, bitbake -p refuses too: {needle} \
         ({:.0} s)",
        started.elapsed().as_secs_f64()
    );

    // 2. A pin that is not the metadata's commit, for every pinned repository.
    for (repo, pin) in parse_pins(pins_text) {
        let other = other_commit(&pin);
        let text = replace_once(
            kas_text,
            &format!("commit: {pin}\n"),
            &format!("commit: {other}\n"),
        )?;
        let err = refused(
            &format!("{repo} pinned to {other}"),
            check_kas(&text, pins_text, checkout, metadata).map(|_| ()),
            &format!("{repo} is pinned to {other}, the metadata is at {pin}"),
        )?;
        println!("yocto-check: self-check: another commit of {repo} is refused: {err}");
    }

    // 3. The recipes fetching a remote that does not exist instead of building
    //    the checkout.
    let remote = "git://example.invalid/doorphone;protocol=https;branch=main";
    let inc = checkout.join(LAYER).join(SHARED_INC);
    let result = with_changed(
        &inc,
        &[
            (
                "SRC_URI = \"${DOORPHONE_REMOTE}\"",
                &format!("SRC_URI = \"{remote}\""),
            ),
            (
                "inherit_defer ${@'' if d.getVar('DOORPHONE_REMOTE') else 'externalsrc'}\n",
                "",
            ),
        ],
        || check_recipes(bitbake, target),
    )?;
    let err = refused(
        &format!("SRC_URI {remote}"),
        result,
        &format!("SRC_URI fetches [\"{remote}\"] instead of building the checkout"),
    )?;
    println!("yocto-check: self-check: SRC_URI {remote} is refused: {err}");

    // 4. gstreamer1.0-plugins-base without its opus option: the media package's
    //    gstreamer1.0-plugins-base-opus would never be built.
    let append = checkout.join(LAYER).join(BASE_APPEND);
    let result = with_changed(
        &append,
        &[(
            "PACKAGECONFIG:append:doorphone = \" alsa opus\"",
            "PACKAGECONFIG:append:doorphone = \" alsa\"",
        )],
        || check_recipes(bitbake, target),
    )?;
    let err = refused(
        "gstreamer1.0-plugins-base without opus",
        result,
        "gstreamer1.0-plugins-base-opus (for opusdec) is only built with 'opus' in the \
         PACKAGECONFIG of gstreamer1.0-plugins-base",
    )?;
    println!("yocto-check: self-check: plugins-base without opus is refused: {err}");
    Ok(())
}

/// `text` with its one `from` replaced: the self-check refuses to run on a file
/// that no longer holds what it changes.
fn replace_once(text: &str, from: &str, to: &str) -> Result<String> {
    ensure!(
        text.matches(from).count() == 1,
        "yocto-check: self-check: {from:?} is not once in the text it changes"
    );
    Ok(text.replacen(from, to, 1))
}

/// Runs `check` with `edits` made to the file at `path`, then puts it back.
fn with_changed<T>(path: &Path, edits: &[(&str, &str)], check: impl FnOnce() -> T) -> Result<T> {
    let original = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let mut text = original.clone();
    for (from, to) in edits {
        text = replace_once(&text, from, to).with_context(|| path.display().to_string())?;
    }
    std::fs::write(path, &text)?;
    let result = check();
    std::fs::write(path, &original)?;
    Ok(result)
}

/// The error's line that names `needle`, when `result` is that refusal.
fn refused(what: &str, result: Result<()>, needle: &str) -> Result<String> {
    match result {
        Ok(()) => bail!("yocto-check: self-check: {what} passes the check"),
        Err(e) => {
            let message = format!("{e:#}");
            message
                .lines()
                .flat_map(|l| l.split("; "))
                .find(|l| l.contains(needle))
                .map(|l| l.trim().to_owned())
                .with_context(|| {
                    format!(
                        "yocto-check: self-check: {what} is refused, but not because {needle:?}: \
                         {message}"
                    )
                })
        }
    }
}

/// A commit that is not `pin`: its first digit changed.
fn other_commit(pin: &str) -> String {
    let first = if pin.starts_with('0') { '1' } else { '0' };
    format!("{first}{}", pin.get(1..).unwrap_or_default())
}

/// Whether a recipe's `PACKAGES` or `PACKAGES_DYNAMIC` (regular expressions)
/// names `package`.
fn provides_package(packages: &str, package: &str) -> bool {
    packages.split_whitespace().any(|p| {
        p == package
            || (p.starts_with('^')
                && p.strip_prefix('^')
                    .and_then(|p| p.strip_suffix(".*"))
                    .is_some_and(|prefix| package.starts_with(&prefix.replace('\\', ""))))
    })
}

/// The checks of one door phone recipe's expanded variables.
fn check_recipe(
    pn: &str,
    v: &BTreeMap<String, String>,
    checkout: &Path,
    lock: &str,
    sysusers: &[yocto::SysUser],
    problems: &mut Vec<String>,
) {
    let get = |k: &str| v.get(k).map(String::as_str).unwrap_or("");
    let words = |k: &str| get(k).split_whitespace().collect::<BTreeSet<_>>();
    let checkout_s = checkout.display().to_string();
    if pn.starts_with("packagegroup-") || pn.ends_with("-image") {
        return;
    }
    // The checkout, not a remote: externalsrc at the repository root.
    if get("EXTERNALSRC") != checkout_s || get("S") != checkout_s {
        problems.push(format!(
            "{pn}: EXTERNALSRC {:?} and S {:?} must be the checkout {checkout_s}",
            get("EXTERNALSRC"),
            get("S")
        ));
    }
    let remote: Vec<&str> = get("SRC_URI")
        .split_whitespace()
        .filter(|u| !u.starts_with("crate://") && !u.starts_with("file://"))
        .collect();
    if !remote.is_empty() {
        problems.push(format!(
            "{pn}: SRC_URI fetches {remote:?} instead of building the checkout"
        ));
    }
    if !get("SRC_URI").contains("crate://") {
        problems.push(format!("{pn}: SRC_URI fetches no crate"));
    }
    let depends = words("DEPENDS");
    let build_rs = std::fs::read_dir(checkout.join("services"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .chain([checkout.join("cli")])
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|t| t.contains(&format!("name = \"{pn}\"")))
        })
        .and_then(|dir| std::fs::read_to_string(dir.join("build.rs")).ok());
    for lib in native_libs(lock, pn, build_rs.as_deref()) {
        if !depends.contains(lib.as_str()) {
            problems.push(format!("{pn}: DEPENDS lacks {lib}, which the crate links"));
        }
    }
    if !depends.iter().any(|d| d.starts_with("cargo")) {
        problems.push(format!("{pn}: DEPENDS has no cargo: {depends:?}"));
    }
    let rdepends = words(&format!("RDEPENDS:{pn}"));
    if !rdepends.contains("dbus") {
        problems.push(format!("{pn}: RDEPENDS lacks dbus"));
    }
    let files = get(&format!("FILES:{pn}"));
    if !files.contains("/usr/bin") {
        problems.push(format!("{pn}: FILES does not hold /usr/bin: {files:?}"));
    }
    let group = sysusers
        .iter()
        .find(|u| u.kind == 'g')
        .map(|g| g.name.as_str());
    if get(&format!("GROUPADD_PARAM:{pn}"))
        .split_whitespace()
        .last()
        != group
    {
        problems.push(format!(
            "{pn}: GROUPADD_PARAM does not create the admin group"
        ));
    }
    let service = get(&format!("SYSTEMD_SERVICE:{pn}"));
    let user = get("DOORPHONE_USER");
    let useradd = get(&format!("USERADD_PARAM:{pn}"));
    let creates_user = || {
        sysusers.iter().any(|u| u.kind == 'u' && u.name == user)
            && useradd.split_whitespace().last() == Some(user)
    };
    let has_unit = || {
        service == format!("{pn}.service")
            && checkout.join("packaging/systemd").join(service).is_file()
    };
    // A service names its bus name (doorphone-service.inc); a bus client (the
    // web service) has a user of the sysusers file and a unit but no name; a
    // tool has neither.
    let bus = get("DOORPHONE_BUS_NAME");
    if bus.is_empty() {
        let client = !user.is_empty() && sysusers.iter().any(|u| u.kind == 'u' && u.name == user);
        if !client {
            if !service.is_empty() {
                problems.push(format!("{pn}: a tool with a unit {service:?}"));
            }
            return;
        }
        if !has_unit() {
            problems.push(format!(
                "{pn}: SYSTEMD_SERVICE {service:?} is not its unit of packaging/systemd"
            ));
        }
        if !creates_user() {
            problems.push(format!(
                "{pn}: USERADD_PARAM {useradd:?} does not create its user {user:?} of the sysusers file"
            ));
        }
        return;
    }
    for file in [
        format!("dbus/system.d/{bus}.conf"),
        format!("dbus/interfaces/{bus}.xml"),
    ] {
        if !checkout.join(&file).is_file() {
            problems.push(format!("{pn}: its bus name {bus} has no {file}"));
        }
    }
    if !has_unit() {
        problems.push(format!(
            "{pn}: SYSTEMD_SERVICE {service:?} is not its unit of packaging/systemd"
        ));
    }
    if !files.contains("/usr/share/dbus-1") {
        problems.push(format!("{pn}: FILES does not hold /usr/share/dbus-1"));
    }
    if !creates_user() {
        problems.push(format!(
            "{pn}: USERADD_PARAM {useradd:?} does not create its user {user:?} of the sysusers file"
        ));
    }
}

/// The door phone recipes of the layer, by name (`doorphone-config_0.1.1.bb`).
fn doorphone_recipes(layer: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut files = Vec::new();
    recipe_files(layer, &mut files)?;
    for f in files {
        let name = f.file_stem().unwrap_or_default().to_string_lossy();
        found.push(name.split('_').next().unwrap_or_default().to_owned());
    }
    found.sort();
    Ok(found)
}

fn recipe_files(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            recipe_files(&path, found)?;
        } else if path.extension().is_some_and(|e| e == "bb") {
            found.push(path);
        }
    }
    Ok(())
}

/// Copies the checkout's files (those git tracks or would, none it ignores) to
/// `dest`, keeping their times: bitbake builds and hashes this copy, and the
/// build folder inside the checkout stays out of it.
fn copy_checkout(dest: &Path) -> Result<()> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).with_context(|| dest.display().to_string())?;
    }
    std::fs::create_dir_all(dest)?;
    let list = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root())
        .output()
        .context("git ls-files: the check copies the checkout's files")?;
    ensure!(list.status.success(), "git ls-files failed");
    let existing: Vec<u8> = list
        .stdout
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .filter(|f| root().join(String::from_utf8_lossy(f).as_ref()).is_file())
        .flat_map(|f| f.iter().copied().chain([0]))
        .collect();
    let mut tar = Command::new("sh")
        .args(["-c", "tar --null -T - -cf - | tar -xpf - -C \"$1\"", "copy"])
        .arg(dest)
        .current_dir(root())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("tar")?;
    use std::io::Write;
    tar.stdin
        .take()
        .context("tar's input")?
        .write_all(&existing)?;
    ensure!(tar.wait()?.success(), "copying the checkout failed");
    Ok(())
}

/// Writes `conf/bblayers.conf` from the kas file's layers and `conf/local.conf`
/// from its machine, distro and `local_conf_header`, with no network and the
/// masks of `KEEP`.
fn write_conf(
    build: &Path,
    kas: &Kas,
    layers: &[(PathBuf, LayerConf)],
    metadata: &Path,
) -> Result<()> {
    std::fs::create_dir_all(build.join("conf"))?;
    let mut bblayers = String::from(
        "# Generated by `cargo xtask yocto-check` from yocto/kas/doorphone.yml.\n\
         BBPATH = \"${TOPDIR}\"\nBBFILES ?= \"\"\nBBLAYERS = \" \\\n",
    );
    for (dir, _) in layers {
        bblayers.push_str(&format!("    {} \\\n", dir.display()));
    }
    bblayers.push_str("\"\n");
    let mut local = format!(
        "# Generated by `cargo xtask yocto-check` from yocto/kas/doorphone.yml.\n\
         MACHINE = \"{}\"\nDISTRO = \"{}\"\n",
        kas.machine, kas.distro
    );
    for (name, body) in &kas.local_conf {
        local.push_str(&format!("\n# local_conf_header: {name}\n{body}"));
    }
    local.push_str("\n# The check: no network, and only the recipes the image may use.\n");
    local.push_str("BB_NO_NETWORK = \"1\"\n");
    for mask in masks(metadata) {
        local.push_str(&format!("BBMASK += \"{mask}\"\n"));
    }
    // A layer whose recipes are all masked has none to match its pattern.
    for (dir, conf) in layers {
        if KEEP
            .iter()
            .any(|(layer, keep)| keep.is_empty() && metadata.join(layer) == *dir)
        {
            local.push_str(&format!(
                "BBFILE_PATTERN_IGNORE_EMPTY_{} = \"1\"\n",
                conf.collection
            ));
        }
    }
    write_if_changed(&build.join("conf/bblayers.conf"), &bblayers)?;
    write_if_changed(&build.join("conf/local.conf"), &local)
}

/// The `BBMASK` expressions of `KEEP`: every recipe folder of those layers
/// (and of their `dynamic-layers`, whose appends would otherwise dangle) but the
/// kept ones.
fn masks(metadata: &Path) -> Vec<String> {
    KEEP.iter()
        .map(|(layer, keep)| {
            let dir = regex_escape(&metadata.join(layer).display().to_string());
            if keep.is_empty() {
                format!("^{dir}/(?:dynamic-layers/[^/]+/)?recipes-")
            } else {
                let kept: Vec<String> = keep.iter().map(|k| regex_escape(k)).collect();
                format!(
                    "^{dir}/(?:dynamic-layers/[^/]+/)?(?!(?:{})/)recipes-",
                    kept.join("|")
                )
            }
        })
        .collect()
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = ".+*?()|[]{}^$\\".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// `s` as one word of a POSIX shell command.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Writes `text` unless the file holds it already, so bitbake's cache stays valid.
fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| path.display().to_string())
}

/// As root, creates the unprivileged user bitbake runs as; otherwise bitbake
/// runs as the current user.
fn prepare_user() -> Result<Option<String>> {
    if !is_root() {
        return Ok(None);
    }
    let exists = Command::new("id")
        .arg(USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        run_step(
            &format!("useradd {USER}"),
            Command::new("useradd").args([
                "--system",
                "--create-home",
                "--home-dir",
                HOME,
                "--shell",
                "/bin/sh",
                USER,
            ]),
        )?;
    }
    Ok(Some(USER.to_owned()))
}

/// Whether `user` passes the shell test `test` (e.g. `-w DIR`) on `path`.
fn user_can(user: &str, test: &str, path: &Path) -> Result<bool> {
    Ok(Command::new("su")
        .args(["-s", "/bin/sh", user, "-c"])
        .arg(format!(
            "test {test} {}",
            shell_quote(&path.display().to_string())
        ))
        .status()
        .context("su")?
        .success())
}

/// Gives `dir` (created when missing) to `user`.
fn give(dir: &Path, user: Option<&str>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    if let Some(user) = user {
        run_step(
            &format!("chown -R {user} {}", dir.display()),
            Command::new("chown").arg("-R").arg(user).arg(dir),
        )?;
    }
    Ok(())
}

/// The build folder, `target/yocto-check`, where the parse cache stays between
/// runs; when bitbake's user cannot reach it (a folder above the checkout is
/// closed to other users), a folder in that user's home. bitbake's user must
/// read the metadata folder.
fn build_dir(user: Option<&str>, metadata: &Path) -> Result<PathBuf> {
    let build = root().join("target/yocto-check");
    let Some(user) = user else {
        return Ok(build);
    };
    ensure!(
        user_can(user, "-r", &metadata.join("PINS"))?
            && user_can(user, "-x", &metadata.join("bitbake/bin/bitbake"))?,
        "yocto-check: {user} (bitbake refuses to run as root) cannot read {}",
        metadata.display()
    );
    give(&build, Some(user))?;
    if user_can(user, "-w", &build)? {
        return Ok(build);
    }
    let home = Path::new(HOME).join("yocto-check");
    println!(
        "yocto-check: {user} cannot reach {}; building in {} instead",
        build.display(),
        home.display()
    );
    give(&home, Some(user))?;
    Ok(home)
}

/// How long, in seconds, bitbake's server stays up waiting for the check's
/// next command, with the parsed recipes in memory (the check stops it when it
/// is done).
const SERVER_IDLE: u32 = 60;

/// Stops the build folder's bitbake server when the check is done with it.
struct Server<'a>(&'a Bitbake);

impl Drop for Server<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// bitbake in the build folder, as the check's user.
#[derive(Clone)]
struct Bitbake {
    build: PathBuf,
    metadata: PathBuf,
    user: Option<String>,
}

impl Bitbake {
    /// The command that runs `args` in the build folder with bitbake's tools first
    /// on the path and a clean, fixed environment (so its cache stays valid).
    fn command(&self, args: &[&str]) -> Command {
        let bin = self.metadata.join("bitbake/bin");
        let home = match &self.user {
            Some(_) => HOME.to_owned(),
            None => std::env::var("HOME").unwrap_or_else(|_| "/".to_owned()),
        };
        let words: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
        let script = format!(
            "cd {} && exec env -i HOME={} LANG=C.UTF-8 BB_SERVER_TIMEOUT={SERVER_IDLE} \
             PATH={}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin {}",
            shell_quote(&self.build.display().to_string()),
            shell_quote(&home),
            shell_quote(&bin.display().to_string()),
            words.join(" ")
        );
        let mut cmd = match &self.user {
            Some(user) => {
                let mut c = Command::new("su");
                c.args(["-s", "/bin/sh", user, "-c", &script]);
                c
            }
            None => {
                let mut c = Command::new("sh");
                c.args(["-c", &script]);
                c
            }
        };
        cmd.env_remove("PYTHONPATH");
        cmd
    }

    /// Stops the bitbake server of the build folder, if one runs.
    fn stop(&self) {
        let _ = self
            .command(&["bitbake", "-m"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }

    /// Parses one recipe, which writes bitbake's code parser cache. bitbake
    /// hashes its configuration with the code parser's view of
    /// openembedded-core's Python modules, which differs once that cache
    /// exists: with it written first, the next run finds the cache of the full
    /// parse instead of parsing everything again.
    fn seed(&self) -> Result<()> {
        let started = Instant::now();
        eprintln!("xtask: bitbake -p of one recipe (bitbake's code parser cache)");
        let out = self
            .command(&["bitbake", "-R", "conf/seed.conf", "-p"])
            .output()
            .context("bitbake")?;
        ensure!(
            out.status.success(),
            "bitbake -p of one recipe failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!(
            "yocto-check: bitbake's code parser cache: {:.0} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    fn run(&self, what: &str, args: &[&str]) -> Result<()> {
        let started = Instant::now();
        run_step(what, &mut self.command(args))?;
        println!(
            "yocto-check: {what}: {:.0} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// The expanded variables the check reads of each recipe of `pns`, through
    /// bitbake's tinfoil (the datastore `bitbake -e` prints).
    fn variables(&self, pns: &[String]) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let script = self.build.join("variables.py");
        write_if_changed(&script, TINFOIL)?;
        let lib = self.metadata.join("bitbake/lib").display().to_string();
        let mut args = vec!["python3", "variables.py", lib.as_str()];
        args.extend(pns.iter().map(String::as_str));
        let started = Instant::now();
        eprintln!("xtask: the expanded variables of {}", pns.join(" "));
        let out = self
            .command(&args)
            .stderr(std::process::Stdio::inherit())
            .output()?;
        ensure!(
            out.status.success(),
            "bitbake's tinfoil failed ({})",
            out.status
        );
        println!(
            "yocto-check: variables of {} recipes: {:.0} s",
            pns.len(),
            started.elapsed().as_secs_f64()
        );
        let mut vars: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut f = line.splitn(3, '\t');
            if let (Some(pn), Some(var), Some(value)) = (f.next(), f.next(), f.next()) {
                vars.entry(pn.to_owned())
                    .or_default()
                    .insert(var.to_owned(), value.to_owned());
            }
        }
        Ok(vars)
    }
}

/// The configuration of the parse that writes the code parser cache: every
/// recipe but one masked.
const SEED: &str = "# Generated by `cargo xtask yocto-check`: bitbake -R conf/seed.conf -p parses \
                    one recipe.\nBBMASK = \"^(?!.*/packagegroup-doorphone\\.bb$)\"\n";

/// Prints `PN<TAB>VARIABLE<TAB>value` for the variables the check reads.
const TINFOIL: &str = r#"import sys
sys.path.insert(0, sys.argv[1])
import bb.tinfoil

VARS = ["SRC_URI", "S", "EXTERNALSRC", "DEPENDS", "PACKAGECONFIG", "PACKAGES",
        "PACKAGES_DYNAMIC", "DOORPHONE_USER", "DOORPHONE_BUS_NAME"]
PER_PACKAGE = ["RDEPENDS", "FILES", "SYSTEMD_SERVICE", "USERADD_PARAM", "GROUPADD_PARAM"]

with bb.tinfoil.Tinfoil() as tinfoil:
    tinfoil.prepare(quiet=2)
    for pn in sys.argv[2:]:
        d = tinfoil.parse_recipe(pn)
        names = VARS + ["%s:%s" % (v, pn) for v in PER_PACKAGE]
        for name in names:
            value = " ".join((d.getVar(name) or "").split())
            print("%s\t%s\t%s" % (pn, name, value))
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn kas() -> Kas {
        parse_kas(&std::fs::read_to_string(root().join(KAS)).unwrap()).unwrap()
    }

    const PINS: &str = "# comment\n\
        bitbake           https://git.openembedded.org/bitbake           2.18     fae9db3168dbff1b8c76fe9c6726a9687ff97514\n\
        openembedded-core https://git.openembedded.org/openembedded-core wrynose  ef022bf82d79015802309d14c28b13373ebe53f5\n\
        meta-openembedded https://git.openembedded.org/meta-openembedded wrynose  6bf0d8ad57b33950bab4c7f6c037e1ccb6f6e2eb\n\
        meta-yocto        https://git.yoctoproject.org/meta-yocto        wrynose  904846ae078ee20de073040ebb77c86e19250f56\n";

    #[test]
    fn the_kas_file_is_read() {
        let kas = kas();
        assert_eq!(
            (kas.machine.as_str(), kas.distro.as_str()),
            ("qemux86-64", "poky")
        );
        assert_eq!(kas.target, "doorphone-image");
        let oe = kas
            .repos
            .iter()
            .find(|r| r.name == "meta-openembedded")
            .unwrap();
        assert_eq!(oe.layers, ["meta-oe", "meta-python", "meta-multimedia"]);
        let bitbake = kas.repos.iter().find(|r| r.name == "bitbake").unwrap();
        assert!(bitbake.layers.is_empty(), "bitbake is no layer");
        let own = kas.repos.iter().find(|r| r.url.is_none()).unwrap();
        assert_eq!(own.layers, [LAYER]);
        let (name, body) = &kas.local_conf[0];
        assert_eq!(name, "doorphone");
        assert!(body.starts_with("# The layer's bbappends"), "{body}");
        assert!(
            body.contains("\nDISTROOVERRIDES:append = \":doorphone\"\n"),
            "{body}"
        );
    }

    #[test]
    fn the_kas_file_pins_the_metadata_commits() {
        check_pins(&kas(), &parse_pins(PINS)).unwrap();
        // When the metadata folder is there, against its own PINS too.
        if let Ok(pins) = std::fs::read_to_string(default_metadata().join("PINS")) {
            check_pins(&kas(), &parse_pins(&pins)).unwrap();
        }
    }

    #[test]
    fn a_commit_that_is_not_the_pinned_one_is_refused() {
        let text = std::fs::read_to_string(root().join(KAS)).unwrap().replace(
            "6bf0d8ad57b33950bab4c7f6c037e1ccb6f6e2eb",
            "47d7dbdd10890bbd429bc0cccbe14435c37e5af1",
        );
        let err = check_pins(&parse_kas(&text).unwrap(), &parse_pins(PINS)).unwrap_err();
        assert!(
            err.to_string().contains(
                "meta-openembedded is pinned to 47d7dbdd10890bbd429bc0cccbe14435c37e5af1, \
                 the metadata is at 6bf0d8ad57b33950bab4c7f6c037e1ccb6f6e2eb"
            ),
            "{err}"
        );
    }

    fn layer(collection: &str, depends: &str) -> (PathBuf, LayerConf) {
        let text = format!(
            "BBFILE_COLLECTIONS += \"{collection}\"\n\
             LAYERDEPENDS_{collection} = \"{depends}\"\n"
        );
        (PathBuf::from(collection), parse_layer_conf(&text).unwrap())
    }

    #[test]
    fn a_layer_whose_dependency_is_not_enabled_is_refused() {
        let mut layers = vec![
            layer("core", ""),
            layer("openembedded-layer", "core"),
            layer("meta-python", "core (>= 12) openembedded-layer"),
            layer("multimedia-layer", "core openembedded-layer meta-python"),
        ];
        check_layer_depends(&layers).unwrap();
        layers.remove(2);
        let err = check_layer_depends(&layers).unwrap_err().to_string();
        assert!(
            err.contains(
                "layer 'multimedia-layer' (multimedia-layer) depends on layer 'meta-python'"
            ),
            "{err}"
        );
    }

    #[test]
    fn the_layer_of_the_checkout_and_its_dependencies() {
        let layer = parse_layer_conf(
            &std::fs::read_to_string(root().join(LAYER).join("conf/layer.conf")).unwrap(),
        )
        .unwrap();
        assert_eq!(layer.collection, "doorphone");
        assert_eq!(
            layer.depends,
            ["core", "openembedded-layer", "multimedia-layer"]
        );
    }

    #[test]
    fn the_layers_of_the_kas_file_satisfy_each_other_when_the_metadata_is_there() {
        let metadata = default_metadata();
        if !metadata.join("PINS").is_file() {
            return;
        }
        let mut layers = Vec::new();
        for dir in layer_dirs(&kas(), &root(), &metadata) {
            let text = std::fs::read_to_string(dir.join("conf/layer.conf")).unwrap();
            layers.push((dir, parse_layer_conf(&text).unwrap()));
        }
        assert_eq!(layers.len(), 6);
        check_layer_depends(&layers).unwrap();
    }

    #[test]
    fn element_names_are_found_in_calls_and_pipeline_descriptions() {
        let source = r#"
            let a = gst::ElementFactory::make("udpsrc").build();
            let b = make("audioconvert")?;
            // make("commented")
            let c = '"';
            let d = gst::parse::launch(&format!(
                "audiotestsrc is-live=true ! {CAPS} ! \
                 audiomixer name=mix ! {sink}"
            ));
            let e = format!("alsasink async=false device=\"{}\"", dev);
            let f = "cannot create the pipeline";
            #[cfg(test)]
            mod tests { const T: &str = "h264parse"; }
        "#;
        let names: Vec<String> = element_candidates(source).into_iter().collect();
        assert_eq!(
            names,
            [
                "alsasink",
                "audioconvert",
                "audiomixer",
                "audiotestsrc",
                "udpsrc"
            ]
        );
    }

    #[test]
    fn the_media_service_s_elements_are_in_the_table_and_the_recipe() {
        check_element_table().unwrap();
    }

    #[test]
    fn an_element_missing_from_the_table_is_refused() {
        let table = parse_elements(&std::fs::read_to_string(root().join(ELEMENTS)).unwrap())
            .unwrap()
            .into_iter()
            .filter(|e| e.name != "opusenc")
            .collect::<Vec<_>>();
        let recipe = std::fs::read_to_string(root().join(MEDIA_RECIPE)).unwrap();
        let err = check_elements(
            &table,
            &media_sources().unwrap(),
            &host_factories().unwrap(),
            &recipe,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("creates opusenc but"), "{err}");
    }

    #[test]
    fn a_plugin_package_missing_from_the_recipe_is_refused() {
        let table =
            parse_elements(&std::fs::read_to_string(root().join(ELEMENTS)).unwrap()).unwrap();
        let recipe = std::fs::read_to_string(root().join(MEDIA_RECIPE))
            .unwrap()
            .replace("    gstreamer1.0-plugins-base-opus \\\n", "");
        let err = check_elements(
            &table,
            &media_sources().unwrap(),
            &host_factories().unwrap(),
            &recipe,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("missing [\"gstreamer1.0-plugins-base-opus\"]"),
            "{err}"
        );
    }

    #[test]
    fn native_libraries_come_from_sys_crates_and_build_scripts() {
        let lock = r#"
[[package]]
name = "doorphone-media"
version = "0.1.1"
dependencies = [
 "gstreamer",
 "gstreamer-app 0.25.0",
]

[[package]]
name = "gstreamer"
version = "0.25.0"
dependencies = [
 "gstreamer-sys",
]

[[package]]
name = "gstreamer-app"
version = "0.25.0"
dependencies = [
 "gstreamer-app-sys",
]

[[package]]
name = "gstreamer-app-sys"
version = "0.25.0"

[[package]]
name = "gstreamer-sys"
version = "0.25.0"
"#;
        let libs = native_libs(
            lock,
            "doorphone-media",
            Some("pkg_config::Config::new().probe(\"spandsp\")"),
        );
        assert_eq!(
            libs.into_iter().collect::<Vec<_>>(),
            ["gstreamer1.0", "gstreamer1.0-plugins-base", "spandsp"]
        );
    }

    #[test]
    fn dynamic_packages_are_matched_by_prefix() {
        let packages = "gstreamer1.0-plugins-base-meta ^gstreamer1.0-plugins-base-.*";
        assert!(provides_package(packages, "gstreamer1.0-plugins-base-opus"));
        assert!(!provides_package(packages, "gstreamer1.0-plugins-good-rtp"));
    }

    #[test]
    fn masks_keep_the_named_folders() {
        let masks = masks(Path::new("/m"));
        assert_eq!(
            masks,
            [
                "^/m/meta-openembedded/meta-oe/(?:dynamic-layers/[^/]+/)?(?!(?:recipes-multimedia/libopus)/)recipes-",
                "^/m/meta-openembedded/meta-python/(?:dynamic-layers/[^/]+/)?recipes-",
                "^/m/meta-openembedded/meta-multimedia/(?:dynamic-layers/[^/]+/)?(?!(?:recipes-multimedia/openh264|recipes-multimedia/spandsp|recipes-support/libsrtp)/)recipes-",
            ]
        );
    }

    /// The expanded variables bitbake gives a well-formed service recipe.
    fn service_vars(pn: &str, bus: &str, checkout: &Path) -> BTreeMap<String, String> {
        let c = checkout.display().to_string();
        [
            ("EXTERNALSRC", c.clone()),
            ("S", c),
            ("SRC_URI", "crate://crates.io/zbus/6.2.1".to_owned()),
            ("DEPENDS", "cargo-native rust-native".to_owned()),
            ("DOORPHONE_BUS_NAME", bus.to_owned()),
            ("DOORPHONE_USER", pn.to_owned()),
            (&format!("RDEPENDS:{pn}"), "dbus".to_owned()),
            (
                &format!("FILES:{pn}"),
                "/usr/bin/* /usr/share/dbus-1".to_owned(),
            ),
            (
                &format!("GROUPADD_PARAM:{pn}"),
                "--system doorphone".to_owned(),
            ),
            (&format!("SYSTEMD_SERVICE:{pn}"), format!("{pn}.service")),
            (
                &format!("USERADD_PARAM:{pn}"),
                format!("--system --user-group {pn}"),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn recipe_problems(pn: &str, vars: &BTreeMap<String, String>) -> Vec<String> {
        let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
        let sysusers = yocto::sysusers(
            &std::fs::read_to_string(root().join("packaging/sysusers.d/doorphone.conf")).unwrap(),
        )
        .unwrap();
        let mut problems = Vec::new();
        check_recipe(pn, vars, &root(), &lock, &sysusers, &mut problems);
        problems
    }

    #[test]
    fn a_service_recipe_building_the_checkout_passes_and_a_remote_is_refused() {
        let mut vars = service_vars("doorphone-relay", "org.doorphone.Relay1", &root());
        assert_eq!(
            recipe_problems("doorphone-relay", &vars),
            Vec::<String>::new()
        );
        vars.insert(
            "SRC_URI".to_owned(),
            "git://example.invalid/doorphone;protocol=https;branch=main".to_owned(),
        );
        vars.insert("S".to_owned(), "/build/doorphone-relay/git".to_owned());
        let problems = recipe_problems("doorphone-relay", &vars).join("\n");
        assert!(
            problems.contains(
                "SRC_URI fetches [\"git://example.invalid/doorphone;protocol=https;branch=main\"]"
            ),
            "{problems}"
        );
        assert!(problems.contains("must be the checkout"), "{problems}");
    }

    #[test]
    fn a_new_service_recipe_is_held_to_the_same_rules() {
        // A service the checkout has no unit, bus policy or user for.
        let vars = service_vars("doorphone-lift", "org.doorphone.Lift1", &root());
        let problems = recipe_problems("doorphone-lift", &vars).join("\n");
        for expected in [
            "SYSTEMD_SERVICE \"doorphone-lift.service\" is not its unit of packaging/systemd",
            "has no dbus/system.d/org.doorphone.Lift1.conf",
            "has no dbus/interfaces/org.doorphone.Lift1.xml",
            "does not create its user \"doorphone-lift\" of the sysusers file",
        ] {
            assert!(problems.contains(expected), "{expected}: {problems}");
        }
    }

    #[test]
    fn a_bus_client_service_needs_its_unit_and_user_but_no_bus_files() {
        let mut vars = service_vars("doorphone-web", "", &root());
        vars.insert("FILES:doorphone-web".to_owned(), "/usr/bin/*".to_owned());
        assert_eq!(
            recipe_problems("doorphone-web", &vars),
            Vec::<String>::new()
        );
        vars.insert(
            "SYSTEMD_SERVICE:doorphone-web".to_owned(),
            "doorphone-www.service".to_owned(),
        );
        vars.insert("USERADD_PARAM:doorphone-web".to_owned(), String::new());
        let problems = recipe_problems("doorphone-web", &vars).join("\n");
        for expected in [
            "SYSTEMD_SERVICE \"doorphone-www.service\" is not its unit of packaging/systemd",
            "does not create its user \"doorphone-web\" of the sysusers file",
        ] {
            assert!(problems.contains(expected), "{expected}: {problems}");
        }
    }

    #[test]
    fn a_tool_has_no_unit() {
        let mut vars = service_vars("doorctl", "", &root());
        vars.insert("SYSTEMD_SERVICE:doorctl".to_owned(), String::new());
        vars.insert("FILES:doorctl".to_owned(), "/usr/bin/*".to_owned());
        assert_eq!(recipe_problems("doorctl", &vars), Vec::<String>::new());
        vars.insert(
            "SYSTEMD_SERVICE:doorctl".to_owned(),
            "doorctl.service".to_owned(),
        );
        assert_eq!(
            recipe_problems("doorctl", &vars),
            ["doorctl: a tool with a unit \"doorctl.service\""]
        );
    }

    #[test]
    fn every_recipe_of_the_layer_is_checked() {
        let dir = std::env::temp_dir().join(format!("yocto-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("recipes-doorphone/doorphone")).unwrap();
        std::fs::create_dir_all(dir.join("recipes-multimedia/gstreamer")).unwrap();
        for f in [
            "recipes-doorphone/doorphone/doorphone-web_0.1.0.bb",
            "recipes-doorphone/doorphone/doorctl_0.1.1.bb",
            "recipes-doorphone/doorphone/doorphone.inc",
            "recipes-multimedia/gstreamer/gstreamer1.0-plugins-base_%.bbappend",
        ] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let found = doorphone_recipes(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found, ["doorctl", "doorphone-web"]);
        // And the layer's own.
        let own = doorphone_recipes(&root().join(LAYER)).unwrap();
        for pn in [
            "doorctl",
            "doorphone-config",
            "doorphone-media",
            "doorphone-image",
        ] {
            assert!(own.iter().any(|r| r == pn), "{own:?}");
        }
    }

    #[test]
    fn a_break_is_only_counted_when_refused_for_its_reason() {
        assert_eq!(
            refused(
                "x",
                Err(anyhow::anyhow!("kas: a is wrong; b is pinned to 1")),
                "pinned to 1"
            )
            .unwrap(),
            "b is pinned to 1"
        );
        let passes = refused("x", Ok(()), "pinned").unwrap_err().to_string();
        assert!(passes.contains("x passes the check"), "{passes}");
        let other = refused("x", Err(anyhow::anyhow!("no layer.conf")), "pinned")
            .unwrap_err()
            .to_string();
        assert!(other.contains("not because"), "{other}");
    }

    #[test]
    fn a_change_needs_its_text_once() {
        assert_eq!(replace_once("a b c", "b", "x").unwrap(), "a x c");
        assert!(replace_once("a b b", "b", "x").is_err());
        assert!(replace_once("a c", "b", "x").is_err());
        let pin = "fae9db3168dbff1b8c76fe9c6726a9687ff97514";
        let other = other_commit(pin);
        assert_ne!(other, pin);
        assert_eq!(other.len(), pin.len());
        assert_ne!(other_commit("0ae9"), "0ae9");
    }

    #[test]
    fn the_configuration_is_the_kas_file_s_without_network() {
        let build = std::env::temp_dir().join(format!("yocto-check-conf-{}", std::process::id()));
        let metadata = Path::new("/m");
        let layers = vec![
            (metadata.join("openembedded-core/meta"), layer("core", "").1),
            (
                metadata.join("meta-openembedded/meta-python"),
                layer("meta-python", "core").1,
            ),
        ];
        write_conf(&build, &kas(), &layers, metadata).unwrap();
        let local = std::fs::read_to_string(build.join("conf/local.conf")).unwrap();
        let bblayers = std::fs::read_to_string(build.join("conf/bblayers.conf")).unwrap();
        std::fs::remove_dir_all(&build).unwrap();
        for line in [
            "MACHINE = \"qemux86-64\"",
            "DISTRO = \"poky\"",
            "DISTROOVERRIDES:append = \":doorphone\"",
            "BB_NO_NETWORK = \"1\"",
            "BBFILE_PATTERN_IGNORE_EMPTY_meta-python = \"1\"",
        ] {
            assert!(local.lines().any(|l| l == line), "{line}: {local}");
        }
        assert!(!local.contains("IGNORE_EMPTY_core"), "{local}");
        assert_eq!(local.matches("BBMASK += ").count(), KEEP.len(), "{local}");
        assert!(
            bblayers.contains("    /m/meta-openembedded/meta-python \\\n"),
            "{bblayers}"
        );
    }

    #[test]
    fn the_check_is_skipped_only_without_the_default_metadata_folder() {
        let empty = std::env::temp_dir().join(format!("yocto-check-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let skipped = metadata_folder(None, empty.clone()).unwrap();
        let named = metadata_folder(Some(empty.clone()), default_metadata()).unwrap_err();
        std::fs::remove_dir_all(&empty).unwrap();
        assert_eq!(skipped, None);
        assert!(
            named.to_string().contains("holds no wrynose metadata"),
            "{named}"
        );
        // The folder beside the checkout, when it is there, is used.
        let default = default_metadata();
        if default.join("PINS").is_file() {
            assert_eq!(
                metadata_folder(None, default.clone()).unwrap(),
                Some(default.clone())
            );
            assert_eq!(
                metadata_folder(Some(default.clone()), empty).unwrap(),
                Some(default)
            );
        }
    }
}
