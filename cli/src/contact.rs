//! `doorctl contact`: the phone book.

use clap::{Args, Subcommand};
use doorphone_interfaces::config::{Config1Proxy, ContactEntry};

use crate::args::{Account, Format};
use crate::failure::Failure;
use crate::output::{self, Table, yes_no};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the phone book.
    List(Format),
    /// Add an entry; prints its id.
    Add(Contact),
    /// Replace the entry with id ID.
    Set {
        /// The entry's id, as `list` shows it.
        id: u32,
        #[command(flatten)]
        contact: Contact,
    },
    /// Remove the entry with id ID.
    Rm {
        /// The entry's id, as `list` shows it.
        id: u32,
    },
}

#[derive(Debug, Args)]
pub struct Contact {
    /// Who this is.
    #[arg(long)]
    name: String,
    /// A SIP user (`200`), a SIP URI (`sip:200@host`) or an IP address
    /// (`192.168.1.20`, `192.168.1.20:5062`).
    #[arg(long)]
    number: String,
    #[command(flatten)]
    account: Account,
    /// Whitelisted: may call when SIP hacking prevention is on, and may open doors
    /// by DTMF when the DTMF authority is `contacts`.
    #[arg(long)]
    whitelist: bool,
}

pub async fn run(config: &Config1Proxy<'_>, command: Command) -> Result<(), Failure> {
    match command {
        Command::List(format) => output::show(&config.list_contacts().await?[..], format, table),
        Command::Add(c) => {
            let id = config
                .add_contact(&c.name, &c.number, &c.account.account, c.whitelist)
                .await?;
            output::print(id)
        }
        Command::Set { id, contact: c } => Ok(config
            .update_contact(id, &c.name, &c.number, &c.account.account, c.whitelist)
            .await?),
        Command::Rm { id } => Ok(config.remove_contact(id).await?),
    }
}

fn table(contacts: &[ContactEntry]) -> Table {
    let mut table = Table::new(&["ID", "NAME", "NUMBER", "ACCOUNT", "WHITELIST"]);
    for c in contacts {
        table.row([
            c.id.to_string(),
            c.name.clone(),
            c.number.clone(),
            c.account.clone(),
            yes_no(c.whitelist),
        ]);
    }
    table
}
