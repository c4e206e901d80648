//! `org.doorphone.Relay1` called through its proxy over a peer-to-peer
//! connection: no bus daemon, no root, relays on the simulated GPIO backend.

use std::time::{Duration, Instant};

use doorphone_interfaces::relay::{self, Relay1Proxy, source, state};
use doorphone_relay::controller::{self, RelayConfig};
use doorphone_relay::gpio::{Claims, Line, Sim};
use doorphone_relay::service::{RelayService, forward_events};
use futures_util::{Stream, StreamExt};
use zbus::proxy::CacheProperties;

/// Generous: the machine may be busy.
const PATIENCE: Duration = Duration::from_secs(10);

const HOLD: Duration = Duration::from_secs(1);

struct Peer {
    _server: zbus::Connection,
    proxy: Relay1Proxy<'static>,
}

/// Relays `A` (no trigger delay) and `B`, held for [`HOLD`], served to a client
/// connection with their events forwarded as signals.
async fn serve() -> Peer {
    let (events, rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = controller::spawn(
        Box::new(Sim::new(None)),
        Claims::load(None).expect("no claims file"),
        events,
    );
    let relay = |id: &str, gpio| RelayConfig {
        line: Line {
            relay: id.to_owned(),
            gpio,
            active_low: false,
        },
        trigger_delay: Duration::ZERO,
        hold: HOLD,
    };
    handle.configure(vec![relay("A", 17), relay("B", 27)]).await;
    let (server, client) =
        doorphone_daemon::bus::peer_to_peer(relay::OBJECT_PATH, RelayService::new(handle))
            .await
            .expect("a peer-to-peer connection");
    tokio::spawn(forward_events(server.clone(), rx));
    let proxy = Relay1Proxy::builder(&client)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .expect("proxy");
    Peer {
        _server: server,
        proxy,
    }
}

async fn next<T>(stream: &mut (impl Stream<Item = T> + Unpin), what: &str) -> T {
    tokio::time::timeout(PATIENCE, stream.next())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("the stream of {what} ended"))
}

async fn state_of(proxy: &Relay1Proxy<'_>, relay: &str) -> String {
    proxy.relays().await.unwrap()[relay].clone()
}

#[tokio::test]
async fn open_with_a_source_announces_the_door_and_closes_it_after_the_hold() {
    let peer = serve().await;
    assert_eq!(peer.proxy.relay_ids().await.unwrap(), ["A", "B"]);
    assert_eq!(state_of(&peer.proxy, "A").await, state::CLOSED);
    let mut opened = peer.proxy.receive_door_opened().await.unwrap();
    let mut closed = peer.proxy.receive_door_closed().await.unwrap();

    peer.proxy.open("A", source::API).await.unwrap();
    let signal = next(&mut opened, "DoorOpened").await;
    let args = signal.args().unwrap();
    assert_eq!((args.relay(), args.source()), (&"A", &source::API));
    let at = Instant::now();
    assert_eq!(state_of(&peer.proxy, "A").await, state::OPEN);
    assert_eq!(state_of(&peer.proxy, "B").await, state::CLOSED);

    let signal = next(&mut closed, "DoorClosed").await;
    assert_eq!(*signal.args().unwrap().relay(), "A");
    // Measured from the signal's arrival, so a little under the hold at least.
    let held = at.elapsed();
    assert!(
        held >= HOLD / 2 && held <= HOLD + PATIENCE,
        "held {held:?} for a hold of {HOLD:?}"
    );
    assert_eq!(state_of(&peer.proxy, "A").await, state::CLOSED);

    // Each source is told as given.
    peer.proxy.open("B", source::DTMF).await.unwrap();
    let signal = next(&mut opened, "DoorOpened").await;
    let args = signal.args().unwrap();
    assert_eq!((args.relay(), args.source()), (&"B", &source::DTMF));
}

#[tokio::test]
async fn an_unknown_relay_or_source_is_refused_and_opens_nothing() {
    let peer = serve().await;
    let mut opened = peer.proxy.receive_door_opened().await.unwrap();

    match peer.proxy.open("Z", source::API).await {
        Err(relay::Error::NotFound(m)) => assert_eq!(m, "no relay \"Z\""),
        other => panic!("expected NotFound, got {other:?}"),
    }
    match peer.proxy.open("A", "doorbell").await {
        Err(relay::Error::Invalid(m)) => {
            assert!(m.starts_with("source: \"doorbell\" is not one of"), "{m}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(state_of(&peer.proxy, "A").await, state::CLOSED);
    assert_eq!(state_of(&peer.proxy, "B").await, state::CLOSED);

    // No DoorOpened came for the refusals: the next one is the legitimate open's.
    peer.proxy.open("A", source::NO_ANSWER).await.unwrap();
    let signal = next(&mut opened, "DoorOpened").await;
    let args = signal.args().unwrap();
    assert_eq!((args.relay(), args.source()), (&"A", &source::NO_ANSWER));
}
