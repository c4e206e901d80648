use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use doorphone_interfaces::config::{Config1Proxy, Document};
use doorphone_interfaces::media::Media1Proxy;
use doorphone_interfaces::relay::Relay1Proxy;
use doorphone_interfaces::sip::{BUS_NAME, OBJECT_PATH};
use doorphone_sip::agent::Agent;
use doorphone_sip::history::History;
use doorphone_sip::ports::BUS_CALL_TIMEOUT;
use doorphone_sip::service::{BusAnnouncer, SipService};
use doorphone_sip::settings::Settings;
use doorphone_sip::stack::Stack;
use doorphone_sip::{accounts, buttons};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use zbus::proxy::CacheProperties;

/// How long a stop may take, calls ended and accounts unregistered included.
const STOP_PATIENCE: Duration = Duration::from_millis(4500);

/// The door phone's SIP agent (org.doorphone.Sip1 on the system bus): accounts,
/// direct IP calls, the incoming call policy and outgoing calls.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on for SIP (UDP and TCP).
    #[arg(long, default_value = "0.0.0.0")]
    address: IpAddr,
    /// SIP port; the config's `device.ip_call.port` when not given.
    #[arg(long)]
    port: Option<u16>,
    /// The address peers reach this door phone at (Contact headers and SDP);
    /// by default the listening address, or the address of the default route.
    #[arg(long)]
    contact_address: Option<IpAddr>,
    /// PEM certificates that TLS servers (accounts with transport `tls`) are
    /// checked against.
    #[arg(long, default_value = "/etc/ssl/certs/ca-certificates.crt")]
    tls_ca: PathBuf,
    /// The call history database.
    #[arg(long, default_value = "/var/lib/doorphone-sip/history.db")]
    history: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    doorphone_daemon::run(run(Args::parse())).await
}

/// The address this host would send from; no packet leaves (a UDP connect
/// only picks a route).
fn default_route_address() -> IpAddr {
    UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The configuration with its passwords, or the defaults while the config
/// service is absent.
async fn load(config: &Config1Proxy<'_>) -> (Document, u64) {
    // The revision first: the document read after it is at least that new.
    let revision = config.revision().await.unwrap_or(0);
    let read = async {
        let text = config.export_secrets().await.map_err(|e| e.to_string())?;
        serde_json::from_str::<Document>(&text).map_err(|e| e.to_string())
    };
    match read.await {
        Ok(doc) => (doc, revision),
        Err(e) => {
            tracing::warn!("the configuration is not readable ({e}): defaults until it is");
            (Document::default(), 0)
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let history = History::open(&args.history)?;
    let conn = zbus::connection::Builder::system()
        .method_timeout(BUS_CALL_TIMEOUT)
        .build()
        .await?;
    let config = Config1Proxy::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    // Subscribed before the first read, so no change is missed.
    let mut changes = config.receive_changed().await?;
    let mut config_owners = config.inner().receive_owner_changed().await?;
    let (doc, revision) = load(&config).await;
    let port = args
        .port
        .unwrap_or_else(|| u16::try_from(doc.device.ip_call.port).unwrap_or(5060));
    let contact_ip = args
        .contact_address
        .unwrap_or(if args.address.is_unspecified() {
            default_route_address()
        } else {
            args.address
        });
    let tls_ca = match std::fs::read(&args.tls_ca) {
        Ok(pem) => Some(pem),
        Err(e) => {
            tracing::warn!(
                "{}: {e}: TLS servers cannot be checked, TLS accounts will fail",
                args.tls_ca.display()
            );
            None
        }
    };
    let (stack, mut requests) =
        Stack::bind(SocketAddr::new(args.address, port), contact_ip, tls_ca).await?;

    let media = Media1Proxy::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let mut media_states = media.receive_session_state_changed().await?;
    let mut media_dtmf = media.receive_dtmf_received().await?;
    let mut media_owners = media.inner().receive_owner_changed().await?;
    let relay = Relay1Proxy::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let mut doors = relay.receive_door_opened().await?;
    let mut call_buttons = relay.receive_button_pressed().await?;
    let agent = Arc::new(Agent::new(
        stack,
        Arc::new(media),
        Arc::new(relay),
        Arc::new(BusAnnouncer::new(conn.clone())),
        Settings::new(doc, revision).await,
        history,
    ));
    conn.object_server()
        .at(OBJECT_PATH, SipService::new(agent.clone()))
        .await?;
    conn.request_name(BUS_NAME)
        .await
        .map_err(|e| format!("cannot own {BUS_NAME} on the system bus: {e}"))?;

    let stop = CancellationToken::new();
    let registrations: Vec<_> = [1, 2]
        .into_iter()
        .map(|id| tokio::spawn(accounts::run(agent.clone(), id, stop.clone())))
        .collect();

    let sip = agent.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let agent = sip.clone();
            tokio::spawn(async move { agent.on_request(request).await });
        }
    });
    // Every signal stream ends only with the bus connection.
    let bus_lost = CancellationToken::new();
    let listener = agent.clone();
    let lost = bus_lost.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                state = media_states.next() => match state {
                    Some(signal) => if let Ok(args) = signal.args() {
                        listener.on_media_state(args.session.as_str(), args.state, args.reason);
                    },
                    None => break,
                },
                digit = media_dtmf.next() => match digit {
                    Some(signal) => if let Ok(args) = signal.args() {
                        listener.on_dtmf(args.session.as_str(), args.digit);
                    },
                    None => break,
                },
                owner = media_owners.next() => match owner {
                    Some(None) => listener.media_gone(),
                    Some(Some(_)) => {}
                    None => break,
                },
                door = doors.next() => match door {
                    Some(signal) => if let Ok(args) = signal.args() {
                        listener.on_door_opened(args.source);
                    },
                    None => break,
                },
                press = call_buttons.next() => match press {
                    // A call button wired to a relay-service input.
                    Some(signal) => if let Ok(args) = signal.args() {
                        let (agent, button) = (listener.clone(), args.button);
                        tokio::spawn(async move {
                            if let Err(e) = buttons::press(&agent, button).await {
                                tracing::info!(button, "call button input: {e}");
                            }
                        });
                    },
                    None => break,
                },
            }
        }
        lost.cancel();
    });
    let follower = agent.clone();
    let lost = bus_lost.clone();
    tokio::spawn(async move {
        loop {
            let reload = tokio::select! {
                change = changes.next() => match change {
                    Some(_) => true,
                    None => break,
                },
                owner = config_owners.next() => match owner {
                    Some(owner) => owner.is_some(),
                    None => break,
                },
            };
            if !reload {
                continue;
            }
            let (doc, revision) = load(&config).await;
            follower.apply(Settings::new(doc, revision).await).await;
            tracing::info!(revision, "configuration reloaded");
        }
        lost.cancel();
    });
    tracing::info!(sip = %agent.stack.local_addr(), contact = %contact_ip, "serving {BUS_NAME}");
    doorphone_daemon::notify_ready();

    let outcome = tokio::select! {
        stopped = doorphone_daemon::stop_requested() => stopped.map_err(Into::into),
        _ = bus_lost.cancelled() => Err("lost the connection to the system bus".into()),
    };
    if let Err(e) = &outcome {
        tracing::error!("{e}: ending every call and stopping");
    }
    let stopping = async {
        agent.hang_up_all(Duration::from_secs(3)).await;
        stop.cancel();
        for task in registrations {
            task.await.ok();
        }
    };
    if tokio::time::timeout(STOP_PATIENCE, stopping).await.is_err() {
        tracing::warn!("stopping took too long: leaving");
    }
    agent.stack.shutdown();
    outcome
}
