//! `doorctl door`: the door relays.

use clap::Subcommand;
use doorphone_interfaces::relay::{self, Relay1Proxy, source};
use serde::Serialize;

use crate::args::Format;
use crate::failure::Failure;
use crate::output::{self, Table};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open a door for its hold time, after its trigger delay.
    Open {
        /// The relay to open (default: the first configured relay).
        relay: Option<String>,
    },
    /// Show every relay and whether it is open.
    Status(Format),
}

#[derive(Debug, Serialize)]
struct RelayState {
    relay: String,
    state: String,
}

pub async fn run(proxy: &Relay1Proxy<'_>, command: Command) -> Result<(), Failure> {
    match command {
        Command::Open { relay } => {
            let relay = match relay {
                Some(relay) => relay,
                None => proxy
                    .relay_ids()
                    .await
                    .map_err(relay::Error::from)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| Failure::Message("no relay is configured".into()))?,
            };
            Ok(proxy.open(&relay, source::API).await?)
        }
        Command::Status(format) => {
            let ids = proxy.relay_ids().await.map_err(relay::Error::from)?;
            let mut states = proxy.relays().await.map_err(relay::Error::from)?;
            let relays: Vec<RelayState> = ids
                .into_iter()
                .map(|id| RelayState {
                    state: states.remove(&id).unwrap_or_default(),
                    relay: id,
                })
                .collect();
            output::show(&relays[..], format, table)
        }
    }
}

fn table(relays: &[RelayState]) -> Table {
    let mut table = Table::new(&["RELAY", "STATE"]);
    for r in relays {
        table.row([r.relay.clone(), r.state.clone()]);
    }
    table
}
