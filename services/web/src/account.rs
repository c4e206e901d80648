//! Account > Basic and Account > Advanced: both SIP accounts side by side,
//! each page a part of their fields. A page changes only its fields of the
//! stored `accounts` section and saves it through the config service; a
//! refusal shows beside the field it names, with what was typed kept.
//! Passwords never reach the browser: the form holds the mask, and a mask
//! sent back keeps the stored password.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use doorphone_interfaces::config::document::{Account, PASSWORD_MASK};
use serde_json::Value;

use crate::api::App;
use crate::error::ApiError;
use crate::form;
use crate::pages::{Menu, admin, render};
use crate::section;
use crate::sessions::Session;

pub fn router() -> Router<App> {
    Router::new()
        .route("/account/basic", get(show_basic).post(save_basic))
        .route("/account/advanced", get(show_advanced).post(save_advanced))
}

/// How a field is typed and sent.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Password,
    Number,
    Bool,
    Choice(&'static [&'static str]),
    /// Several values, separated by spaces.
    List,
}

/// A field: its key in an account, its label and kind.
type Spec = (&'static str, &'static str, Kind);

const BASIC: &[Spec] = &[
    ("enabled", "Enabled", Kind::Bool),
    ("label", "Label", Kind::Text),
    ("display_name", "Display name", Kind::Text),
    ("user", "User", Kind::Text),
    ("auth_user", "Authentication user", Kind::Text),
    ("password", "Password", Kind::Password),
    ("server", "Server (host or host:port)", Kind::Text),
    (
        "transport",
        "Transport",
        Kind::Choice(&["udp", "tcp", "tls"]),
    ),
];

const ADVANCED: &[Spec] = &[
    ("register_expires", "Registration expires (s)", Kind::Number),
    (
        "dtmf_mode",
        "DTMF",
        Kind::Choice(&["rfc4733", "info", "both"]),
    ),
    ("prevent_sip_hacking", "Prevent SIP hacking", Kind::Bool),
    ("user_agent", "User-Agent (empty: none sent)", Kind::Text),
    (
        "media_encryption",
        "Media encryption (SRTP)",
        Kind::Choice(&["off", "optional", "mandatory"]),
    ),
    (
        "trusted_proxies",
        "Trusted proxies (IPs or prefixes, spaces between)",
        Kind::List,
    ),
];

pub struct Field {
    pub name: String,
    pub label: &'static str,
    pub kind: Kind,
    pub value: String,
    pub error: Option<String>,
}

impl Field {
    pub fn input_type(&self) -> &'static str {
        match self.kind {
            Kind::Password => "password",
            Kind::Number => "number",
            _ => "text",
        }
    }

    pub fn is_bool(&self) -> bool {
        self.kind == Kind::Bool
    }

    pub fn options(&self) -> &'static [&'static str] {
        match self.kind {
            Kind::Choice(options) => options,
            _ => &[],
        }
    }

    pub fn on(&self) -> bool {
        self.value == "true"
    }
}

pub struct AccountForm {
    pub id: u64,
    pub fields: Vec<Field>,
}

/// A field's value as the form shows it: the mask for a password set.
fn shown(spec: &Spec, value: &Value) -> String {
    match (spec.2, value) {
        (Kind::Password, Value::String(s)) if !s.is_empty() => PASSWORD_MASK.to_owned(),
        (Kind::List, Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(" "),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Null) => String::new(),
        (_, v) => v.to_string(),
    }
}

/// What the form sent for `key` of account `id`, as the section holds it.
fn sent(spec: &Spec, id: u64, pairs: &[(String, String)]) -> Value {
    let raw = form::one(pairs, &format!("{id}.{}", spec.0)).map(str::trim);
    match spec.2 {
        Kind::Bool => Value::Bool(raw.is_some()),
        Kind::Number => {
            let raw = raw.unwrap_or_default();
            raw.parse::<u64>()
                .map_or_else(|_| Value::String(raw.to_owned()), Value::from)
        }
        Kind::List => raw
            .unwrap_or_default()
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_owned()))
            .collect(),
        _ => Value::String(raw.unwrap_or_default().to_owned()),
    }
}

fn forms(specs: &[Spec], accounts: &Value) -> Vec<AccountForm> {
    accounts
        .as_array()
        .map(|a| {
            a.iter()
                .map(|account| {
                    let id = account["id"].as_u64().unwrap_or_default();
                    AccountForm {
                        id,
                        fields: specs
                            .iter()
                            .map(|spec| Field {
                                name: format!("{id}.{}", spec.0),
                                label: spec.1,
                                kind: spec.2,
                                value: shown(spec, &account[spec.0]),
                                error: None,
                            })
                            .collect(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    title: &'static str,
    menu: Option<Menu>,
    message: Option<String>,
    error: Option<String>,
    csrf: String,
    action: &'static str,
    accounts: Vec<AccountForm>,
}

struct Which {
    title: &'static str,
    action: &'static str,
    specs: &'static [Spec],
}

const BASIC_PAGE: Which = Which {
    title: "Account > Basic",
    action: "/account/basic",
    specs: BASIC,
};
const ADVANCED_PAGE: Which = Which {
    title: "Account > Advanced",
    action: "/account/advanced",
    specs: ADVANCED,
};

fn page(
    which: &Which,
    session: &Session,
    code: StatusCode,
    accounts: Vec<AccountForm>,
    message: Option<String>,
    error: Option<String>,
) -> Response {
    let page = AccountPage {
        title: which.title,
        menu: Menu::of(session),
        message,
        error,
        csrf: session.csrf.clone(),
        action: which.action,
        accounts,
    };
    render(code, &page)
}

/// The stored accounts (passwords masked), with the ones not configured
/// yet as their defaults: the form shows both.
pub(crate) async fn stored(app: &App) -> Result<Value, ApiError> {
    let value = app.peers.config.get("accounts").await?;
    let stored = doorphone_interfaces::json::from_variant(&value).unwrap_or(Value::Null);
    let both = [1, 2]
        .into_iter()
        .map(|id| {
            let found = stored
                .as_array()
                .and_then(|a| a.iter().find(|a| a["id"] == id).cloned());
            found.unwrap_or_else(|| {
                serde_json::to_value(Account {
                    id,
                    ..Account::default()
                })
                .unwrap_or(Value::Null)
            })
        })
        .collect();
    Ok(Value::Array(both))
}

async fn show(app: App, headers: HeaderMap, which: &Which) -> Response {
    let session = match admin(&app, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match stored(&app).await {
        Ok(accounts) => {
            let forms = forms(which.specs, &accounts);
            page(which, &session, StatusCode::OK, forms, None, None)
        }
        Err(e) => page(which, &session, e.status, Vec::new(), None, Some(e.error)),
    }
}

async fn save(app: App, headers: HeaderMap, body: Bytes, which: &Which) -> Response {
    let (session, pairs) = match section::admin_form(&app, &headers, &body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let mut accounts = match stored(&app).await {
        Ok(a) => a,
        Err(e) => return page(which, &session, e.status, Vec::new(), None, Some(e.error)),
    };
    // The page's fields as typed, the others (and the masked passwords) as stored.
    for account in accounts.as_array_mut().into_iter().flatten() {
        let id = account["id"].as_u64().unwrap_or_default();
        for spec in which.specs {
            account[spec.0] = sent(spec, id, &pairs);
        }
    }
    let mut typed = forms(which.specs, &accounts);
    let done = match doorphone_interfaces::json::to_variant(&accounts) {
        Ok(variant) => app
            .peers
            .config
            .set("accounts", &variant)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e)),
    };
    match done {
        Ok(()) => page(
            which,
            &session,
            StatusCode::OK,
            typed,
            Some("Saved".to_owned()),
            None,
        ),
        Err(e) => {
            // `accounts[ID].KEY` (or `accounts[ID].KEY[N]`): beside that field.
            let named = e.field.as_deref().and_then(|f| {
                let (id, rest) = f.strip_prefix("accounts[")?.split_once("].")?;
                let key = rest.split('[').next()?;
                Some((id.parse::<u64>().ok()?, format!("{id}.{key}")))
            });
            let slot = named.and_then(|(id, name)| {
                typed
                    .iter_mut()
                    .find(|a| a.id == id)?
                    .fields
                    .iter_mut()
                    .find(|f| f.name == name)
            });
            match slot {
                Some(field) => {
                    field.error = Some(e.error);
                    page(which, &session, e.status, typed, None, None)
                }
                None => page(which, &session, e.status, typed, None, Some(e.error)),
            }
        }
    }
}

async fn show_basic(State(app): State<App>, headers: HeaderMap) -> Response {
    show(app, headers, &BASIC_PAGE).await
}

async fn save_basic(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    save(app, headers, body, &BASIC_PAGE).await
}

async fn show_advanced(State(app): State<App>, headers: HeaderMap) -> Response {
    show(app, headers, &ADVANCED_PAGE).await
}

async fn save_advanced(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    save(app, headers, body, &ADVANCED_PAGE).await
}
