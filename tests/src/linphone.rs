//! linphonec (Debian's `linphone-cli`) as a second real phone: a private rc
//! file and home folder, driven over its standard input with its own
//! commands (`call`, `answer`, `terminate`, ...), its state read from what it
//! prints. It has no sound card here: in file mode it plays a WAV file of a
//! tone written here as its microphone and records what it hears to another.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Notify;

use crate::sip::free_port;

/// A running linphonec, killed when dropped.
pub struct Linphone {
    child: Child,
    stdin: ChildStdin,
    /// Every line it printed so far, and a wake-up for each new one.
    lines: Arc<(Mutex<Vec<String>>, Notify)>,
    /// How many lines `printed` has looked at.
    seen: usize,
    pub dir: tempfile::TempDir,
    /// Its SIP port on every local address (linphonec binds them all).
    pub sip_port: u16,
}

/// An even port whose next port is free too, for RTP and RTCP.
fn rtp_port_pair() -> u16 {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    loop {
        let socket = UdpSocket::bind((ip, 0)).expect("a free UDP port");
        let port = socket.local_addr().expect("a bound socket").port();
        if port.is_multiple_of(2) && port < u16::MAX && UdpSocket::bind((ip, port + 1)).is_ok() {
            return port;
        }
    }
}

/// A 16-bit mono WAV file of `seconds` of a `freq` Hz tone at 8 kHz.
pub fn tone_wav(freq: f64, seconds: u32) -> Vec<u8> {
    let rate = 8000u32;
    let samples: Vec<u8> = (0..rate * seconds)
        .flat_map(|i| {
            let x =
                8000.0 * (2.0 * std::f64::consts::PI * freq * f64::from(i) / f64::from(rate)).sin();
            (x as i16).to_le_bytes()
        })
        .collect();
    let mut wav = Vec::with_capacity(44 + samples.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + samples.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    wav.extend_from_slice(&samples);
    wav
}

impl Linphone {
    /// Starts linphonec with its microphone a `tone` Hz tone, on IPv4, its
    /// SIP and RTP on free ports, and waits until it listens.
    pub async fn start(tone: f64) -> Result<Linphone> {
        let dir = tempfile::Builder::new().prefix("linphone").tempdir()?;
        let rtp = rtp_port_pair();
        let rc = dir.path().join("linphonerc");
        std::fs::write(
            &rc,
            format!(
                "[sip]\nsip_tcp_port=-1\nsip_tls_port=-1\nguess_hostname=0\n\
                 [rtp]\nbind_address=127.0.0.1\naudio_rtp_port={rtp}\nvideo_rtp_port=-1\ntext_rtp_port=-1\n\
                 [sound]\nechocancellation=0\n\
                 [video]\ndisplay=0\ncapture=0\nautomatically_initiate=0\nautomatically_accept=0\n"
            ),
        )?;
        // Without its database the core never leaves its start-up state and
        // refuses incoming calls with 503.
        std::fs::create_dir_all(dir.path().join(".local/share/linphone"))?;
        let microphone = dir.path().join("microphone.wav");
        std::fs::write(&microphone, tone_wav(tone, 60))?;
        let mut child = Command::new("linphonec")
            .arg("-c")
            .arg(&rc)
            // Its call log and friends database go to a home of its own.
            .env("HOME", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("linphonec.log"))?)
            .kill_on_drop(true)
            .spawn()
            .context("linphonec (Debian package linphone-cli)")?;
        let stdin = child.stdin.take().context("a piped stdin")?;
        let stdout = child.stdout.take().context("a piped stdout")?;
        let lines = Arc::new((Mutex::new(Vec::new()), Notify::new()));
        let writer = lines.clone();
        tokio::spawn(async move {
            let mut out = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = out.next_line().await {
                writer.0.lock().expect("the lines' lock").push(line);
                writer.1.notify_one();
            }
            // Its end wakes the reader too.
            writer.1.notify_one();
        });
        let mut phone = Linphone {
            child,
            stdin,
            lines,
            seen: 0,
            dir,
            sip_port: 0,
        };
        phone.until_on().await?;
        // The rc file's SIP port is not taken at start-up: the command is.
        phone.send("ipv6 disable").await?;
        let port = free_port();
        phone.send(&format!("ports sip {port}")).await?;
        phone
            .printed(&format!("Setting sip port to {port}"), crate::PATIENCE)
            .await?;
        phone.sip_port = port;
        phone.send("soundcard use files").await?;
        phone
            .printed("Using wav files instead of soundcard", crate::PATIENCE)
            .await?;
        phone
            .send(&format!("play {}", microphone.display()))
            .await?;
        let record = phone.record_path();
        phone.send(&format!("record {}", record.display())).await?;
        Ok(phone)
    }

    /// Asks for the core's global state every 100 ms until it is on.
    async fn until_on(&mut self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + crate::PATIENCE;
        loop {
            self.send("states global").await?;
            let state = self.printed("LinphoneGlobal", crate::PATIENCE).await?;
            if state.contains("LinphoneGlobalOn") {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("linphonec's core did not start:\n{}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Where its SIP is reached on loopback.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.sip_port))
    }

    fn record_path(&self) -> PathBuf {
        self.dir.path().join("heard.wav")
    }

    /// Types `command` at its prompt.
    pub async fn send(&mut self, command: &str) -> Result<()> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Waits until it prints a line containing `needle`, among the lines
    /// after the last one this matched; returns that line.
    pub async fn printed(&mut self, needle: &str, patience: Duration) -> Result<String> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let woken = self.lines.1.notified();
            {
                let lines = self.lines.0.lock().expect("the lines' lock");
                while self.seen < lines.len() {
                    self.seen += 1;
                    if lines[self.seen - 1].contains(needle) {
                        return Ok(lines[self.seen - 1].clone());
                    }
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("linphonec exited ({status}):\n{}", self.output());
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                bail!(
                    "linphonec did not print {needle:?} within {patience:?}:\n{}",
                    self.output()
                );
            }
        }
    }

    /// What it printed so far, and its log.
    pub fn output(&self) -> String {
        format!(
            "{}\n--- log\n{}",
            self.lines.0.lock().expect("the lines' lock").join("\n"),
            std::fs::read_to_string(self.dir.path().join("linphonec.log")).unwrap_or_default()
        )
    }

    /// How many bytes of what it hears it has recorded so far.
    pub fn recorded(&self) -> u64 {
        std::fs::metadata(self.record_path()).map_or(0, |m| m.len())
    }

    /// What it heard in its last call: the sample rate and samples of its
    /// record file, once the call ended (linphonec writes the file's WAV
    /// header when it closes it; until then the header is zeros).
    pub fn heard(&self) -> Option<(u32, Vec<i16>)> {
        crate::audio::read_wav(&std::fs::read(self.record_path()).ok()?)
    }
}

impl Drop for Linphone {
    fn drop(&mut self) {
        self.child.start_kill().ok();
    }
}
