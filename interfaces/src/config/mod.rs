//! `org.doorphone.Config1`: the configuration service.

pub mod document;
pub mod urls;

use serde::{Deserialize, Serialize};
use zbus::{DBusError, OwnedVariant, Type, Variant, proxy};

pub use document::Document;

/// Well-known bus name of the configuration service.
pub const BUS_NAME: &str = "org.doorphone.Config1";
/// Object path of the configuration service's one object.
pub const OBJECT_PATH: &str = "/org/doorphone/Config1";
/// Interface name.
pub const INTERFACE: &str = "org.doorphone.Config1";

/// Errors `org.doorphone.Config1` replies with.
#[derive(Debug, DBusError)]
#[zbus(prefix = "org.doorphone.Config1.Error")]
pub enum Error {
    /// A transport or protocol error on the client's side.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// A refused value; the message names the field path and the rule.
    Invalid(String),
    /// No such key, contact, rule or button.
    NotFound(String),
    /// The database could not be read or written; nothing was changed.
    Storage(String),
}

/// One phone-book entry, as `ListContacts` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ContactEntry {
    pub id: u32,
    pub name: String,
    pub number: String,
    /// `auto`, `1` or `2`.
    pub account: String,
    pub whitelist: bool,
}

/// One dial-plan rule, as `ListDialPlan` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DialRuleEntry {
    pub id: u32,
    pub name: String,
    pub prefix: String,
    /// `auto`, `1` or `2`.
    pub account: String,
    pub replace: Vec<String>,
}

/// One call button, as `ListButtons` returns it and `SetButton` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ButtonEntry {
    pub button: u32,
    /// `group` or `sequence`.
    pub call_type: String,
    pub numbers: Vec<String>,
    pub group_number: String,
    /// Empty picks the default of the call type.
    pub when_refused: String,
    pub timeout: u32,
    pub no_answer_relays: Vec<String>,
    pub no_answer_actions: Vec<String>,
    pub no_answer_http_url: String,
}

#[proxy(
    interface = "org.doorphone.Config1",
    default_service = "org.doorphone.Config1",
    default_path = "/org/doorphone/Config1"
)]
pub trait Config1 {
    /// The whole configuration as a JSON document, passwords masked.
    async fn export(&self) -> Result<String, Error>;
    /// The whole configuration with its passwords; only root and the SIP agent
    /// may call it.
    async fn export_secrets(&self) -> Result<String, Error>;
    /// Replaces the whole configuration, all or nothing.
    async fn import(&self, document: &str) -> Result<(), Error>;
    /// One value by dotted path (`calls.max_call_time`, `accounts.1.dnd.return_code`).
    async fn get(&self, key: &str) -> Result<OwnedVariant, Error>;
    /// Sets one value by dotted path.
    async fn set(&self, key: &str, value: &Variant<'_>) -> Result<(), Error>;

    async fn list_contacts(&self) -> Result<Vec<ContactEntry>, Error>;
    async fn add_contact(
        &self,
        name: &str,
        number: &str,
        account: &str,
        whitelist: bool,
    ) -> Result<u32, Error>;
    async fn update_contact(
        &self,
        id: u32,
        name: &str,
        number: &str,
        account: &str,
        whitelist: bool,
    ) -> Result<(), Error>;
    async fn remove_contact(&self, id: u32) -> Result<(), Error>;

    async fn list_dial_plan(&self) -> Result<Vec<DialRuleEntry>, Error>;
    async fn add_dial_rule(
        &self,
        name: &str,
        prefix: &str,
        account: &str,
        replace: &[&str],
    ) -> Result<u32, Error>;
    async fn update_dial_rule(
        &self,
        id: u32,
        name: &str,
        prefix: &str,
        account: &str,
        replace: &[&str],
    ) -> Result<(), Error>;
    async fn remove_dial_rule(&self, id: u32) -> Result<(), Error>;

    async fn list_buttons(&self) -> Result<Vec<ButtonEntry>, Error>;
    async fn set_button(&self, button: &ButtonEntry) -> Result<(), Error>;
    async fn remove_button(&self, button: u32) -> Result<(), Error>;

    /// Applies the dial plan: the account that places the call and every number to ring.
    async fn resolve(&self, number: &str) -> Result<(String, Vec<String>), Error>;

    /// +1 at every committed change.
    #[zbus(property)]
    fn revision(&self) -> zbus::Result<u64>;

    /// Emitted after every commit, naming the changed top-level sections.
    #[zbus(signal)]
    fn changed(&self, sections: Vec<String>) -> zbus::Result<()>;
}
