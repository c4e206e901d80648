//! baresip (Debian's `baresip-core`), two ways: [`Baresip`] dials (or answers)
//! with PCMU, a sine tone as its microphone, what it hears recorded to WAV,
//! SRTP through its `srtp` module when asked, RFC 4733 digits typed on its
//! standard input while the call runs; [`Resident`] is a resident's phone
//! driven over `ctrl_tcp` (netstring JSON: commands such as `dial`, `sndcode`
//! and `hangup`, and the call events baresip reports).

use std::collections::VecDeque;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::sip::free_port;

/// baresip's microphone tone.
pub const BARESIP_TONE: f64 = 1000.0;

pub struct Baresip {
    dir: tempfile::TempDir,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl Baresip {
    /// Dials `target` (`sip:door@127.0.0.1:5060`) and quits after `seconds`
    /// (hanging up). `mediaenc`: the account's `mediaenc` (`srtp`, `srtp-mand`),
    /// none for plain RTP. Its RTP and RTCP use ports in `rtp_ports`.
    pub fn dial(
        target: &str,
        mediaenc: Option<&str>,
        rtp_ports: RangeInclusive<u16>,
        seconds: u32,
    ) -> Result<Baresip> {
        let mediaenc = mediaenc
            .map(|m| format!(";mediaenc={m}"))
            .unwrap_or_default();
        Baresip::start(
            free_port(),
            Modules {
                srtp: mediaenc.contains("srtp"),
                record: true,
            },
            &rtp_ports,
            &format!("<sip:resident@127.0.0.1>;regint=0;audio_codecs=PCMU{mediaenc}"),
            &["-e", &format!("/dial {target}"), "-t", &seconds.to_string()],
        )
    }

    /// Listens on 127.0.0.1:`sip_port` as `user` and answers every call at once
    /// (PCMU), until dropped: the peer the door phone is compared with.
    pub fn answer(user: &str, sip_port: u16, rtp_ports: RangeInclusive<u16>) -> Result<Baresip> {
        Baresip::start(
            sip_port,
            Modules {
                srtp: false,
                record: false,
            },
            &rtp_ports,
            &format!(
                "<sip:{user}@127.0.0.1:{sip_port}>;regint=0;answermode=auto;audio_codecs=PCMU"
            ),
            &[],
        )
    }

    fn start(
        sip_port: u16,
        modules: Modules,
        rtp_ports: &RangeInclusive<u16>,
        account: &str,
        args: &[&str],
    ) -> Result<Baresip> {
        let dir = tempfile::Builder::new().prefix("baresip").tempdir()?;
        let profile = Profile {
            sip_port,
            rtp_ports: Some(rtp_ports),
            tone: BARESIP_TONE,
            srtp: modules.srtp,
            record: modules.record,
            control: Control::Stdin,
            account,
        };
        let mut child = spawn(dir.path(), &profile, args)?;
        let stdin = child.stdin.take();
        Ok(Baresip {
            dir,
            child: Some(child),
            stdin,
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Presses `digits` on the call's keypad: RFC 4733 events.
    pub fn press(&mut self, digits: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("baresip's input is closed")?;
        stdin.write_all(digits.as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits for baresip to quit (its `-t` time).
    pub async fn finish(&mut self) -> Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .context("baresip was already waited for")?;
        Ok(tokio::task::spawn_blocking(move || child.wait()).await??)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }

    /// The WAV file of what baresip heard (decoded), once the call ran.
    pub fn heard(&self) -> Option<PathBuf> {
        std::fs::read_dir(self.dir.path().join("records"))
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The optional modules an instance loads.
struct Modules {
    /// `srtp`: SRTP with SDES keys.
    srtp: bool,
    /// `sndfile`: what the call receives, recorded to WAV.
    record: bool,
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What one instance's config folder says.
struct Profile<'a> {
    sip_port: u16,
    /// Its RTP and RTCP ports; baresip's default range when none.
    rtp_ports: Option<&'a RangeInclusive<u16>>,
    tone: f64,
    /// `srtp`: SRTP with SDES keys.
    srtp: bool,
    /// `sndfile`: what the call receives, recorded to WAV in `records/`.
    record: bool,
    /// `stdio` (keys typed on standard input) or `ctrl_tcp` on this port.
    control: Control,
    /// The one account line.
    account: &'a str,
}

enum Control {
    Stdin,
    Tcp(u16),
}

/// Writes `dir/config` and `dir/accounts` for `profile` and starts baresip on
/// them, its output to `dir/baresip.log`.
fn spawn(dir: &Path, profile: &Profile, args: &[&str]) -> Result<Child> {
    let records = dir.join("records");
    std::fs::create_dir_all(&records)?;
    // Modules an account line names (`mediaenc=srtp`) load before `account`.
    let mut modules = String::from("module g711.so\n");
    if profile.srtp {
        modules.push_str("module srtp.so\n");
    }
    if profile.record {
        modules.push_str("module sndfile.so\n");
    }
    let mut config = format!(
        "sip_listen 127.0.0.1:{}\n\
         net_interface 127.0.0.1\n\
         module_path /usr/lib/baresip/modules\n\
         {modules}\
         module ausine.so\n\
         module aubridge.so\n\
         module menu.so\n\
         module account.so\n\
         audio_source ausine,{}\n\
         audio_player aubridge,nowhere\n\
         ausrc_srate 48000\n\
         ausrc_channels 2\n\
         snd_path {}\n",
        profile.sip_port,
        profile.tone,
        records.display()
    );
    if let Some(ports) = profile.rtp_ports {
        config.push_str(&format!("rtp_ports {}-{}\n", ports.start(), ports.end()));
    }
    let stdin = match profile.control {
        Control::Stdin => {
            config.push_str("module stdio.so\n");
            Stdio::piped()
        }
        Control::Tcp(port) => {
            config.push_str(&format!(
                "module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{port}\n"
            ));
            Stdio::null()
        }
    };
    std::fs::write(dir.join("config"), config)?;
    std::fs::write(dir.join("accounts"), format!("{}\n", profile.account))?;
    let log = std::fs::File::create(dir.join("baresip.log"))?;
    Command::new("baresip")
        .arg("-f")
        .arg(dir)
        .args(args)
        .stdin(stdin)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("baresip (Debian package baresip-core)")
}

/// A resident's baresip driven over its control port, killed when dropped.
pub struct Resident {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    /// Its SIP port on 127.0.0.1.
    pub sip_port: u16,
    ctrl: TcpStream,
    received: Vec<u8>,
    events: VecDeque<Value>,
    tokens: u64,
}

/// A SIP port whose next port is free too (baresip binds PORT+1 for TLS).
fn sip_port_pair() -> u16 {
    loop {
        let port = free_port();
        let next = port.wrapping_add(1);
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        if next > 1024
            && UdpSocket::bind((ip, next)).is_ok()
            && TcpListener::bind((ip, next)).is_ok()
        {
            return port;
        }
    }
}

impl Resident {
    /// Starts baresip with one account, `account` (an account line:
    /// `<sip:resident@127.0.0.1:5060>;auth_pass=...;answermode=auto`), its
    /// microphone a tone of `tone` Hz, and connects to its control port.
    pub async fn start(account: &str, tone: f64) -> Result<Resident> {
        let dir = tempfile::Builder::new().prefix("baresip").tempdir()?;
        let sip_port = sip_port_pair();
        let ctrl_port = free_port();
        let profile = Profile {
            sip_port,
            rtp_ports: None,
            tone,
            srtp: false,
            record: true,
            control: Control::Tcp(ctrl_port),
            account,
        };
        let child = spawn(dir.path(), &profile, &[])?;
        let mut child = Some(child);
        // The control port opens once baresip has read its config; it is
        // tried every 10 ms until then.
        let deadline = tokio::time::Instant::now() + crate::PATIENCE;
        let ctrl = loop {
            match TcpStream::connect((Ipv4Addr::LOCALHOST, ctrl_port)).await {
                Ok(stream) => break stream,
                Err(e) => {
                    let exited = child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                    if exited.is_some() || tokio::time::Instant::now() > deadline {
                        let log = std::fs::read_to_string(dir.path().join("baresip.log"))
                            .unwrap_or_default();
                        if let Some(mut c) = child.take() {
                            c.kill().ok();
                            c.wait().ok();
                        }
                        bail!("baresip's control port did not open ({e}):\n{log}");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        Ok(Resident {
            child,
            dir,
            sip_port,
            ctrl,
            received: Vec::new(),
            events: VecDeque::new(),
            tokens: 0,
        })
    }

    /// What baresip printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("baresip.log")).unwrap_or_default()
    }

    /// The folder `sndfile` writes each call's audio into (`*-dec.wav`: what
    /// baresip heard, `*-enc.wav`: what it sent).
    pub fn records(&self) -> PathBuf {
        self.dir.path().join("records")
    }

    /// What baresip heard in its last call: the sample rate and samples.
    pub fn heard(&self) -> Option<(u32, Vec<i16>)> {
        let mut decoded: Vec<PathBuf> = std::fs::read_dir(self.records())
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        decoded.sort();
        crate::audio::read_wav(&std::fs::read(decoded.last()?).ok()?)
    }

    /// The next netstring from the control port.
    async fn message(&mut self) -> Result<Value> {
        loop {
            if let Some(colon) = self.received.iter().position(|&b| b == b':') {
                let len: usize = std::str::from_utf8(&self.received[..colon])?
                    .parse()
                    .context("a netstring length")?;
                if self.received.len() > colon + len + 1 {
                    let body = self.received[colon + 1..colon + 1 + len].to_vec();
                    self.received.drain(..colon + len + 2);
                    return Ok(serde_json::from_slice(&body)?);
                }
            }
            let mut buf = [0u8; 8192];
            let n = self.ctrl.read(&mut buf).await?;
            if n == 0 {
                bail!("baresip closed its control port:\n{}", self.log());
            }
            self.received.extend_from_slice(&buf[..n]);
        }
    }

    /// Runs a command (`dial`, `sndcode`, `hangup`, ...) and returns its
    /// answer's text; events that come meanwhile are kept for `event`.
    pub async fn command(&mut self, command: &str, params: &str) -> Result<String> {
        self.tokens += 1;
        let token = self.tokens.to_string();
        let body = json!({"command": command, "params": params, "token": token}).to_string();
        self.ctrl
            .write_all(format!("{}:{body},", body.len()).as_bytes())
            .await?;
        let answer = tokio::time::timeout(crate::PATIENCE, async {
            loop {
                let m = self.message().await?;
                if m["response"] == json!(true) && m["token"] == json!(token) {
                    return Ok::<Value, anyhow::Error>(m);
                }
                if m["event"] == json!(true) {
                    self.events.push_back(m);
                }
            }
        })
        .await
        .with_context(|| format!("baresip did not answer {command}"))??;
        if answer["ok"] != json!(true) {
            bail!("baresip refused {command} {params}: {answer}");
        }
        Ok(answer["data"].as_str().unwrap_or_default().to_owned())
    }

    /// Waits for the next event of type `kind` (`CALL_ESTABLISHED`,
    /// `CALL_CLOSED`, `CALL_INCOMING`, ...), skipping others.
    pub async fn event(&mut self, kind: &str, patience: Duration) -> Result<Value> {
        while let Some(e) = self.events.pop_front() {
            if e["type"] == json!(kind) {
                return Ok(e);
            }
        }
        let waited = tokio::time::timeout(patience, async {
            loop {
                let m = self.message().await?;
                if m["event"] == json!(true) && m["type"] == json!(kind) {
                    return Ok::<Value, anyhow::Error>(m);
                }
            }
        })
        .await;
        match waited {
            Ok(event) => event,
            Err(_) => bail!(
                "baresip reported no {kind} within {patience:?}:\n{}",
                self.log()
            ),
        }
    }
}

impl Drop for Resident {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}
