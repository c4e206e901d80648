use std::path::PathBuf;
use std::process::ExitCode;

use doorphone_config::ConfigService;
use doorphone_interfaces::config::{BUS_NAME, OBJECT_PATH};

const HELP: &str = "\
The door phone's configuration service (org.doorphone.Config1 on the system bus).

Usage: doorphone-config [--db PATH]

Options:
      --db PATH  The configuration database; its folder is created when missing
                 [default: /var/lib/doorphone/config.db]
  -h, --help     Print help
  -V, --version  Print version
";

struct Args {
    db: PathBuf,
}

impl Args {
    fn parse() -> Args {
        use doorphone_daemon::args::{from_env, value};
        from_env(NAME, VERSION, HELP, &[value("db")], |o| {
            Ok(Args {
                db: o.value_or("db", "/var/lib/doorphone/config.db")?,
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
    let service = ConfigService::open(&args.db)?;
    let revision = service.revision_now();
    let conn = zbus::connection::Builder::system()
        .method_timeout(doorphone_daemon::bus::METHOD_TIMEOUT)
        .serve_at(OBJECT_PATH, service)
        .name(BUS_NAME)
        .build()
        .await
        .map_err(|e| format!("cannot own {BUS_NAME} on the system bus: {e}"))?;
    tracing::info!(db = %args.db.display(), revision, "serving {BUS_NAME}");
    doorphone_daemon::watchdog::notify_ready(&conn, None);

    doorphone_daemon::bus::until_stopped(&conn).await?.outcome()
}
