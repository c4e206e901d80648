//! Arguments shared by several commands.

use clap::Args;

/// How a listing is printed.
#[derive(Debug, Clone, Copy, Args)]
pub struct Format {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The account that places a call.
#[derive(Debug, Args)]
pub struct Account {
    /// The account that places the call: `auto` (account 1 when registered, else
    /// account 2, else a direct IP call), `1` or `2`.
    #[arg(long, default_value = "auto", value_parser = ["auto", "1", "2"])]
    pub account: String,
}
