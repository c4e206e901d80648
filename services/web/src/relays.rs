//! Relays and inputs: the door relays (id, name, GPIO line, polarity, the
//! delay and the hold, the DTMF code that opens each during a call), whose
//! DTMF may open them, and the GPIO inputs (exit buttons that open a relay,
//! physical call buttons). Each form saves its sections through the config
//! service; a refusal shows beside the field it names, with what was typed
//! kept.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::Value;

use crate::api::App;
use crate::error::ApiError;
use crate::form;
use crate::pages::{Menu, admin, render};
use crate::section;
use crate::sessions::Session;
use crate::table::{Column, Kind, Named, Table, column};

/// Rows of the relay table (the config service's limit).
pub const RELAYS: usize = 8;
/// Rows of the input table (the config service's limit).
pub const INPUTS: usize = 16;

/// Whose DTMF may open doors.
pub const AUTHORITIES: [&str; 3] = ["all", "contacts", "none"];

const RELAY_COLUMNS: &[Column] = &[
    column("id", "Id (1-8 of A-Z, a-z, 0-9)", Kind::Text),
    column("name", "Name", Kind::Text),
    column("gpio", "GPIO line", Kind::Number(0, 4095)),
    column("active_low", "Active low", Kind::Bool),
    column("trigger_delay", "Trigger delay (s)", Kind::Number(0, 10)),
    column("hold", "Hold (s)", Kind::Number(1, 10)),
    column("dtmf_code", "DTMF code (1-4 of 0-9*#)", Kind::Text),
];

const INPUT_COLUMNS: &[Column] = &[
    column("gpio", "GPIO line", Kind::Number(0, 4095)),
    column("active_low", "Pressed when low", Kind::Bool),
    column("debounce_ms", "Debounce (ms)", Kind::Number(10, 1000)),
    column("opens", "Opens relay (an exit button)", Kind::Optional),
    column("presses", "Presses call button (1-16)", Kind::Number(1, 16)),
];

pub fn router() -> Router<App> {
    Router::new()
        .route("/relays", get(show).post(save_relays))
        .route("/relays/inputs", post(save_inputs))
}

fn relay_table() -> Table {
    Table::new("relays", "relay", RELAY_COLUMNS, Named::Key("id"))
}

fn input_table() -> Table {
    Table::new("inputs", "input", INPUT_COLUMNS, Named::Position)
}

fn list(stored: &Value) -> &[Value] {
    stored.as_array().map(Vec::as_slice).unwrap_or_default()
}

#[derive(Template)]
#[template(path = "relays.html")]
struct RelaysPage {
    title: &'static str,
    menu: Option<Menu>,
    message: Option<String>,
    error: Option<String>,
    csrf: String,
    relays: Table,
    authority: String,
    authority_error: Option<String>,
    inputs: Table,
}

impl RelaysPage {
    fn is(&self, authority: &str) -> bool {
        self.authority == authority
    }
}

/// The three sections as stored.
async fn stored(app: &App) -> Result<[Value; 3], ApiError> {
    let mut out = [Value::Null, Value::Null, Value::Null];
    for (slot, name) in out.iter_mut().zip(["relays", "dtmf_authority", "inputs"]) {
        *slot = section::get(app, name).await?;
    }
    Ok(out)
}

struct Shown {
    relays: Table,
    authority: String,
    inputs: Table,
}

impl Shown {
    fn of(stored: &[Value; 3]) -> Shown {
        Shown {
            relays: relay_table().stored(list(&stored[0]), RELAYS, |_| None),
            authority: stored[1].as_str().unwrap_or("all").to_owned(),
            inputs: input_table().stored(list(&stored[2]), INPUTS, |_| None),
        }
    }
}

fn page(
    session: &Session,
    code: StatusCode,
    shown: Shown,
    message: Option<String>,
    error: Option<String>,
    authority_error: Option<String>,
) -> Response {
    let page = RelaysPage {
        title: "Relays and inputs",
        menu: Menu::of(session),
        message,
        error,
        csrf: session.csrf.clone(),
        relays: shown.relays,
        authority: shown.authority,
        authority_error,
        inputs: shown.inputs,
    };
    render(code, &page)
}

async fn current(app: &App) -> (Shown, Option<String>) {
    match stored(app).await {
        Ok(s) => (Shown::of(&s), None),
        Err(e) => (
            Shown::of(&[Value::Null, Value::Null, Value::Null]),
            Some(e.error),
        ),
    }
}

async fn show(State(app): State<App>, headers: HeaderMap) -> Response {
    let session = match admin(&app, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (shown, error) = current(&app).await;
    let code = if error.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    page(&session, code, shown, None, error, None)
}

/// The page after a save: `shown` with what was typed, the refusal beside
/// the field it names (in either table) or above them.
fn answer(session: &Session, mut shown: Shown, done: Result<(), ApiError>) -> Response {
    match done {
        Ok(()) => page(
            session,
            StatusCode::OK,
            shown,
            Some("Saved".to_owned()),
            None,
            None,
        ),
        Err(e) => {
            let field = e.field.as_deref();
            if field == Some("dtmf_authority") {
                return page(session, e.status, shown, None, None, Some(e.error));
            }
            let left = shown
                .relays
                .refused(field, e.error)
                .and_then(|m| shown.inputs.refused(field, m));
            page(session, e.status, shown, None, left, None)
        }
    }
}

async fn save_relays(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, pairs) = match section::admin_form(&app, &headers, &body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (mut shown, _) = current(&app).await;
    shown.relays = relay_table().typed(&pairs, RELAYS);
    shown.authority = form::one(&pairs, "dtmf_authority")
        .unwrap_or_default()
        .to_owned();
    let mut done = section::set(&app, "relays", &shown.relays.to_list()).await;
    if done.is_ok() {
        done = section::set(
            &app,
            "dtmf_authority",
            &Value::String(shown.authority.clone()),
        )
        .await;
    }
    answer(&session, shown, done)
}

async fn save_inputs(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, pairs) = match section::admin_form(&app, &headers, &body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (mut shown, _) = current(&app).await;
    shown.inputs = input_table().typed(&pairs, INPUTS);
    let done = section::set(&app, "inputs", &shown.inputs.to_list()).await;
    answer(&session, shown, done)
}
