//! `doorctl history`: the calls that ended, oldest first.

use doorphone_interfaces::sip::HistoryEntry;
use zbus::Connection;

use crate::account::code;
use crate::args::Format;
use crate::bus;
use crate::clock;
use crate::failure::Failure;
use crate::output::{self, Table};

pub async fn list(conn: &Connection, format: Format) -> Result<(), Failure> {
    let sip = bus::sip(conn).await?;
    let history = sip.history().await?;
    output::show(&history[..], format, table)
}

fn table(history: &[HistoryEntry]) -> Table {
    let mut table = Table::new(&[
        "DIRECTION",
        "REMOTE",
        "ACCOUNT",
        "START",
        "ANSWERED",
        "END",
        "END-REASON",
        "CODE",
    ]);
    for h in history {
        table.row([
            h.direction.clone(),
            h.remote.clone(),
            h.account.clone(),
            clock::local(h.start),
            clock::local(h.answered),
            clock::local(h.end),
            h.end_reason.clone(),
            code(h.code),
        ]);
    }
    table
}
