//! baresip (Debian's `baresip-core`) as a caller: PCMU, a sine tone as its
//! microphone, what it hears recorded to WAV, SRTP through its `srtp` module when
//! asked, RFC 4733 digits typed on its standard input while the call runs.

use std::io::Write;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

use anyhow::{Context, Result};

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
        let records = dir.path().join("records");
        std::fs::create_dir(&records)?;
        let srtp = if modules.srtp { "module srtp.so\n" } else { "" };
        // What it hears, to WAV files, only when a test listens to them.
        let sndfile = if modules.record {
            "module sndfile.so\n"
        } else {
            ""
        };
        std::fs::write(
            dir.path().join("config"),
            format!(
                "sip_listen 127.0.0.1:{sip_port}\n\
                 net_interface 127.0.0.1\n\
                 rtp_ports {first}-{last}\n\
                 module_path /usr/lib/baresip/modules\n\
                 module stdio.so\n\
                 module g711.so\n\
                 {srtp}\
                 module ausine.so\n\
                 module aubridge.so\n\
                 {sndfile}\
                 module menu.so\n\
                 module account.so\n\
                 audio_source ausine,{BARESIP_TONE}\n\
                 audio_player aubridge,nowhere\n\
                 ausrc_srate 48000\n\
                 ausrc_channels 2\n\
                 snd_path {records}\n",
                first = rtp_ports.start(),
                last = rtp_ports.end(),
                records = records.display()
            ),
        )?;
        std::fs::write(dir.path().join("accounts"), format!("{account}\n"))?;
        let log = std::fs::File::create(dir.path().join("baresip.log"))?;
        let mut child = Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("baresip (Debian package baresip-core)")?;
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
