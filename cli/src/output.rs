//! What commands print: tables for people, JSON for scripts.

use std::fmt::{self, Display};
use std::io::{self, Write};

use serde::Serialize;

use crate::args::Format;
use crate::failure::Failure;

/// Writes `text` and a newline to standard output.
pub fn print(text: impl Display) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(Failure::Output)
}

/// Writes `value` as indented JSON.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::Message(format!("cannot write JSON: {e}")))?;
    print(text)
}

/// Writes `value` as JSON when asked to, else as the text `text` makes of it.
pub fn show<T: Serialize + ?Sized, D: Display>(
    value: &T,
    format: Format,
    text: impl FnOnce(&T) -> D,
) -> Result<(), Failure> {
    if format.json {
        print_json(value)
    } else {
        print(text(value))
    }
}

/// A table for people: a header, then one line per row, each column padded to its
/// widest cell. An empty cell shows as `-`, so every line has every column.
#[derive(Debug)]
pub struct Table {
    lines: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            lines: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        let cells = cells
            .into_iter()
            .map(|c| if c.is_empty() { "-".to_owned() } else { c })
            .collect();
        self.lines.push(cells);
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths = Vec::new();
        for line in &self.lines {
            widths.resize(widths.len().max(line.len()), 0);
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }
}

impl Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths = self.widths();
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let last = line.len().saturating_sub(1);
            for (j, (cell, width)) in line.iter().zip(&widths).enumerate() {
                if j == last {
                    f.write_str(cell)?;
                } else {
                    write!(f, "{cell:<width$}  ")?;
                }
            }
        }
        Ok(())
    }
}

/// A list in one table cell.
pub fn joined(items: &[String]) -> String {
    items.join(",")
}

/// A flag in one table cell.
pub fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_empty_cells_show_a_dash() {
        let mut table = Table::new(&["ID", "NAME", "NUMBER"]);
        table.row(["1".to_owned(), "Concierge".to_owned(), "200".to_owned()]);
        table.row(["12".to_owned(), String::new(), "sip:201@pbx".to_owned()]);
        assert_eq!(
            table.to_string(),
            "ID  NAME       NUMBER\n\
             1   Concierge  200\n\
             12  -          sip:201@pbx"
        );
    }

    #[test]
    fn a_table_without_rows_is_its_header() {
        assert_eq!(Table::new(&["ID", "NAME"]).to_string(), "ID  NAME");
    }
}
