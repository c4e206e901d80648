//! The web pages, rendered on the server from templates checked at compile
//! time, with no script: the login form, the status page (with each door's
//! Open button and the camera's snapshot, refreshed every 5 s), and Intercom >
//! Call Feature (Intercom > Dial Plan is `dial_plan`), whose refusals show beside the field the config service
//! names, keeping what was typed.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use doorphone_interfaces::config::document::WebRole;
use doorphone_interfaces::relay::source;
use serde_json::Value;

use crate::api::App;
use crate::auth::PeerAddr;
use crate::error::ApiError;
use crate::form;
use crate::sessions::{self, Activity, COOKIE, LOGIN_COOKIE, Session};

/// What every response carries: no framing, no foreign content, no script.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// No Strict-Transport-Security: with its self-signed certificate (or a new
/// one after a reset) a door phone would be locked out of the browsers that
/// remembered it.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

pub fn router() -> Router<App> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/status") }))
        .route("/style.css", get(style))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/status", get(status_page))
        .route("/doors/{relay}/open", post(open_door))
        .route("/calls/{id}/answer", post(answer_call))
        .route("/calls/{id}/hangup", post(hang_up_call))
        .route("/snapshot.jpg", get(snapshot))
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css")],
        include_str!("../templates/style.css"),
    )
        .into_response()
}

/// The navigation of a logged-in page.
pub struct Menu {
    pub name: String,
    pub admin: bool,
    pub csrf: String,
}

impl Menu {
    pub(crate) fn of(session: &Session) -> Option<Menu> {
        Some(Menu {
            name: session.name.clone(),
            admin: session.role == WebRole::Admin,
            csrf: session.csrf.clone(),
        })
    }
}

pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!("a page did not render: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "notice.html")]
struct Notice {
    title: &'static str,
    menu: Option<Menu>,
    message: Option<String>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    title: &'static str,
    menu: Option<Menu>,
    message: Option<String>,
    error: Option<String>,
    csrf: String,
    name: String,
}

/// The session of a page request, or where to go instead: the notice when
/// there is no user, the login form when there is no live session.
pub(crate) fn session(app: &App, headers: &HeaderMap) -> Result<Session, Box<Response>> {
    session_of(app, headers, Activity::User)
}

/// [`session`], for a request the user or the page itself made.
fn session_of(
    app: &App,
    headers: &HeaderMap,
    activity: Activity,
) -> Result<Session, Box<Response>> {
    let snapshot = app.auth.snapshot();
    let users = &snapshot.document.web.users;
    if users.is_empty() {
        return Err(Box::new(render(
            StatusCode::SERVICE_UNAVAILABLE,
            &Notice {
                title: "Set up",
                menu: None,
                message: None,
                error: None,
            },
        )));
    }
    let timeout = Duration::from_secs(u64::from(snapshot.document.web.session_timeout));
    sessions::cookie(headers, COOKIE)
        .and_then(|token| {
            app.sessions
                .check(token, users, timeout, Instant::now(), activity)
        })
        .ok_or_else(|| Box::new(Redirect::to("/login").into_response()))
}

pub(crate) fn admin(app: &App, headers: &HeaderMap) -> Result<Session, Box<Response>> {
    let session = session(app, headers)?;
    if session.role != WebRole::Admin {
        return Err(Box::new(forbidden("this page is for admins")));
    }
    Ok(session)
}

fn forbidden(why: &str) -> Response {
    (StatusCode::FORBIDDEN, Html(format!("<p>{why}</p>"))).into_response()
}

/// The form's CSRF token must be the session's.
pub(crate) fn checked_form(
    session: &Session,
    body: &Bytes,
) -> Result<Vec<(String, String)>, Box<Response>> {
    let pairs = form::pairs(body);
    match form::one(&pairs, "csrf") {
        Some(token) if session.csrf_ok(token) => Ok(pairs),
        _ => Err(Box::new(forbidden(
            "the form carried no valid CSRF token: reload the page and submit it again",
        ))),
    }
}

async fn login_form(State(app): State<App>) -> Response {
    if app.auth.snapshot().document.web.users.is_empty() {
        return session(&app, &HeaderMap::new())
            .err()
            .map(|r| *r)
            .unwrap_or_default();
    }
    login_page(StatusCode::OK, String::new(), None)
}

fn login_page(status: StatusCode, name: String, error: Option<String>) -> Response {
    let csrf = sessions::token();
    let mut response = render(
        status,
        &Login {
            title: "Log in",
            menu: None,
            message: None,
            error,
            csrf: csrf.clone(),
            name,
        },
    );
    if let Ok(cookie) = HeaderValue::try_from(sessions::set_cookie(LOGIN_COOKIE, &csrf, Some(600)))
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

async fn login(State(app): State<App>, request: Request) -> Response {
    let ip = request
        .extensions()
        .get::<PeerAddr>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.0.ip());
    let headers = request.headers().clone();
    let Ok(body) = axum::body::to_bytes(request.into_body(), 16 * 1024).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let pairs = form::pairs(&body);
    let expected = sessions::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let given = form::one(&pairs, "csrf").unwrap_or_default();
    if expected.is_empty() || !crate::digest::equal(expected.as_bytes(), given.as_bytes()) {
        return forbidden("the form carried no valid CSRF token: reload the page and log in again");
    }
    let name = form::one(&pairs, "name").unwrap_or_default().to_owned();
    let password = form::one(&pairs, "password").unwrap_or_default();
    match app.auth.login(ip, &name, password).await {
        Ok(login) => {
            let token = app.sessions.create(&login.name, login.role, Instant::now());
            let mut response = Redirect::to("/status").into_response();
            for cookie in [
                sessions::set_cookie(COOKIE, &token, None),
                sessions::set_cookie(LOGIN_COOKIE, "", Some(0)),
            ] {
                if let Ok(cookie) = HeaderValue::try_from(cookie) {
                    response.headers_mut().append(header::SET_COOKIE, cookie);
                }
            }
            response
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED => login_page(
            StatusCode::UNAUTHORIZED,
            name,
            Some("wrong name or password".to_owned()),
        ),
        Err(e) => login_page(e.status, name, Some(e.error)),
    }
}

async fn logout(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let session = match session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if let Err(r) = checked_form(&session, &body) {
        return *r;
    }
    if let Some(token) = sessions::cookie(&headers, COOKIE) {
        app.sessions.remove(token);
    }
    let mut response = Redirect::to("/login").into_response();
    if let Ok(cookie) = HeaderValue::try_from(sessions::set_cookie(COOKIE, "", Some(0))) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub struct ServiceLine {
    pub name: String,
    pub up: bool,
}

pub struct CallLine {
    pub id: String,
    pub text: String,
    pub ringing: bool,
}

pub struct Door {
    pub relay: String,
    pub state: String,
}

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage {
    title: &'static str,
    menu: Option<Menu>,
    message: Option<String>,
    error: Option<String>,
    csrf: String,
    services: Vec<ServiceLine>,
    revision: String,
    fingerprint: String,
    doors: Vec<Door>,
    admin: bool,
    calls: Vec<CallLine>,
    accounts: Vec<String>,
}

/// The status page; its own refresh (`?auto`) does not count as the
/// user's activity, so a page left open still ends its session.
async fn status_page(State(app): State<App>, uri: Uri, headers: HeaderMap) -> Response {
    let activity = if uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "auto"))
    {
        Activity::Page
    } else {
        Activity::User
    };
    let session = match session_of(&app, &headers, activity) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    status_with(&app, &session, StatusCode::OK, None, None).await
}

async fn status_with(
    app: &App,
    session: &Session,
    code: StatusCode,
    message: Option<String>,
    error: Option<String>,
) -> Response {
    let axum::Json(status) = crate::status::status(State(app.clone())).await;
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let page = StatusPage {
        title: "Status",
        menu: Menu::of(session),
        message,
        error,
        csrf: session.csrf.clone(),
        services: status["services"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(name, up)| ServiceLine {
                        name: name.clone(),
                        up: up.as_bool() == Some(true),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        revision: text(&status["config_revision"]),
        fingerprint: text(&status["tls_fingerprint"]),
        doors: list(&status["doors"])
            .iter()
            .map(|d| Door {
                relay: text(&d["relay"]),
                state: text(&d["state"]),
            })
            .collect(),
        admin: session.role == WebRole::Admin,
        calls: list(&status["calls"])
            .iter()
            .map(|c| CallLine {
                id: text(&c["id"]),
                text: format!(
                    "{} {} ({})",
                    text(&c["direction"]),
                    text(&c["remote"]),
                    text(&c["state"])
                ),
                ringing: c["state"] == "ringing",
            })
            .collect(),
        accounts: list(&status["accounts"])
            .iter()
            .map(|a| {
                format!(
                    "{}: {} {}",
                    text(&a["id"]),
                    text(&a["state"]),
                    text(&a["aor"])
                )
            })
            .collect(),
    };
    render(code, &page)
}

async fn open_door(
    State(app): State<App>,
    Path(relay): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let session = match session(&app, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if let Err(r) = checked_form(&session, &body) {
        return *r;
    }
    match app.peers.relay.open(&relay, source::API).await {
        Ok(()) => {
            status_with(
                &app,
                &session,
                StatusCode::OK,
                Some(format!("Door {relay} opened")),
                None,
            )
            .await
        }
        Err(e) => {
            let e = ApiError::from(e);
            status_with(&app, &session, e.status, None, Some(e.error)).await
        }
    }
}

async fn answer_call(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    call_action(app, id, headers, body, true).await
}

async fn hang_up_call(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    call_action(app, id, headers, body, false).await
}

/// The status page's Answer (`answer`) or Hang up button of call `id`.
async fn call_action(
    app: App,
    id: String,
    headers: HeaderMap,
    body: Bytes,
    answer: bool,
) -> Response {
    let session = match admin(&app, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if let Err(r) = checked_form(&session, &body) {
        return *r;
    }
    let done = match app.peers.call(&id).await {
        Ok(call) if answer => call.answer().await.map_err(ApiError::from),
        Ok(call) => call.hangup().await.map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match done {
        Ok(()) => {
            let what = if answer { "answered" } else { "ended" };
            status_with(
                &app,
                &session,
                StatusCode::OK,
                Some(format!("Call {id} {what}")),
                None,
            )
            .await
        }
        Err(e) => status_with(&app, &session, e.status, None, Some(e.error)).await,
    }
}

async fn snapshot(State(app): State<App>, headers: HeaderMap) -> Response {
    // The image the status page loads again with each refresh.
    if let Err(r) = session_of(&app, &headers, Activity::Page) {
        return *r;
    }
    match app.peers.media.snapshot().await {
        Ok(jpeg) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            jpeg,
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
