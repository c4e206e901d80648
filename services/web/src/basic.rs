//! Intercom > Basic: the 16 call buttons (group or sequence, the numbers or
//! one group number, what a refusal does, the sequence's time-out, and what
//! happens when nobody answers: relays and actions) and the actions'
//! settings (the FTP server and the e-mail that take the camera snapshot).
//! Each form saves its section (`buttons`, `actions`) through the config
//! service; a refusal shows beside the field it names, with what was typed
//! kept. The FTP and e-mail passwords never reach the browser: the form
//! holds the mask, and a mask sent back keeps the stored password.

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
use crate::pages::{Menu, admin, render};
use crate::section;
use crate::sessions::Session;
use crate::table::{Column, Kind, Named, Table, column};

/// The door phone's call buttons.
pub const BUTTONS: usize = 16;

const BUTTON_COLUMNS: &[Column] = &[
    column("button", "Button", Kind::Index),
    column(
        "call_type",
        "Call type",
        Kind::Choice(&["group", "sequence"]),
    ),
    column("numbers", "Numbers (1-16, spaces between)", Kind::List),
    column("group_number", "Group number (instead)", Kind::Text),
    column(
        "when_refused",
        "When refused",
        Kind::Choice(&[
            "",
            "end_this_call",
            "end_all_calls",
            "call_next",
            "do_not_call_next",
        ]),
    ),
    column("timeout", "Time-out (s)", Kind::Number(5, 120)),
    column("no_answer.relays", "No answer: relays", Kind::List),
    column(
        "no_answer.actions",
        "No answer: actions",
        Kind::Set(&["ftp", "email", "http"]),
    ),
    column("no_answer.http_url", "No answer: HTTP URL", Kind::Text),
];

const ACTION_COLUMNS: &[Column] = &[
    column(
        "ftp.url",
        "FTP URL (ftp://host[:port]/directory/)",
        Kind::Text,
    ),
    column("ftp.user", "FTP user", Kind::Text),
    column("ftp.password", "FTP password", Kind::Password),
    column("email.smtp", "SMTP server (host:port)", Kind::Text),
    column(
        "email.tls",
        "SMTP security",
        Kind::Choice(&["none", "starttls", "tls"]),
    ),
    column("email.user", "SMTP user", Kind::Text),
    column("email.password", "SMTP password", Kind::Password),
    column("email.from", "From", Kind::Text),
    column("email.to", "To (up to 10, spaces between)", Kind::List),
];

pub fn router() -> Router<App> {
    Router::new()
        .route("/intercom/basic", get(show).post(save_buttons))
        .route("/intercom/basic/actions", post(save_actions))
}

fn buttons(stored: &Value) -> Table {
    let items = stored.as_array().map(Vec::as_slice).unwrap_or_default();
    Table::new("buttons", "button", BUTTON_COLUMNS, Named::Index).stored(items, BUTTONS, |b| {
        b["button"].as_u64().and_then(|n| usize::try_from(n).ok())
    })
}

fn actions(stored: &Value) -> Table {
    Table::new("actions", "actions", ACTION_COLUMNS, Named::Object).stored(
        std::slice::from_ref(stored),
        1,
        |_| None,
    )
}

#[derive(Template)]
#[template(path = "basic.html")]
struct BasicPage {
    title: &'static str,
    menu: Option<Menu>,
    message: Option<String>,
    error: Option<String>,
    csrf: String,
    buttons: Table,
    actions: Table,
}

fn page(
    session: &Session,
    code: StatusCode,
    buttons: Table,
    actions: Table,
    message: Option<String>,
    error: Option<String>,
) -> Response {
    let page = BasicPage {
        title: "Intercom > Basic",
        menu: Menu::of(session),
        message,
        error,
        csrf: session.csrf.clone(),
        buttons,
        actions,
    };
    render(code, &page)
}

/// The page with `typed` for one form and the stored section for the
/// other; what the save did above it or its refusal beside its field.
async fn answer(
    app: &App,
    session: &Session,
    typed: Table,
    done: Result<(), ApiError>,
) -> Response {
    let other = if typed.section == "buttons" {
        "actions"
    } else {
        "buttons"
    };
    let (other, error) = match section::get(app, other).await {
        Ok(v) => (v, None),
        Err(e) => (Value::Null, Some(e.error)),
    };
    let mut typed = typed;
    let (code, message, error) = match done {
        Ok(()) => (StatusCode::OK, Some("Saved".to_owned()), error),
        Err(e) => (e.status, None, typed.refused(e.field.as_deref(), e.error)),
    };
    let (buttons, actions) = if typed.section == "buttons" {
        (typed, actions(&other))
    } else {
        (buttons(&other), typed)
    };
    page(session, code, buttons, actions, message, error)
}

async fn show(State(app): State<App>, headers: HeaderMap) -> Response {
    let session = match admin(&app, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let (b, a) = (
        section::get(&app, "buttons").await,
        section::get(&app, "actions").await,
    );
    match (b, a) {
        (Ok(b), Ok(a)) => page(
            &session,
            StatusCode::OK,
            buttons(&b),
            actions(&a),
            None,
            None,
        ),
        (Err(e), _) | (_, Err(e)) => page(
            &session,
            e.status,
            buttons(&Value::Null),
            actions(&Value::Null),
            None,
            Some(e.error),
        ),
    }
}

async fn save_buttons(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, pairs) = match section::admin_form(&app, &headers, &body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let typed =
        Table::new("buttons", "button", BUTTON_COLUMNS, Named::Index).typed(&pairs, BUTTONS);
    let done = section::set(&app, "buttons", &typed.to_list()).await;
    answer(&app, &session, typed, done).await
}

async fn save_actions(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, pairs) = match section::admin_form(&app, &headers, &body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let typed = Table::new("actions", "actions", ACTION_COLUMNS, Named::Object).typed(&pairs, 1);
    let done = section::set(&app, "actions", &typed.to_object()).await;
    answer(&app, &session, typed, done).await
}
