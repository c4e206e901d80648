//! `org.doorphone.Config1` on the bus. Every change goes through [`ConfigService::commit`]:
//! build the new document, validate all of it, write the changed sections in one
//! transaction, then announce them. A refused change touches nothing.

use doorphone_interfaces::config::document::{
    AccountChoice, Button, Contact, DialPlan, DialRule, Document, NoAnswer,
};
use doorphone_interfaces::config::{ButtonEntry, ContactEntry, DialRuleEntry, Error};
use doorphone_interfaces::json;
use serde::de::DeserializeOwned;
use zbus::object_server::SignalEmitter;
use zbus::{OwnedVariant, Variant, interface};

use crate::path;
use crate::store::{Store, StoreError};
use crate::validate::{self, Invalid};

pub struct ConfigService {
    store: Store,
    doc: Document,
    plan: DialPlan,
    revision: u64,
}

impl From<Invalid> for Error {
    fn from(e: Invalid) -> Self {
        Error::Invalid(e.to_string())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        tracing::error!("{e}");
        Error::Storage(e.to_string())
    }
}

/// Reads a JSON value into `T`, naming the path of the first bad field under `base`.
fn from_json<T: DeserializeOwned>(value: &serde_json::Value, base: &str) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = path::describe(e.path(), value);
        let path = match (base.is_empty(), inner.as_str()) {
            (_, "document") if !base.is_empty() => base.to_owned(),
            (true, _) => inner,
            (false, _) => format!("{base}.{inner}"),
        };
        Error::Invalid(format!("{path}: {}", e.into_inner()))
    })
}

/// A word of an enum (`"group"`, `"call_next"`) read into its type.
fn word<T: DeserializeOwned>(path: &str, value: &str) -> Result<T, Error> {
    from_json(&serde_json::Value::String(value.to_owned()), path)
}

fn account(path: &str, value: &str) -> Result<AccountChoice, Error> {
    value
        .parse()
        .map_err(|e: String| Error::Invalid(format!("{path}: {e}")))
}

fn words<T: serde::Serialize>(items: &[T]) -> Vec<String> {
    items
        .iter()
        .map(|i| match serde_json::to_value(i) {
            Ok(serde_json::Value::String(s)) => s,
            other => format!("{other:?}"),
        })
        .collect()
}

impl ConfigService {
    pub fn open(db: &std::path::Path) -> Result<ConfigService, StoreError> {
        let (store, doc, revision) = Store::open(db)?;
        Ok(ConfigService {
            plan: DialPlan::new(&doc.dial_plan),
            store,
            doc,
            revision,
        })
    }

    pub fn document(&self) -> &Document {
        &self.doc
    }

    pub fn revision_now(&self) -> u64 {
        self.revision
    }

    /// Validates and stores `new`; returns the sections that changed (none: nothing
    /// was written and the revision stays).
    pub fn commit(&mut self, mut new: Document) -> Result<Vec<&'static str>, Error> {
        new.normalize();
        validate::validate(&new)?;
        let changed = new.changed_sections(&self.doc);
        if changed.is_empty() {
            return Ok(changed);
        }
        self.revision = self.store.commit(&new, &changed)?;
        if changed.contains(&"dial_plan") {
            self.plan = DialPlan::new(&new.dial_plan);
        }
        self.doc = new;
        tracing::info!(revision = self.revision, sections = ?changed, "configuration changed");
        Ok(changed)
    }

    async fn announce(&self, emitter: &SignalEmitter<'_>, changed: &[&str]) {
        if changed.is_empty() {
            return;
        }
        let sections: Vec<String> = changed.iter().map(|s| s.to_string()).collect();
        if let Err(e) = Self::changed(emitter, sections).await {
            tracing::warn!("cannot emit Changed: {e}");
        }
        if let Err(e) = self.revision_changed(emitter).await {
            tracing::warn!("cannot emit the Revision change: {e}");
        }
    }

    async fn commit_and_announce(
        &mut self,
        new: Document,
        emitter: &SignalEmitter<'_>,
    ) -> Result<(), Error> {
        let changed = self.commit(new)?;
        self.announce(emitter, &changed).await;
        Ok(())
    }

    pub fn import_document(&mut self, text: &str) -> Result<Vec<&'static str>, Error> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::Invalid(format!("document: {e}")))?;
        let mut new: Document = from_json(&value, "")?;
        new.unmask_from(&self.doc);
        self.commit(new)
    }

    pub fn set_value(
        &mut self,
        key: &str,
        value: serde_json::Value,
    ) -> Result<Vec<&'static str>, Error> {
        let mut tree = serde_json::to_value(&self.doc).expect("the document serialises");
        path::set(&mut tree, key, value).map_err(|e| Error::NotFound(e.0))?;
        let mut new: Document = from_json(&tree, "")?;
        new.unmask_from(&self.doc);
        self.commit(new)
    }

    pub fn get_value(&self, key: &str) -> Result<serde_json::Value, Error> {
        let tree = serde_json::to_value(self.doc.masked()).expect("the document serialises");
        path::get(&tree, key).map_err(|e| Error::NotFound(e.0))
    }

    pub fn resolve_number(&self, number: &str) -> Result<(String, Vec<String>), Error> {
        if !validate::is_number(number) {
            return Err(Error::Invalid(format!(
                "number: {number:?} is not a SIP user, SIP URI or IP address"
            )));
        }
        let (account, targets) = self.plan.resolve(number);
        Ok((account.to_string(), targets))
    }

    fn contact(
        id: u32,
        name: &str,
        number: &str,
        account_choice: &str,
        whitelist: bool,
    ) -> Result<Contact, Error> {
        Ok(Contact {
            id,
            name: name.to_owned(),
            number: number.to_owned(),
            account: account(&format!("contacts[{id}].account"), account_choice)?,
            whitelist,
        })
    }

    fn dial_rule(
        id: u32,
        name: &str,
        prefix: &str,
        account_choice: &str,
        replace: Vec<String>,
    ) -> Result<DialRule, Error> {
        Ok(DialRule {
            id,
            name: name.to_owned(),
            prefix: prefix.to_owned(),
            account: account(&format!("dial_plan[{id}].account"), account_choice)?,
            replace,
        })
    }
}

#[interface(name = "org.doorphone.Config1")]
impl ConfigService {
    /// The whole configuration as one JSON document; passwords are masked.
    #[zbus(out_args("document"))]
    async fn export(&self) -> String {
        serde_json::to_string_pretty(&self.doc.masked()).expect("the document serialises")
    }

    /// The whole configuration with its passwords, for the services that sign in
    /// with them (the SIP agent's accounts and actions). The bus policy lets only
    /// root and the SIP agent's user call it.
    #[zbus(out_args("document"))]
    async fn export_secrets(&self) -> String {
        serde_json::to_string(&self.doc).expect("the document serialises")
    }

    /// Replaces the whole configuration with `document`, all or nothing. A masked
    /// password (`********`) keeps the stored one.
    async fn import(
        &mut self,
        document: &str,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), Error> {
        let changed = self.import_document(document)?;
        self.announce(&emitter, &changed).await;
        Ok(())
    }

    /// One value by dotted path, e.g. `calls.max_call_time` or `accounts.1.dnd.return_code`.
    #[zbus(out_args("value"))]
    async fn get(&self, key: &str) -> Result<OwnedVariant, Error> {
        let value = self.get_value(key)?;
        let variant =
            json::to_variant(&value).map_err(|e| Error::Invalid(format!("{key}: {e}")))?;
        OwnedVariant::try_from(variant).map_err(|e| Error::Invalid(format!("{key}: {e}")))
    }

    /// Sets one value by dotted path.
    async fn set(
        &mut self,
        key: &str,
        value: Variant<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), Error> {
        let value =
            json::from_variant(&value).map_err(|e| Error::Invalid(format!("{key}: {e}")))?;
        let changed = self.set_value(key, value)?;
        self.announce(&emitter, &changed).await;
        Ok(())
    }

    #[zbus(out_args("contacts"))]
    async fn list_contacts(&self) -> Vec<ContactEntry> {
        self.doc
            .contacts
            .iter()
            .map(|c| ContactEntry {
                id: c.id,
                name: c.name.clone(),
                number: c.number.clone(),
                account: c.account.to_string(),
                whitelist: c.whitelist,
            })
            .collect()
    }

    /// Adds a phone-book entry; returns its id.
    #[zbus(out_args("id"))]
    async fn add_contact(
        &mut self,
        name: &str,
        number: &str,
        account: &str,
        whitelist: bool,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<u32, Error> {
        let id = self.doc.contacts.iter().map(|c| c.id).max().unwrap_or(0) + 1;
        let mut new = self.doc.clone();
        new.contacts
            .push(Self::contact(id, name, number, account, whitelist)?);
        self.commit_and_announce(new, &emitter).await?;
        Ok(id)
    }

    async fn update_contact(
        &mut self,
        id: u32,
        name: &str,
        number: &str,
        account: &str,
        whitelist: bool,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), Error> {
        let mut new = self.doc.clone();
        let slot = new
            .contacts
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| Error::NotFound(format!("contacts[{id}]: no such contact")))?;
        *slot = Self::contact(id, name, number, account, whitelist)?;
        self.commit_and_announce(new, &emitter).await
    }

    async fn remove_contact(
        &mut self,
        id: u32,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), Error> {
        let mut new = self.doc.clone();
        let before = new.contacts.len();
        new.contacts.retain(|c| c.id != id);
        if new.contacts.len() == before {
            return Err(Error::NotFound(format!("contacts[{id}]: no such contact")));
        }
        self.commit_and_announce(new, &emitter).await
    }

    #[zbus(out_args("rules"))]
    async fn list_dial_plan(&self) -> Vec<DialRuleEntry> {
        self.doc
            .dial_plan
            .iter()
            .map(|r| DialRuleEntry {
                id: r.id,
                name: r.name.clone(),
                prefix: r.prefix.clone(),
                account: r.account.to_string(),
                replace: r.replace.clone(),
            })
            .collect()
    }

    /// Adds a dial-plan rule; returns its id.
    #[zbus(out_args("id"))]
    async fn add_dial_rule(
        &mut self,
        name: &str,
        prefix: &str,
        account: &str,
        replace: Vec<String>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<u32, Error> {
        let id = self.doc.dial_plan.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        let mut new = self.doc.clone();
        new.dial_plan
            .push(Self::dial_rule(id, name, prefix, account, replace)?);
        self.commit_and_announce(new, &emitter).await?;
        Ok(id)
    }

    async fn update_dial_rule(
        &mut self,
        id: u32,
        name: &str,
        prefix: &str,
        account: &str,
        replace: Vec<String>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), Error> {
        let mut new = self.doc.clone();
        let slot = new
            .dial_plan
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| Error::NotFound(format!("dial_plan[{id}]: no such rule")))?;
        *slot = Self::dial_rule(id, name, prefix, account, replace)?;
        self.commit_and_announce(new, &emitter).await
    }

    async fn remove_dial_rule(
        &mut self,
        id: u32,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), Error> {
        let mut new = self.doc.clone();
        let before = new.dial_plan.len();
        new.dial_plan.retain(|r| r.id != id);
        if new.dial_plan.len() == before {
            return Err(Error::NotFound(format!("dial_plan[{id}]: no such rule")));
        }
        self.commit_and_announce(new, &emitter).await
    }

    #[zbus(out_args("buttons"))]
    async fn list_buttons(&self) -> Vec<ButtonEntry> {
        self.doc
            .buttons
            .iter()
            .map(|b| ButtonEntry {
                button: b.button,
                call_type: words(&[b.call_type]).remove(0),
                numbers: b.numbers.clone(),
                group_number: b.group_number.clone(),
                when_refused: b
                    .when_refused
                    .map(|w| words(&[w]).remove(0))
                    .unwrap_or_default(),
                timeout: b.timeout,
                no_answer_relays: b.no_answer.relays.clone(),
                no_answer_actions: words(&b.no_answer.actions),
                no_answer_http_url: b.no_answer.http_url.clone(),
            })
            .collect()
    }

    /// Adds the button, or replaces it when it exists.
    async fn set_button(
        &mut self,
        button: ButtonEntry,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), Error> {
        let p = format!("buttons[{}]", button.button);
        let when_refused = if button.when_refused.is_empty() {
            None
        } else {
            Some(word(&format!("{p}.when_refused"), &button.when_refused)?)
        };
        let actions = button
            .no_answer_actions
            .iter()
            .map(|a| word(&format!("{p}.no_answer.actions"), a))
            .collect::<Result<Vec<_>, _>>()?;
        let entry = Button {
            button: button.button,
            call_type: word(&format!("{p}.call_type"), &button.call_type)?,
            numbers: button.numbers,
            group_number: button.group_number,
            when_refused,
            timeout: button.timeout,
            no_answer: NoAnswer {
                relays: button.no_answer_relays,
                actions,
                http_url: button.no_answer_http_url,
            },
        };
        let mut new = self.doc.clone();
        match new.buttons.iter_mut().find(|b| b.button == entry.button) {
            Some(slot) => *slot = entry,
            None => {
                new.buttons.push(entry);
                new.buttons.sort_by_key(|b| b.button);
            }
        }
        self.commit_and_announce(new, &emitter).await
    }

    async fn remove_button(
        &mut self,
        button: u32,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), Error> {
        let mut new = self.doc.clone();
        let before = new.buttons.len();
        new.buttons.retain(|b| b.button != button);
        if new.buttons.len() == before {
            return Err(Error::NotFound(format!(
                "buttons[{button}]: no such button"
            )));
        }
        self.commit_and_announce(new, &emitter).await
    }

    /// Applies the dial plan to a dialled number: the account that places the call
    /// (`auto`, `1` or `2`) and every number to ring at once.
    #[zbus(out_args("account", "targets"))]
    async fn resolve(&self, number: &str) -> Result<(String, Vec<String>), Error> {
        self.resolve_number(number)
    }

    /// +1 at every committed change.
    #[zbus(property)]
    async fn revision(&self) -> u64 {
        self.revision
    }

    /// Emitted after every commit, naming the top-level sections that changed.
    #[zbus(signal)]
    async fn changed(emitter: &SignalEmitter<'_>, sections: Vec<String>) -> zbus::Result<()>;
}
