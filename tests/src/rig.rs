//! The SIP tests' rig: config, media (test sources), the relay service on
//! simulated GPIO when asked, and the SIP agent, each as its own user on a
//! private bus; SIPp callers and callees against it; and what tests ask of it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use doorphone_interfaces::media;
use doorphone_interfaces::sip::{self, CallProxy, Sip1Proxy};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::sip::{Callee, Caller, Sipp, Traced, callee, caller, free_port, start_agent};
use crate::{Bus, ConfigDb, PATIENCE, Service, applied, chown_to, reconfigure, start_config};

pub struct Rig {
    pub bus: Bus,
    pub db: ConfigDb,
    pub config: Option<Service>,
    pub media: Option<Service>,
    pub relay: Option<Service>,
    pub sip: Option<Service>,
    pub dir: tempfile::TempDir,
    pub conn: zbus::Connection,
    pub port: u16,
}

impl Rig {
    /// Config (with `change` applied to its document), media with test sources
    /// and an RTP timeout of `rtp_timeout` seconds, and the SIP agent.
    pub async fn start(rtp_timeout: u32, change: impl FnOnce(&mut Value)) -> Rig {
        Rig::start_with_sink(rtp_timeout, None, change).await
    }

    /// As `start`; the speaker writes to `speaker` (a WAV file) when given.
    pub async fn start_with_sink(
        rtp_timeout: u32,
        speaker: Option<&Path>,
        change: impl FnOnce(&mut Value),
    ) -> Rig {
        Rig::start_full(rtp_timeout, speaker, false, &[], change).await
    }

    /// As `start_with_sink`, with the relay service (simulated GPIO) when `relay`.
    pub async fn start_full(
        rtp_timeout: u32,
        speaker: Option<&Path>,
        with_relay: bool,
        sip_args: &[String],
        change: impl FnOnce(&mut Value),
    ) -> Rig {
        let bus = Bus::start().unwrap();
        let db = ConfigDb::new().unwrap();
        let config = start_config(&bus, &db).await.unwrap();
        let conn = bus.connect().await.unwrap();
        reconfigure(&conn, |doc| {
            doc["calls"]["auto_answer"] =
                json!({"ip": true, "sip": false, "delay": 0, "mode": "audio"});
            change(doc);
        })
        .await
        .unwrap();

        let dir = tempfile::Builder::new()
            .prefix("doorphone-sip")
            .tempdir()
            .unwrap();
        chown_to(dir.path(), "doorphone-media").unwrap();
        let media = crate::start_media(
            &bus,
            &[
                "--audio-sink".into(),
                speaker.map_or("fake".into(), |p| format!("file:{}", p.display())),
                "--video-source".into(),
                "test".into(),
                "--rtp-timeout".into(),
                rtp_timeout.to_string(),
                "--address".into(),
                "127.0.0.1".into(),
            ],
            &dir.path().join("media.log"),
        )
        .await
        .unwrap();
        let relay_service = if with_relay {
            Some(crate::start_sim_relay(&bus, dir.path()).await.unwrap())
        } else {
            None
        };
        let (sip, port) = start_agent(&bus, dir.path(), sip_args).await.unwrap();
        Rig {
            bus,
            db,
            config: Some(config),
            media: Some(media),
            relay: relay_service,
            sip: Some(sip),
            dir,
            conn,
            port,
        }
    }

    pub fn agent(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub async fn proxy(&self) -> Sip1Proxy<'static> {
        Sip1Proxy::builder(&self.conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .unwrap()
    }

    /// The agent's call state changes from now on.
    pub async fn states(&self) -> doorphone_interfaces::sip::CallStateChangedStream {
        self.proxy()
            .await
            .receive_call_state_changed()
            .await
            .unwrap()
    }

    /// The call object at `path`, its properties read afresh each time.
    pub async fn call_object(&self, path: zbus::OwnedObjectPath) -> CallProxy<'static> {
        CallProxy::builder(&self.conn)
            .path(path)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .unwrap()
    }

    /// The answered call.
    pub async fn active_call(&self) -> CallProxy<'static> {
        let path = self.proxy().await.active_call().await.unwrap();
        assert_ne!(path.as_str(), "/", "no call is answered");
        self.call_object(path).await
    }

    /// Changes the configuration while everything runs, and waits until the
    /// agent applies it.
    pub async fn reconfigure(&self, change: impl FnOnce(&mut Value)) {
        let revision = reconfigure(&self.conn, change).await.unwrap();
        applied(
            &self.conn,
            sip::BUS_NAME,
            sip::OBJECT_PATH,
            sip::INTERFACE,
            revision,
        )
        .await
        .unwrap();
    }

    /// Waits until each account of `ids` is registered, by the agent's word
    /// (`Sip1.Accounts`, read again on each `AccountStateChanged`).
    pub async fn until_registered(&self, ids: &[u32]) -> Vec<sip::AccountStatus> {
        let proxy = self.proxy().await;
        let mut changes = proxy.receive_account_state_changed().await.unwrap();
        tokio::time::timeout(PATIENCE, async {
            loop {
                let accounts = proxy.accounts().await.unwrap();
                let registered = |id: &u32| {
                    accounts
                        .iter()
                        .any(|a| a.id == *id && a.state == sip::account_state::REGISTERED)
                };
                if ids.iter().all(registered) {
                    return accounts;
                }
                changes.next().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("accounts {ids:?} did not register\n{}", self.sip_log()))
    }

    /// A SIPp caller calling `user` as `from_user`.
    pub fn call(
        &self,
        name: &str,
        user: &str,
        from_user: &str,
        video: bool,
        expect: Caller,
    ) -> Sipp {
        Sipp::start(
            self.dir.path(),
            name,
            &caller(user, from_user, video, &expect),
            free_port(),
            Some(self.agent()),
            &[],
        )
        .unwrap()
    }

    /// Any caller scenario, run from `ip` (a loopback address) at the agent.
    pub fn scenario_at(&self, name: &str, ip: &str, scenario: &str) -> Sipp {
        Sipp::start_at(
            self.dir.path(),
            name,
            scenario,
            ip.parse().unwrap(),
            Some(self.agent()),
            &[],
        )
        .unwrap()
    }

    /// A SIPp caller at another loopback address (`127.0.0.2`: another host
    /// to the door phone) calling `user` as `from_user`.
    pub fn call_at(
        &self,
        name: &str,
        ip: &str,
        user: &str,
        from_user: &str,
        expect: Caller,
    ) -> Sipp {
        Sipp::start_at(
            self.dir.path(),
            name,
            &caller(user, from_user, false, &expect),
            ip.parse().unwrap(),
            Some(self.agent()),
            &[],
        )
        .unwrap()
    }

    /// A whole call from `from_user` to the door phone (audio only), as
    /// `expect` scripts it; fails with the agent's log when it does not go so.
    pub async fn call_through(&self, name: &str, from_user: &str, expect: Caller) {
        self.call(name, "door", from_user, false, expect)
            .succeeds(WAIT)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", self.sip_log()));
    }

    /// Hangs up every call in progress (after a fuzzer's INVITEs were
    /// answered, say).
    pub async fn hang_up_all(&self) {
        for path in self.proxy().await.calls().await.unwrap_or_default() {
            self.call_object(path).await.hangup().await.ok();
        }
    }

    /// A SIPp callee on its own port.
    pub fn callee(&self, name: &str, behaviour: Callee) -> Sipp {
        Sipp::start(
            self.dir.path(),
            name,
            &callee(&behaviour),
            free_port(),
            None,
            &[],
        )
        .unwrap()
    }

    /// Media sessions alive now.
    pub async fn media_sessions(&self) -> usize {
        let xml = zbus::fdo::IntrospectableProxy::builder(&self.conn)
            .destination(media::BUS_NAME)
            .path("/org/doorphone/Media1/session")
            .build()
            .await
            .unwrap()
            .introspect()
            .await
            .unwrap_or_default();
        xml.matches("<node name=").count()
    }

    pub fn sip_log(&self) -> String {
        self.sip.as_ref().map(Service::log).unwrap_or_default()
    }
}

pub fn account(id: u32, user: &str, server: &str, password: &str) -> Value {
    json!({
        "id": id, "enabled": true, "label": format!("Account {id}"), "display_name": "Door",
        "user": user, "auth_user": user, "password": password, "server": server,
        "transport": "udp", "register_expires": 60,
    })
}

pub fn contact(id: u32, number: &str, whitelist: bool) -> Value {
    json!({"id": id, "name": number, "number": number, "account": "auto", "whitelist": whitelist})
}

/// Seconds between the first message matching `a` and the first after it
/// matching `b`.
pub fn between(
    messages: &[Traced],
    a: impl Fn(&Traced) -> bool,
    b: impl Fn(&Traced) -> bool,
) -> f64 {
    let start = messages
        .iter()
        .position(&a)
        .expect("the first message is in the trace");
    let end = messages[start..]
        .iter()
        .find(|m| b(m))
        .expect("the second message is in the trace");
    end.at - messages[start].at
}

pub const WAIT: Duration = Duration::from_secs(30);

/// The caller, code and reason of the next refusal.
pub async fn next_refusal(refused: &mut sip::CallRefusedStream) -> (String, u16, String) {
    let signal = tokio::time::timeout(PATIENCE, refused.next())
        .await
        .expect("a refusal is signalled")
        .unwrap();
    let args = signal.args().unwrap();
    (args.caller.to_owned(), args.code, args.reason.to_owned())
}

/// The reason of the next call that ends.
pub async fn next_end(states: &mut doorphone_interfaces::sip::CallStateChangedStream) -> String {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let s = states.next().await.expect("the agent stays on the bus");
            let a = s.args().unwrap();
            if a.state == sip::call_state::ENDED {
                return a.reason.to_owned();
            }
        }
    })
    .await
    .expect("a call ends")
}

impl Rig {
    /// The relays the simulated GPIO energised so far, in order.
    pub fn relays_energised(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("relay/relays.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"on")).then(|| f[1].to_owned())
            })
            .collect()
    }
}

/// Waits for the next call to reach `state` (`call_state::ANSWERED`, ...).
pub async fn until_state(states: &mut sip::CallStateChangedStream, state: &str) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let s = states.next().await.expect("the agent stays on the bus");
            if s.args().unwrap().state == state {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no call became {state}"))
}

/// Unix milliseconds now, to compare with times the agent signals.
pub fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_millis() as f64
}
