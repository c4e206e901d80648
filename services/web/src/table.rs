//! A list section of the document as a table of form rows: call buttons,
//! relays, GPIO inputs, and a section's object as a table of one row (the
//! actions' FTP and e-mail settings). Each column is a key of the list's
//! objects (dotted for a nested one: `no_answer.relays`); a row's field is
//! named `PREFIX.ROW.KEY`. What was typed is kept as typed, so a refused
//! form shows it again, and the config service's refusal is put beside the
//! field it names.

use doorphone_interfaces::config::document::PASSWORD_MASK;
use serde_json::{Map, Value};

use crate::form;

/// How a column is typed and sent.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The row's number (a call button's number), shown and sent, not typed.
    Index,
    Text,
    /// Text that, left empty, is left out (the field's absence means none).
    Optional,
    /// Shown as the mask when one is stored; the mask sent back keeps it.
    Password,
    /// A whole number with the form's range; empty leaves the default.
    Number(u32, u32),
    Bool,
    /// One of these; an empty choice leaves the default.
    Choice(&'static [&'static str]),
    /// One of these numbers (`486`), sent as a number.
    NumberChoice(&'static [&'static str]),
    /// Several values, separated by spaces or commas.
    List,
    /// Any of these, each a check box.
    Set(&'static [&'static str]),
}

pub struct Column {
    pub key: &'static str,
    pub label: &'static str,
    pub kind: Kind,
}

pub const fn column(key: &'static str, label: &'static str, kind: Kind) -> Column {
    Column { key, label, kind }
}

/// How the config service names a row in a refusal.
#[derive(Clone, Copy)]
pub enum Named {
    /// `SECTION[N]`: the Nth row that holds something.
    Position,
    /// `SECTION[N]`: row N (call buttons).
    Index,
    /// `SECTION[V]`: the row whose column `key` holds V (relays by id).
    Key(&'static str),
    /// `SECTION.KEY`: the section is one object, the table's one row.
    Object,
}

pub struct Cell {
    /// The form field's name.
    pub name: String,
    pub key: &'static str,
    pub kind: Kind,
    pub value: String,
    pub error: Option<String>,
}

impl Cell {
    pub fn input_type(&self) -> &'static str {
        match self.kind {
            Kind::Password => "password",
            Kind::Number(..) => "number",
            _ => "text",
        }
    }

    pub fn is_index(&self) -> bool {
        self.kind == Kind::Index
    }

    pub fn is_bool(&self) -> bool {
        self.kind == Kind::Bool
    }

    pub fn on(&self) -> bool {
        self.value == "true"
    }

    pub fn choices(&self) -> &'static [&'static str] {
        match self.kind {
            Kind::Choice(c) | Kind::NumberChoice(c) => c,
            _ => &[],
        }
    }

    pub fn set(&self) -> &'static [&'static str] {
        match self.kind {
            Kind::Set(s) => s,
            _ => &[],
        }
    }

    pub fn has(&self, item: &str) -> bool {
        self.value.split(' ').any(|v| v == item)
    }

    /// The form's range, for a number.
    pub fn min(&self) -> String {
        match self.kind {
            Kind::Number(min, _) => min.to_string(),
            _ => String::new(),
        }
    }

    pub fn max(&self) -> String {
        match self.kind {
            Kind::Number(_, max) => max.to_string(),
            _ => String::new(),
        }
    }

    /// The check box of `item` of a set.
    pub fn item_name(&self, item: &str) -> String {
        format!("{}.{item}", self.name)
    }
}

pub struct Row {
    /// From 1.
    pub index: usize,
    pub cells: Vec<Cell>,
    /// A refusal of the row as a whole.
    pub error: Option<String>,
}

impl Row {
    /// Nothing typed: the row is left out of the section.
    fn is_empty(&self) -> bool {
        self.cells.iter().all(|c| match c.kind {
            Kind::Index | Kind::Bool | Kind::Choice(_) | Kind::NumberChoice(_) => true,
            _ => c.value.is_empty(),
        })
    }
}

pub struct Table {
    /// The section's name, as refusals name it (`buttons`, `actions`).
    pub section: &'static str,
    /// The fields' names begin with it.
    pub prefix: &'static str,
    pub columns: &'static [Column],
    pub named: Named,
    pub rows: Vec<Row>,
    /// A refusal of the section as a whole.
    pub error: Option<String>,
}

fn at<'v>(value: &'v Value, key: &str) -> &'v Value {
    key.split('.').fold(value, |v, k| &v[k])
}

fn put(object: &mut Map<String, Value>, key: &str, value: Value) {
    match key.split_once('.') {
        Some((first, rest)) => {
            let inner = object
                .entry(first)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = inner {
                put(inner, rest, value);
            }
        }
        None => {
            object.insert(key.to_owned(), value);
        }
    }
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
}

/// A stored value as its field shows it.
fn shown(kind: Kind, value: &Value) -> String {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    match (kind, value) {
        (_, Value::Null) => String::new(),
        (Kind::Password, Value::String(s)) if !s.is_empty() => PASSWORD_MASK.to_owned(),
        (Kind::List | Kind::Set(_), Value::Array(items)) => {
            items.iter().map(text).collect::<Vec<_>>().join(" ")
        }
        (_, v) => text(v),
    }
}

impl Table {
    pub fn new(
        section: &'static str,
        prefix: &'static str,
        columns: &'static [Column],
        named: Named,
    ) -> Table {
        Table {
            section,
            prefix,
            columns,
            named,
            rows: Vec::new(),
            error: None,
        }
    }

    fn row(&self, index: usize, value: impl Fn(&Column) -> String) -> Row {
        Row {
            index,
            cells: self
                .columns
                .iter()
                .map(|c| Cell {
                    name: format!("{}.{index}.{}", self.prefix, c.key),
                    key: c.key,
                    kind: c.kind,
                    value: if c.kind == Kind::Index {
                        index.to_string()
                    } else {
                        value(c)
                    },
                    error: None,
                })
                .collect(),
            error: None,
        }
    }

    /// The stored items, each in its row (`place` says which, from 1; none
    /// puts them in order), and empty rows up to `rows`.
    pub fn stored(
        mut self,
        items: &[Value],
        rows: usize,
        place: impl Fn(&Value) -> Option<usize>,
    ) -> Table {
        let mut slots: Vec<Option<&Value>> = vec![None; rows.max(items.len())];
        let mut next = 0;
        for item in items {
            let slot = match place(item) {
                Some(n) if (1..=slots.len()).contains(&n) => n - 1,
                _ => {
                    while next < slots.len() && slots[next].is_some() {
                        next += 1;
                    }
                    next
                }
            };
            if slot < slots.len() {
                slots[slot] = Some(item);
            }
        }
        self.rows = slots
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Some(item) => self.row(i + 1, |c| shown(c.kind, at(item, c.key))),
                None => self.row(i + 1, |_| String::new()),
            })
            .collect();
        self
    }

    /// The rows as the form sent them.
    pub fn typed(mut self, pairs: &[(String, String)], rows: usize) -> Table {
        self.rows = (1..=rows)
            .map(|i| {
                let name = |c: &Column| format!("{}.{i}.{}", self.prefix, c.key);
                self.row(i, |c| match c.kind {
                    Kind::Bool => {
                        if form::one(pairs, &name(c)).is_some() {
                            "true".to_owned()
                        } else {
                            "false".to_owned()
                        }
                    }
                    Kind::Set(items) => items
                        .iter()
                        .filter(|item| form::one(pairs, &format!("{}.{item}", name(c))).is_some())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => form::one(pairs, &name(c))
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                })
            })
            .collect();
        self
    }

    /// The rows that hold something, in order, with their place.
    fn filled(&self) -> impl Iterator<Item = (usize, &Row)> {
        self.rows.iter().enumerate().filter(|(_, r)| !r.is_empty())
    }

    /// A row as the section's object.
    fn object(row: &Row) -> Value {
        let mut object = Map::new();
        Table::write(row, &mut object);
        Value::Object(object)
    }

    /// Writes the row's fields into `object`, leaving its other keys.
    fn write(row: &Row, object: &mut Map<String, Value>) {
        for cell in &row.cells {
            let value = match cell.kind {
                Kind::Index => Value::from(row.index as u64),
                Kind::Bool => Value::Bool(cell.on()),
                Kind::Number(..) | Kind::NumberChoice(_) if cell.value.is_empty() => continue,
                Kind::Number(..) | Kind::NumberChoice(_) => form::number(&cell.value),
                Kind::Choice(_) | Kind::Optional if cell.value.is_empty() => continue,
                Kind::List | Kind::Set(_) => words(&cell.value)
                    .map(|w| Value::String(w.to_owned()))
                    .collect(),
                Kind::Text | Kind::Optional | Kind::Password | Kind::Choice(_) => {
                    Value::String(cell.value.clone())
                }
            };
            put(object, cell.key, value);
        }
    }

    /// Writes row N's fields into the Nth of `items`, leaving their other
    /// keys as they are (a page that shows a part of each item).
    pub fn merge_into(&self, items: &mut [Value]) {
        for (row, item) in self.rows.iter().zip(items.iter_mut()) {
            if let Value::Object(object) = item {
                Table::write(row, object);
            }
        }
    }

    /// The list the rows that hold something make, in order.
    pub fn to_list(&self) -> Value {
        self.filled().map(|(_, r)| Table::object(r)).collect()
    }

    /// The one row as the section's object.
    pub fn to_object(&self) -> Value {
        self.rows.first().map_or(Value::Null, Table::object)
    }

    /// Puts a refusal beside the field it names, if it names one of this
    /// table's: `SECTION[N].KEY` (`KEY[M]` for an item of a list) or,
    /// for [`Named::Object`], `SECTION.KEY`. Gives the message back when
    /// the refusal is not this table's.
    pub fn refused(&mut self, field: Option<&str>, message: String) -> Option<String> {
        let Some(rest) = field.and_then(|f| f.strip_prefix(self.section)) else {
            return Some(message);
        };
        let (row, key) = match self.named {
            Named::Object => match rest.strip_prefix('.') {
                Some(key) => (Some(0), Some(key)),
                None if rest.is_empty() => (None, None),
                None => return Some(message),
            },
            named => {
                if rest.is_empty() {
                    (None, None)
                } else {
                    let Some((selector, key)) =
                        rest.strip_prefix('[').and_then(|r| r.split_once(']'))
                    else {
                        return Some(message);
                    };
                    let row = self.locate(named, selector);
                    (row, key.strip_prefix('.'))
                }
            }
        };
        let Some(row) = row else {
            self.error = Some(message);
            return None;
        };
        let row = &mut self.rows[row];
        let cell = key.and_then(|key| {
            // `numbers[2]`: the list's field; `tls` of `email.tls` and so on.
            let key = key.split('[').next().unwrap_or(key);
            row.cells.iter_mut().find(|c| c.key == key)
        });
        match cell {
            Some(cell) => cell.error = Some(message),
            None => row.error = Some(message),
        }
        None
    }

    fn locate(&self, named: Named, selector: &str) -> Option<usize> {
        match named {
            Named::Position => {
                let n = selector.parse::<usize>().ok()?.checked_sub(1)?;
                self.filled().nth(n).map(|(i, _)| i)
            }
            Named::Index => {
                let n = selector.parse::<usize>().ok()?;
                self.rows.iter().position(|r| r.index == n)
            }
            Named::Key(key) => self.filled().find_map(|(i, r)| {
                r.cells
                    .iter()
                    .any(|c| c.key == key && c.value == selector)
                    .then_some(i)
            }),
            Named::Object => Some(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const COLUMNS: &[Column] = &[
        column("button", "Button", Kind::Index),
        column("numbers", "Numbers", Kind::List),
        column("timeout", "Time-out", Kind::Number(5, 120)),
        column(
            "when_refused",
            "When refused",
            Kind::Choice(&["", "a", "b"]),
        ),
        column("no_answer.relays", "Relays", Kind::List),
        column("no_answer.actions", "Actions", Kind::Set(&["ftp", "http"])),
    ];

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn typed_rows_make_the_list_with_nested_keys_and_defaults_left_out() {
        let form = pairs(&[
            ("b.2.numbers", "200, 201"),
            ("b.2.no_answer.relays", "A"),
            ("b.2.no_answer.actions.http", "on"),
            ("b.3.timeout", ""),
        ]);
        let table = Table::new("buttons", "b", COLUMNS, Named::Index).typed(&form, 4);
        assert_eq!(
            table.to_list(),
            json!([{
                "button": 2,
                "numbers": ["200", "201"],
                "no_answer": {"relays": ["A"], "actions": ["http"]},
            }])
        );
    }

    #[test]
    fn stored_items_go_to_their_rows_and_show_as_typed() {
        let items = [json!({"button": 3, "numbers": ["7"], "timeout": 30,
            "no_answer": {"relays": [], "actions": ["ftp"]}})];
        let table = Table::new("buttons", "b", COLUMNS, Named::Index)
            .stored(&items, 16, |i| i["button"].as_u64().map(|n| n as usize));
        assert_eq!(table.rows.len(), 16);
        let row = &table.rows[2];
        assert_eq!(row.cells[0].value, "3");
        assert_eq!(row.cells[1].value, "7");
        assert_eq!(row.cells[2].value, "30");
        assert!(row.cells[5].has("ftp") && !row.cells[5].has("http"));
        assert!(table.rows[0].is_empty());
    }

    #[test]
    fn a_refusal_goes_beside_the_field_it_names() {
        let form = pairs(&[("b.1.numbers", "x"), ("b.4.numbers", "200 bad")]);
        let mut table = Table::new("buttons", "b", COLUMNS, Named::Index).typed(&form, 4);
        assert_eq!(
            table.refused(Some("buttons[4].numbers[2]"), "bad".into()),
            None
        );
        assert_eq!(table.rows[3].cells[1].error.as_deref(), Some("bad"));
        assert_eq!(table.refused(Some("buttons"), "whole".into()), None);
        assert_eq!(table.error.as_deref(), Some("whole"));
        assert_eq!(
            table.refused(Some("relays[A].hold"), "other".into()),
            Some("other".into())
        );
        assert_eq!(table.refused(None, "none".into()), Some("none".into()));
    }

    #[test]
    fn by_position_counts_only_the_filled_rows_and_by_key_finds_the_id() {
        const INPUTS: &[Column] = &[column("gpio", "GPIO", Kind::Number(0, 4095))];
        let form = pairs(&[("i.2.gpio", "5"), ("i.5.gpio", "6")]);
        let mut table = Table::new("inputs", "i", INPUTS, Named::Position).typed(&form, 6);
        table.refused(Some("inputs[2].gpio"), "second".into());
        assert_eq!(table.rows[4].cells[0].error.as_deref(), Some("second"));
        table.refused(Some("inputs[1]"), "row".into());
        assert_eq!(table.rows[1].error.as_deref(), Some("row"));

        const RELAYS: &[Column] = &[column("id", "Id", Kind::Text)];
        let form = pairs(&[("r.1.id", "A"), ("r.2.id", "B")]);
        let mut table = Table::new("relays", "r", RELAYS, Named::Key("id")).typed(&form, 3);
        table.refused(Some("relays[B].id"), "b".into());
        assert_eq!(table.rows[1].cells[0].error.as_deref(), Some("b"));
    }

    #[test]
    fn merged_rows_change_only_their_columns() {
        const DND: &[Column] = &[
            column("id", "Account", Kind::Index),
            column("dnd.enabled", "DND", Kind::Bool),
            column("dnd.on_code", "On code", Kind::Text),
        ];
        let form = pairs(&[("a.2.dnd.enabled", "on"), ("a.2.dnd.on_code", "*78")]);
        let table = Table::new("accounts", "a", DND, Named::Index).typed(&form, 2);
        let mut items = vec![
            json!({"id": 1, "user": "door", "dnd": {"enabled": true, "on_code": "78", "return_code": 486}}),
            json!({"id": 2, "user": "lobby", "dnd": {"enabled": false, "on_code": "78"}}),
        ];
        table.merge_into(&mut items);
        assert_eq!(
            items,
            vec![
                json!({"id": 1, "user": "door", "dnd": {"enabled": false, "on_code": "", "return_code": 486}}),
                json!({"id": 2, "user": "lobby", "dnd": {"enabled": true, "on_code": "*78"}}),
            ]
        );
    }

    #[test]
    fn an_object_section_is_one_row_and_keeps_the_mask() {
        const ACTIONS: &[Column] = &[
            column("ftp.url", "URL", Kind::Text),
            column("ftp.password", "Password", Kind::Password),
        ];
        let stored = json!({"ftp": {"url": "ftp://h/", "password": "secret"}});
        let table = Table::new("actions", "a", ACTIONS, Named::Object).stored(
            std::slice::from_ref(&stored),
            1,
            |_| None,
        );
        assert_eq!(table.rows[0].cells[1].value, PASSWORD_MASK);
        let mut table = Table::new("actions", "a", ACTIONS, Named::Object).typed(
            &pairs(&[("a.1.ftp.url", "x"), ("a.1.ftp.password", "********")]),
            1,
        );
        assert_eq!(
            table.to_object(),
            json!({"ftp": {"url": "x", "password": "********"}})
        );
        table.refused(Some("actions.ftp.url"), "bad url".into());
        assert_eq!(table.rows[0].cells[0].error.as_deref(), Some("bad url"));
    }
}
