//! What the pages that edit the configuration share: reading and saving a
//! section through the config service, the admin's checked form, and the
//! show and save handlers of a page that is one form over one section
//! (Intercom > Call Feature, Intercom > Multicast, Media).

use std::future::Future;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::api::App;
use crate::error::ApiError;
use crate::pages::{admin, checked_form};
use crate::sessions::Session;

/// The section `name` as stored (passwords masked).
pub async fn get(app: &App, name: &str) -> Result<Value, ApiError> {
    let value = app.peers.config.get(name).await?;
    Ok(doorphone_interfaces::json::from_variant(&value).unwrap_or(Value::Null))
}

/// Saves `value` as the section `name`; a mask kept keeps the password.
pub async fn set(app: &App, name: &str, value: &Value) -> Result<(), ApiError> {
    let variant = doorphone_interfaces::json::to_variant(value)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    Ok(app.peers.config.set(name, &variant).await?)
}

/// A form's fields, in the order sent.
pub type Pairs = Vec<(String, String)>;

/// The admin's session and the form's pairs, its CSRF token checked, or the
/// page to answer instead.
pub fn admin_form(
    app: &App,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Session, Pairs), Box<Response>> {
    let session = admin(app, headers)?;
    let pairs = checked_form(&session, body)?;
    Ok((session, pairs))
}

/// A page that is one form over one section.
pub trait SectionForm: Sized + Send {
    /// The section's name (`calls`, `media`).
    const SECTION: &'static str;
    fn from_section(section: &Value) -> Self;
    /// What was typed, kept as typed.
    fn from_form(pairs: &[(String, String)]) -> Self;
    fn to_section(&self) -> Value;
    /// Puts a refusal beside the field it names (or above the form).
    fn refused(&mut self, field: Option<&str>, message: String);
    /// The page with this form, `message` above it (and what else the page
    /// shows, read from `app`).
    fn page(
        self,
        app: &App,
        session: &Session,
        code: StatusCode,
        message: Option<String>,
    ) -> impl Future<Output = Response> + Send;
}

/// Shows the form with the stored section.
pub async fn show<F: SectionForm>(State(app): State<App>, headers: HeaderMap) -> Response {
    let session = match admin(&app, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match get(&app, F::SECTION).await {
        Ok(section) => {
            F::from_section(&section)
                .page(&app, &session, StatusCode::OK, None)
                .await
        }
        Err(e) => {
            let mut form = F::from_section(&Value::Null);
            form.refused(None, e.error);
            form.page(&app, &session, e.status, None).await
        }
    }
}

/// Saves the form as the section: the page says so, or shows the refusal
/// beside its field with what was typed.
pub async fn save<F: SectionForm>(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (session, pairs) = match admin_form(&app, &headers, &body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let mut typed = F::from_form(&pairs);
    match set(&app, F::SECTION, &typed.to_section()).await {
        Ok(()) => {
            typed
                .page(&app, &session, StatusCode::OK, Some("Saved".to_owned()))
                .await
        }
        Err(e) => {
            typed.refused(e.field.as_deref(), e.error);
            typed.page(&app, &session, e.status, None).await
        }
    }
}
