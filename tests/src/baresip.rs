//! baresip (Debian's `baresip-core`) as a resident's phone: its own config
//! folder, a tone as its microphone, what it hears recorded by `sndfile`,
//! and driven over `ctrl_tcp` (netstring JSON: commands such as `dial`,
//! `sndcode` and `hangup`, and the call events baresip reports).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::sip::free_port;

/// A running baresip, killed when dropped.
pub struct Baresip {
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

impl Baresip {
    /// Starts baresip with one account, `account` (an account line:
    /// `<sip:resident@127.0.0.1:5060>;auth_pass=...;answermode=auto`), its
    /// microphone a tone of `tone` Hz, and connects to its control port.
    pub async fn start(account: &str, tone: f64) -> Result<Baresip> {
        let dir = tempfile::Builder::new().prefix("baresip").tempdir()?;
        let sip_port = sip_port_pair();
        let ctrl_port = free_port();
        let records = dir.path().join("records");
        std::fs::create_dir(&records)?;
        std::fs::write(
            dir.path().join("config"),
            format!(
                "sip_listen 127.0.0.1:{sip_port}\n\
                 net_interface 127.0.0.1\n\
                 module_path /usr/lib/baresip/modules\n\
                 module g711.so\n\
                 module ausine.so\n\
                 module aubridge.so\n\
                 module sndfile.so\n\
                 module menu.so\n\
                 module account.so\n\
                 module_app ctrl_tcp.so\n\
                 ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n\
                 audio_source ausine,{tone}\n\
                 audio_player aubridge,nowhere\n\
                 ausrc_srate 48000\n\
                 ausrc_channels 2\n\
                 snd_path {}\n",
                records.display()
            ),
        )?;
        std::fs::write(dir.path().join("accounts"), format!("{account}\n"))?;
        let log = std::fs::File::create(dir.path().join("baresip.log"))?;
        let child = Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("baresip (Debian package baresip-core)")?;
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
        Ok(Baresip {
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

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}
