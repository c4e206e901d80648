use std::process::ExitCode;
use std::sync::Arc;

use doorphone_daemon::config::{Access, Snapshot};
use doorphone_interfaces::pager::{BUS_NAME, OBJECT_PATH};
use doorphone_interfaces::sip::{self, Sip1Proxy};
use doorphone_pager::listener;
use doorphone_pager::pager::{Input, Pager};
use doorphone_pager::service::PagerService;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use zbus::ObjectPath;
use zbus::fdo::{PropertiesChangedStream, PropertiesProxy};
use zbus::proxy::{CacheProperties, OwnerChangedStream};

const HELP: &str = "\
The door phone's multicast pager (org.doorphone.Pager1 on the system bus).

It listens to the groups of the configuration's `multicast.listen`, decides
by paging priority, paging barge and the SIP agent's call which page plays,
and has the media service play it.

Usage: doorphone-pager [--iface NAME]

Options:
      --iface NAME   The network interface pages arrive on (e.g. `eth0`, `lo`);
                     default: the one the kernel routes multicast through
  -h, --help         Print help
  -V, --version      Print version
";

struct Args {
    iface: Option<String>,
}

impl Args {
    fn parse() -> Args {
        use doorphone_daemon::args::{from_env, value};
        from_env(NAME, VERSION, HELP, &[value("iface")], |o| {
            Ok(Args {
                iface: o.value("iface")?,
            })
        })
    }
}

const NAME: &str = env!("CARGO_BIN_NAME");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long stopping may take to stop the page and resume a held call.
const STOP_TIME: std::time::Duration = std::time::Duration::from_secs(5);

fn main() -> ExitCode {
    let args = Args::parse();
    doorphone_daemon::main(doorphone_daemon::Runtime::CurrentThread, || run(args))
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
    let calls = PropertiesProxy::builder(&conn)
        .destination(sip::BUS_NAME)
        .path(sip::OBJECT_PATH)
        .cache_properties(CacheProperties::No)
        .build()
        .await?
        .receive_properties_changed()
        .await?;
    let sip_owners = sip.inner().receive_owner_changed().await?;
    let media_owners = pager.media().inner().receive_owner_changed().await?;

    pager.on_input(groups(&config.borrow_and_update())).await;
    pager.on_input(Input::Call(active_call(&sip).await)).await;
    conn.object_server().at(OBJECT_PATH, service).await?;
    conn.request_name(BUS_NAME)
        .await
        .map_err(|e| format!("cannot own {BUS_NAME} on the system bus: {e}"))?;
    tokio::spawn(follow_config(config, input_tx.clone()));
    tokio::spawn(follow_calls(calls, sip_owners, input_tx.clone()));
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

/// Follows the answered call from the agent's `ActiveCall` changes, which
/// carry it: no question to the agent per call. An agent that comes or goes has
/// no answered call.
async fn follow_calls(
    mut changes: PropertiesChangedStream,
    mut owners: OwnerChangedStream<'static>,
    inputs: mpsc::UnboundedSender<Input>,
) {
    let mut last: Option<Option<String>> = None;
    loop {
        let call = tokio::select! {
            change = changes.next() => {
                let Some(change) = change else { return };
                match change.args() {
                    Ok(args) if args.interface_name.as_str() == sip::INTERFACE => {
                        match args.changed_properties.get("ActiveCall") {
                            Some(path) => ObjectPath::try_from(path)
                                .ok()
                                .filter(|p| p.as_str() != "/")
                                .map(|p| p.to_string()),
                            None => continue,
                        }
                    }
                    _ => continue,
                }
            }
            owner = owners.next() => {
                if owner.is_none() {
                    return;
                }
                None
            }
        };
        if last.as_ref() != Some(&call) {
            last = Some(call.clone());
            if inputs.send(Input::Call(call)).is_err() {
                return;
            }
        }
    }
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
