//! System > Configuration: the whole configuration exported as a JSON file
//! (passwords as the mask) and a document imported, all or nothing, through
//! the config service. A masked password imported keeps the stored one. A
//! refusal shows beside the document, which is kept as it was pasted.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::App;
use crate::error::ApiError;
use crate::form;
use crate::pages::{Menu, admin, render};
use crate::section;
use crate::sessions::Session;

pub fn router() -> Router<App> {
    Router::new()
        .route("/system/config", get(show).post(import))
        .route("/system/config/export", get(export))
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
}

fn page(
    session: &Session,
    code: StatusCode,
    document: String,
    document_error: Option<String>,
    message: Option<String>,
) -> Response {
    let page = BackupPage {
        title: "System > Configuration",
        menu: Menu::of(session),
        message,
        error: None,
        csrf: session.csrf.clone(),
        document,
        document_error,
    };
    render(code, &page)
}

async fn show(State(app): State<App>, headers: HeaderMap) -> Response {
    match admin(&app, &headers) {
        Ok(session) => page(&session, StatusCode::OK, String::new(), None, None),
        Err(r) => *r,
    }
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
        Ok(()) => page(
            &session,
            StatusCode::OK,
            String::new(),
            None,
            Some("Imported".to_owned()),
        ),
        Err(e) => {
            let e = ApiError::from(e);
            page(&session, e.status, document, Some(e.error), None)
        }
    }
}
