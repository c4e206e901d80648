//! `doorctl button`: the call buttons.

use clap::{Args, Subcommand};
use doorphone_interfaces::config::ButtonEntry;

use crate::args::Format;
use crate::failure::Failure;
use crate::output::{self, Table, joined};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the call buttons.
    List(Format),
    /// Configure button N, replacing what it had.
    Set(Button),
    /// Remove button N.
    Rm {
        /// The button, 1 to 16.
        #[arg(value_name = "N")]
        button: u32,
    },
    /// Press button N: its group or sequence call starts, as from the door.
    Press {
        /// The button, 1 to 16.
        #[arg(value_name = "N", value_parser = clap::value_parser!(u16).range(1..=16))]
        button: u16,
    },
}

/// What pressing a button does.
#[derive(Debug, Args)]
pub struct Button {
    /// The button, 1 to 16.
    #[arg(value_name = "N")]
    button: u32,
    /// `group`: every number rings at once and the first answer ends the others;
    /// `sequence`: the numbers ring one after another.
    #[arg(long = "type", value_name = "TYPE", value_parser = ["group", "sequence"])]
    call_type: String,
    /// Who is called, 1 to 16: SIP users, SIP URIs or IP addresses.
    #[arg(value_name = "NUMBER", required_unless_present = "group_number")]
    numbers: Vec<String>,
    /// One number (a group on the SIP server) called instead of the numbers.
    #[arg(long)]
    group_number: Option<String>,
    /// What a refusal does. Group calls: `end_this_call` (the others keep ringing;
    /// the default) or `end_all_calls`. Sequence calls: `call_next` (the default) or
    /// `do_not_call_next`.
    #[arg(long, value_name = "WHAT", value_parser = ["end_this_call", "end_all_calls", "call_next", "do_not_call_next"])]
    when_refused: Option<String>,
    /// Sequence calls: seconds each number rings before the next is called (5-120).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    timeout: u32,
    /// A relay to trigger when nobody answers; repeat for more.
    #[arg(long = "relay", value_name = "ID")]
    relays: Vec<String>,
    /// An action to run when nobody answers; repeat for more. `ftp` and `email` send
    /// a camera snapshot, `http` sends a GET to the --http-url.
    #[arg(long = "action", value_name = "ACTION", value_parser = ["ftp", "email", "http"])]
    actions: Vec<String>,
    /// The URL the `http` action sends a GET to.
    #[arg(long, value_name = "URL")]
    http_url: Option<String>,
}

impl From<Button> for ButtonEntry {
    fn from(b: Button) -> Self {
        ButtonEntry {
            button: b.button,
            call_type: b.call_type,
            numbers: b.numbers,
            group_number: b.group_number.unwrap_or_default(),
            when_refused: b.when_refused.unwrap_or_default(),
            timeout: b.timeout,
            no_answer_relays: b.relays,
            no_answer_actions: b.actions,
            no_answer_http_url: b.http_url.unwrap_or_default(),
        }
    }
}

pub async fn run(conn: &zbus::Connection, command: Command) -> Result<(), Failure> {
    // Pressing is the SIP agent's; the rest is configuration.
    let config = match command {
        Command::Press { button } => {
            return Ok(crate::bus::sip(conn).await?.press_button(button).await?);
        }
        _ => crate::bus::config(conn).await?,
    };
    let config = &config;
    match command {
        Command::List(format) => output::show(&config.list_buttons().await?[..], format, table),
        Command::Set(button) => Ok(config.set_button(&button.into()).await?),
        Command::Rm { button } => Ok(config.remove_button(button).await?),
        Command::Press { .. } => Ok(()),
    }
}

fn table(buttons: &[ButtonEntry]) -> Table {
    let mut table = Table::new(&[
        "BUTTON",
        "TYPE",
        "NUMBERS",
        "GROUP-NUMBER",
        "WHEN-REFUSED",
        "TIMEOUT",
        "RELAYS",
        "ACTIONS",
        "HTTP-URL",
    ]);
    for b in buttons {
        table.row([
            b.button.to_string(),
            b.call_type.clone(),
            joined(&b.numbers),
            b.group_number.clone(),
            b.when_refused.clone(),
            b.timeout.to_string(),
            joined(&b.no_answer_relays),
            joined(&b.no_answer_actions),
            b.no_answer_http_url.clone(),
        ]);
    }
    table
}
