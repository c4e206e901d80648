//! Runs `cargo test` with its output passed through, and ends with one line that
//! adds up every test binary's result: `tests: N passed, N failed, N ignored`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Adds a libtest line such as
    /// `test result: ok. 11 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; ...`.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = count.parse::<u64>() else {
                continue;
            };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

pub fn cargo_test(mut cmd: Command) -> Result<()> {
    eprintln!("xtask: cargo test");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo test")?;
    let mut totals = Totals::default();
    let stdout = std::io::stdout();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        totals.add_line(&line);
        writeln!(stdout.lock(), "{line}")?;
    }
    let status = child.wait()?;
    println!(
        "tests: {} passed, {} failed, {} ignored",
        totals.passed, totals.failed, totals.ignored
    );
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    if totals.passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_up_libtest_result_lines() {
        let mut t = Totals::default();
        t.add_line("test result: ok. 11 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.97s");
        t.add_line("test result: FAILED. 3 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.1s");
        t.add_line("running 5 tests");
        assert_eq!(
            t,
            Totals {
                passed: 14,
                failed: 2,
                ignored: 1
            }
        );
    }
}
