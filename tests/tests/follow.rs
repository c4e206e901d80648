//! Every service follows the configuration however the config service comes
//! and goes: started before it, each takes up its document once it appears;
//! left running while it restarts with another document, each takes that up.

use std::path::Path;

use doorphone_interfaces::{media, pager, relay, sip};
use doorphone_system_tests::sip::start_agent;
use doorphone_system_tests::{
    Bus, ConfigDb, PATIENCE, Service, applied, chown_to, reconfigure, start_config, start_media,
    start_service, start_sim_relay,
};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// One configuration to serve: its database, what it sets, and its revision.
struct Served {
    db: ConfigDb,
    relay: &'static str,
    group: &'static str,
    rtp_ports: [u16; 2],
    revision: u64,
}

/// Writes a database with `relay`, a paging `group` and media's `rtp_ports`,
/// changed `rounds` times (so two databases have different revisions), and
/// stops its config service.
async fn served(
    bus: &Bus,
    relay: &'static str,
    group: &'static str,
    rtp_ports: [u16; 2],
    rounds: u32,
) -> Served {
    let db = ConfigDb::new().unwrap();
    let mut service = start_config(bus, &db).await.unwrap();
    let conn = bus.connect().await.unwrap();
    let change = move |doc: &mut Value, round: u32| {
        doc["calls"]["max_call_time"] = json!(100 + round);
        doc["relays"] = json!([{ "id": relay, "name": "Door", "gpio": 17, "active_low": false,
            "trigger_delay": 0, "hold": 1, "dtmf_code": "" }]);
        doc["multicast"]["listen"] = json!([{"address": group, "port": 5000, "label": "Hall"}]);
        doc["media"]["rtp_ports"] = json!(rtp_ports);
    };
    for round in 0..rounds {
        reconfigure(&conn, |doc| change(doc, round)).await.unwrap();
    }
    let config = doorphone_interfaces::config::Config1Proxy::new(&conn)
        .await
        .unwrap();
    let revision = config.revision().await.unwrap();
    service.stop();
    Served {
        db,
        relay,
        group,
        rtp_ports,
        revision,
    }
}

/// Waits until `read` gives a value `ready` accepts, re-reading on every
/// property change of `bus_name` at `path`.
async fn until<T: std::fmt::Debug, F: Future<Output = T>>(
    conn: &zbus::Connection,
    bus_name: &'static str,
    path: &'static str,
    what: &str,
    read: impl Fn() -> F,
    ready: impl Fn(&T) -> bool,
) {
    let props = zbus::fdo::PropertiesProxy::builder(conn)
        .destination(bus_name)
        .path(path)
        .build()
        .await
        .unwrap();
    let mut changes = props.receive_properties_changed().await.unwrap();
    let waited = tokio::time::timeout(PATIENCE, async {
        loop {
            let now = read().await;
            if ready(&now) {
                return;
            }
            changes.next().await;
        }
    })
    .await;
    if waited.is_err() {
        panic!("{what}: still {:?}", read().await);
    }
}

/// Waits until media, relay, pager and the SIP agent all apply `served`.
async fn all_apply(conn: &zbus::Connection, served: &Served) {
    let relays = relay::Relay1Proxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    until(
        conn,
        relay::BUS_NAME,
        relay::OBJECT_PATH,
        "the relay service's relays",
        || async { relays.relay_ids().await.unwrap() },
        |ids| ids == &[served.relay.to_owned()],
    )
    .await;
    let paging = pager::Pager1Proxy::builder(conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    until(
        conn,
        pager::BUS_NAME,
        pager::OBJECT_PATH,
        "the pager's groups",
        || async {
            paging
                .listening()
                .await
                .unwrap()
                .into_iter()
                .map(|l| format!("{l:?}"))
                .collect::<Vec<_>>()
        },
        |groups| groups.len() == 1 && groups[0].contains(served.group),
    )
    .await;
    let media_props = zbus::fdo::PropertiesProxy::builder(conn)
        .destination(media::BUS_NAME)
        .path(media::OBJECT_PATH)
        .build()
        .await
        .unwrap();
    let [low, high] = served.rtp_ports;
    until(
        conn,
        media::BUS_NAME,
        media::OBJECT_PATH,
        "media's prepared ports",
        || async {
            let ports = media_props
                .get(media::INTERFACE.try_into().unwrap(), "PreparedPorts")
                .await
                .unwrap();
            Vec::<u16>::try_from(ports).unwrap()
        },
        |ports| !ports.is_empty() && ports.iter().all(|p| (low..=high).contains(p)),
    )
    .await;
    applied(
        conn,
        sip::BUS_NAME,
        sip::OBJECT_PATH,
        sip::INTERFACE,
        served.revision,
    )
    .await
    .unwrap();
}

async fn start_pager(bus: &Bus, dir: &Path) -> Service {
    start_service(
        bus,
        "doorphone-pager",
        "doorphone-pager",
        pager::BUS_NAME,
        &["--iface".into(), "lo".into()],
        &dir.join("pager.log"),
    )
    .await
    .unwrap()
}

/// Media, relay, pager and the SIP agent, each following the configuration;
/// they stop when this is dropped.
struct Followers {
    _services: [Service; 4],
    _dir: tempfile::TempDir,
}

impl Followers {
    async fn start(bus: &Bus) -> Followers {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        chown_to(dir.path(), "doorphone-media").unwrap();
        let media = start_media(
            bus,
            &[
                "--audio-sink".into(),
                "fake".into(),
                "--video-source".into(),
                "none".into(),
            ],
            &dir.path().join("media.log"),
        )
        .await
        .unwrap();
        let relay = start_sim_relay(bus, dir.path()).await.unwrap();
        let pager = start_pager(bus, dir.path()).await;
        let (sip, _port) = start_agent(bus, dir.path(), &[]).await.unwrap();
        Followers {
            _services: [media, relay, pager, sip],
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_service_takes_up_the_configuration_whenever_the_config_service_appears() {
    doorphone_system_tests::require_root();
    let bus = Bus::start().unwrap();
    let first = served(&bus, "A", "239.1.2.3", [30000, 30019], 1).await;
    let second = served(&bus, "B", "239.1.2.4", [31000, 31019], 2).await;
    assert!(second.revision > first.revision);

    // Every other service first, on the defaults.
    let _followers = Followers::start(&bus).await;
    let conn = bus.connect().await.unwrap();

    let mut config = start_config(&bus, &first.db).await.unwrap();
    all_apply(&conn, &first).await;

    config.stop();
    let _config = start_config(&bus, &second.db).await.unwrap();
    all_apply(&conn, &second).await;
}

/// Hundreds of changes in a burst (a script adding the dial plan rule by
/// rule): each service keeps answering and takes up the last one. A
/// follower that read the document between signals while they queued up
/// would stop its bus connection once the queue was full.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_changes_leaves_every_service_following() {
    doorphone_system_tests::require_root();
    let bus = Bus::start().unwrap();
    let db = ConfigDb::new().unwrap();
    let _config = start_config(&bus, &db).await.unwrap();
    let _followers = Followers::start(&bus).await;
    let conn = bus.connect().await.unwrap();
    let config = doorphone_interfaces::config::Config1Proxy::new(&conn)
        .await
        .unwrap();

    // 50 at a time: the bus daemon's limit of pending calls is 128.
    for chunk in (0..300).collect::<Vec<u32>>().chunks(50) {
        let adds = chunk.iter().map(|n| {
            let config = &config;
            async move {
                config
                    .add_dial_rule(
                        &format!("Flat {n}"),
                        &format!("{}", 1000 + n),
                        "auto",
                        &["sip:concierge@127.0.0.1"],
                    )
                    .await
            }
        });
        for added in futures_util::future::join_all(adds).await {
            added.unwrap();
        }
    }
    reconfigure(&conn, |doc| {
        doc["relays"] = json!([{ "id": "B", "name": "Door", "gpio": 17, "active_low": false,
            "trigger_delay": 0, "hold": 1, "dtmf_code": "" }]);
        doc["multicast"]["listen"] =
            json!([{"address": "239.1.2.5", "port": 5000, "label": "Hall"}]);
        doc["media"]["rtp_ports"] = json!([32000, 32019]);
    })
    .await
    .unwrap();
    let last = Served {
        revision: config.revision().await.unwrap(),
        db,
        relay: "B",
        group: "239.1.2.5",
        rtp_ports: [32000, 32019],
    };
    assert!(last.revision > 300);
    // A wedged service would leave its answers pending for ever.
    tokio::time::timeout(PATIENCE * 2, all_apply(&conn, &last))
        .await
        .expect("every service answers and applies the last change");
}
