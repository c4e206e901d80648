//! `doorctl config`: the configuration document, whole or by dotted path.

use std::io;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use doorphone_interfaces::config::Config1Proxy;
use doorphone_interfaces::json;
use serde_json::Value;

use crate::failure::Failure;
use crate::output;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the whole configuration as one JSON document; passwords are masked.
    Export,
    /// Replace the whole configuration with a JSON document, all or nothing.
    ///
    /// A masked password (`********`, as export prints it) keeps the stored one.
    Import {
        /// The document to import; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print one value as JSON.
    Get {
        /// A dotted path into the document: `calls.max_call_time`,
        /// `accounts.1.dnd.return_code`, `relays.A.hold`. Lists of objects are
        /// indexed by id (buttons by number), other lists by position from 1.
        key: String,
    },
    /// Change one value.
    Set {
        /// A dotted path into the document, as for `get`.
        key: String,
        /// The new value as JSON (`300`, `true`, `["dtmf","api"]`); anything that is
        /// not JSON is taken as a string, and so is a number for a field that holds
        /// text (`config set accounts.1.dnd.on_code 78`).
        #[arg(allow_hyphen_values = true, value_parser = parse_value)]
        value: Value,
    },
}

pub async fn run(config: &Config1Proxy<'_>, command: Command) -> Result<(), Failure> {
    match command {
        Command::Export => output::print(config.export().await?),
        Command::Import { file } => Ok(config.import(&read(&file)?).await?),
        Command::Get { key } => {
            let value = config.get(&key).await?;
            let value =
                json::from_variant(&value).map_err(|e| Failure::Message(format!("{key}: {e}")))?;
            output::print_json(&value)
        }
        Command::Set { key, value } => {
            let value = as_stored_type(config, &key, value).await;
            let value =
                json::to_variant(&value).map_err(|e| Failure::Message(format!("{key}: {e}")))?;
            Ok(config.set(&key, &value).await?)
        }
    }
}

/// `78` for a field that holds a string (a DTMF code, a SIP user) means the
/// string `"78"`: a number or boolean is sent as text where the stored value is text.
async fn as_stored_type(config: &Config1Proxy<'_>, key: &str, value: Value) -> Value {
    if !(value.is_number() || value.is_boolean()) {
        return value;
    }
    let stored_is_text = match config.get(key).await {
        Ok(current) => json::from_variant(&current).is_ok_and(|v| v.is_string()),
        Err(_) => false,
    };
    if stored_is_text {
        Value::String(value.to_string())
    } else {
        value
    }
}

/// A value as the command line gives it: JSON when it parses, else a string.
fn parse_value(text: &str) -> Result<Value, String> {
    let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    json::to_variant(&value)?;
    Ok(value)
}

/// The text of `file`, or of standard input for `-`.
fn read(file: &Path) -> Result<String, Failure> {
    let text = if file == Path::new("-") {
        io::read_to_string(io::stdin())
    } else {
        std::fs::read_to_string(file)
    };
    text.map_err(|e| Failure::Message(format!("cannot read {}: {e}", file.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_value_is_json_when_it_parses_and_a_string_otherwise() {
        assert_eq!(parse_value("300"), Ok(json!(300)));
        assert_eq!(parse_value("[\"dtmf\"]"), Ok(json!(["dtmf"])));
        assert_eq!(parse_value("\"78\""), Ok(json!("78")));
        assert_eq!(parse_value("Front door"), Ok(json!("Front door")));
        assert_eq!(parse_value("-5"), Ok(json!(-5)));
    }

    #[test]
    fn null_is_no_value() {
        assert!(parse_value("null").is_err());
    }
}
