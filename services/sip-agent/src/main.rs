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
use doorphone_sip::accounts;
use doorphone_sip::agent::{Agent, Settings};
use doorphone_sip::history::History;
use doorphone_sip::service::SipService;
use doorphone_sip::stack::Stack;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use zbus::proxy::CacheProperties;

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
    let conn = zbus::connection::Builder::system().build().await?;
    let config = Config1Proxy::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    // Subscribed before the first read, so no change is missed.
    let mut changes = config.receive_changed().await?;
    let mut owners = config.inner().receive_owner_changed().await?;
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
    let user_agent = doc
        .accounts
        .iter()
        .map(|a| a.user_agent.clone())
        .find(|u| !u.is_empty());
    stack.set_user_agent(&user_agent.unwrap_or_default());
    let (settings_tx, settings_rx) = watch::channel(Arc::new(Settings::new(doc, revision).await));

    let media = Media1Proxy::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let mut media_states = media.receive_session_state_changed().await?;
    let mut media_dtmf = media.receive_dtmf_received().await?;
    let relay = Relay1Proxy::builder(&conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let mut doors = relay.receive_door_opened().await?;
    let mut call_buttons = relay.receive_button_pressed().await?;
    let agent = Arc::new(Agent::new(
        stack,
        conn.clone(),
        media,
        relay,
        settings_rx.clone(),
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
        .map(|id| {
            tokio::spawn(accounts::run(
                agent.clone(),
                id,
                settings_rx.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let sip = agent.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let agent = sip.clone();
            tokio::spawn(async move { agent.on_request(request).await });
        }
    });
    let watcher = agent.clone();
    tokio::spawn(async move {
        while let Some(signal) = media_states.next().await {
            if let Ok(args) = signal.args() {
                watcher.on_media_state(args.session.as_str(), args.state);
            }
        }
    });
    let listener = agent.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                digit = media_dtmf.next() => match digit {
                    Some(signal) => if let Ok(args) = signal.args() {
                        listener.on_dtmf(args.session.as_str(), args.digit);
                    },
                    None => return,
                },
                door = doors.next() => match door {
                    Some(signal) => if let Ok(args) = signal.args() {
                        listener.on_door_opened(args.source);
                    },
                    None => return,
                },
                press = call_buttons.next() => match press {
                    // A call button wired to a relay-service input.
                    Some(signal) => if let Ok(args) = signal.args() {
                        let (agent, button) = (listener.clone(), args.button);
                        tokio::spawn(async move {
                            if let Err(e) = doorphone_sip::buttons::press(&agent, button).await {
                                tracing::info!(button, "call button input: {e}");
                            }
                        });
                    },
                    None => return,
                },
            }
        }
    });
    let follower = agent.clone();
    tokio::spawn(async move {
        loop {
            // Either stream ends only with the bus connection: nothing more to follow.
            let reload = tokio::select! {
                change = changes.next() => match change {
                    Some(_) => true,
                    None => return,
                },
                owner = owners.next() => match owner {
                    Some(owner) => owner.is_some(),
                    None => return,
                },
            };
            if !reload {
                continue;
            }
            let (doc, revision) = load(&config).await;
            let ua = doc
                .accounts
                .iter()
                .map(|a| a.user_agent.clone())
                .find(|u| !u.is_empty());
            follower.stack.set_user_agent(&ua.unwrap_or_default());
            settings_tx.send_replace(Arc::new(Settings::new(doc, revision).await));
            doorphone_sip::service::config_revision_changed(&follower.conn).await;
            tracing::info!(revision, "configuration reloaded");
        }
    });
    tracing::info!(sip = %agent.stack.local_addr(), contact = %contact_ip, "serving {BUS_NAME}");
    doorphone_daemon::notify_ready();

    doorphone_daemon::stop_requested().await?;
    agent.hang_up_all().await;
    stop.cancel();
    for task in registrations {
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .ok();
    }
    agent.stack.shutdown();
    Ok(())
}
