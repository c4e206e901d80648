//! `GET /api/v1/status`: the whole door phone at a glance. Each part comes
//! from its service; a service that is down leaves its part `null` and says so
//! in `services`, the rest is still shown.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::api::{App, call_list};
use crate::error::Peer;

pub async fn status(State(app): State<App>) -> Json<Value> {
    let peers = &app.peers;
    let up = futures_util::future::join_all(Peer::ALL.map(|p| peers.is_up(p))).await;
    let services: serde_json::Map<String, Value> = Peer::ALL
        .iter()
        .zip(&up)
        .map(|(p, up)| (p.name().to_owned(), Value::Bool(*up)))
        .collect();
    let is_up = |peer: Peer| {
        Peer::ALL
            .iter()
            .position(|p| *p == peer)
            .is_some_and(|i| up[i])
    };
    let revision = async {
        if !is_up(Peer::Config) {
            return Value::Null;
        }
        peers
            .config
            .revision()
            .await
            .map_or(Value::Null, Value::from)
    };
    let accounts = async {
        if !is_up(Peer::Sip) {
            return Value::Null;
        }
        peers
            .sip
            .accounts()
            .await
            .ok()
            .and_then(|a| serde_json::to_value(a).ok())
            .unwrap_or(Value::Null)
    };
    let calls = async {
        if !is_up(Peer::Sip) {
            return Value::Null;
        }
        call_list(peers).await.map_or(Value::Null, Value::Array)
    };
    let doors = async {
        if !is_up(Peer::Relay) {
            return Value::Null;
        }
        let (ids, states) = tokio::join!(peers.relay.relay_ids(), peers.relay.relays());
        match (ids, states) {
            (Ok(ids), Ok(states)) => Value::Array(
                ids.iter()
                    .map(|id| json!({"relay": id, "state": states.get(id)}))
                    .collect(),
            ),
            _ => Value::Null,
        }
    };
    let pager = async {
        if !is_up(Peer::Pager) {
            return Value::Null;
        }
        let (listening, page) = tokio::join!(peers.pager.listening(), peers.pager.page());
        match (listening, page) {
            (Ok(listening), Ok(page)) => json!({
                "listening": listening,
                "playing": (page.port != 0).then_some(page),
            }),
            _ => Value::Null,
        }
    };
    let (revision, accounts, calls, doors, pager) =
        tokio::join!(revision, accounts, calls, doors, pager);
    Json(json!({
        "services": services,
        "config_revision": revision,
        "accounts": accounts,
        "calls": calls,
        "doors": doors,
        "pager": pager,
        "tls_fingerprint": &*app.fingerprint,
    }))
}
