//! `doorctl`, the command-line tool that configures and inspects the door phone
//! through its services on the D-Bus system bus.
//!
//! One grammar: `noun verb` acts on a kind of object; every listing takes `--json`.
//! Exit codes: 0 done, 1 a service refused or could not be reached (the reason on
//! stderr), 2 usage.

mod account;
mod args;
mod bus;
mod button;
mod call;
mod clock;
mod config;
mod contact;
mod dialplan;
mod door;
mod failure;
mod history;
mod output;
mod page;
mod page_sender;
mod status;
mod web;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use zbus::OwnedObjectPath;

use crate::failure::Failure;

/// Configure and inspect the door phone.
///
/// doorctl talks to the door phone's services on the D-Bus system bus (the one
/// DBUS_SYSTEM_BUS_ADDRESS names, when set). Reading is open to everyone; changes
/// are for root and the doorphone group.
///
/// Exit status: 0 when done; 1 when a service refused (its message on stderr) or
/// could not be reached; 2 on a usage error.
#[derive(Debug, Parser)]
#[command(name = "doorctl", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show which door phone services are on the bus, the configuration revision,
    /// and the SIP registrations.
    Status(args::Format),
    /// Export, import, read and change the configuration document.
    #[command(subcommand)]
    Config(config::Command),
    /// Manage the phone book.
    #[command(subcommand)]
    Contact(contact::Command),
    /// Manage the dial plan: dialled numbers replaced by the numbers to ring.
    #[command(subcommand)]
    Dialplan(dialplan::Command),
    /// Manage the call buttons.
    #[command(subcommand)]
    Button(button::Command),
    /// Open the doors and show their relays.
    #[command(subcommand)]
    Door(door::Command),
    /// Show the multicast pager's groups, and send pages.
    #[command(subcommand)]
    Page(page::Command),
    /// Place a call through the dial plan; prints the call's object path.
    Dial(call::Dial),
    /// Answer a ringing incoming call.
    Answer {
        /// The call: its number N, as `doorctl calls` shows it, or its path
        /// /org/doorphone/Sip1/call/N. Default: the one incoming call that rings.
        #[arg(value_name = "CALL", value_parser = call::parse)]
        call: Option<OwnedObjectPath>,
    },
    /// End a call: refuse it while it rings, cancel it while it dials, hang up
    /// once answered.
    Hangup {
        /// The call: its number N, as `doorctl calls` shows it, or its path
        /// /org/doorphone/Sip1/call/N. Default: the answered call, else the one
        /// call in progress.
        #[arg(value_name = "CALL", value_parser = call::parse)]
        call: Option<OwnedObjectPath>,
    },
    /// Show the calls in progress.
    Calls(args::Format),
    /// Show the SIP accounts and their registration.
    Accounts(args::Format),
    /// Show the calls that ended, oldest first (the last 1000).
    History(args::Format),
    /// Manage the users of the web pages and the HTTP API.
    #[command(subcommand)]
    Web(web::Command),
}

/// The command-line grammar, for shell completions and the manual page.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Runs one parsed command line; a failure is told on stderr.
pub async fn run(cli: Cli) -> ExitCode {
    match execute(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

async fn execute(command: Command) -> Result<(), Failure> {
    // Sending a page needs the network, not the bus.
    if let Command::Page(page::Command::Send(send)) = command {
        return page::send(send).await;
    }
    let conn = bus::connect().await?;
    match command {
        Command::Status(format) => status::run(&conn, format).await,
        Command::Config(command) => config::run(&bus::config(&conn).await?, command).await,
        Command::Contact(command) => contact::run(&bus::config(&conn).await?, command).await,
        Command::Dialplan(command) => dialplan::run(&bus::config(&conn).await?, command).await,
        Command::Button(command) => button::run(&conn, command).await,
        Command::Door(command) => door::run(&bus::relay(&conn).await?, command).await,
        Command::Page(page::Command::Status(format)) => page::status(&conn, format).await,
        Command::Page(page::Command::Send(_)) => unreachable!("sent above"),
        Command::Dial(dial) => call::dial(&conn, dial).await,
        Command::Answer { call } => call::answer(&conn, call).await,
        Command::Hangup { call } => call::hangup(&conn, call).await,
        Command::Calls(format) => call::list(&conn, format).await,
        Command::Accounts(format) => account::list(&conn, format).await,
        Command::History(format) => history::list(&conn, format).await,
        Command::Web(command) => web::run(&bus::config(&conn).await?, command).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn a_missing_verb_is_a_usage_error() {
        let err = Cli::try_parse_from(["doorctl", "contact"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn dial_takes_one_media_mode_and_a_known_account() {
        assert!(
            Cli::try_parse_from(["doorctl", "dial", "201", "--account", "ip", "--video"]).is_ok()
        );
        for args in [
            &["doorctl", "dial"][..],
            &["doorctl", "dial", "201", "--audio", "--video"],
            &["doorctl", "dial", "201", "--account", "3"],
            &["doorctl", "answer", "first"],
            &["doorctl", "hangup", "1", "2"],
            &["doorctl", "page", "send", "239.1.1.1"],
            &[
                "doorctl",
                "page",
                "send",
                "239.1.1.1:5000",
                "--tone",
                "440",
                "--file",
                "a.wav",
            ],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
