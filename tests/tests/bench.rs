//! The side-by-side benchmark runs end to end on a short count: the table
//! `cargo xtask bench` prints has every figure for both targets. No time is
//! asserted; the figures themselves come from `cargo xtask bench`.

use std::process::Command;

use doorphone_system_tests::bin;

/// The table's row of `figure`.
fn row<'a>(table: &'a str, figure: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(&format!("| {figure} |")))
        .unwrap_or_else(|| panic!("no row {figure:?} in\n{table}"))
}

#[test]
fn sip_compare_prints_every_figure_for_baresip_and_the_door_phone() {
    let out = Command::new(bin("sip-compare"))
        .args(["--calls", "5"])
        .output()
        .expect("sip-compare runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sip-compare failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for figure in [
        "INVITE→200 p50 (ms)",
        "INVITE→200 p95 (ms)",
        "INVITE→200 p99 (ms)",
        "back-to-back calls/s",
        "CPU per call, back to back (ms)",
        "PSS idle (MB)",
        "PSS after 45 calls (MB)",
        "CPU while idle, 2 s (s)",
        "cold start (ms)",
    ] {
        let row = row(&stdout, figure);
        // Four cells (figure, baresip, door phone, ratio), each with a number.
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 4, "{row}");
        for cell in &cells[1..] {
            assert!(cell.chars().any(|c| c.is_ascii_digit()), "{row}");
        }
    }
    // The door phone's own rows: each service's figure in the door phone's cell.
    for figure in [
        "— of which, by process (ms)",
        "code resident idle, of the binary's (MB)",
        "PSS after warm-up, 15 calls (MB)",
        "PSS growth over the last 30 calls (MB)",
    ] {
        let row = row(&stdout, figure);
        let door = row
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .nth(2)
            .unwrap_or_default();
        for service in ["config", "media", "relay", "pager", "sip", "web"] {
            // `NAME FIGURE`, a figure being a number with or without its sign.
            let named = format!("{service} ");
            let figure = door
                .match_indices(&named)
                .map(|(at, _)| &door[at + named.len()..])
                .find(|rest| {
                    rest.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-')
                });
            assert!(figure.is_some(), "no figure of {service} in {row}");
        }
    }
    for service in ["config", "media", "relay", "pager", "sip", "web"] {
        assert!(
            stdout.contains(&format!("{service} ")),
            "no PSS of {service}:\n{stdout}"
        );
    }
}

#[test]
fn sip_compare_refuses_a_count_of_nothing() {
    let out = Command::new(bin("sip-compare"))
        .args(["--calls", "0"])
        .output()
        .expect("sip-compare runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--calls must be at least 1"));
}
