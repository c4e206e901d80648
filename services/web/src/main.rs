use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use doorphone_daemon::config::Access;
use doorphone_web::api::{self, App};
use doorphone_web::auth::Auth;
use doorphone_web::events::Events;
use doorphone_web::peers::Peers;
use doorphone_web::{serve, tls};
use tokio::net::TcpListener;

/// The door phone's web service: the HTTP API over HTTPS, a client of the
/// other services on the system bus.
///
/// Its users are the configuration's `web.users` (`doorctl web passwd NAME`);
/// with none, the API answers 503.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Where HTTPS is served.
    #[arg(long, default_value = "0.0.0.0:443")]
    listen: SocketAddr,
    /// Where plain HTTP is served; it only redirects to HTTPS.
    #[arg(long, default_value = "0.0.0.0:80", conflicts_with = "no_http")]
    http: SocketAddr,
    /// Serve no plain HTTP at all.
    #[arg(long)]
    no_http: bool,
    /// The certificate chain (PEM) to present, instead of a self-signed one.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The private key (PEM) of `--cert`.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Where the self-signed certificate and its key are kept.
    #[arg(long, default_value = "/var/lib/doorphone-web")]
    state_dir: PathBuf,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    doorphone_daemon::run(run(Args::parse())).await
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let source = match (args.cert, args.key) {
        (Some(cert), Some(key)) => tls::Source::Given { cert, key },
        _ => tls::Source::SelfSigned {
            state_dir: args.state_dir,
        },
    };
    let tls = tls::load(&source)?;
    tracing::info!(fingerprint = %tls.fingerprint, "TLS certificate (SHA-256)");

    let conn = doorphone_daemon::bus::system().await?;
    let config = doorphone_daemon::config::follow(&conn, Access::Secrets).await?;
    let peers = Peers::new(&conn).await?;
    let events = Events::start(&peers).await?;
    let app = App {
        peers,
        auth: Auth::new(config),
        events,
        fingerprint: Arc::from(tls.fingerprint.as_str()),
        sessions: Arc::default(),
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let https_port = listener.local_addr()?.port();
    tracing::info!("serving https://{}/api/v1", listener.local_addr()?);
    tokio::spawn(serve::https(listener, tls.config, api::router(app)));
    if !args.no_http {
        let plain = TcpListener::bind(args.http)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.http))?;
        tracing::info!("redirecting http://{} to HTTPS", plain.local_addr()?);
        tokio::spawn(serve::redirect(plain, https_port));
    }
    doorphone_daemon::watchdog::notify_ready(&conn, None);

    doorphone_daemon::bus::until_stopped(&conn).await?.outcome()
}
