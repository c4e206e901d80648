//! `org.doorphone.Config1` called through its proxy over a peer-to-peer
//! connection: no bus daemon, no root, a real SQLite database in a temporary
//! folder.

use std::path::Path;
use std::time::Duration;

use doorphone_config::ConfigService;
use doorphone_interfaces::config::{self, Config1Proxy};
use doorphone_interfaces::json;
use futures_util::StreamExt;
use serde_json::{Value, json};
use zbus::proxy::CacheProperties;

/// Generous: the machine may be busy.
const PATIENCE: Duration = Duration::from_secs(10);

/// The service on `db`, served to a client connection; the server connection is
/// kept so the object stays.
struct Peer {
    _server: zbus::Connection,
    proxy: Config1Proxy<'static>,
}

async fn serve(db: &Path) -> Peer {
    let service = ConfigService::open(db).expect("the database opens");
    let (server, client) = doorphone_daemon::bus::peer_to_peer(config::OBJECT_PATH, service)
        .await
        .expect("a peer-to-peer connection");
    // Read the revision afresh at every call: a cache would hide a missed change.
    let proxy = Config1Proxy::builder(&client)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .expect("proxy");
    Peer {
        _server: server,
        proxy,
    }
}

async fn set(proxy: &Config1Proxy<'_>, key: &str, value: Value) -> Result<(), config::Error> {
    proxy
        .set(key, &json::to_variant(&value).expect("a D-Bus value"))
        .await
}

async fn get(proxy: &Config1Proxy<'_>, key: &str) -> Value {
    json::from_variant(&proxy.get(key).await.expect("get")).expect("JSON")
}

async fn next_changed(stream: &mut config::ChangedStream) -> Vec<String> {
    let signal = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("Changed within the patience")
        .expect("the stream of Changed goes on");
    signal.args().expect("Changed's sections").sections
}

#[tokio::test]
async fn a_set_that_validates_is_stored_and_announced() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("config.db");
    let peer = serve(&db).await;
    let mut changed = peer.proxy.receive_changed().await.unwrap();
    let before = peer.proxy.revision().await.unwrap();

    set(&peer.proxy, "calls.max_call_time", json!(120))
        .await
        .unwrap();
    assert_eq!(next_changed(&mut changed).await, ["calls"]);
    assert_eq!(get(&peer.proxy, "calls.max_call_time").await, json!(120));
    assert_eq!(peer.proxy.revision().await.unwrap(), before + 1);

    set(
        &peer.proxy,
        "actions.ftp.url",
        json!("ftp://[2001:db8::21]:2121/snapshots/"),
    )
    .await
    .unwrap();
    assert_eq!(next_changed(&mut changed).await, ["actions"]);
    assert_eq!(peer.proxy.revision().await.unwrap(), before + 2);

    // Setting the value it already has changes nothing and announces nothing:
    // the next Changed is the next real change's.
    set(&peer.proxy, "calls.max_call_time", json!(120))
        .await
        .unwrap();
    assert_eq!(peer.proxy.revision().await.unwrap(), before + 2);
    set(&peer.proxy, "relays.A.hold", json!(7)).await.unwrap();
    assert_eq!(next_changed(&mut changed).await, ["relays"]);

    // Stored: the database file holds the values after the service is gone.
    drop(peer);
    let reopened = ConfigService::open(&db).unwrap();
    let doc = reopened.document();
    assert_eq!(doc.calls.max_call_time, 120);
    assert_eq!(doc.actions.ftp.url, "ftp://[2001:db8::21]:2121/snapshots/");
    assert_eq!(doc.relays[0].hold, 7);
    assert_eq!(reopened.revision_now(), before + 3);
}

#[tokio::test]
async fn a_refused_set_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("config.db");
    let peer = serve(&db).await;
    let mut changed = peer.proxy.receive_changed().await.unwrap();
    let before = peer.proxy.revision().await.unwrap();
    let document = peer.proxy.export().await.unwrap();

    for (key, value, refusal) in [
        (
            "calls.max_call_time",
            json!(3),
            "calls.max_call_time: 3 is out of range (0 or 5-7200)",
        ),
        (
            "actions.ftp.url",
            json!("https://192.0.2.1/snapshots/"),
            "actions.ftp.url: \"https://192.0.2.1/snapshots/\" is not a ftp:// URL with a host",
        ),
        (
            "actions.email.smtp",
            json!("mail.example.com:0"),
            "actions.email.smtp: \"mail.example.com:0\" is not host or host:port",
        ),
    ] {
        match set(&peer.proxy, key, value).await {
            Err(config::Error::Invalid(message)) => assert_eq!(message, refusal),
            other => panic!("{key}: expected Invalid, got {other:?}"),
        }
    }
    match set(&peer.proxy, "calls.no_such_key", json!(1)).await {
        Err(config::Error::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(peer.proxy.revision().await.unwrap(), before);
    assert_eq!(peer.proxy.export().await.unwrap(), document);

    // No Changed came for the refusals: the next one is the legitimate set's.
    set(&peer.proxy, "calls.max_call_time", json!(60))
        .await
        .unwrap();
    assert_eq!(next_changed(&mut changed).await, ["calls"]);
    assert_eq!(peer.proxy.revision().await.unwrap(), before + 1);

    drop(peer);
    let reopened = ConfigService::open(&db).unwrap();
    let doc = reopened.document();
    assert_eq!(doc.calls.max_call_time, 60);
    assert_eq!(doc.actions.ftp.url, "");
    assert_eq!(doc.actions.email.smtp, "");
    assert_eq!(reopened.revision_now(), before + 1);
}
