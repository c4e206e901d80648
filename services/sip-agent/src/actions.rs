//! The no-answer actions of a call button: when nobody answers a button's call
//! plan, the door phone uploads the camera snapshot to an FTP server (`ftp`),
//! mails it (`email`) and sends a GET to a URL (`http`), as configured in the
//! `actions` section and in `buttons[].no_answer`.
//!
//! [`run`] starts every requested action at once, gives each attempt
//! [`ATTEMPT_TIMEOUT`] and retries a failed attempt once after [`RETRY_PAUSE`],
//! so it returns within about 21 s whatever the servers do. It never panics: a
//! panic inside a client library is caught and reported as that action's error.
//! A configuration that cannot work (no URL, no snapshot, a bad address) fails
//! at once, without a retry. URLs and the SMTP server are parsed by
//! [`doorphone_interfaces::config::urls`], as the config service checks them.
//!
//! - `ftp`: plain FTP (no FTPS), passive mode, binary type, logged in with
//!   `actions.ftp.user` / `password` (`anonymous` when the user is empty). The
//!   URL's path is entered one directory at a time, relative to the login
//!   directory as RFC 1738 says (a directory that does not exist is created);
//!   the file is named by [`file_name`], e.g. `door-20261126-231502-button1.jpg`.
//! - `email`: SMTP to `actions.email.smtp` (`host:port`; without a port 25,
//!   587 for STARTTLS, 465 for TLS), with `tls` = `none` (clear text),
//!   `starttls` (STARTTLS is required: a server that does not offer it is an
//!   error, never a fallback to clear text) or `tls` (TLS from the first byte).
//!   Certificates are checked against the Mozilla roots built into the program
//!   (the image has no CA bundle), so a self-signed server certificate is refused.
//!   Login only when `user` is set. The JPEG is attached under the same name as
//!   the FTP upload.
//! - `http`: an HTTP/1.1 GET written by hand over a TCP stream, for `http://`
//!   URLs only (the format the spec gives, `http://server/message`; `https://` is
//!   refused). Characters not allowed in a request line (spaces, non-ASCII) are
//!   percent-encoded. A 2xx or 3xx status is success; redirects are not followed.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use doorphone_interfaces::config::document::{ActionKind, Actions, Email, EmailTls, Ftp};
use doorphone_interfaces::config::urls;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// How long one attempt of an action may take, connection included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The pause between a failed first attempt and the retry.
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// The camera picture taken when a button's call was not answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The JPEG as `Media1.Snapshot()` returned it.
    pub jpeg: Vec<u8>,
    /// When it was taken; names the uploaded file and dates the e-mail.
    pub taken: SystemTime,
    /// The call button (1–16) whose call was not answered.
    pub button: u16,
}

/// The name under which a snapshot is uploaded and attached:
/// `door-YYYYMMDD-HHMMSS-buttonN.jpg`, in the door phone's local time.
pub fn file_name(snapshot: &Snapshot) -> String {
    let taken: chrono::DateTime<chrono::Local> = snapshot.taken.into();
    format!(
        "door-{}-button{}.jpg",
        taken.format("%Y%m%d-%H%M%S"),
        snapshot.button
    )
}

/// The name of an action as the configuration spells it (`ftp`, `email`, `http`).
pub fn action_name(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Ftp => "ftp",
        ActionKind::Email => "email",
        ActionKind::Http => "http",
    }
}

/// Why an attempt failed: a configuration that cannot work is not retried.
#[derive(Debug)]
enum Failure {
    Permanent(String),
    Transient(String),
}

fn transient(context: &str) -> impl FnOnce(&dyn Display) -> Failure + '_ {
    move |e| Failure::Transient(format!("{context}: {e}"))
}

/// Runs every action in `kinds` concurrently (an action listed twice runs once),
/// each attempt limited to [`ATTEMPT_TIMEOUT`] and a failed one retried once;
/// returns one result per action, in the order of `kinds`: `Ok` or the error
/// text (which never contains a password). `http_url` is the button's
/// `no_answer.http_url`; `snapshot` is needed by `ftp` and `email`, which fail
/// without one. Never panics; returns within about 21 s. Dropping the future
/// stops the actions still running.
pub async fn run(
    actions: &Actions,
    kinds: &[ActionKind],
    http_url: &str,
    snapshot: Option<&Snapshot>,
) -> Vec<(ActionKind, Result<(), String>)> {
    let mut unique: Vec<ActionKind> = Vec::new();
    for kind in kinds {
        if !unique.contains(kind) {
            unique.push(*kind);
        }
    }
    let snapshot = snapshot.map(|s| Arc::new(s.clone()));
    let mut tasks = JoinSet::new();
    let mut ids = Vec::new();
    for (index, kind) in unique.iter().copied().enumerate() {
        let handle = match kind {
            ActionKind::Ftp => {
                let ftp = actions.ftp.clone();
                let snapshot = snapshot.clone();
                tasks.spawn(with_retry(kind, move || {
                    let ftp = ftp.clone();
                    let snapshot = snapshot.clone();
                    async move { upload(&ftp, snapshot.as_deref()).await }
                }))
            }
            ActionKind::Email => {
                let email = actions.email.clone();
                let snapshot = snapshot.clone();
                tasks.spawn(with_retry(kind, move || {
                    let email = email.clone();
                    let snapshot = snapshot.clone();
                    async move { mail(&email, snapshot.as_deref()).await }
                }))
            }
            ActionKind::Http => {
                let url = http_url.to_owned();
                tasks.spawn(with_retry(kind, move || {
                    let url = url.clone();
                    async move { get(&url).await }
                }))
            }
        };
        ids.push((handle.id(), index));
    }
    let mut results: Vec<Option<Result<(), String>>> = vec![None; unique.len()];
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            Err(e) => (e.id(), Err(format!("the action failed: {e}"))),
        };
        if let Some((_, index)) = ids.iter().find(|(i, _)| *i == id) {
            results[*index] = Some(result);
        }
    }
    unique
        .into_iter()
        .zip(results)
        .map(|(kind, result)| {
            (
                kind,
                result.unwrap_or_else(|| Err("the action did not finish".to_owned())),
            )
        })
        .collect()
}

/// Runs `attempt` with a timeout, and once more after [`RETRY_PAUSE`] if it
/// failed for a reason that may pass.
async fn with_retry<F, Fut>(kind: ActionKind, attempt: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let name = action_name(kind);
    let mut first = None;
    for round in 1..=2 {
        let outcome = match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::Transient(format!(
                "no answer within {} s",
                ATTEMPT_TIMEOUT.as_secs()
            ))),
        };
        match outcome {
            Ok(()) => {
                tracing::info!(action = name, attempt = round, "no-answer action done");
                return Ok(());
            }
            Err(Failure::Permanent(e)) => {
                tracing::warn!(action = name, error = %e, "no-answer action cannot run");
                return Err(e);
            }
            Err(Failure::Transient(e)) if round == 1 => {
                tracing::info!(action = name, error = %e, "no-answer action failed, retrying");
                first = Some(e);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(Failure::Transient(e)) => {
                tracing::warn!(action = name, error = %e, "no-answer action failed twice");
                let first = first.unwrap_or_default();
                return Err(if first == e {
                    format!("{e} (tried twice)")
                } else {
                    format!("{e} (tried twice; first attempt: {first})")
                });
            }
        }
    }
    unreachable!("the loop returns in its second round")
}

/// One attempt of the `ftp` action.
async fn upload(ftp: &Ftp, snapshot: Option<&Snapshot>) -> Result<(), Failure> {
    use crate::ftp::{Error, Session};

    if ftp.url.is_empty() {
        return Err(Failure::Permanent("actions.ftp.url is not set".to_owned()));
    }
    let target =
        urls::ftp_url(&ftp.url).map_err(|e| Failure::Permanent(format!("actions.ftp.url: {e}")))?;
    let snapshot =
        snapshot.ok_or_else(|| Failure::Permanent("no snapshot to upload".to_owned()))?;
    // An argument that cannot be sent fails for good; the rest may pass later.
    let failure = |context: String| {
        move |e: Error| match e {
            Error::Argument(e) => Failure::Permanent(format!("{context}: {e}")),
            e => Failure::Transient(format!("{context}: {e}")),
        }
    };
    let address = target.server.to_string();
    // Passive mode; the data connection goes to the control connection's
    // address even when a server behind NAT announces a private one.
    let mut session = Session::connect(&address)
        .await
        .map_err(failure(format!("connecting to {address}")))?;
    let user = if ftp.user.is_empty() {
        "anonymous"
    } else {
        ftp.user.as_str()
    };
    session
        .login(user, ftp.password.as_str())
        .await
        .map_err(failure(format!("logging in as {user}")))?;
    session
        .binary()
        .await
        .map_err(failure("setting binary type".to_owned()))?;
    for dir in &target.dirs {
        if session.cwd(dir).await.is_err() {
            // Create a missing directory, then enter it.
            let _ = session.mkdir(dir).await;
            session
                .cwd(dir)
                .await
                .map_err(failure(format!("entering directory {dir}")))?;
        }
    }
    let name = file_name(snapshot);
    session
        .store(&name, &snapshot.jpeg)
        .await
        .map_err(failure(format!("uploading {name}")))?;
    // The file is stored; a failing QUIT does not undo that.
    let _ = session.quit().await;
    Ok(())
}

/// One attempt of the `email` action.
async fn mail(email: &Email, snapshot: Option<&Snapshot>) -> Result<(), Failure> {
    use lettre::message::header::ContentType;
    use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let permanent = |s: String| Failure::Permanent(s);
    if email.smtp.is_empty() {
        return Err(permanent("actions.email.smtp is not set".to_owned()));
    }
    if email.to.is_empty() {
        return Err(permanent("actions.email.to is empty".to_owned()));
    }
    let snapshot = snapshot.ok_or_else(|| permanent("no snapshot to send".to_owned()))?;
    let default_port = match email.tls {
        EmailTls::None => 25,
        EmailTls::Starttls => 587,
        EmailTls::Tls => 465,
    };
    let server = urls::host_port(&email.smtp, default_port)
        .map_err(|e| permanent(format!("actions.email.smtp: {e}")))?;
    let (host, port) = (server.name(), server.port);
    let from: Mailbox = email
        .from
        .parse()
        .map_err(|e| permanent(format!("actions.email.from: {:?}: {e}", email.from)))?;
    let name = file_name(snapshot);
    let mut builder = Message::builder()
        .from(from)
        .subject(format!(
            "Door phone: call from button {} not answered",
            snapshot.button
        ))
        .date(snapshot.taken);
    for to in &email.to {
        let to: Mailbox = to
            .parse()
            .map_err(|e| permanent(format!("actions.email.to: {to:?}: {e}")))?;
        builder = builder.to(to);
    }
    let taken: chrono::DateTime<chrono::Local> = snapshot.taken.into();
    let text = format!(
        "Nobody answered the call from button {} of the door phone at {}.\n\
         The camera picture is attached ({name}).\n",
        snapshot.button,
        taken.format("%Y-%m-%d %H:%M:%S %z"),
    );
    let jpeg = ContentType::parse("image/jpeg").expect("a valid MIME type");
    let message = builder
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(text))
                .singlepart(Attachment::new(name).body(snapshot.jpeg.clone(), jpeg)),
        )
        .map_err(|e| permanent(format!("composing the message: {e}")))?;

    let tls = match email.tls {
        EmailTls::None => Tls::None,
        EmailTls::Starttls | EmailTls::Tls => {
            let parameters = TlsParameters::new(host.clone())
                .map_err(|e| permanent(format!("TLS for {host}: {e}")))?;
            if email.tls == EmailTls::Starttls {
                Tls::Required(parameters)
            } else {
                Tls::Wrapper(parameters)
            }
        }
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
        .port(port)
        .tls(tls)
        .timeout(Some(ATTEMPT_TIMEOUT));
    if !email.user.is_empty() {
        transport =
            transport.credentials(Credentials::new(email.user.clone(), email.password.clone()));
    }
    transport
        .build()
        .send(message)
        .await
        .map_err(|e| transient(&format!("sending through {server}"))(&e))?;
    Ok(())
}

/// One attempt of the `http` action.
async fn get(url: &str) -> Result<(), Failure> {
    if url.is_empty() {
        return Err(Failure::Permanent(
            "no_answer.http_url is not set".to_owned(),
        ));
    }
    let target =
        urls::http_url(url).map_err(|e| Failure::Permanent(format!("no_answer.http_url: {e}")))?;
    let address = target.server.to_string();
    let mut stream = TcpStream::connect(address.as_str())
        .await
        .map_err(|e| transient(&format!("connecting to {address}"))(&e))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.target, target.host_header
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| transient(&format!("sending to {address}"))(&e))?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .await
        .map_err(|e| transient(&format!("reading the answer of {address}"))(&e))?;
    let status_line = status_line.trim_end();
    let mut parts = status_line.splitn(3, ' ');
    let status = match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/") => code.parse::<u16>().ok(),
        _ => None,
    };
    match status {
        Some(200..=399) => Ok(()),
        Some(_) => Err(Failure::Transient(format!(
            "{address} answered {status_line:?}"
        ))),
        None if status_line.is_empty() => Err(Failure::Transient(format!(
            "{address} closed the connection without an answer"
        ))),
        None => Err(Failure::Transient(format!(
            "{address} sent no HTTP status line: {status_line:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let snapshot = Snapshot {
            jpeg: Vec::new(),
            taken: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_734_902),
            button: 1,
        };
        let name = file_name(&snapshot);
        assert!(name.starts_with("door-20"), "{name}");
        assert!(name.ends_with("-button1.jpg"), "{name}");
        assert_eq!(name.len(), "door-20261126-231502-button1.jpg".len());
    }
}
