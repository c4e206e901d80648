//! The no-answer actions against real servers on loopback, started here: an FTP
//! server (pyftpdlib), an SMTP server (aiosmtpd) and an HTTP server (Python's
//! http.server), each a small Python script that prints what it received. The
//! tests wait for those lines, never for a fixed time. A closed port stands for a
//! dead server and a listener that never accepts for one that never answers.
//!
//! The servers are the harness's (`doorphone_system_tests::servers`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use doorphone_interfaces::config::document::{ActionKind, Actions, Email, EmailTls, Ftp};
use doorphone_sip::actions::{self, Snapshot};
use doorphone_system_tests::servers::{FTP_SERVER, HTTP_SERVER, SMTP_SERVER, Server, closed_port};

/// Bytes that stand for the camera's JPEG (start and end markers around every
/// byte value, CR and LF included, so a text-mode transfer would show).
fn jpeg() -> Vec<u8> {
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    for _ in 0..64 {
        jpeg.extend(0..=255u8);
    }
    jpeg.extend(b"\r\n\n\r");
    jpeg.extend([0xFF, 0xD9]);
    jpeg
}

fn snapshot(button: u16) -> Snapshot {
    Snapshot {
        jpeg: jpeg(),
        taken: SystemTime::now(),
        button,
    }
}

fn config(ftp_port: u16, smtp_port: u16) -> Actions {
    Actions {
        ftp: Ftp {
            url: format!("ftp://127.0.0.1:{ftp_port}/snapshots/"),
            user: "door".into(),
            password: "secret".into(),
        },
        email: Email {
            smtp: format!("127.0.0.1:{smtp_port}"),
            tls: EmailTls::None,
            user: String::new(),
            password: String::new(),
            from: "Door Phone <door@example.com>".into(),
            to: vec!["guard@example.com".into(), "porter@example.com".into()],
        },
    }
}

/// `door-YYYYMMDD-HHMMSS-buttonN.jpg`.
fn is_snapshot_name(name: &str, button: u16) -> bool {
    let Some(stamp) = name
        .strip_prefix("door-")
        .and_then(|r| r.strip_suffix(&format!("-button{button}.jpg")))
    else {
        return false;
    };
    let (date, time) = stamp.split_once('-').unwrap_or_default();
    date.len() == 8
        && time.len() == 6
        && date.bytes().chain(time.bytes()).all(|b| b.is_ascii_digit())
}

fn ok(results: &[(ActionKind, Result<(), String>)], kind: ActionKind) -> bool {
    results.iter().any(|(k, r)| *k == kind && r.is_ok())
}

fn error(results: &[(ActionKind, Result<(), String>)], kind: ActionKind) -> String {
    match results.iter().find(|(k, _)| *k == kind) {
        Some((_, Err(e))) => e.clone(),
        other => panic!("{kind:?}: expected an error, got {other:?}"),
    }
}

fn received_mail(smtp: &mut Server) -> serde_json::Value {
    serde_json::from_str(&smtp.expect("RECEIVED ")).expect("JSON from the SMTP server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftp_email_and_http_deliver_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let ftp_root = dir.path().join("ftp");
    let mail_dir = dir.path().join("mail");
    std::fs::create_dir_all(&ftp_root).unwrap();
    std::fs::create_dir_all(&mail_dir).unwrap();
    let mut ftp = Server::start(FTP_SERVER, &ftp_root);
    let mut smtp = Server::start(SMTP_SERVER, &mail_dir);
    let mut http = Server::start(HTTP_SERVER, dir.path());
    let actions = config(ftp.port, smtp.port);
    let snapshot = snapshot(3);
    let url = format!("http://127.0.0.1:{}/doorbell-missed?button=3", http.port);

    let results = actions::run(
        &actions,
        &[ActionKind::Ftp, ActionKind::Email, ActionKind::Http],
        &url,
        Some(&snapshot),
    )
    .await;
    let kinds: Vec<ActionKind> = results.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        [ActionKind::Ftp, ActionKind::Email, ActionKind::Http]
    );
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");

    // FTP: one file in the snapshots directory (created by the upload), the
    // JPEG's bytes unchanged, named by date, time and button.
    let stored = PathBuf::from(ftp.expect("RECEIVED "));
    assert_eq!(stored.parent().unwrap(), ftp_root.join("snapshots"));
    let name = stored.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(is_snapshot_name(&name, 3), "{name}");
    assert_eq!(name, actions::file_name(&snapshot));
    assert_eq!(std::fs::read(&stored).unwrap(), snapshot.jpeg);
    assert_eq!(
        std::fs::read_dir(ftp_root.join("snapshots"))
            .unwrap()
            .count(),
        1
    );

    // E-mail: envelope and headers as configured, the JPEG attached.
    let mail = received_mail(&mut smtp);
    assert_eq!(mail["mail_from"], "door@example.com");
    assert_eq!(
        mail["rcpt_tos"],
        serde_json::json!(["guard@example.com", "porter@example.com"])
    );
    assert_eq!(mail["from"], "Door Phone <door@example.com>");
    let to = mail["to"].as_str().unwrap();
    assert!(
        to.contains("guard@example.com") && to.contains("porter@example.com"),
        "{to}"
    );
    assert!(
        mail["subject"].as_str().unwrap().contains("button 3"),
        "{mail}"
    );
    assert!(!mail["date"].as_str().unwrap().is_empty());
    assert!(mail["text"].as_str().unwrap().contains(&name), "{mail}");
    let attachments = mail["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1, "{mail}");
    assert_eq!(attachments[0]["type"], "image/jpeg");
    assert_eq!(attachments[0]["name"], name.as_str());
    let attached = std::fs::read(attachments[0]["path"].as_str().unwrap()).unwrap();
    assert_eq!(attached, snapshot.jpeg);

    // HTTP: the GET with the configured path and query.
    let request = http.expect("GET ");
    assert_eq!(
        request,
        format!("/doorbell-missed?button=3 127.0.0.1:{}", http.port)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_ftp_server_fails_quickly_while_email_and_http_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = Server::start(SMTP_SERVER, dir.path());
    let mut http = Server::start(HTTP_SERVER, dir.path());
    let actions = config(closed_port(), smtp.port);
    let url = format!("http://127.0.0.1:{}/door%20bell missed", http.port);

    let started = Instant::now();
    let results = actions::run(
        &actions,
        &[ActionKind::Ftp, ActionKind::Email, ActionKind::Http],
        &url,
        Some(&snapshot(1)),
    )
    .await;
    let elapsed = started.elapsed();

    let ftp_error = error(&results, ActionKind::Ftp);
    assert!(ftp_error.contains("tried twice"), "{ftp_error}");
    assert!(
        ftp_error.contains("connecting to 127.0.0.1:"),
        "{ftp_error}"
    );
    assert!(!ftp_error.contains("secret"), "{ftp_error}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(ok(&results, ActionKind::Email), "{results:?}");
    assert!(ok(&results, ActionKind::Http), "{results:?}");
    let mail = received_mail(&mut smtp);
    assert_eq!(mail["attachments"][0]["type"], "image/jpeg");
    // The space is encoded, the encoded one left as it was.
    assert!(
        http.expect("GET ").starts_with("/door%20bell%20missed "),
        "{results:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_email_and_http_servers_fail_while_ftp_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let mut ftp = Server::start(FTP_SERVER, dir.path());
    let actions = config(ftp.port, closed_port());
    let url = format!("http://127.0.0.1:{}/missed", closed_port());

    let started = Instant::now();
    let results = actions::run(
        &actions,
        &[ActionKind::Http, ActionKind::Email, ActionKind::Ftp],
        &url,
        Some(&snapshot(16)),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(results[0].0, ActionKind::Http);
    assert!(error(&results, ActionKind::Http).contains("tried twice"));
    assert!(error(&results, ActionKind::Email).contains("tried twice"));
    assert!(ok(&results, ActionKind::Ftp), "{results:?}");
    let stored = PathBuf::from(ftp.expect("RECEIVED "));
    let name = stored.file_name().unwrap().to_str().unwrap();
    assert!(is_snapshot_name(name, 16), "{name}");
}

/// A server that accepts connections (the kernel completes the handshake) and
/// never says a word: every action gives up after two attempts of 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_servers_time_out_within_21_seconds() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let actions = config(port, port);
    let url = format!("http://127.0.0.1:{port}/missed");

    let started = Instant::now();
    let results = actions::run(
        &actions,
        &[ActionKind::Ftp, ActionKind::Email, ActionKind::Http],
        &url,
        Some(&snapshot(2)),
    )
    .await;
    let elapsed = started.elapsed();
    drop(silent);
    eprintln!("after {elapsed:?}: {results:?}");

    assert_eq!(results.len(), 3);
    for (kind, result) in &results {
        let e = result.as_ref().expect_err("a silent server");
        assert!(e.contains("tried twice"), "{kind:?}: {e}");
    }
    assert!(elapsed >= Duration::from_secs(19), "took {elapsed:?}");
    assert!(elapsed <= Duration::from_secs(21), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_tls_are_required_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = Server::start(SMTP_SERVER, dir.path());
    let mut actions = config(closed_port(), smtp.port);
    actions.email.tls = EmailTls::Starttls;

    let results = actions::run(&actions, &[ActionKind::Email], "", Some(&snapshot(1))).await;
    let e = error(&results, ActionKind::Email);
    eprintln!("{e}");
    assert!(e.contains("tried twice"), "{e}");
    assert!(!e.contains("refused"), "{e}");
    // The server offers no STARTTLS, so nothing was sent in clear text (it
    // prints a message before it accepts it, hence before the client gives up).
    assert_eq!(smtp.printed("RECEIVED"), Vec::<String>::new());

    // TLS from the first byte against a clear-text server: the handshake fails.
    actions.email.tls = EmailTls::Tls;
    let results = actions::run(&actions, &[ActionKind::Email], "", Some(&snapshot(1))).await;
    let e = error(&results, ActionKind::Email);
    eprintln!("{e}");
    assert!(e.contains("tried twice"), "{e}");
    assert_eq!(smtp.printed("RECEIVED"), Vec::<String>::new());
}

#[tokio::test]
async fn impossible_actions_fail_at_once() {
    let mut actions = config(closed_port(), closed_port());
    let started = Instant::now();

    // No snapshot for the FTP upload and the e-mail; an https URL.
    let results = actions::run(
        &actions,
        &[
            ActionKind::Ftp,
            ActionKind::Email,
            ActionKind::Http,
            ActionKind::Ftp,
        ],
        "https://127.0.0.1/missed",
        None,
    )
    .await;
    assert_eq!(results.len(), 3, "one result per action: {results:?}");
    assert!(error(&results, ActionKind::Ftp).contains("no snapshot"));
    assert!(error(&results, ActionKind::Email).contains("no snapshot"));
    assert!(error(&results, ActionKind::Http).contains("http://"));

    // Nothing configured.
    actions.ftp.url.clear();
    actions.email.to.clear();
    let results = actions::run(
        &actions,
        &[ActionKind::Ftp, ActionKind::Email, ActionKind::Http],
        "",
        Some(&snapshot(1)),
    )
    .await;
    assert!(error(&results, ActionKind::Ftp).contains("actions.ftp.url"));
    assert!(error(&results, ActionKind::Email).contains("actions.email.to"));
    assert!(error(&results, ActionKind::Http).contains("http_url"));
    for (_, result) in &results {
        assert!(!result.as_ref().unwrap_err().contains("tried twice"));
    }

    // No actions, nothing to do.
    assert!(actions::run(&actions, &[], "", None).await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(1));
}
