//! Intercom > Call Feature: the `calls` section (call and dial times,
//! auto-answer, hang-up after opening the door), Do Not Disturb of each
//! account with its return code and the codes sent to its server, and the
//! direct IP calls of the `device` section (port, prevent SIP hacking,
//! SRTP). Each form saves its part through the config service; a refusal
//! shows beside the field it names, with what was typed kept.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::Value;

use crate::account;
use crate::api::App;
use crate::error::ApiError;
use crate::form::{self, CallFeature};
use crate::pages::{Menu, render};
use crate::section::{self, SectionForm};
use crate::sessions::Session;
use crate::table::{Column, Kind, Named, Table, column};

const DND_COLUMNS: &[Column] = &[
    column("id", "Account", Kind::Index),
    column("dnd.enabled", "Do Not Disturb", Kind::Bool),
    column(
        "dnd.return_code",
        "Return code when DND",
        Kind::NumberChoice(&["404", "480", "486", "603"]),
    ),
    column("dnd.on_code", "DND on code (0-16 of 0-9*#)", Kind::Text),
    column("dnd.off_code", "DND off code", Kind::Text),
];

const DEVICE_COLUMNS: &[Column] = &[
    column("name", "Device name", Kind::Text),
    column("ip_call.enabled", "Direct IP calls", Kind::Bool),
    column("ip_call.port", "SIP port", Kind::Number(1, 65535)),
    column(
        "ip_call.prevent_sip_hacking",
        "Prevent SIP hacking (direct IP calls only from whitelisted contacts)",
        Kind::Bool,
    ),
    column(
        "ip_call.media_encryption",
        "Media encryption (SRTP)",
        Kind::Choice(&["off", "optional", "mandatory"]),
    ),
];

pub fn router() -> Router<App> {
    Router::new()
        .route(
            "/intercom/call-feature",
            get(section::show::<CallFeature>).post(section::save::<CallFeature>),
        )
        .route("/intercom/call-feature/dnd", post(save_dnd))
        .route("/intercom/call-feature/device", post(save_device))
}

fn dnd_table() -> Table {
    Table::new("accounts", "account", DND_COLUMNS, Named::Index)
}

fn device_table() -> Table {
    Table::new("device", "device", DEVICE_COLUMNS, Named::Object)
}

/// The DND form of both accounts as stored (the ones not configured yet as
/// their defaults).
async fn stored_dnd(app: &App) -> Result<Table, ApiError> {
    let accounts = account::stored(app).await?;
    let items = accounts.as_array().map(Vec::as_slice).unwrap_or_default();
    Ok(dnd_table().stored(items, 2, |a| {
        a["id"].as_u64().and_then(|n| usize::try_from(n).ok())
    }))
}

async fn stored_device(app: &App) -> Result<Table, ApiError> {
    let device = section::get(app, "device").await?;
    Ok(device_table().stored(std::slice::from_ref(&device), 1, |_| None))
}

#[derive(Template)]
#[template(path = "call_feature.html")]
struct CallFeaturePage {
    title: &'static str,
    menu: Option<Menu>,
    message: Option<String>,
    error: Option<String>,
    csrf: String,
    numbers: Vec<form::Number>,
    auto_ip: bool,
    auto_sip: bool,
    mode: String,
    types: Vec<(&'static str, bool)>,
    other_error: Option<String>,
    dnd: Table,
    device: Table,
}

/// The page: `calls` and whichever of the other forms was submitted, the
/// rest as stored.
async fn page(
    app: &App,
    session: &Session,
    code: StatusCode,
    calls: CallFeature,
    dnd: Option<Table>,
    device: Option<Table>,
    message: Option<String>,
) -> Response {
    let mut error = None;
    let dnd = match dnd {
        Some(t) => t,
        None => stored_dnd(app).await.unwrap_or_else(|e| {
            error = Some(e.error);
            dnd_table().stored(&[], 2, |_| None)
        }),
    };
    let device = match device {
        Some(t) => t,
        None => stored_device(app).await.unwrap_or_else(|e| {
            error = Some(e.error);
            device_table().stored(&[], 1, |_| None)
        }),
    };
    let page = CallFeaturePage {
        title: "Intercom > Call Feature",
        menu: Menu::of(session),
        message,
        error,
        csrf: session.csrf.clone(),
        auto_ip: calls.auto_ip,
        auto_sip: calls.auto_sip,
        mode: calls.mode,
        types: calls.types,
        other_error: calls.other_error,
        numbers: calls.numbers,
        dnd,
        device,
    };
    render(code, &page)
}

impl SectionForm for CallFeature {
    const SECTION: &'static str = "calls";

    fn from_section(section: &Value) -> CallFeature {
        CallFeature::from_calls(section)
    }

    fn from_form(pairs: &[(String, String)]) -> CallFeature {
        CallFeature::from_form(pairs)
    }

    fn to_section(&self) -> Value {
        self.to_calls()
    }

    fn refused(&mut self, field: Option<&str>, message: String) {
        CallFeature::refused(self, field, message);
    }

    async fn page(
        self,
        app: &App,
        session: &Session,
        code: StatusCode,
        message: Option<String>,
    ) -> Response {
        page(app, session, code, self, None, None, message).await
    }
}

/// The stored `calls` for the page of another form.
async fn stored_calls(app: &App) -> CallFeature {
    match section::get(app, "calls").await {
        Ok(calls) => CallFeature::from_calls(&calls),
        Err(e) => {
            let mut form = CallFeature::from_calls(&Value::Null);
            form.refused(None, e.error);
            form
        }
    }
}

/// The page after a save of the DND or device form `typed`: what the save
/// did, or the refusal beside its field.
async fn answer(
    app: &App,
    session: &Session,
    mut typed: Table,
    done: Result<(), ApiError>,
) -> Response {
    let (code, message, error) = match done {
        Ok(()) => (StatusCode::OK, Some("Saved".to_owned()), None),
        Err(e) => (e.status, None, typed.refused(e.field.as_deref(), e.error)),
    };
    // A refusal that names no field of the form shows above it.
    if let Some(error) = error {
        typed.error = Some(error);
    }
    let calls = stored_calls(app).await;
    if typed.section == "device" {
        page(app, session, code, calls, None, Some(typed), message).await
    } else {
        page(app, session, code, calls, Some(typed), None, message).await
    }
}

async fn save_dnd(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, pairs) = match section::admin_form(&app, &headers, &body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let typed = dnd_table().typed(&pairs, 2);
    // The DND fields as typed, the others (and the masked passwords) as stored.
    let done = match account::stored(&app).await {
        Ok(mut accounts) => {
            if let Value::Array(items) = &mut accounts {
                typed.merge_into(items);
            }
            section::set(&app, "accounts", &accounts).await
        }
        Err(e) => Err(e),
    };
    answer(&app, &session, typed, done).await
}

async fn save_device(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, pairs) = match section::admin_form(&app, &headers, &body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let typed = device_table().typed(&pairs, 1);
    let done = section::set(&app, "device", &typed.to_object()).await;
    answer(&app, &session, typed, done).await
}
