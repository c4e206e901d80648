//! System > Configuration: the whole configuration exported as a JSON file
//! (passwords as the mask) and a document imported, all or nothing, through
//! the config service. A masked password imported keeps the stored one. A
//! refusal shows beside the document, which is kept as it was pasted.
//! Beside them, the web access: the users (made with `doorctl web passwd`,
//! listed without their hashes) and the session time-out.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use crate::api::App;
use crate::error::ApiError;
use crate::form;
use crate::pages::{Menu, admin, render};
use crate::section;
use crate::sessions::Session;
use crate::table::{Column, Kind, Named, Table, column};

const WEB_COLUMNS: &[Column] = &[column(
    "session_timeout",
    "Session time-out (s, 60-86400)",
    Kind::Number(60, 86400),
)];

fn web_table() -> Table {
    Table::new("web", "web", WEB_COLUMNS, Named::Object)
}

pub fn router() -> Router<App> {
    Router::new()
        .route("/system/config", get(show).post(import))
        .route("/system/config/export", get(export))
        .route("/system/config/web", post(save_web))
}

#[derive(Template)]
#[template(path = "backup.html")]
struct BackupPage {
    title: &'static str,
    menu: Option<Menu>,
    message: Option<String>,
    error: Option<String>,
    csrf: String,
    document: String,
    document_error: Option<String>,
    /// Each web user's name and role.
    users: Vec<(String, String)>,
    web: Table,
}

/// The page, with `web` as typed when that form was submitted.
async fn page(
    app: &App,
    session: &Session,
    code: StatusCode,
    document: String,
    document_error: Option<String>,
    message: Option<String>,
    web: Option<Table>,
) -> Response {
    let (stored, error) = match section::get(app, "web").await {
        Ok(v) => (v, None),
        Err(e) => (Value::Null, Some(e.error)),
    };
    let users = stored["users"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            let text = |k: &str| u[k].as_str().unwrap_or_default().to_owned();
            (text("name"), text("role"))
        })
        .collect();
    let web = web.unwrap_or_else(|| web_table().stored(std::slice::from_ref(&stored), 1, |_| None));
    let page = BackupPage {
        title: "System > Configuration",
        menu: Menu::of(session),
        message,
        error,
        csrf: session.csrf.clone(),
        document,
        document_error,
        users,
        web,
    };
    render(code, &page)
}

async fn show(State(app): State<App>, headers: HeaderMap) -> Response {
    match admin(&app, &headers) {
        Ok(session) => {
            page(
                &app,
                &session,
                StatusCode::OK,
                String::new(),
                None,
                None,
                None,
            )
            .await
        }
        Err(r) => *r,
    }
}

/// Saves the session time-out (the users stay as they are).
async fn save_web(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, pairs) = match section::admin_form(&app, &headers, &body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let mut typed = web_table().typed(&pairs, 1);
    let timeout = typed.to_object()["session_timeout"].clone();
    let (code, message) = match section::set(&app, "web.session_timeout", &timeout).await {
        Ok(()) => (StatusCode::OK, Some("Saved".to_owned())),
        Err(e) => {
            let status = e.status;
            if let Some(left) = typed.refused(e.field.as_deref(), e.error) {
                typed.error = Some(left);
            }
            (status, None)
        }
    };
    page(
        &app,
        &session,
        code,
        String::new(),
        None,
        message,
        Some(typed),
    )
    .await
}

async fn export(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&app, &headers) {
        return *r;
    }
    match app.peers.config.export().await {
        Ok(document) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"doorphone-config.json\"",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            document,
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn import(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (session, pairs) = match section::admin_form(&app, &headers, &body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let document = form::one(&pairs, "document").unwrap_or_default().to_owned();
    match app.peers.config.import(&document).await {
        Ok(()) => {
            page(
                &app,
                &session,
                StatusCode::OK,
                String::new(),
                None,
                Some("Imported".to_owned()),
                None,
            )
            .await
        }
        Err(e) => {
            let e = ApiError::from(e);
            page(
                &app,
                &session,
                e.status,
                document,
                Some(e.error),
                None,
                None,
            )
            .await
        }
    }
}
