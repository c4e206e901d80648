//! `/api/v1`: the routes, who may use each, and their handlers. The router is
//! built from [`routes`] alone, and the OpenAPI document is checked against
//! the same table, so what is served and what is documented are one list.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use doorphone_interfaces::json;
use doorphone_interfaces::relay::source;
use serde_json::{Value, json};
use zbus::Variant;

use crate::auth::{Access, Auth, Gate};
use crate::error::ApiError;
use crate::events::Events;
use crate::peers::{Peers, call_id};
use crate::status;

/// What every handler reaches.
#[derive(Clone)]
pub struct App {
    pub peers: Peers,
    pub auth: Arc<Auth>,
    pub events: Events,
    /// The SHA-256 fingerprint of the certificate served.
    pub fingerprint: Arc<str>,
    /// The web pages' sessions.
    pub sessions: Arc<crate::sessions::Sessions>,
}

/// The OpenAPI document of [`routes`].
pub const OPENAPI: &str = include_str!("openapi.json");

/// One route: its method, its path (axum's syntax, which is OpenAPI's), who
/// may use it, and its handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<App>,
}

fn route(method: Method, path: &'static str, access: Access, handler: MethodRouter<App>) -> Route {
    Route {
        method,
        path,
        access,
        handler,
    }
}

/// Every route the API serves.
pub fn routes() -> Vec<Route> {
    use Access::{Admin, Public, User};
    vec![
        route(Method::GET, "/api/v1/openapi.json", Public, get(openapi)),
        route(Method::GET, "/api/v1/status", User, get(status::status)),
        route(Method::GET, "/api/v1/calls", Admin, get(calls)),
        route(Method::POST, "/api/v1/calls", Admin, post(dial)),
        route(
            Method::POST,
            "/api/v1/calls/{id}/answer",
            Admin,
            post(answer),
        ),
        route(Method::DELETE, "/api/v1/calls/{id}", Admin, delete(hang_up)),
        route(Method::GET, "/api/v1/history", User, get(history)),
        route(
            Method::POST,
            "/api/v1/doors/{relay}/open",
            User,
            post(open_door),
        ),
        route(Method::GET, "/api/v1/snapshot.jpg", User, get(snapshot)),
        route(Method::GET, "/api/v1/config", Admin, get(export)),
        route(Method::PUT, "/api/v1/config", Admin, put(import)),
        route(
            Method::PATCH,
            "/api/v1/config/{key}",
            Admin,
            patch(set_value),
        ),
        route(Method::GET, "/api/v1/events", User, get(events)),
    ]
}

/// The API's router, every route behind its access check, and the pages;
/// every response with the security headers.
pub fn router(app: App) -> Router {
    let mut router = Router::new();
    for r in routes() {
        let gate = Gate {
            auth: app.auth.clone(),
            access: r.access,
        };
        router = router.route(
            r.path,
            r.handler
                .route_layer(middleware::from_fn_with_state(gate, crate::auth::require)),
        );
    }
    router
        .merge(crate::pages::router())
        .merge(crate::dial_plan::router())
        .merge(crate::multicast::router())
        .merge(crate::call_feature::router())
        .merge(crate::basic::router())
        .merge(crate::relays::router())
        .merge(crate::contacts::router())
        .merge(crate::media::router())
        .merge(crate::account::router())
        .merge(crate::history::router())
        .merge(crate::backup::router())
        .fallback(|| async { ApiError::not_found("no such resource") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        .layer(middleware::from_fn(crate::pages::security_headers))
        .with_state(app)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// A request body as JSON.
fn body_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")).with_field("body"))
}

/// A call's properties as the API shows them.
pub async fn call_json(peers: &Peers, id: &str) -> Result<Value, ApiError> {
    let call = peers.call(id).await?;
    let props = zbus::fdo::PropertiesProxy::builder(&peers.conn)
        .destination(doorphone_interfaces::sip::BUS_NAME)
        .path(call.inner().path().to_owned())
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .map_err(|e| ApiError::bus(crate::error::Peer::Sip, e))?;
    let interface = zbus::names::InterfaceName::from_static_str_unchecked(
        doorphone_interfaces::sip::CALL_INTERFACE,
    );
    let all = props.get_all(interface).await.map_err(|e| match e {
        zbus::fdo::Error::UnknownObject(_) | zbus::fdo::Error::UnknownInterface(_) => {
            ApiError::not_found(format!("no call {id}"))
        }
        e => ApiError::bus(crate::error::Peer::Sip, e.into()),
    })?;
    let mut out = serde_json::Map::new();
    out.insert("id".into(), Value::String(id.to_owned()));
    for (name, key) in [
        ("State", "state"),
        ("Direction", "direction"),
        ("Remote", "remote"),
        ("Identity", "identity"),
        ("Account", "account"),
        ("MediaMode", "media_mode"),
        ("StartTime", "start_time"),
        ("AnswerTime", "answer_time"),
        ("EndReason", "end_reason"),
    ] {
        if let Some(value) = all.get(name) {
            out.insert(key.into(), json::from_variant(value).unwrap_or(Value::Null));
        }
    }
    Ok(Value::Object(out))
}

/// Every call in progress.
pub async fn call_list(peers: &Peers) -> Result<Vec<Value>, ApiError> {
    let paths = peers
        .sip
        .calls()
        .await
        .map_err(|e| ApiError::bus(crate::error::Peer::Sip, e))?;
    let mut calls = Vec::new();
    for path in paths {
        match call_json(peers, call_id(path.as_str())).await {
            Ok(call) => calls.push(call),
            // Ended between the listing and the reading.
            Err(e) if e.status == StatusCode::NOT_FOUND => {}
            Err(e) => return Err(e),
        }
    }
    Ok(calls)
}

async fn calls(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    Ok(Json(Value::Array(call_list(&app.peers).await?)))
}

async fn dial(State(app): State<App>, body: Bytes) -> Result<Response, ApiError> {
    let body = body_json(&body)?;
    let number = body.get("number").and_then(Value::as_str).ok_or_else(|| {
        ApiError::bad_request("number: a string is required").with_field("number")
    })?;
    let mut options: HashMap<&str, Variant<'_>> = HashMap::new();
    match body.get("account") {
        None | Some(Value::Null) => {}
        Some(Value::String(account)) => {
            options.insert("account", Variant::from(account.clone()));
        }
        Some(Value::Number(n)) => {
            options.insert("account", Variant::from(n.to_string()));
        }
        Some(_) => {
            return Err(
                ApiError::bad_request("account: `auto`, `1`, `2` or `ip`").with_field("account")
            );
        }
    }
    match body.get("video") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(video)) => {
            options.insert("video", Variant::from(*video));
        }
        Some(_) => return Err(ApiError::bad_request("video: true or false").with_field("video")),
    }
    let path = app.peers.sip.dial(number, options).await?;
    let id = call_id(path.as_str()).to_owned();
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/calls/{id}"))],
        Json(json!({"id": id})),
    )
        .into_response())
}

async fn answer(State(app): State<App>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    app.peers
        .call(&id)
        .await?
        .answer()
        .await
        .map_err(|e| call_error(e, &id))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn hang_up(State(app): State<App>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    app.peers
        .call(&id)
        .await?
        .hangup()
        .await
        .map_err(|e| call_error(e, &id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A call that is gone is a 404 naming the id.
fn call_error(e: doorphone_interfaces::sip::Error, id: &str) -> ApiError {
    let error = ApiError::from(e);
    if error.status == StatusCode::NOT_FOUND {
        return ApiError::not_found(format!("no call {id}")).with_field("id");
    }
    error
}

async fn history(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let entries = app.peers.sip.history().await?;
    Ok(Json(serde_json::to_value(entries).unwrap_or(Value::Null)))
}

async fn open_door(
    State(app): State<App>,
    Path(relay): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.peers
        .relay
        .open(&relay, source::API)
        .await
        .map_err(|e| match e {
            doorphone_interfaces::relay::Error::NotFound(message) => {
                ApiError::not_found(message).with_field("relay")
            }
            e => e.into(),
        })?;
    Ok(Json(json!({"relay": relay, "source": source::API})))
}

async fn snapshot(State(app): State<App>) -> Result<Response, ApiError> {
    let jpeg = app.peers.media.snapshot().await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        jpeg,
    )
        .into_response())
}

async fn export(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let text = app.peers.config.export().await?;
    let document = serde_json::from_str(&text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the config service's document: {e}"),
        )
    })?;
    Ok(Json(document))
}

async fn import(State(app): State<App>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let document = body_json(&body)?;
    if !document.is_object() {
        return Err(
            ApiError::bad_request("the configuration is a JSON object").with_field("document")
        );
    }
    app.peers.config.import(&document.to_string()).await?;
    revision(&app).await
}

async fn set_value(
    State(app): State<App>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let value = body_json(&body)?;
    let variant = json::to_variant(&value).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{key}: {e}")).with_field(&key)
    })?;
    app.peers.config.set(&key, &variant).await?;
    revision(&app).await
}

/// The configuration's revision after a change.
async fn revision(app: &App) -> Result<Json<Value>, ApiError> {
    let revision = app
        .peers
        .config
        .revision()
        .await
        .map_err(|e| ApiError::bus(crate::error::Peer::Config, e))?;
    Ok(Json(json!({"revision": revision})))
}

async fn events(State(app): State<App>) -> Response {
    match app.events.stream().await {
        Ok(stream) => stream.into_response(),
        Err(e) => {
            // The bus refused a subscription (a match rule): not the client's fault.
            tracing::error!("cannot follow the door phone's events: {e}");
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the door phone's events cannot be followed now",
            )
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every route served is in the OpenAPI document with its method, and
    /// every operation of the document is served.
    #[test]
    fn the_openapi_document_lists_exactly_the_routes_served() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if method != "parameters" {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let served: BTreeSet<(String, String)> = routes()
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_owned()))
            .collect();
        assert_eq!(served, documented);
    }

    /// Who may use each route is what the document says: public routes have
    /// no security, `user` routes carry the `x-role: user` mark.
    #[test]
    fn the_openapi_document_gives_each_routes_role() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        for r in routes() {
            let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
            let role = op["x-role"].as_str();
            let expected = match r.access {
                Access::Public => "public",
                Access::User => "user",
                Access::Admin => "admin",
            };
            assert_eq!(role, Some(expected), "{} {}", r.method, r.path);
            if r.access == Access::Public {
                assert_eq!(op["security"], json!([]), "{} {}", r.method, r.path);
            }
        }
    }
}
