use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use doorphone_daemon::config::Access;
use doorphone_web::api::{self, App};
use doorphone_web::auth::Auth;
use doorphone_web::events::Events;
use doorphone_web::peers::Peers;
use doorphone_web::{serve, tls};
use tokio::net::TcpListener;

const HELP: &str = "\
The door phone's web service: the HTTP API over HTTPS, a client of the
other services on the system bus.

Its users are the configuration's `web.users` (`doorctl web passwd NAME`);
with none, the API answers 503.

Usage: doorphone-web [--listen ADDR:PORT] [--http ADDR:PORT | --no-http]
                     [--cert PATH --key PATH] [--state-dir PATH]

Options:
      --listen ADDR:PORT  Where HTTPS is served [default: 0.0.0.0:443]
      --http ADDR:PORT    Where plain HTTP is served; it only redirects to HTTPS
                          [default: 0.0.0.0:80]
      --no-http           Serve no plain HTTP at all
      --cert PATH         The certificate chain (PEM) to present, instead of a
                          self-signed one (needs --key)
      --key PATH          The private key (PEM) of `--cert` (needs --cert)
      --state-dir PATH    Where the self-signed certificate and its key are kept
                          [default: /var/lib/doorphone-web]
  -h, --help              Print help
  -V, --version           Print version
";

struct Args {
    listen: SocketAddr,
    http: SocketAddr,
    no_http: bool,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    state_dir: PathBuf,
}

impl Args {
    fn parse() -> Args {
        use doorphone_daemon::args::{flag, from_env, value};
        let known = [
            value("listen"),
            value("http"),
            flag("no-http"),
            value("cert"),
            value("key"),
            value("state-dir"),
        ];
        from_env(NAME, VERSION, HELP, &known, |o| {
            if o.given("http") && o.given("no-http") {
                return Err("--http and --no-http exclude each other".to_owned());
            }
            if o.given("cert") != o.given("key") {
                return Err("--cert and --key go together".to_owned());
            }
            Ok(Args {
                listen: o.value_or("listen", "0.0.0.0:443")?,
                http: o.value_or("http", "0.0.0.0:80")?,
                no_http: o.given("no-http"),
                cert: o.value("cert")?,
                key: o.value("key")?,
                state_dir: o.value_or("state-dir", "/var/lib/doorphone-web")?,
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
    let events = Events::new(&peers);
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
