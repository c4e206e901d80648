//! Intercom > Multicast: how a page (multicast paging) barges into a call
//! (`paging_barge`, `paging_priority`) and the up to 10 groups the door phone
//! listens to, in priority order. The form is saved as the `multicast`
//! section through the config service; a refusal shows beside the field it
//! names, with what was typed kept.

use askama::Template;
use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use crate::api::App;
use crate::form;
use crate::pages::{Menu, render};
use crate::section::{self, SectionForm};
use crate::sessions::Session;

/// Groups the form has rows for (the config service's limit).
pub const GROUPS: usize = 10;

pub fn router() -> Router<App> {
    Router::new().route(
        "/intercom/multicast",
        get(section::show::<MulticastForm>).post(section::save::<MulticastForm>),
    )
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

impl SectionForm for MulticastForm {
    const SECTION: &'static str = "multicast";

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

    fn to_section(&self) -> Value {
        let listen: Vec<Value> = self
            .filled()
            .map(|(_, g)| json!({"address": g.address, "port": form::number(&g.port), "label": g.label}))
            .collect();
        json!({
            "paging_barge": form::number(&self.barge),
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
    async fn page(
        self,
        _: &App,
        session: &Session,
        code: StatusCode,
        message: Option<String>,
    ) -> Response {
        let page = MulticastPage {
            title: "Intercom > Multicast",
            menu: Menu::of(session),
            message,
            error: None,
            csrf: session.csrf.clone(),
            form: self,
        };
        render(code, &page)
    }
}

impl MulticastForm {
    /// The rows that hold something, in order: the section's `listen`.
    fn filled(&self) -> impl Iterator<Item = (usize, &Group)> {
        self.groups
            .iter()
            .enumerate()
            .filter(|(_, g)| !g.is_empty())
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
