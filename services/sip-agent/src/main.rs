use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use doorphone_daemon::config::Access;
use doorphone_interfaces::media::Media1Proxy;
use doorphone_interfaces::relay::Relay1Proxy;
use doorphone_interfaces::sip::{BUS_NAME, OBJECT_PATH};
use doorphone_sip::agent::Agent;
use doorphone_sip::history::History;
use doorphone_sip::service::{BusAnnouncer, SipService};
use doorphone_sip::settings::Settings;
use doorphone_sip::stack::Stack;
use doorphone_sip::{accounts, buttons, health};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use zbus::proxy::CacheProperties;

/// How long a stop may take, calls ended and accounts unregistered included.
const STOP_PATIENCE: Duration = Duration::from_millis(4500);

/// How long the SIP socket may take to answer the watchdog's OPTIONS.
const HEALTH_PATIENCE: Duration = Duration::from_secs(2);

const HELP: &str = "\
The door phone's SIP agent (org.doorphone.Sip1 on the system bus): accounts,
direct IP calls, the incoming call policy and outgoing calls.

Usage: doorphone-sip [--address IP] [--port PORT] [--contact-address IP]
                     [--tls-ca PATH] [--history PATH]

Options:
      --address IP          Address to listen on for SIP (UDP and TCP) [default: 0.0.0.0]
      --port PORT           SIP port; the config's `device.ip_call.port` when not given
      --contact-address IP  The address peers reach this door phone at (Contact headers
                            and SDP); by default the listening address, or the address
                            of the default route
      --tls-ca PATH         PEM certificates that TLS servers (accounts with transport
                            `tls`) are checked against
                            [default: /etc/ssl/certs/ca-certificates.crt]
      --history PATH        The call history database
                            [default: /var/lib/doorphone-sip/history.db]
  -h, --help                Print help
  -V, --version             Print version
";

struct Args {
    address: IpAddr,
    port: Option<u16>,
    contact_address: Option<IpAddr>,
    tls_ca: PathBuf,
    history: PathBuf,
}

impl Args {
    fn parse() -> Args {
        use doorphone_daemon::args::{from_env, value};
        let known = [
            value("address"),
            value("port"),
            value("contact-address"),
            value("tls-ca"),
            value("history"),
        ];
        from_env(NAME, VERSION, HELP, &known, |o| {
            Ok(Args {
                address: o.value_or("address", "0.0.0.0")?,
                port: o.value("port")?,
                contact_address: o.value("contact-address")?,
                tls_ca: o.value_or("tls-ca", "/etc/ssl/certs/ca-certificates.crt")?,
                history: o.value_or("history", "/var/lib/doorphone-sip/history.db")?,
            })
        })
    }
}

const NAME: &str = env!("CARGO_BIN_NAME");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let args = Args::parse();
    doorphone_daemon::main(doorphone_daemon::Runtime::CurrentThread, || run(args))
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

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let history = History::open(&args.history)?;
    let conn = doorphone_daemon::bus::system().await?;
    // With the passwords: the SIP agent registers the accounts.
    let mut config = doorphone_daemon::config::follow(&conn, Access::Secrets).await?;
    let first = config.borrow_and_update().clone();
    let doc = first.document.clone();
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
    let (stack, mut requests) = Stack::bind(
        SocketAddr::new(args.address, port),
        contact_ip,
        args.tls_ca.clone(),
    )
    .await?;

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
        Settings::new(doc, first.revision).await,
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
    // Every signal stream ends only with the bus connection, and
    // `until_stopped` below reports that.
    let listener = agent.clone();
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
    });
    let follower = agent.clone();
    tokio::spawn(async move {
        while config.changed().await.is_ok() {
            let snapshot = config.borrow_and_update().clone();
            follower
                .apply(Settings::new(snapshot.document.clone(), snapshot.revision).await)
                .await;
        }
    });
    tracing::info!(sip = %agent.stack.local_addr(), contact = %contact_ip, "serving {BUS_NAME}");
    // The watchdog is pinged only while the SIP socket answers too.
    let probe = health::probe_target(agent.stack.local_addr());
    doorphone_daemon::watchdog::notify_ready(
        &conn,
        Some(Box::new(move || {
            Box::pin(health::sip_loop_answers(probe, HEALTH_PATIENCE))
        })),
    );

    let outcome = match doorphone_daemon::bus::until_stopped(&conn).await {
        Ok(stopped) => stopped.outcome(),
        Err(e) => Err(e.into()),
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
    // The calls that just ended are on disk before the agent goes.
    if tokio::time::timeout(STOP_PATIENCE, agent.history.flush())
        .await
        .is_err()
    {
        tracing::warn!("the call history was not written in {STOP_PATIENCE:?}");
    }
    agent.stack.shutdown();
    outcome
}
