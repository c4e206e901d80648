//! `doorctl accounts`: the SIP accounts and their registration.

use doorphone_interfaces::sip::{self, AccountStatus};
use zbus::Connection;

use crate::args::Format;
use crate::bus;
use crate::failure::Failure;
use crate::output::{self, Table};

pub async fn list(conn: &Connection, format: Format) -> Result<(), Failure> {
    let sip = bus::sip(conn).await?;
    let accounts = sip.accounts().await.map_err(sip::Error::from)?;
    output::show(&accounts[..], format, table)
}

/// Accounts as a table, for `accounts` and `status`.
pub fn table(accounts: &[AccountStatus]) -> Table {
    let mut table = Table::new(&["ACCOUNT", "STATE", "CODE", "REASON", "AOR"]);
    for a in accounts {
        table.row([
            a.id.to_string(),
            a.state.clone(),
            code(a.code),
            a.reason.clone(),
            a.aor.clone(),
        ]);
    }
    table
}

/// A SIP status code in a table cell; 0 (no answer came) is empty.
pub fn code(code: u16) -> String {
    if code == 0 {
        String::new()
    } else {
        code.to_string()
    }
}
