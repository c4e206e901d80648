//! The configuration database: SQLite in WAL mode with `synchronous=FULL`, so a
//! change is on disk before it is acknowledged. The schema version is
//! `PRAGMA user_version`; migrations only go forward, each in its own transaction.
//!
//! List sections (accounts, contacts, buttons, dial plan, multicast groups, relays)
//! are tables; the other sections are one JSON row each in `settings`. So is
//! `inputs`, a list added later: a database without its row reads as no inputs,
//! and no migration was needed for it.

use std::path::Path;

use doorphone_interfaces::config::document::{
    Account, AccountChoice, Button, Contact, DialRule, Dnd, Document, Listen, Multicast, NoAnswer,
    Relay,
};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Forward migrations; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE settings (section TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY CHECK (id IN (1, 2)),
        enabled INTEGER NOT NULL,
        label TEXT NOT NULL,
        display_name TEXT NOT NULL,
        user TEXT NOT NULL,
        auth_user TEXT NOT NULL,
        password TEXT NOT NULL,
        server TEXT NOT NULL,
        transport TEXT NOT NULL,
        register_expires INTEGER NOT NULL,
        dtmf_mode TEXT NOT NULL,
        prevent_sip_hacking INTEGER NOT NULL,
        dnd_enabled INTEGER NOT NULL,
        dnd_return_code INTEGER NOT NULL,
        dnd_on_code TEXT NOT NULL,
        dnd_off_code TEXT NOT NULL
    );
    CREATE TABLE contacts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        number TEXT NOT NULL,
        account TEXT NOT NULL,
        whitelist INTEGER NOT NULL
    );
    CREATE TABLE buttons (
        button INTEGER PRIMARY KEY CHECK (button BETWEEN 1 AND 16),
        call_type TEXT NOT NULL,
        group_number TEXT NOT NULL,
        when_refused TEXT NOT NULL,
        timeout INTEGER NOT NULL,
        no_answer_relays TEXT NOT NULL,
        no_answer_actions TEXT NOT NULL,
        no_answer_http_url TEXT NOT NULL
    );
    CREATE TABLE button_numbers (
        button INTEGER NOT NULL REFERENCES buttons (button) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        number TEXT NOT NULL,
        PRIMARY KEY (button, position)
    );
    CREATE TABLE dial_plan (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL UNIQUE,
        account TEXT NOT NULL
    );
    CREATE TABLE dial_plan_targets (
        rule INTEGER NOT NULL REFERENCES dial_plan (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        target TEXT NOT NULL,
        PRIMARY KEY (rule, position)
    );
    CREATE TABLE multicast_listen (
        position INTEGER PRIMARY KEY,
        address TEXT NOT NULL,
        port INTEGER NOT NULL UNIQUE,
        label TEXT NOT NULL
    );
    CREATE TABLE relays (
        id TEXT PRIMARY KEY,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        gpio INTEGER NOT NULL,
        active_low INTEGER NOT NULL,
        trigger_delay INTEGER NOT NULL,
        hold INTEGER NOT NULL,
        dtmf_code TEXT NOT NULL
    );
    ",
    // 2: a User-Agent per account; whitelist look-ups by number.
    "
    ALTER TABLE accounts ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
    CREATE INDEX contacts_by_number ON contacts (number);
    ",
    // 3: who else speaks for an account's server, and SRTP per account.
    "
    ALTER TABLE accounts ADD COLUMN trusted_proxies TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE accounts ADD COLUMN media_encryption TEXT NOT NULL DEFAULT 'off';
    ",
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the database {path} has schema version {found}, newer than this doorphone-config \
         understands ({supported}); refusing to open it rather than lose data: install a newer \
         doorphone-config or restore a backup"
    )]
    TooNew {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database holds a value that cannot be read: {0}")]
    Corrupt(String),
}

pub struct Store {
    /// Only ever used through `&mut self` (`get_mut`, no locking); the mutex makes
    /// the store `Sync` for the object server.
    conn: std::sync::Mutex<Connection>,
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("configuration values serialise")
}

fn parse<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A value stored as its JSON string form (`"udp"`, `"group"`), read back.
fn parse_word<T: DeserializeOwned>(what: &str, word: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(word.to_owned()))
        .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn word<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value).expect("configuration values serialise") {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

impl Store {
    fn conn(&mut self) -> Result<&mut Connection, StoreError> {
        self.conn
            .get_mut()
            .map_err(|_| StoreError::Corrupt("the database connection was poisoned".into()))
    }

    /// Opens (creating it and its folder if needed) and migrates the database. A new
    /// database gets the default configuration.
    pub fn open(path: &Path) -> Result<(Store, Document, u64), StoreError> {
        // The database holds the SIP passwords: this service's alone,
        // whatever the umask it was started with.
        doorphone_daemon::files::private_file(path)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", path.display())))?;
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.display().to_string(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        for (from, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", from as u32 + 1)?;
            tx.commit()?;
            tracing::info!(version = from + 1, "database schema migrated");
        }
        let mut store = Store {
            conn: std::sync::Mutex::new(conn),
        };
        if found == 0 {
            let mut defaults = Document::default();
            defaults.normalize();
            let tx = store.conn()?.transaction()?;
            for section in doorphone_interfaces::config::document::SECTIONS {
                write_section(&tx, section, &defaults)?;
            }
            tx.execute("INSERT INTO meta (key, value) VALUES ('revision', 1)", [])?;
            tx.commit()?;
            tracing::info!(path = %path.display(), "new database with the default configuration");
        }
        let (doc, revision) = store.load()?;
        Ok((store, doc, revision))
    }

    /// Reads the whole configuration and its revision.
    pub fn load(&mut self) -> Result<(Document, u64), StoreError> {
        let tx = self.conn()?.transaction()?;
        let revision: i64 = tx
            .query_row("SELECT value FROM meta WHERE key = 'revision'", [], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(0);
        let mut doc = Document::default();
        let setting = |section: &str| -> Result<Option<String>, StoreError> {
            Ok(tx
                .query_row(
                    "SELECT value FROM settings WHERE section = ?1",
                    [section],
                    |r| r.get(0),
                )
                .optional()?)
        };
        if let Some(v) = setting("device")? {
            doc.device = parse("settings.device", &v)?;
        }
        if let Some(v) = setting("calls")? {
            doc.calls = parse("settings.calls", &v)?;
        }
        if let Some(v) = setting("multicast")? {
            doc.multicast = parse::<Multicast>("settings.multicast", &v)?;
        }
        if let Some(v) = setting("dtmf_authority")? {
            doc.dtmf_authority = parse("settings.dtmf_authority", &v)?;
        }
        if let Some(v) = setting("actions")? {
            doc.actions = parse("settings.actions", &v)?;
        }
        if let Some(v) = setting("media")? {
            doc.media = parse("settings.media", &v)?;
        }
        if let Some(v) = setting("inputs")? {
            doc.inputs = parse("settings.inputs", &v)?;
        }
        if let Some(v) = setting("web")? {
            doc.web = parse("settings.web", &v)?;
        }
        doc.accounts = read_accounts(&tx)?;
        doc.contacts = read_contacts(&tx)?;
        doc.buttons = read_buttons(&tx)?;
        doc.dial_plan = read_dial_plan(&tx)?;
        doc.multicast.listen = read_listen(&tx)?;
        doc.relays = read_relays(&tx)?;
        tx.finish()?;
        doc.normalize();
        Ok((doc, revision as u64))
    }

    /// Writes the named sections of `doc` and bumps the revision, in one durable
    /// transaction. Returns the new revision.
    pub fn commit(&mut self, doc: &Document, sections: &[&str]) -> Result<u64, StoreError> {
        let tx = self.conn()?.transaction()?;
        for section in sections {
            write_section(&tx, section, doc)?;
        }
        let revision: i64 = tx.query_row(
            "UPDATE meta SET value = value + 1 WHERE key = 'revision' RETURNING value",
            [],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(revision as u64)
    }
}

fn write_setting(tx: &Transaction, section: &str, value: String) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO settings (section, value) VALUES (?1, ?2)
         ON CONFLICT (section) DO UPDATE SET value = excluded.value",
        params![section, value],
    )?;
    Ok(())
}

fn write_section(tx: &Transaction, section: &str, doc: &Document) -> Result<(), StoreError> {
    match section {
        "device" => write_setting(tx, section, json(&doc.device)),
        "calls" => write_setting(tx, section, json(&doc.calls)),
        "dtmf_authority" => write_setting(tx, section, json(&doc.dtmf_authority)),
        "actions" => write_setting(tx, section, json(&doc.actions)),
        "media" => write_setting(tx, section, json(&doc.media)),
        "inputs" => write_setting(tx, section, json(&doc.inputs)),
        "web" => write_setting(tx, section, json(&doc.web)),
        "multicast" => {
            let scalars = Multicast {
                listen: Vec::new(),
                ..doc.multicast.clone()
            };
            write_setting(tx, section, json(&scalars))?;
            tx.execute("DELETE FROM multicast_listen", [])?;
            let mut stmt = tx.prepare_cached(
                "INSERT INTO multicast_listen (position, address, port, label) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (i, l) in doc.multicast.listen.iter().enumerate() {
                stmt.execute(params![i as i64 + 1, l.address, l.port, l.label])?;
            }
            Ok(())
        }
        "accounts" => {
            tx.execute("DELETE FROM accounts", [])?;
            let mut stmt = tx.prepare_cached(
                "INSERT INTO accounts (id, enabled, label, display_name, user, auth_user, password,
                   server, transport, register_expires, dtmf_mode, prevent_sip_hacking,
                   dnd_enabled, dnd_return_code, dnd_on_code, dnd_off_code, user_agent,
                   trusted_proxies, media_encryption)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                   ?18, ?19)",
            )?;
            for a in &doc.accounts {
                stmt.execute(params![
                    a.id,
                    a.enabled,
                    a.label,
                    a.display_name,
                    a.user,
                    a.auth_user,
                    a.password,
                    a.server,
                    word(&a.transport),
                    a.register_expires,
                    word(&a.dtmf_mode),
                    a.prevent_sip_hacking,
                    a.dnd.enabled,
                    a.dnd.return_code,
                    a.dnd.on_code,
                    a.dnd.off_code,
                    a.user_agent,
                    json(&a.trusted_proxies),
                    word(&a.media_encryption),
                ])?;
            }
            Ok(())
        }
        "contacts" => {
            tx.execute("DELETE FROM contacts", [])?;
            let mut stmt = tx.prepare_cached(
                "INSERT INTO contacts (id, name, number, account, whitelist) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for c in &doc.contacts {
                stmt.execute(params![
                    c.id,
                    c.name,
                    c.number,
                    c.account.to_string(),
                    c.whitelist
                ])?;
            }
            Ok(())
        }
        "buttons" => {
            tx.execute("DELETE FROM buttons", [])?;
            let mut button = tx.prepare_cached(
                "INSERT INTO buttons (button, call_type, group_number, when_refused, timeout,
                   no_answer_relays, no_answer_actions, no_answer_http_url)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut number = tx.prepare_cached(
                "INSERT INTO button_numbers (button, position, number) VALUES (?1, ?2, ?3)",
            )?;
            for b in &doc.buttons {
                button.execute(params![
                    b.button,
                    word(&b.call_type),
                    b.group_number,
                    b.when_refused.as_ref().map(word).unwrap_or_default(),
                    b.timeout,
                    json(&b.no_answer.relays),
                    json(&b.no_answer.actions),
                    b.no_answer.http_url,
                ])?;
                for (i, n) in b.numbers.iter().enumerate() {
                    number.execute(params![b.button, i as i64 + 1, n])?;
                }
            }
            Ok(())
        }
        "dial_plan" => {
            tx.execute("DELETE FROM dial_plan", [])?;
            let mut rule = tx.prepare_cached(
                "INSERT INTO dial_plan (id, name, prefix, account) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut target = tx.prepare_cached(
                "INSERT INTO dial_plan_targets (rule, position, target) VALUES (?1, ?2, ?3)",
            )?;
            for r in &doc.dial_plan {
                rule.execute(params![r.id, r.name, r.prefix, r.account.to_string()])?;
                for (i, t) in r.replace.iter().enumerate() {
                    target.execute(params![r.id, i as i64 + 1, t])?;
                }
            }
            Ok(())
        }
        "relays" => {
            tx.execute("DELETE FROM relays", [])?;
            let mut stmt = tx.prepare_cached(
                "INSERT INTO relays (id, position, name, gpio, active_low, trigger_delay, hold, dtmf_code)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (i, r) in doc.relays.iter().enumerate() {
                stmt.execute(params![
                    r.id,
                    i as i64 + 1,
                    r.name,
                    r.gpio,
                    r.active_low,
                    r.trigger_delay,
                    r.hold,
                    r.dtmf_code
                ])?;
            }
            Ok(())
        }
        other => Err(StoreError::Corrupt(format!("unknown section {other}"))),
    }
}

fn account_choice(what: &str, s: &str) -> Result<AccountChoice, StoreError> {
    s.parse()
        .map_err(|e: String| StoreError::Corrupt(format!("{what}: {e}")))
}

fn read_accounts(tx: &Transaction) -> Result<Vec<Account>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT id, enabled, label, display_name, user, auth_user, password, server, transport,
                register_expires, dtmf_mode, prevent_sip_hacking, dnd_enabled, dnd_return_code,
                dnd_on_code, dnd_off_code, user_agent, trusted_proxies, media_encryption
         FROM accounts ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            Account {
                id: r.get(0)?,
                enabled: r.get(1)?,
                label: r.get(2)?,
                display_name: r.get(3)?,
                user: r.get(4)?,
                auth_user: r.get(5)?,
                password: r.get(6)?,
                server: r.get(7)?,
                register_expires: r.get(9)?,
                prevent_sip_hacking: r.get(11)?,
                dnd: Dnd {
                    enabled: r.get(12)?,
                    return_code: r.get(13)?,
                    on_code: r.get(14)?,
                    off_code: r.get(15)?,
                },
                user_agent: r.get(16)?,
                ..Account::default()
            },
            r.get::<_, String>(8)?,
            r.get::<_, String>(10)?,
            r.get::<_, String>(17)?,
            r.get::<_, String>(18)?,
        ))
    })?;
    let mut accounts = Vec::new();
    for row in rows {
        let (mut account, transport, dtmf_mode, proxies, encryption) = row?;
        account.transport = parse_word("accounts.transport", &transport)?;
        account.dtmf_mode = parse_word("accounts.dtmf_mode", &dtmf_mode)?;
        account.trusted_proxies = parse("accounts.trusted_proxies", &proxies)?;
        account.media_encryption = parse_word("accounts.media_encryption", &encryption)?;
        accounts.push(account);
    }
    Ok(accounts)
}

fn read_contacts(tx: &Transaction) -> Result<Vec<Contact>, StoreError> {
    let mut stmt =
        tx.prepare("SELECT id, name, number, account, whitelist FROM contacts ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            Contact {
                id: r.get(0)?,
                name: r.get(1)?,
                number: r.get(2)?,
                whitelist: r.get(4)?,
                ..Contact::default()
            },
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut contacts = Vec::new();
    for row in rows {
        let (mut contact, account) = row?;
        contact.account = account_choice("contacts.account", &account)?;
        contacts.push(contact);
    }
    Ok(contacts)
}

fn read_buttons(tx: &Transaction) -> Result<Vec<Button>, StoreError> {
    let mut numbers =
        tx.prepare("SELECT number FROM button_numbers WHERE button = ?1 ORDER BY position")?;
    let mut stmt = tx.prepare(
        "SELECT button, call_type, group_number, when_refused, timeout, no_answer_relays,
                no_answer_actions, no_answer_http_url
         FROM buttons ORDER BY button",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, u32>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, String>(7)?,
        ))
    })?;
    let mut buttons = Vec::new();
    for row in rows {
        let (button, call_type, group_number, when_refused, timeout, relays, actions, http_url) =
            row?;
        let nums = numbers
            .query_map([button], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        buttons.push(Button {
            button,
            call_type: parse_word("buttons.call_type", &call_type)?,
            numbers: nums,
            group_number,
            when_refused: if when_refused.is_empty() {
                None
            } else {
                Some(parse_word("buttons.when_refused", &when_refused)?)
            },
            timeout,
            no_answer: NoAnswer {
                relays: parse("buttons.no_answer_relays", &relays)?,
                actions: parse("buttons.no_answer_actions", &actions)?,
                http_url,
            },
        });
    }
    Ok(buttons)
}

fn read_dial_plan(tx: &Transaction) -> Result<Vec<DialRule>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT d.id, d.name, d.prefix, d.account, t.target
         FROM dial_plan d LEFT JOIN dial_plan_targets t ON t.rule = d.id
         ORDER BY d.id, t.position",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?,
        ))
    })?;
    let mut rules: Vec<DialRule> = Vec::new();
    for row in rows {
        let (id, name, prefix, account, target) = row?;
        if rules.last().is_none_or(|r| r.id != id) {
            rules.push(DialRule {
                id,
                name,
                prefix,
                account: account_choice("dial_plan.account", &account)?,
                replace: Vec::new(),
            });
        }
        if let (Some(rule), Some(target)) = (rules.last_mut(), target) {
            rule.replace.push(target);
        }
    }
    Ok(rules)
}

fn read_listen(tx: &Transaction) -> Result<Vec<Listen>, StoreError> {
    let mut stmt =
        tx.prepare("SELECT address, port, label FROM multicast_listen ORDER BY position")?;
    let rows = stmt.query_map([], |r| {
        Ok(Listen {
            address: r.get(0)?,
            port: r.get(1)?,
            label: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn read_relays(tx: &Transaction) -> Result<Vec<Relay>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT id, name, gpio, active_low, trigger_delay, hold, dtmf_code FROM relays ORDER BY position",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Relay {
            id: r.get(0)?,
            name: r.get(1)?,
            gpio: r.get(2)?,
            active_low: r.get(3)?,
            trigger_delay: r.get(4)?,
            hold: r.get(5)?,
            dtmf_code: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_holds_the_defaults_and_reopens_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.db");
        let (_store, doc, revision) = Store::open(&path).unwrap();
        let mut defaults = Document::default();
        defaults.normalize();
        assert_eq!(doc, defaults);
        assert_eq!(revision, 1);
        drop(_store);
        let (_store, again, revision) = Store::open(&path).unwrap();
        assert_eq!(again, defaults);
        assert_eq!(revision, 1);
    }

    #[test]
    fn inputs_are_stored_and_a_database_without_them_reads_none() {
        use doorphone_interfaces::config::document::Input;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.db");
        let (mut store, mut doc, _) = Store::open(&path).unwrap();
        assert!(doc.inputs.is_empty());
        doc.inputs = vec![Input {
            gpio: 23,
            opens: Some("A".into()),
            ..Input::default()
        }];
        store.commit(&doc, &["inputs"]).unwrap();
        assert_eq!(store.load().unwrap().0.inputs, doc.inputs);
        // A database written before inputs existed has no row for them.
        store
            .conn()
            .unwrap()
            .execute("DELETE FROM settings WHERE section = 'inputs'", [])
            .unwrap();
        assert!(store.load().unwrap().0.inputs.is_empty());
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Store::open(&path).err().expect("refused");
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
        assert!(err.to_string().contains("newer than this doorphone-config"));
    }
}
