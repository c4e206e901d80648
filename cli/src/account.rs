//! `doorctl accounts`: the SIP accounts and their registration.

use doorphone_interfaces::sip::{self, AccountStatus};
use serde::Serialize;
use zbus::Connection;

use crate::args::Format;
use crate::bus;
use crate::failure::Failure;
use crate::output::{self, Table};

/// An account as `doorctl accounts` shows it: its registration and its
/// media encryption.
#[derive(Debug, Serialize)]
struct Account {
    #[serde(flatten)]
    status: AccountStatus,
    media_encryption: String,
    warning: String,
}

pub async fn list(conn: &Connection, format: Format) -> Result<(), Failure> {
    let sip = bus::sip(conn).await?;
    let accounts = sip.accounts().await.map_err(sip::Error::from)?;
    let media = sip.media_encryption().await.map_err(sip::Error::from)?;
    let shown: Vec<Account> = accounts
        .into_iter()
        .map(|status| {
            let m = media.iter().find(|m| m.id == status.id);
            Account {
                media_encryption: m.map_or("off".into(), |m| m.encryption.clone()),
                warning: m.map_or(String::new(), |m| m.warning.clone()),
                status,
            }
        })
        .collect();
    output::show(&shown[..], format, |accounts: &[Account]| {
        let mut table = Table::new(&[
            "ACCOUNT", "STATE", "CODE", "REASON", "AOR", "MEDIA", "WARNING",
        ]);
        for a in accounts {
            let s = &a.status;
            table.row([
                s.id.to_string(),
                s.state.clone(),
                code(s.code),
                s.reason.clone(),
                s.aor.clone(),
                a.media_encryption.clone(),
                a.warning.clone(),
            ]);
        }
        table
    })
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
