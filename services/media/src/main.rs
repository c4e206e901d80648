use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use doorphone_daemon::config::{Access, Snapshot};
use doorphone_interfaces::config::document::Media;
use doorphone_interfaces::media::{BUS_NAME, OBJECT_PATH};
use doorphone_media::camera::{Camera, VideoSource};
use doorphone_media::devices::{AudioSink, AudioSource, Speaker};
use doorphone_media::service::{MediaService, Options, forward_events};
use tokio::sync::watch;

const HELP: &str = "\
The door phone's media service (org.doorphone.Media1 on the system bus).

Usage: doorphone-media [--audio-source SOURCE] [--test-tone HZ] [--audio-sink SINK]
                       [--video-source SOURCE] [--address IP] [--multicast-iface NAME]
                       [--rtp-timeout SECONDS]

Options:
      --audio-source SOURCE   Microphone: `test` (a sine tone), `alsa:DEVICE` or `pulse`
                              [default: alsa:default]
      --test-tone HZ          Frequency of the `test` microphone's tone [default: 440]
      --audio-sink SINK       Speaker: `fake`, `file:PATH.wav`, `alsa:DEVICE` or `auto`
                              [default: alsa:default]
      --video-source SOURCE   Camera: `test` (a moving test picture), `v4l2:/dev/videoN`
                              or `none` [default: v4l2:/dev/video0]
      --address IP            Our address in SDP when the caller gives none
                              [default: 127.0.0.1]
      --multicast-iface NAME  The network interface multicast pages are received on
                              (e.g. `eth0`, `lo`)
      --rtp-timeout SECONDS   Seconds without RTP from the peer before a session
                              reports a timeout [default: 30]
  -h, --help                  Print help
  -V, --version               Print version
";

struct Args {
    audio_source: AudioSource,
    test_tone: f64,
    /// Waveform of the `test` microphone: `sine`, or `ticks` (a burst of the
    /// tone each second, to time the audio path with); not in the help.
    test_wave: String,
    audio_sink: AudioSink,
    video_source: VideoSource,
    address: IpAddr,
    multicast_iface: Option<String>,
    rtp_timeout: u64,
}

impl Args {
    fn parse() -> Args {
        use doorphone_daemon::args::{from_env, value};
        let known = [
            value("audio-source"),
            value("test-tone"),
            value("test-wave"),
            value("audio-sink"),
            value("video-source"),
            value("address"),
            value("multicast-iface"),
            value("rtp-timeout"),
        ];
        from_env(NAME, VERSION, HELP, &known, |o| {
            let test_wave: String = o.value_or("test-wave", "sine")?;
            if !["sine", "ticks"].contains(&test_wave.as_str()) {
                return Err(format!(
                    "--test-wave: invalid value {test_wave:?}: one of sine, ticks"
                ));
            }
            Ok(Args {
                audio_source: o.value_or("audio-source", "alsa:default")?,
                test_tone: o.value_or("test-tone", "440")?,
                test_wave,
                audio_sink: o.value_or("audio-sink", "alsa:default")?,
                video_source: o.value_or("video-source", "v4l2:/dev/video0")?,
                address: o.value_or("address", "127.0.0.1")?,
                multicast_iface: o.value("multicast-iface")?,
                rtp_timeout: o.value_or("rtp-timeout", "30")?,
            })
        })
    }
}

const NAME: &str = env!("CARGO_BIN_NAME");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let args = Args::parse();
    // The bus on one thread: what waits on GStreamer (starting, stopping and
    // recycling pipelines) runs on blocking threads, and the pipelines stream
    // on their own. Worker threads only handed each call's bus messages from
    // one thread to another.
    doorphone_daemon::main(doorphone_daemon::Runtime::CurrentThread, || run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    gstreamer::init()?;
    doorphone_media::g722::register()?;
    doorphone_media::session::preload();
    let speaker = Arc::new(Speaker::new(&args.audio_sink)?);
    let camera = Camera::new(&args.video_source, 640, 480, 15)?.map(Arc::new);
    let conn = doorphone_daemon::bus::system().await?;
    let mut config = doorphone_daemon::config::follow(&conn, Access::Public).await?;
    let media = Arc::new(Mutex::new(media_settings(&config.borrow_and_update())));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let service = MediaService::new(
        Options {
            audio_source: match (args.audio_source, args.test_wave.as_str()) {
                (AudioSource::Test, "ticks") => AudioSource::TestTicks,
                (source, _) => source,
            },
            camera,
            test_tone: args.test_tone,
            address: args.address,
            rtp_timeout: Duration::from_secs(args.rtp_timeout.max(1)),
            multicast_iface: args.multicast_iface,
        },
        media.clone(),
        speaker.clone(),
        tx,
        Some(conn.clone()),
    );
    // A session prepared ahead of the first call.
    service.prepare();
    conn.object_server().at(OBJECT_PATH, service).await?;
    // Looked up before the name is ours, while no call can hold the service.
    let iface = conn
        .object_server()
        .interface::<_, MediaService>(OBJECT_PATH)
        .await?;
    conn.request_name(BUS_NAME).await?;
    tokio::spawn(forward_events(conn.clone(), iface.clone(), rx));
    tokio::spawn(follow_config(config, iface.clone(), media));
    tokio::spawn(forget_departed(conn.clone(), iface.clone()));
    tracing::info!("serving {BUS_NAME}");
    doorphone_daemon::watchdog::notify_ready(&conn, None);

    let stopped = doorphone_daemon::bus::until_stopped(&conn).await?;
    // The prepared session's ports and devices are let go.
    let closing = iface.get().await.close();
    let _ = closing.await;
    tokio::task::spawn_blocking(move || speaker.shutdown()).await?;
    stopped.outcome()
}

/// The `media` section of a configuration reading (the defaults while the
/// config service was never reachable).
fn media_settings(snapshot: &Snapshot) -> Media {
    if !snapshot.from_service {
        tracing::warn!("the config service is not reachable: default media settings");
    }
    snapshot.document.media.clone()
}

/// Applies the media settings of every reading that may have changed them; a
/// change prepares the next call's session anew.
async fn follow_config(
    mut config: watch::Receiver<Arc<Snapshot>>,
    iface: zbus::object_server::InterfaceRef<MediaService>,
    media: Arc<Mutex<Media>>,
) {
    while config.changed().await.is_ok() {
        let snapshot = config.borrow_and_update().clone();
        if !snapshot.touches("media") {
            continue;
        }
        let fresh = media_settings(&snapshot);
        let changed = {
            let mut current = media.lock().unwrap_or_else(|e| e.into_inner());
            let changed = *current != fresh;
            *current = fresh;
            changed
        };
        if changed {
            tracing::info!("media settings changed");
            iface.get().await.media_changed();
        }
    }
}

/// Stops what a client started once its connection leaves the bus. The
/// departures are taken off the signal queue as they come, whatever a
/// stop is waiting for (a queue left full would stop the connection's every
/// reply), and handled in order.
async fn forget_departed(
    conn: zbus::Connection,
    iface: zbus::object_server::InterfaceRef<MediaService>,
) {
    use futures_util::StreamExt;
    let Ok(dbus) = zbus::fdo::DBusProxy::new(&conn).await else {
        return;
    };
    let Ok(mut changes) = dbus.receive_name_owner_changed().await else {
        tracing::warn!("cannot watch clients leave the bus");
        return;
    };
    let (departed, mut departures) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(change) = changes.next().await {
            let Ok(args) = change.args() else { continue };
            if args.name.starts_with(':')
                && args.new_owner.is_none()
                && departed.send(args.name.to_string()).is_err()
            {
                return;
            }
        }
    });
    while let Some(name) = departures.recv().await {
        iface
            .get()
            .await
            .forget(conn.object_server(), &conn, &name)
            .await;
    }
}
