//! The web service under test: `doorphone-web` as its own user on the private
//! bus, beside the real config, relay (simulated GPIO) and media (test camera)
//! services, its users made with the real `doorctl web passwd`, and `curl` as
//! the client, over HTTPS on loopback with the service's self-signed
//! certificate; curl with a cookie jar as the pages' browser.

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::sip::free_port;
use crate::{
    Bus, ConfigDb, PATIENCE, Service, bin, chown_to, eventually, start_config, start_media,
    start_sim_relay,
};

/// A web user the rigs make: admin `installer` and user `tenant`.
pub const ADMIN: (&str, &str) = ("installer", "correct horse");
pub const USER: (&str, &str) = ("tenant", "battery staple");

/// One answer to a curl request.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub struct WebRig {
    pub bus: Bus,
    pub db: ConfigDb,
    pub config: Service,
    pub relay: Service,
    pub media: Service,
    pub dir: TempDir,
    pub conn: zbus::Connection,
    pub api: Api,
}

impl WebRig {
    /// The whole rig, with the admin and the user made (`with_users`) or none.
    pub async fn start(with_users: bool) -> Result<WebRig> {
        let bus = Bus::start()?;
        let db = ConfigDb::new()?;
        let config = start_config(&bus, &db).await?;
        let dir = tempfile::Builder::new().prefix("doorphone-web").tempdir()?;
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        let relay = start_sim_relay(&bus, dir.path()).await?;
        let media_dir = dir.path().join("media");
        std::fs::create_dir_all(&media_dir)?;
        chown_to(&media_dir, "doorphone-media")?;
        let media = start_media(
            &bus,
            &[
                "--audio-sink".into(),
                format!("file:{}", media_dir.join("speaker.wav").display()),
                "--video-source".into(),
                "test".into(),
            ],
            &dir.path().join("media.log"),
        )
        .await?;
        let conn = bus.connect().await?;
        let api = Api::start(&bus, dir.path(), with_users).await?;
        Ok(WebRig {
            bus,
            db,
            config,
            relay,
            media,
            dir,
            conn,
            api,
        })
    }

    /// `doorctl ARGS` as root on this bus.
    pub fn doorctl(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        doorctl(&self.bus, args, stdin)
    }

    /// Starts the relay service again after a test stopped it.
    pub async fn restart_relay(&mut self) -> Result<()> {
        self.relay = start_sim_relay(&self.bus, self.dir.path()).await?;
        Ok(())
    }
}

/// `doorctl ARGS` as root on `bus`, `stdin` its input.
pub fn doorctl(bus: &Bus, args: &[&str], stdin: Option<&str>) -> Result<Output> {
    let mut child = bus
        .command_as("root", &bin("doorctl"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut input = child.stdin.take().context("piped")?;
    if let Some(text) = stdin {
        writeln!(input, "{text}")?;
    }
    drop(input);
    Ok(child.wait_with_output()?)
}

/// `doorctl web passwd NAME --role ROLE` with `password` on its stdin, as root.
pub fn passwd(bus: &Bus, name: &str, role: &str, password: &str) -> Result<()> {
    let out = doorctl(
        bus,
        &["web", "passwd", name, "--role", role],
        Some(password),
    )?;
    if !out.status.success() {
        bail!(
            "doorctl web passwd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The web service running on a bus, and `curl` as its client.
pub struct Api {
    pub web: Service,
    pub port: u16,
    pub http_port: u16,
}

impl Api {
    /// Starts the web service on `bus` (its folder and log in `dir`), and
    /// makes the admin and the user when `with_users`; returns once it serves
    /// them (or, without users, once it answers).
    pub async fn start(bus: &Bus, dir: &Path, with_users: bool) -> Result<Api> {
        let (port, http_port) = (free_port(), free_port());
        let web_dir = dir.join("web");
        std::fs::create_dir_all(&web_dir)?;
        chown_to(&web_dir, "doorphone-web")?;
        let mut api = Api {
            web: start_web(bus, &web_dir, port, http_port, &dir.join("web.log")).await?,
            port,
            http_port,
        };
        if with_users {
            passwd(bus, ADMIN.0, "admin", ADMIN.1)?;
            passwd(bus, USER.0, "user", USER.1)?;
        }
        // The service follows the users' change: asked until it lets the admin in.
        let expected = if with_users { 200 } else { 503 };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let status = api.curl_as(ADMIN, &[&api.url("/api/v1/status")]).await?;
            if status.status == expected {
                return Ok(api);
            }
            if tokio::time::Instant::now() > deadline {
                api.web.kill();
                bail!("the first request: {status:?}\n{}", api.web.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// `curl ARGS` (TLS checks off: the certificate is the service's own
    /// self-signed one) and its answer.
    pub async fn curl(&self, args: &[&str]) -> Result<Reply> {
        let out = tokio::process::Command::new("curl")
            .args(["-sk", "--max-time", "60", "-o", "-"])
            .args(["-w", "%{stderr}%{http_code} %{content_type}"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .context("curl runs (the curl package)")?;
        let written = String::from_utf8_lossy(&out.stderr).into_owned();
        let (status, content_type) = written.split_once(' ').unwrap_or((&written, ""));
        Ok(Reply {
            status: status
                .trim()
                .parse()
                .with_context(|| format!("curl {args:?}: {written}"))?,
            content_type: content_type.trim().to_owned(),
            body: out.stdout,
        })
    }

    /// `curl` with HTTP Basic as `user`.
    pub async fn curl_as(&self, user: (&str, &str), args: &[&str]) -> Result<Reply> {
        let credentials = format!("{}:{}", user.0, user.1);
        let mut all = vec!["-u", &credentials];
        all.extend_from_slice(args);
        self.curl(&all).await
    }
}
/// A browser: the service it browses and its cookie jar.
pub struct Browser<'r> {
    pub api: &'r Api,
    pub jar: std::path::PathBuf,
}

pub struct Page {
    pub status: u16,
    /// The response's head, lower-cased.
    pub head: String,
    pub body: String,
}

impl Page {
    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        let start = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a CSRF field")
            + 19;
        self.body[start..start + self.body[start..].find('"').unwrap()].to_owned()
    }
}

impl<'r> Browser<'r> {
    pub fn new(rig: &'r WebRig, name: &str) -> Browser<'r> {
        Browser::at(&rig.api, rig.dir.path(), name)
    }

    pub fn at(api: &'r Api, dir: &std::path::Path, name: &str) -> Browser<'r> {
        Browser {
            api,
            jar: dir.join(format!("{name}.cookies")),
        }
    }

    pub async fn request(&self, args: &[&str]) -> Page {
        let jar = self.jar.display().to_string();
        let mut all = vec!["-D", "-", "-b", &jar, "-c", &jar];
        all.extend_from_slice(args);
        let reply = self.api.curl(&all).await.unwrap();
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Page {
            status: reply.status,
            head: head.to_lowercase(),
            body: body.to_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.request(&[&self.api.url(path)]).await
    }

    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let encoded: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = Vec::new();
        for field in &encoded {
            args.extend(["--data-urlencode", field.as_str()]);
        }
        let url = self.api.url(path);
        args.push(&url);
        self.request(&args).await
    }

    pub async fn log_in(&self, user: (&str, &str)) -> Page {
        let form = self.get("/login").await;
        let csrf = form.csrf();
        let page = self
            .post(
                "/login",
                &[("csrf", &csrf), ("name", user.0), ("password", user.1)],
            )
            .await;
        assert_eq!(page.status, 303, "{}", page.body);
        self.get("/status").await
    }
}

/// Starts `doorphone-web` on `bus` as its own user, HTTPS on `port` and the
/// redirect on `http_port` of 127.0.0.1, its certificate kept in `state_dir`,
/// and waits until it accepts connections.
pub async fn start_web(
    bus: &Bus,
    state_dir: &Path,
    port: u16,
    http_port: u16,
    log: &Path,
) -> Result<Service> {
    let child = bus
        .command_as("doorphone-web", &bin("doorphone-web"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--http", &format!("127.0.0.1:{http_port}")])
        .arg("--state-dir")
        .arg(state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()?;
    let mut service = Service {
        child: Some(child),
        stderr_path: log.to_path_buf(),
    };
    let listening = eventually(PATIENCE, Duration::from_millis(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .await;
    if listening.is_err() {
        service.kill();
        bail!("doorphone-web does not listen on {port}\n{}", service.log());
    }
    Ok(service)
}
