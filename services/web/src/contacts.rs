//! Contacts: the phone book (up to 1000 entries) listed 50 a page, searched
//! by name or number, each editable and removable where it is listed, and a
//! form to add one. A whitelisted contact may call when an account (or
//! direct IP calls) prevents SIP hacking, and may open doors by DTMF when
//! the DTMF authority is `contacts`. Every change goes through the config
//! service's contact methods; a refusal shows beside the field it names, in
//! the form that was submitted, with what was typed kept.

use askama::Template;
use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use doorphone_interfaces::config::{self, ContactEntry};

use crate::api::App;
use crate::form;
use crate::listing::{self, Entry, EntryForm, ListPage, Listing};
use crate::pages::{Menu, render};
use crate::sessions::Session;

/// The page's path.
const BASE: &str = "/contacts";

pub fn router() -> Router<App> {
    listing::router::<Contacts>()
}

/// One contact's form: what it holds (as stored or as typed) and the
/// refusals beside its fields.
#[derive(Default)]
pub struct ContactForm {
    /// `None` for the form that adds a contact.
    pub id: Option<u32>,
    pub name: String,
    pub number: String,
    pub account: String,
    pub whitelist: bool,
    pub name_error: Option<String>,
    pub number_error: Option<String>,
    pub account_error: Option<String>,
    pub other_error: Option<String>,
}

impl ContactForm {
    fn of(contact: &ContactEntry) -> ContactForm {
        ContactForm {
            id: Some(contact.id),
            name: contact.name.clone(),
            number: contact.number.clone(),
            account: contact.account.clone(),
            whitelist: contact.whitelist,
            ..ContactForm::default()
        }
    }

    fn from_form(id: Option<u32>, pairs: &[(String, String)]) -> ContactForm {
        let field = |name| form::one(pairs, name).unwrap_or_default().trim().to_owned();
        ContactForm {
            id,
            name: field("name"),
            number: field("number"),
            account: field("account"),
            whitelist: form::one(pairs, "whitelist").is_some(),
            ..ContactForm::default()
        }
    }

    pub fn is(&self, account: &str) -> bool {
        self.account == account
    }

    pub fn action(&self) -> String {
        match self.id {
            Some(id) => format!("/contacts/{id}"),
            None => "/contacts".to_owned(),
        }
    }
}

/// A contact matches when its name or number holds the search (letters
/// in any case).
fn matches(q: &str, contact: &ContactEntry) -> bool {
    let q = q.to_lowercase();
    contact.name.to_lowercase().contains(&q) || contact.number.to_lowercase().contains(&q)
}

impl Entry for ContactEntry {
    fn id(&self) -> u32 {
        self.id
    }
}

impl EntryForm<ContactEntry> for ContactForm {
    fn id(&self) -> Option<u32> {
        self.id
    }

    fn of(entry: &ContactEntry) -> ContactForm {
        ContactForm::of(entry)
    }

    fn blank() -> ContactForm {
        ContactForm {
            account: "auto".to_owned(),
            ..ContactForm::default()
        }
    }

    fn refused(&mut self, field: Option<&str>, message: String) {
        let part = field
            .and_then(|f| f.strip_prefix("contacts["))
            .and_then(|f| f.split_once("]."))
            .map(|(_, part)| part);
        let slot = match part {
            Some("name") => &mut self.name_error,
            Some("number") => &mut self.number_error,
            Some("account") => &mut self.account_error,
            _ => &mut self.other_error,
        };
        *slot = Some(message);
    }
}

#[derive(Template)]
#[template(path = "contacts.html")]
struct ContactsPage {
    title: &'static str,
    menu: Option<Menu>,
    message: Option<String>,
    error: Option<String>,
    csrf: String,
    list: Listing<ContactForm>,
}

/// The page.
pub struct Contacts;

impl ListPage for Contacts {
    const BASE: &'static str = BASE;
    type Entry = ContactEntry;
    type Form = ContactForm;

    fn matches(q: &str, entry: &ContactEntry) -> bool {
        matches(q, entry)
    }

    async fn entries(app: &App) -> Result<Vec<ContactEntry>, config::Error> {
        app.peers.config.list_contacts().await
    }

    fn typed(id: Option<u32>, pairs: &[(String, String)]) -> ContactForm {
        ContactForm::from_form(id, pairs)
    }

    async fn apply(
        app: &App,
        id: Option<u32>,
        remove: bool,
        t: &ContactForm,
    ) -> Result<String, config::Error> {
        let config = &app.peers.config;
        match (id, remove) {
            (Some(id), true) => config
                .remove_contact(id)
                .await
                .map(|()| format!("Contact {id} removed")),
            (Some(id), false) => config
                .update_contact(id, &t.name, &t.number, &t.account, t.whitelist)
                .await
                .map(|()| format!("Contact {id} saved")),
            (None, _) => config
                .add_contact(&t.name, &t.number, &t.account, t.whitelist)
                .await
                .map(|id| format!("Contact {id} added")),
        }
    }

    fn render(
        session: &Session,
        code: StatusCode,
        list: Listing<ContactForm>,
        message: Option<String>,
        error: Option<String>,
    ) -> Response {
        let page = ContactsPage {
            title: "Contacts",
            menu: Menu::of(session),
            message,
            error,
            csrf: session.csrf.clone(),
            list,
        };
        render(code, &page)
    }
}
