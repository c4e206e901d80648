use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use doorphone_daemon::config::{Access, Snapshot};
use doorphone_interfaces::pager::{BUS_NAME, OBJECT_PATH};
use doorphone_interfaces::sip::{CallStateChangedStream, Sip1Proxy};
use doorphone_pager::listener;
use doorphone_pager::pager::{Input, Pager};
use doorphone_pager::service::PagerService;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use zbus::proxy::{CacheProperties, OwnerChangedStream};

/// The door phone's multicast pager (org.doorphone.Pager1 on the system bus).
///
/// It listens to the groups of the configuration's `multicast.listen`, decides
/// by paging priority, paging barge and the SIP agent's call which page plays,
/// and has the media service play it.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The network interface pages arrive on (e.g. `eth0`, `lo`); default: the
    /// one the kernel routes multicast through.
    #[arg(long)]
    iface: Option<String>,
}

/// How long stopping may take to stop the page and resume a held call.
const STOP_TIME: std::time::Duration = std::time::Duration::from_secs(5);

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    doorphone_daemon::run(run(Args::parse())).await
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let iface = match &args.iface {
        Some(name) => listener::interface_index(name)?,
        None => 0,
    };
    let conn = doorphone_daemon::bus::system().await?;
    let (heard_tx, heard_rx) = mpsc::unbounded_channel();
    let (input_tx, input_rx) = mpsc::unbounded_channel();
    let service = PagerService::default();
    let mut pager = Pager::new(conn.clone(), service.clone(), iface, heard_tx).await?;

    // Subscribed before the first reads, so nothing that changes meanwhile is
    // missed.
    let mut config = doorphone_daemon::config::follow(&conn, Access::Public).await?;
    let sip = Sip1Proxy::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let calls = sip.receive_call_state_changed().await?;
    let sip_owners = sip.inner().receive_owner_changed().await?;
    let media_owners = pager.media().inner().receive_owner_changed().await?;

    pager.on_input(groups(&config.borrow_and_update())).await;
    pager.on_input(Input::Call(active_call(&sip).await)).await;
    conn.object_server().at(OBJECT_PATH, service).await?;
    conn.request_name(BUS_NAME)
        .await
        .map_err(|e| format!("cannot own {BUS_NAME} on the system bus: {e}"))?;
    tokio::spawn(follow_config(config, input_tx.clone()));
    tokio::spawn(follow_calls(sip, calls, sip_owners, input_tx.clone()));
    tokio::spawn(follow_media(media_owners, input_tx));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let pager = tokio::spawn(pager.run(input_rx, heard_rx, async {
        stop_rx.await.ok();
    }));
    tracing::info!(
        iface = args.iface.as_deref().unwrap_or("any"),
        "serving {BUS_NAME}"
    );
    doorphone_daemon::watchdog::notify_ready(&conn, None);

    let stopped = doorphone_daemon::bus::until_stopped(&conn).await?;
    stop_tx.send(()).ok();
    // Resuming a held call waits for the peer's answer to a re-INVITE: bounded,
    // so that a peer gone silent does not hold up the stop.
    if tokio::time::timeout(STOP_TIME, pager).await.is_err() {
        tracing::warn!("the page and the call were not given back in {STOP_TIME:?}");
    }
    stopped.outcome()
}

/// The multicast section of a configuration reading (no groups while the
/// config service was never reachable).
fn groups(snapshot: &Snapshot) -> Input {
    if !snapshot.from_service {
        tracing::warn!("the config service is not reachable: no groups until it is");
        return Input::Config(Default::default(), 0);
    }
    Input::Config(snapshot.document.multicast.clone(), snapshot.revision)
}

/// Hands the pager the groups of every reading that may have changed them.
async fn follow_config(
    mut config: watch::Receiver<Arc<Snapshot>>,
    inputs: mpsc::UnboundedSender<Input>,
) {
    while config.changed().await.is_ok() {
        let snapshot = config.borrow_and_update().clone();
        if snapshot.touches("multicast") && inputs.send(groups(&snapshot)).is_err() {
            return;
        }
    }
}

/// The SIP agent's answered call, `None` when there is none or no agent.
async fn active_call(sip: &Sip1Proxy<'_>) -> Option<String> {
    match sip.active_call().await {
        Ok(path) if path.as_str() != "/" => Some(path.to_string()),
        _ => None,
    }
}

/// Follows the answered call: it changes only when a call changes state, or
/// when the SIP agent comes or goes. The signals are taken off their queues
/// as they come, whatever the agent's answer is waiting for (a queue left
/// full would stop the connection's every reply); the agent is asked once
/// for the signals that came meanwhile.
async fn follow_calls(
    sip: Sip1Proxy<'static>,
    mut states: CallStateChangedStream,
    mut owners: OwnerChangedStream<'static>,
    inputs: mpsc::UnboundedSender<Input>,
) {
    let changed = Arc::new(tokio::sync::Notify::new());
    let signalled = changed.clone();
    let watcher = tokio::spawn(async move {
        loop {
            let more = tokio::select! {
                state = states.next() => state.is_some(),
                owner = owners.next() => owner.is_some(),
            };
            signalled.notify_one();
            if !more {
                return;
            }
        }
    });
    let mut last = active_call(&sip).await;
    while !watcher.is_finished() {
        changed.notified().await;
        let call = active_call(&sip).await;
        if call != last {
            last = call.clone();
            if inputs.send(Input::Call(call)).is_err() {
                break;
            }
        }
    }
    watcher.abort();
}

/// Tells the pager when media comes and goes.
async fn follow_media(
    mut owners: OwnerChangedStream<'static>,
    inputs: mpsc::UnboundedSender<Input>,
) {
    while let Some(owner) = owners.next().await {
        if inputs.send(Input::Media(owner.is_some())).is_err() {
            return;
        }
    }
}
