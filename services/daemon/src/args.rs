//! A service's command line: long options only (`--name VALUE`, `--name=VALUE`
//! and `--flag`), `--help`/`-h` and `--version`/`-V`. A service takes a few
//! options and systemd starts it, so it needs no more; the parser is a few
//! kilobytes where a general one costs each service's resident memory a
//! couple of hundred (doorctl, which people type, keeps clap).
//!
//! Anything else is an error that names the option and the rule (unknown
//! option, missing value, given twice, a value that does not parse), printed
//! with the usage line; the service then exits with status 2 and starts
//! nothing.

use std::fmt::Display;
use std::str::FromStr;

/// One option a service knows.
#[derive(Debug, Clone, Copy)]
pub struct Opt {
    /// Without the leading `--`.
    pub name: &'static str,
    /// Takes a value (`--name VALUE`), or is a flag.
    pub value: bool,
}

/// An option that takes a value.
pub const fn value(name: &'static str) -> Opt {
    Opt { name, value: true }
}

/// A flag.
pub const fn flag(name: &'static str) -> Opt {
    Opt { name, value: false }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Run with these options.
    Run(Options),
    /// Print the help and exit.
    Help,
    /// Print the version and exit.
    Version,
}

/// The options given, each at most once.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    given: Vec<(&'static str, Option<String>)>,
}

impl Options {
    /// Reads `args` (without the program's name) against `known`.
    pub fn parse(known: &[Opt], args: impl IntoIterator<Item = String>) -> Result<Request, String> {
        let mut options = Options::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-h" | "--help" => return Ok(Request::Help),
                "-V" | "--version" => return Ok(Request::Version),
                _ => {}
            }
            let Some(long) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let (name, inline) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (long, None),
            };
            let opt = known
                .iter()
                .find(|o| o.name == name)
                .ok_or_else(|| format!("unknown option --{name}"))?;
            if options.given.iter().any(|(n, _)| *n == opt.name) {
                return Err(format!("--{name} is given twice"));
            }
            let value = match (opt.value, inline) {
                (true, Some(value)) => Some(value),
                (true, None) => Some(
                    args.next()
                        .filter(|v| !v.starts_with("--"))
                        .ok_or_else(|| format!("--{name} needs a value"))?,
                ),
                (false, None) => None,
                (false, Some(_)) => return Err(format!("--{name} takes no value")),
            };
            options.given.push((opt.name, value));
        }
        Ok(Request::Run(options))
    }

    /// The value of `--name`, parsed, if it was given.
    pub fn value<T: FromStr>(&self, name: &str) -> Result<Option<T>, String>
    where
        T::Err: Display,
    {
        self.raw(name)
            .map(|v| {
                v.parse()
                    .map_err(|e| format!("--{name}: invalid value {v:?}: {e}"))
            })
            .transpose()
    }

    /// The value of `--name`, parsed, or `default` (which must parse).
    pub fn value_or<T: FromStr>(&self, name: &str, default: &str) -> Result<T, String>
    where
        T::Err: Display,
    {
        match self.value(name)? {
            Some(v) => Ok(v),
            None => default
                .parse()
                .map_err(|e| format!("--{name}: invalid default {default:?}: {e}")),
        }
    }

    /// Whether `--name` was given.
    pub fn given(&self, name: &str) -> bool {
        self.given.iter().any(|(n, _)| *n == name)
    }

    fn raw(&self, name: &str) -> Option<&str> {
        self.given
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Reads the process's command line for `program` (its help text `help`, whose
/// `Usage:` paragraph is shown with an error): prints the help or the version
/// and exits 0 when asked, prints an error and exits 2 when the line is wrong
/// or `read` refuses it; else returns what `read` made of the options.
pub fn from_env<T>(
    program: &str,
    version: &str,
    help: &str,
    known: &[Opt],
    read: impl FnOnce(&Options) -> Result<T, String>,
) -> T {
    let outcome = Options::parse(known, std::env::args().skip(1)).and_then(|request| {
        Ok(match request {
            Request::Run(options) => Some(read(&options)?),
            Request::Help => {
                print!("{help}");
                None
            }
            Request::Version => {
                println!("{program} {version}");
                None
            }
        })
    });
    match outcome {
        Ok(Some(args)) => args,
        Ok(None) => std::process::exit(0),
        Err(e) => {
            eprintln!("{program}: {e}\n{}For more, try --help.", usage(help));
            std::process::exit(2)
        }
    }
}

/// The help's `Usage:` paragraph, each line ending in a line break.
fn usage(help: &str) -> String {
    help.lines()
        .skip_while(|l| !l.starts_with("Usage:"))
        .take_while(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const KNOWN: [Opt; 3] = [value("db"), value("port"), flag("release-all")];

    fn parse(args: &[&str]) -> Result<Request, String> {
        Options::parse(&KNOWN, args.iter().map(|s| s.to_string()))
    }

    fn options(args: &[&str]) -> Options {
        match parse(args) {
            Ok(Request::Run(options)) => options,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn values_and_flags_are_read_in_both_spellings() {
        let o = options(&["--db", "/tmp/a.db", "--port=5062", "--release-all"]);
        assert_eq!(o.value::<PathBuf>("db"), Ok(Some("/tmp/a.db".into())));
        assert_eq!(o.value::<u16>("port"), Ok(Some(5062)));
        assert!(o.given("release-all"));
        let o = options(&[]);
        assert_eq!(o.value::<u16>("port"), Ok(None));
        assert_eq!(o.value_or::<u16>("port", "5060"), Ok(5060));
        assert!(!o.given("release-all"));
        // A value may be empty, or look like a short option.
        assert_eq!(
            options(&["--db="]).value::<String>("db"),
            Ok(Some("".into()))
        );
        assert_eq!(
            options(&["--db", "-"]).value::<String>("db"),
            Ok(Some("-".into()))
        );
        assert_eq!(parse(&["--port", "1", "--help"]), Ok(Request::Help));
        assert_eq!(parse(&["-V"]), Ok(Request::Version));
    }

    #[test]
    fn an_error_shows_the_whole_usage_paragraph() {
        let help = "A service.\n\nUsage: s [--a X]\n         [--b Y]\n\nOptions:\n  --a X\n";
        assert_eq!(usage(help), "Usage: s [--a X]\n         [--b Y]\n");
    }

    #[test]
    fn a_wrong_line_is_refused_with_the_option_and_the_rule() {
        for (args, error) in [
            (&["--dbx", "a"][..], "unknown option --dbx"),
            (&["db"], "unexpected argument \"db\""),
            (&["-d"], "unexpected argument \"-d\""),
            (&["--db"], "--db needs a value"),
            (&["--db", "--port", "1"], "--db needs a value"),
            (&["--db", "a", "--db=b"], "--db is given twice"),
            (&["--release-all=yes"], "--release-all takes no value"),
        ] {
            assert_eq!(parse(args), Err(error.to_owned()), "{args:?}");
        }
        assert_eq!(
            options(&["--port", "70000"]).value::<u16>("port"),
            Err("--port: invalid value \"70000\": number too large to fit in target type".into())
        );
    }
}
