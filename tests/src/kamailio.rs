//! Kamailio (Debian's `kamailio`) as a real SIP registrar and proxy for the
//! door phone's accounts: started by a test on a free loopback port with a
//! configuration written here, its users and passwords fixed in an in-memory
//! `htable` and checked by `pv_auth_check` (digest, no database), its
//! registrations in `usrloc` memory. Every REGISTER and every initial INVITE
//! is challenged (401 and 407); initial INVITEs are record-routed, so the
//! whole dialog runs through the proxy. What it does is logged, so tests can
//! say that a request was challenged, authenticated or registered.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::sip::free_port;

/// The digest realm of every challenge.
pub const REALM: &str = "door.test";

/// Where Debian keeps Kamailio's modules: `/usr/lib/<multiarch>/kamailio/modules`.
fn modules() -> Result<PathBuf> {
    std::fs::read_dir("/usr/lib")?
        .filter_map(Result::ok)
        .map(|e| e.path().join("kamailio/modules"))
        .find(|p| p.join("tm.so").exists())
        .context("no Kamailio modules under /usr/lib/*/kamailio/modules (Debian package kamailio)")
}

/// A running Kamailio, stopped when dropped.
pub struct Kamailio {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
}

/// The configuration: `users` (name, password) may register and call.
fn config(port: u16, modules: &Path, users: &[(&str, &str)]) -> String {
    let mut table = String::new();
    for (user, password) in users {
        table.push_str(&format!("    $sht(users=>{user}) = \"{password}\";\n"));
    }
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=1
auto_aliases=no
disable_tcp=yes
listen=udp:127.0.0.1:{port}
mpath="{modules}/"

loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "htable.so"
loadmodule "auth.so"

modparam("usrloc", "db_mode", 0)
modparam("htable", "htable", "users=>size=4;")

event_route[htable:mod-init] {{
{table}}}

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    xlog("L_NOTICE", "request $rm $ru from $si:$sp\n");
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not Here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("REGISTER")) {{
        if (!is_present_hf("Authorization")) {{
            xlog("L_NOTICE", "challenged REGISTER of $tu\n");
            auth_challenge("{REALM}", "0");
            exit;
        }}
        if (!pv_auth_check("{REALM}", "$sht(users=>$au)", "0", "1")) {{
            xlog("L_NOTICE", "refused REGISTER of $tu by $au\n");
            auth_challenge("{REALM}", "0");
            exit;
        }}
        if (!save("location")) {{
            sl_reply_error();
            exit;
        }}
        xlog("L_NOTICE", "registered $tu at $ct from $si:$sp\n");
        exit;
    }}
    if (is_method("INVITE")) {{
        if (!is_present_hf("Proxy-Authorization")) {{
            xlog("L_NOTICE", "challenged INVITE from $fu\n");
            auth_challenge("{REALM}", "0");
            exit;
        }}
        if (!pv_auth_check("{REALM}", "$sht(users=>$au)", "0", "2")) {{
            xlog("L_NOTICE", "refused INVITE from $fu by $au\n");
            auth_challenge("{REALM}", "0");
            exit;
        }}
        xlog("L_NOTICE", "authenticated INVITE from $fu by $au\n");
        consume_credentials();
        record_route();
    }}
    if (!lookup("location")) {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    if (!t_relay()) {{
        sl_reply_error();
    }}
}}
"#,
        modules = modules.display()
    )
}

impl Kamailio {
    /// Starts Kamailio with its files in `dir`, accepting `users` (name,
    /// password), and waits until it answers an OPTIONS.
    pub async fn start(dir: &Path, users: &[(&str, &str)]) -> Result<Kamailio> {
        let port = free_port();
        let cfg = dir.join("kamailio.cfg");
        std::fs::write(&cfg, config(port, &modules()?, users))?;
        let log = dir.join("kamailio.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&cfg)
            // Foreground, logging to stderr; small shared and private memory.
            .args(["-DD", "-E", "-m", "16", "-M", "4", "-n", "1"])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("kamailio (Debian package kamailio)")?;
        let mut kamailio = Kamailio {
            child: Some(child),
            port,
            log,
        };
        kamailio.until_answering(crate::PATIENCE).await?;
        Ok(kamailio)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `127.0.0.1:PORT`, as an account's `server`.
    pub fn server(&self) -> String {
        self.addr().to_string()
    }

    /// Sends an OPTIONS every 100 ms until one is answered 200 (Kamailio
    /// drops what comes before its workers run).
    async fn until_answering(&mut self, patience: Duration) -> Result<()> {
        let socket = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let me = socket.local_addr()?;
        let deadline = tokio::time::Instant::now() + patience;
        let mut buf = vec![0u8; 65536];
        for n in 0u32.. {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("kamailio exited ({status}):\n{}", self.log());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "kamailio did not answer OPTIONS within {patience:?}:\n{}",
                    self.log()
                );
            }
            let options = format!(
                "OPTIONS sip:{addr} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {me};branch=z9hG4bK-ready-{n}\r\n\
                 From: <sip:probe@{me}>;tag=ready{n}\r\n\
                 To: <sip:{addr}>\r\n\
                 Call-ID: ready-{n}@{me}\r\n\
                 CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                addr = self.addr()
            );
            socket.send_to(options.as_bytes(), self.addr()).await?;
            if let Ok(Ok((len, _))) =
                tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf)).await
                && buf[..len].starts_with(b"SIP/2.0 200")
            {
                return Ok(());
            }
        }
        unreachable!("the loop ends by returning")
    }

    /// What Kamailio logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until a line of the log contains `needle`, reading the log every
    /// 10 ms (Kamailio tells nobody when it writes); returns that line.
    pub async fn logged(&self, needle: &str, patience: Duration) -> Result<String> {
        let found = crate::eventually(patience, Duration::from_millis(10), || {
            self.log()
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_owned)
        })
        .await;
        found.map_err(|_| {
            anyhow::anyhow!(
                "kamailio did not log {needle:?} within {patience:?}:\n{}",
                self.log()
            )
        })
    }

    /// Waits until `user` registered here.
    pub async fn registered(&self, user: &str, patience: Duration) -> Result<String> {
        self.logged(&format!("registered sip:{user}@"), patience)
            .await
    }

    /// How many lines of the log contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the main process stops its workers and exits.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}
