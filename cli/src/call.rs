//! `doorctl dial`, `answer`, `hangup` and `calls`: the SIP agent's calls.

use std::collections::HashMap;

use clap::Args;
use doorphone_interfaces::sip::{self, CALL_PATH_PREFIX, Sip1Proxy, call_state};
use serde::Serialize;
use zbus::{Connection, OwnedObjectPath, Variant, fdo};

use crate::args::Format;
use crate::bus;
use crate::clock;
use crate::failure::Failure;
use crate::output::{self, Table};

/// What `doorctl dial` takes.
#[derive(Debug, Args)]
pub struct Dial {
    /// Who to call: a number of the dial plan, a SIP user, a SIP URI or an IP
    /// address (with :PORT when not 5060).
    number: String,
    /// The account that places the call: `auto` (the dial plan's account for the
    /// number; without one, account 1 when registered, else account 2, else a
    /// direct call to a URI), `1`, `2`, or `ip` (a direct call, no SIP server).
    /// Default: auto.
    #[arg(long, value_name = "ACCOUNT", value_parser = ["auto", "1", "2", "ip"])]
    account: Option<String>,
    /// Offer the camera's video with the audio (default: the configured
    /// auto-answer mode).
    #[arg(long, conflicts_with = "audio")]
    video: bool,
    /// Offer audio only.
    #[arg(long)]
    audio: bool,
    #[command(flatten)]
    format: Format,
}

/// A call as the command line names it: its number N, or its object path
/// `/org/doorphone/Sip1/call/N`.
pub fn parse(text: &str) -> Result<OwnedObjectPath, String> {
    let n = text.strip_prefix(CALL_PATH_PREFIX).unwrap_or(text);
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a call: give its number N or its path {CALL_PATH_PREFIX}N"
        ));
    }
    OwnedObjectPath::try_from(format!("{CALL_PATH_PREFIX}{n}")).map_err(|e| e.to_string())
}

/// The number N of `/org/doorphone/Sip1/call/N`.
fn number(path: &str) -> &str {
    path.strip_prefix(CALL_PATH_PREFIX).unwrap_or(path)
}

/// A call in progress, with its properties.
#[derive(Debug, Serialize)]
struct CallInfo {
    /// The object path.
    call: OwnedObjectPath,
    state: String,
    direction: String,
    remote: String,
    account: String,
    media_mode: String,
    /// Unix milliseconds.
    start: u64,
    /// Unix milliseconds; 0 until answered.
    answered: u64,
}

impl CallInfo {
    /// `3 (ringing, from sip:100@10.0.0.5)`, to name the call in a message.
    fn describe(&self) -> String {
        let way = if self.direction == "in" { "from" } else { "to" };
        format!(
            "{} ({}, {way} {})",
            number(&self.call),
            self.state,
            self.remote
        )
    }
}

#[derive(Debug, Serialize)]
struct Dialled {
    call: String,
}

pub async fn dial(conn: &Connection, dial: Dial) -> Result<(), Failure> {
    let sip = bus::sip(conn).await?;
    let mut options: HashMap<&str, Variant<'_>> = HashMap::new();
    if let Some(account) = &dial.account {
        options.insert("account", Variant::from(account.as_str()));
    }
    if dial.video || dial.audio {
        options.insert("video", Variant::from(dial.video));
    }
    let call = sip.dial(&dial.number, options).await?;
    let dialled = Dialled {
        call: call.to_string(),
    };
    output::show(&dialled, dial.format, |d| d.call.clone())
}

/// Answers `call`, or else the one incoming call that rings.
pub async fn answer(conn: &Connection, call: Option<OwnedObjectPath>) -> Result<(), Failure> {
    let path = match call {
        Some(path) => path,
        None => {
            let sip = bus::sip(conn).await?;
            let ringing: Vec<CallInfo> = in_progress(conn, &sip)
                .await?
                .into_iter()
                .filter(|c| c.state == call_state::RINGING && c.direction == "in")
                .collect();
            only(ringing, "no call is ringing", "ringing", "answer")?
        }
    };
    let proxy = bus::call(conn, path.as_ref()).await?;
    proxy.answer().await.map_err(|e| call_failure(e, &path))
}

/// Ends `call`, or else the answered call, or else the one call in progress.
pub async fn hangup(conn: &Connection, call: Option<OwnedObjectPath>) -> Result<(), Failure> {
    let path = match call {
        Some(path) => path,
        None => {
            let sip = bus::sip(conn).await?;
            let active = sip.active_call().await.map_err(sip::Error::from)?;
            if active.as_str() != "/" {
                active
            } else {
                let calls: Vec<CallInfo> = in_progress(conn, &sip)
                    .await?
                    .into_iter()
                    .filter(|c| c.state != call_state::ENDED)
                    .collect();
                only(calls, "no call is in progress", "in progress", "hangup")?
            }
        }
    };
    let proxy = bus::call(conn, path.as_ref()).await?;
    proxy.hangup().await.map_err(|e| call_failure(e, &path))
}

/// Lists the calls in progress.
pub async fn list(conn: &Connection, format: Format) -> Result<(), Failure> {
    let sip = bus::sip(conn).await?;
    let calls = in_progress(conn, &sip).await?;
    output::show(&calls[..], format, table)
}

/// The one call of `calls`, or a failure that names them all.
fn only(
    calls: Vec<CallInfo>,
    none: &str,
    what: &str,
    verb: &str,
) -> Result<OwnedObjectPath, Failure> {
    match &calls[..] {
        [] => Err(Failure::Message(none.to_owned())),
        [call] => Ok(call.call.clone()),
        several => Err(Failure::Message(format!(
            "{} calls are {what}: {}; name one: doorctl {verb} CALL",
            several.len(),
            several
                .iter()
                .map(CallInfo::describe)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The calls in progress with their properties, by number. A call that ends
/// while it is read is left out.
async fn in_progress(conn: &Connection, sip: &Sip1Proxy<'_>) -> Result<Vec<CallInfo>, Failure> {
    let paths = sip.calls().await.map_err(sip::Error::from)?;
    let mut calls = Vec::with_capacity(paths.len());
    for path in paths {
        if let Some(call) = read(conn, &path).await? {
            calls.push(call);
        }
    }
    calls.sort_by_key(|c| number(&c.call).parse::<u64>().unwrap_or(u64::MAX));
    Ok(calls)
}

/// The properties of the call at `path`; `None` when it is gone.
async fn read(conn: &Connection, path: &OwnedObjectPath) -> Result<Option<CallInfo>, Failure> {
    let proxy = bus::call(conn, path.as_ref()).await?;
    let read = async {
        tokio::try_join!(
            proxy.state(),
            proxy.direction(),
            proxy.remote(),
            proxy.account(),
            proxy.media_mode(),
            proxy.start_time(),
            proxy.answer_time(),
        )
    };
    match read.await {
        Ok((state, direction, remote, account, media_mode, start, answered)) => {
            Ok(Some(CallInfo {
                call: path.clone(),
                state,
                direction,
                remote,
                account,
                media_mode,
                start,
                answered,
            }))
        }
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(sip::Error::from(e).into()),
    }
}

/// Whether `e` says that the call object is not (or no longer) there.
fn is_gone(e: &zbus::Error) -> bool {
    let name = match e {
        zbus::Error::FDO(e) => {
            return matches!(
                **e,
                fdo::Error::UnknownObject(_) | fdo::Error::UnknownInterface(_)
            );
        }
        zbus::Error::MethodError(name, _, _) => name.as_str(),
        _ => return false,
    };
    name == "org.freedesktop.DBus.Error.UnknownObject"
        || name == "org.freedesktop.DBus.Error.UnknownInterface"
}

/// A failure of a method of the call at `path`: a call that is gone is named.
fn call_failure(e: sip::Error, path: &OwnedObjectPath) -> Failure {
    match e {
        sip::Error::ZBus(e) if is_gone(&e) => Failure::Message(format!(
            "there is no call {} (it has ended, or never was)",
            path.as_str()
        )),
        e => e.into(),
    }
}

fn table(calls: &[CallInfo]) -> Table {
    let mut table = Table::new(&[
        "CALL",
        "STATE",
        "DIRECTION",
        "REMOTE",
        "ACCOUNT",
        "MEDIA",
        "STARTED",
        "ANSWERED",
    ]);
    for c in calls {
        table.row([
            number(&c.call).to_owned(),
            c.state.clone(),
            c.direction.clone(),
            c.remote.clone(),
            c.account.clone(),
            c.media_mode.clone(),
            clock::local(c.start),
            clock::local(c.answered),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_named_by_number_or_path() {
        assert_eq!(parse("3").unwrap().as_str(), "/org/doorphone/Sip1/call/3");
        assert_eq!(
            parse("/org/doorphone/Sip1/call/12").unwrap().as_str(),
            "/org/doorphone/Sip1/call/12"
        );
        for bad in [
            "",
            "x",
            "-1",
            "/org/doorphone/Sip1/call/",
            "/org/doorphone/Sip1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    fn ringing(n: u32, remote: &str) -> CallInfo {
        CallInfo {
            call: parse(&n.to_string()).unwrap(),
            state: "ringing".into(),
            direction: "in".into(),
            remote: remote.into(),
            account: "ip".into(),
            media_mode: "audio".into(),
            start: 1,
            answered: 0,
        }
    }

    #[test]
    fn several_calls_are_named_in_the_refusal() {
        let err = only(
            vec![ringing(3, "sip:a@10.0.0.5"), ringing(4, "sip:b@10.0.0.6")],
            "no call is ringing",
            "ringing",
            "answer",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 calls are ringing: 3 (ringing, from sip:a@10.0.0.5), \
             4 (ringing, from sip:b@10.0.0.6); name one: doorctl answer CALL"
        );
        let err = only(Vec::new(), "no call is ringing", "ringing", "answer").unwrap_err();
        assert_eq!(err.to_string(), "no call is ringing");
        let one = only(vec![ringing(7, "sip:a@x")], "", "ringing", "answer").unwrap();
        assert_eq!(one.as_str(), "/org/doorphone/Sip1/call/7");
    }
}
