//! `doorctl page`: the multicast pager's groups, and pages sent from here.

use std::net::SocketAddrV4;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use doorphone_interfaces::pager::{self, Listening, Page};
use serde::Serialize;
use zbus::Connection;

use crate::args::Format;
use crate::bus;
use crate::failure::Failure;
use crate::output::{self, Table};
use crate::page_sender;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the groups the pager listens to, in priority order, and the page
    /// playing.
    Status(Format),
    /// Send a page: PCMU RTP to a multicast group (or any address), a tone or a
    /// WAV file, ended with an RTCP BYE.
    Send(Send),
}

#[derive(Debug, Args)]
pub struct Send {
    /// Where to send: a multicast group and port such as 239.1.1.1:5000 (RTCP
    /// goes to the next port).
    #[arg(value_name = "ADDRESS:PORT")]
    pub target: SocketAddrV4,
    /// Send a sine tone of this frequency (the default: 1000 Hz).
    #[arg(long, value_name = "HZ", conflicts_with = "file")]
    pub tone: Option<f64>,
    /// Send this WAV file (16-bit PCM, any rate, mono or stereo).
    #[arg(long, value_name = "WAV")]
    pub file: Option<PathBuf>,
    /// How long to send (default: the file's length, or 10 seconds of tone).
    #[arg(long, value_name = "N")]
    pub seconds: Option<f64>,
    /// The network interface to send through (e.g. `eth0`, `lo`); default: the
    /// one the kernel routes the group through.
    #[arg(long)]
    pub iface: Option<String>,
}

#[derive(Debug, Serialize)]
struct PageStatus {
    listening: Vec<Listening>,
    /// `null` when no page plays.
    page: Option<Page>,
}

pub async fn status(conn: &Connection, format: Format) -> Result<(), Failure> {
    let proxy = bus::pager(conn).await?;
    let listening = proxy.listening().await.map_err(pager::Error::from)?;
    let page = proxy.page().await.map_err(pager::Error::from)?;
    let status = PageStatus {
        listening,
        page: (page.port != 0).then_some(page),
    };
    output::show(&status, format, table)
}

pub async fn send(send: Send) -> Result<(), Failure> {
    page_sender::send(send).await
}

fn table(status: &PageStatus) -> Table {
    let mut table = Table::new(&["PRIORITY", "ADDRESS", "PORT", "LABEL", "STATE"]);
    for l in &status.listening {
        table.row([
            l.priority.to_string(),
            l.address.clone(),
            l.port.to_string(),
            l.label.clone(),
            l.state.clone(),
        ]);
    }
    table
}
