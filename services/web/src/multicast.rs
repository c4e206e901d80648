//! Intercom > Multicast: how a page (multicast paging) barges into a call
//! (`paging_barge`, `paging_priority`) and the up to 10 groups the door phone
//! listens to, in priority order. The form is saved as the `multicast`
//! section through the config service; a refusal shows beside the field it
//! names, with what was typed kept.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use crate::api::App;
use crate::error::ApiError;
use crate::form;
use crate::pages::{Menu, admin, checked_form, render};
use crate::sessions::Session;

/// Groups the form has rows for (the config service's limit).
pub const GROUPS: usize = 10;

pub fn router() -> Router<App> {
    Router::new().route("/intercom/multicast", get(show).post(save))
}

/// One group's row: as stored or as typed, and the refusals beside it.
#[derive(Default)]
pub struct Group {
    pub address: String,
    pub port: String,
    pub label: String,
    pub address_error: Option<String>,
    pub port_error: Option<String>,
    pub label_error: Option<String>,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.address.is_empty() && self.port.is_empty() && self.label.is_empty()
    }
}

#[derive(Default)]
pub struct MulticastForm {
    pub barge: String,
    pub barge_error: Option<String>,
    pub priority: bool,
    pub groups: Vec<Group>,
    pub other_error: Option<String>,
}

/// A number as a number, anything else as the text it is (for the config
/// service to judge).
fn number(text: &str) -> Value {
    text.parse::<u64>()
        .map_or_else(|_| Value::String(text.to_owned()), Value::from)
}

impl MulticastForm {
    fn from_section(m: &Value) -> MulticastForm {
        let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        let mut groups: Vec<Group> = m["listen"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|l| Group {
                        address: text(&l["address"]),
                        port: text(&l["port"]),
                        label: text(&l["label"]),
                        ..Group::default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        groups.resize_with(GROUPS.max(groups.len()), Group::default);
        MulticastForm {
            barge: text(&m["paging_barge"]),
            priority: m["paging_priority"] == Value::Bool(true),
            groups,
            ..MulticastForm::default()
        }
    }

    fn from_form(pairs: &[(String, String)]) -> MulticastForm {
        let field = |name: &str| form::one(pairs, name).unwrap_or_default().trim().to_owned();
        MulticastForm {
            barge: field("paging_barge"),
            priority: form::one(pairs, "paging_priority").is_some(),
            groups: (1..=GROUPS)
                .map(|i| Group {
                    address: field(&format!("listen.{i}.address")),
                    port: field(&format!("listen.{i}.port")),
                    label: field(&format!("listen.{i}.label")),
                    ..Group::default()
                })
                .collect(),
            ..MulticastForm::default()
        }
    }

    /// The rows that hold something, in order: the section's `listen`.
    fn filled(&self) -> impl Iterator<Item = (usize, &Group)> {
        self.groups
            .iter()
            .enumerate()
            .filter(|(_, g)| !g.is_empty())
    }

    fn to_section(&self) -> Value {
        let listen: Vec<Value> = self
            .filled()
            .map(|(_, g)| json!({"address": g.address, "port": number(&g.port), "label": g.label}))
            .collect();
        json!({
            "paging_barge": number(&self.barge),
            "paging_priority": self.priority,
            "listen": listen,
        })
    }

    /// Puts the refusal beside its field: `multicast.listen[N].FIELD` is
    /// the Nth row that holds something.
    fn refused(&mut self, field: Option<&str>, message: String) {
        let field = field.and_then(|f| f.strip_prefix("multicast."));
        if field == Some("paging_barge") {
            self.barge_error = Some(message);
            return;
        }
        let at = field
            .and_then(|f| f.strip_prefix("listen["))
            .and_then(|f| f.split_once("]."))
            .and_then(|(n, part)| Some((n.parse::<usize>().ok()?, part)));
        let row = at.and_then(|(n, part)| {
            let row = self.filled().nth(n.checked_sub(1)?)?.0;
            Some((row, part))
        });
        let slot = match row {
            Some((row, "address")) => &mut self.groups[row].address_error,
            Some((row, "port")) => &mut self.groups[row].port_error,
            Some((row, "label")) => &mut self.groups[row].label_error,
            _ => &mut self.other_error,
        };
        *slot = Some(message);
    }
}

#[derive(Template)]
#[template(path = "multicast.html")]
struct MulticastPage {
    title: &'static str,
    menu: Option<Menu>,
    message: Option<String>,
    error: Option<String>,
    csrf: String,
    form: MulticastForm,
}

fn page(
    session: &Session,
    code: StatusCode,
    form: MulticastForm,
    message: Option<String>,
) -> Response {
    let page = MulticastPage {
        title: "Intercom > Multicast",
        menu: Menu::of(session),
        message,
        error: None,
        csrf: session.csrf.clone(),
        form,
    };
    render(code, &page)
}

async fn show(State(app): State<App>, headers: HeaderMap) -> Response {
    let session = match admin(&app, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match app.peers.config.get("multicast").await {
        Ok(value) => {
            let section = doorphone_interfaces::json::from_variant(&value).unwrap_or(Value::Null);
            page(
                &session,
                StatusCode::OK,
                MulticastForm::from_section(&section),
                None,
            )
        }
        Err(e) => {
            let e = ApiError::from(e);
            let form = MulticastForm {
                other_error: Some(e.error),
                ..MulticastForm::from_section(&Value::Null)
            };
            page(&session, e.status, form, None)
        }
    }
}

async fn save(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let session = match admin(&app, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let pairs = match checked_form(&session, &body) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut typed = MulticastForm::from_form(&pairs);
    let variant = match doorphone_interfaces::json::to_variant(&typed.to_section()) {
        Ok(v) => v,
        Err(e) => {
            typed.other_error = Some(e);
            return page(&session, StatusCode::UNPROCESSABLE_ENTITY, typed, None);
        }
    };
    match app.peers.config.set("multicast", &variant).await {
        Ok(()) => page(&session, StatusCode::OK, typed, Some("Saved".to_owned())),
        Err(e) => {
            let e = ApiError::from(e);
            typed.refused(e.field.as_deref(), e.error);
            page(&session, e.status, typed, None)
        }
    }
}
