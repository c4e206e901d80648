//! `doorctl status`: which services are on the bus, the configuration revision,
//! and the SIP registrations.

use doorphone_interfaces::BUS_NAME_PREFIX;
use doorphone_interfaces::config;
use doorphone_interfaces::sip::{self, AccountStatus};
use serde::Serialize;
use zbus::Connection;
use zbus::fdo::DBusProxy;

use crate::account;
use crate::args::Format;
use crate::bus;
use crate::failure::{self, Failure};
use crate::output::{self, Table};

/// The services of the door phone, by the last part of their bus names.
const SERVICES: [&str; 5] = ["Config1", "Sip1", "Media1", "Relay1", "Pager1"];

#[derive(Debug, Serialize)]
struct Status {
    services: Vec<ServiceState>,
    /// `None` when the configuration service is not running.
    revision: Option<u64>,
    /// The SIP accounts' registrations; `None` when the SIP agent is not running.
    accounts: Option<Vec<AccountStatus>>,
}

#[derive(Debug, Serialize)]
struct ServiceState {
    name: String,
    up: bool,
}

pub async fn run(conn: &Connection, format: Format) -> Result<(), Failure> {
    let names = on_the_bus(conn).await?;
    let services: Vec<ServiceState> = SERVICES
        .iter()
        .map(|s| {
            let name = format!("{BUS_NAME_PREFIX}{s}");
            ServiceState {
                up: names.contains(&name),
                name,
            }
        })
        .collect();
    let revision = if names.iter().any(|n| n == config::BUS_NAME) {
        Some(revision(conn).await?)
    } else {
        None
    };
    let accounts = if names.iter().any(|n| n == sip::BUS_NAME) {
        accounts(conn).await?
    } else {
        None
    };
    let status = Status {
        services,
        revision,
        accounts,
    };
    output::show(&status, format, text)
}

async fn on_the_bus(conn: &Connection) -> Result<Vec<String>, Failure> {
    let dbus = DBusProxy::new(conn)
        .await
        .map_err(|e| Failure::Message(e.to_string()))?;
    let names = dbus
        .list_names()
        .await
        .map_err(|e| Failure::Message(zbus::Error::from(e).to_string()))?;
    Ok(names.into_iter().map(|n| n.to_string()).collect())
}

async fn revision(conn: &Connection) -> Result<u64, Failure> {
    let config = bus::config(conn).await?;
    Ok(config.revision().await.map_err(config::Error::from)?)
}

/// The registrations; `None` when the agent left the bus since it was listed.
async fn accounts(conn: &Connection) -> Result<Option<Vec<AccountStatus>>, Failure> {
    let sip = bus::sip(conn).await?;
    match sip.accounts().await.map_err(|e| sip::Error::from(e).into()) {
        Ok(accounts) => Ok(Some(accounts)),
        Err(Failure::NotRunning(service)) if service == failure::SIP => Ok(None),
        Err(e) => Err(e),
    }
}

fn text(status: &Status) -> String {
    let mut table = Table::new(&["SERVICE", "STATE"]);
    for service in &status.services {
        let state = if service.up { "up" } else { "down" };
        table.row([service.name.clone(), state.to_owned()]);
    }
    let revision = status
        .revision
        .map_or_else(|| "-".to_owned(), |r| r.to_string());
    let mut text = format!("{table}\n\nconfig revision: {revision}");
    if let Some(accounts) = &status.accounts {
        text.push_str(&format!("\n\n{}", account::table(accounts)));
    }
    text
}
