//! `doorctl dialplan`: dialled numbers replaced by the numbers to ring.

use clap::{Args, Subcommand};
use doorphone_interfaces::config::{Config1Proxy, DialRuleEntry};
use serde::Serialize;

use crate::args::{Account, Format};
use crate::failure::Failure;
use crate::output::{self, Table, joined};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the dial-plan rules.
    List(Format),
    /// Add a rule; prints its id.
    Add(Rule),
    /// Replace the rule with id ID.
    Set {
        /// The rule's id, as `list` shows it.
        id: u32,
        #[command(flatten)]
        rule: Rule,
    },
    /// Remove the rule with id ID.
    Rm {
        /// The rule's id, as `list` shows it.
        id: u32,
    },
    /// Show the account that places a call to NUMBER and every number it rings.
    Resolve {
        /// A dialled number: a SIP user, a SIP URI or an IP address.
        number: String,
        #[command(flatten)]
        format: Format,
    },
}

/// A dialled number equal to the prefix rings every target at once.
#[derive(Debug, Args)]
pub struct Rule {
    /// What the rule is for.
    #[arg(long)]
    name: String,
    /// The dialled number this rule replaces; unique in the plan.
    #[arg(long)]
    prefix: String,
    #[command(flatten)]
    account: Account,
    /// The numbers to ring instead, 1 to 5: SIP users, SIP URIs or IP addresses.
    #[arg(value_name = "TARGET", required = true, num_args = 1..=5)]
    targets: Vec<String>,
}

impl Rule {
    fn targets(&self) -> Vec<&str> {
        self.targets.iter().map(String::as_str).collect()
    }
}

/// Where a dialled number goes.
#[derive(Debug, Serialize)]
struct Resolved {
    /// `auto`, `1` or `2`.
    account: String,
    targets: Vec<String>,
}

pub async fn run(config: &Config1Proxy<'_>, command: Command) -> Result<(), Failure> {
    match command {
        Command::List(format) => output::show(&config.list_dial_plan().await?[..], format, table),
        Command::Add(r) => {
            let id = config
                .add_dial_rule(&r.name, &r.prefix, &r.account.account, &r.targets())
                .await?;
            output::print(id)
        }
        Command::Set { id, rule: r } => Ok(config
            .update_dial_rule(id, &r.name, &r.prefix, &r.account.account, &r.targets())
            .await?),
        Command::Rm { id } => Ok(config.remove_dial_rule(id).await?),
        Command::Resolve { number, format } => {
            let (account, targets) = config.resolve(&number).await?;
            output::show(&Resolved { account, targets }, format, resolved_table)
        }
    }
}

fn table(rules: &[DialRuleEntry]) -> Table {
    let mut table = Table::new(&["ID", "NAME", "PREFIX", "ACCOUNT", "TARGETS"]);
    for r in rules {
        table.row([
            r.id.to_string(),
            r.name.clone(),
            r.prefix.clone(),
            r.account.clone(),
            joined(&r.replace),
        ]);
    }
    table
}

fn resolved_table(resolved: &Resolved) -> Table {
    let mut table = Table::new(&["ACCOUNT", "TARGETS"]);
    table.row([resolved.account.clone(), joined(&resolved.targets)]);
    table
}
