//! The pager at work: listeners per configured group, the arbiter's decisions
//! carried out through media and the SIP agent, and the state on the bus.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};

use doorphone_interfaces::config::document::Multicast;
use doorphone_interfaces::media::Media1Proxy;
use doorphone_interfaces::pager::{Listening, OBJECT_PATH, Page, listen_state};
use doorphone_interfaces::sip::{CallProxy, call_state};
use tokio::sync::mpsc;
use zbus::object_server::SignalEmitter;
use zbus::proxy::CacheProperties;
use zbus::{OwnedObjectPath, Variant};

use crate::arbiter::{Action, Arbiter, Group, Settings};
use crate::listener::{self, Heard, Listener};
use crate::service::{self, PagerService, Status};

/// What the pager learns from its peers.
#[derive(Debug)]
pub enum Input {
    /// The multicast section at a configuration revision.
    Config(Multicast, u64),
    /// The SIP agent's answered call (`None`: none, or no agent).
    Call(Option<String>),
    /// Media appeared on the bus (`true`, a start or a restart) or left it.
    Media(bool),
}

pub struct Pager {
    conn: zbus::Connection,
    service: PagerService,
    media: Media1Proxy<'static>,
    iface: u32,
    arbiter: Arbiter,
    listeners: HashMap<Group, Listener>,
    failed: HashSet<Group>,
    labels: HashMap<Group, String>,
    /// Media's stream of the page playing.
    stream: Option<(Group, OwnedObjectPath)>,
    /// A call that was held when a page would have held it.
    held_elsewhere: Option<String>,
    page: Page,
    revision: u64,
    heard_tx: mpsc::UnboundedSender<Heard>,
}

impl Pager {
    pub async fn new(
        conn: zbus::Connection,
        service: PagerService,
        iface: u32,
        heard_tx: mpsc::UnboundedSender<Heard>,
    ) -> zbus::Result<Pager> {
        let media = Media1Proxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        Ok(Pager {
            conn,
            service,
            media,
            iface,
            arbiter: Arbiter::default(),
            listeners: HashMap::new(),
            failed: HashSet::new(),
            labels: HashMap::new(),
            stream: None,
            held_elsewhere: None,
            page: Page::default(),
            revision: 0,
            heard_tx,
        })
    }

    /// Serves inputs and what the listeners hear until `stop` fires; then the
    /// page playing stops and a held call is resumed, so that neither outlives
    /// the pager.
    pub async fn run(
        mut self,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        mut heard: mpsc::UnboundedReceiver<Heard>,
        stop: impl Future<Output = ()>,
    ) {
        let mut stop = std::pin::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                Some(input) = inputs.recv() => self.on_input(input).await,
                Some(event) = heard.recv() => self.on_heard(event).await,
            }
        }
        let actions = self.arbiter.shut_down();
        self.execute(actions).await;
    }

    pub async fn on_input(&mut self, input: Input) {
        let actions = match input {
            Input::Config(multicast, revision) => {
                self.revision = revision;
                let settings = self.listen_to(&multicast);
                self.arbiter.configure(settings)
            }
            Input::Call(call) => self.arbiter.call(call),
            Input::Media(true) => {
                // A media that restarted lost its streams; one that was away
                // never played the page the arbiter chose: either way, ask again.
                if let Some((group, codec, priority)) = self.arbiter.playing_page() {
                    self.stream = None;
                    self.play(group, codec.name(), priority).await;
                }
                Vec::new()
            }
            Input::Media(false) => {
                tracing::warn!("media left the bus: no page plays until it is back");
                self.stream = None;
                Vec::new()
            }
        };
        self.execute(actions).await;
    }

    /// Media's proxy, to follow its comings and goings.
    pub fn media(&self) -> &Media1Proxy<'static> {
        &self.media
    }

    async fn on_heard(&mut self, event: Heard) {
        let actions = match event {
            Heard::Started(group, codec) => {
                tracing::info!(group = %show(group), codec = codec.name(), "a page arrives");
                self.arbiter.arrived(group, codec)
            }
            Heard::Ended(group) => {
                tracing::info!(group = %show(group), "a page ended");
                self.arbiter.ended(group)
            }
        };
        self.execute(actions).await;
    }

    /// Joins the groups of `multicast` not yet joined (again, those that failed)
    /// and leaves the others.
    fn listen_to(&mut self, multicast: &Multicast) -> Settings {
        let mut groups = Vec::new();
        self.labels.clear();
        for entry in &multicast.listen {
            // The config service only stores multicast addresses and ports.
            let (Ok(address), Ok(port)) =
                (entry.address.parse::<Ipv4Addr>(), u16::try_from(entry.port))
            else {
                tracing::warn!(
                    address = entry.address,
                    port = entry.port,
                    "not a group: skipped"
                );
                continue;
            };
            groups.push((address, port));
            self.labels.insert((address, port), entry.label.clone());
        }
        self.listeners.retain(|g, _| groups.contains(g));
        // Groups that could not be joined are tried again at every load.
        self.failed.clear();
        for &group in &groups {
            if self.listeners.contains_key(&group) {
                continue;
            }
            match listener::listen(group, self.iface, self.heard_tx.clone()) {
                Ok(listener) => {
                    tracing::info!(group = %show(group), "listening");
                    self.listeners.insert(group, listener);
                }
                Err(e) => {
                    tracing::error!(group = %show(group), "cannot listen: {e}");
                    self.failed.insert(group);
                }
            }
        }
        Settings {
            groups,
            priority: multicast.paging_priority,
            barge: multicast.paging_barge,
        }
    }

    async fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            tracing::debug!(?action);
            match action {
                Action::Stop { group, reason } => self.stop(group, reason).await,
                Action::Hold(call) => self.hold(&call, true).await,
                Action::Resume(call) => self.hold(&call, false).await,
                Action::Play {
                    group,
                    codec,
                    priority,
                } => self.play(group, codec.name(), priority).await,
            }
        }
        self.publish().await;
    }

    /// Has media play `group`'s page. `PageStarted` goes out once per start: not
    /// again when the page is asked of a media that restarted.
    async fn play(&mut self, group: Group, codec: &str, priority: u32) {
        let (address, port) = (group.0.to_string(), group.1);
        // Solo: while a page plays, it is all the speaker says.
        let options = HashMap::from([("solo", Variant::from(true))]);
        match self.media.play_stream(&address, port, codec, options).await {
            Ok(path) => {
                tracing::info!(group = %show(group), priority, "page playing");
                self.stream = Some((group, path));
                if self.page.port == port && self.page.address == address {
                    return;
                }
                self.page = Page {
                    address: address.clone(),
                    port,
                    priority,
                    codec: codec.to_owned(),
                    since: now_ms(),
                };
                if let Ok(emitter) = SignalEmitter::new(&self.conn, OBJECT_PATH)
                    && let Err(e) =
                        PagerService::page_started(&emitter, &address, port, priority).await
                {
                    tracing::warn!("cannot emit PageStarted: {e}");
                }
            }
            Err(e) => tracing::error!(group = %show(group), "media does not play the page: {e}"),
        }
    }

    async fn stop(&mut self, group: Group, reason: &str) {
        if let Some((_, path)) = self.stream.take_if(|(g, _)| *g == group)
            && let Err(e) = self.media.stop_stream(&path.as_ref()).await
        {
            tracing::warn!(group = %show(group), "media did not stop the page: {e}");
        }
        let address = group.0.to_string();
        if self.page.port != group.1 || self.page.address != address {
            // Media never played it: nothing was announced.
            return;
        }
        self.page = Page::default();
        tracing::info!(group = %show(group), reason, "page stopped");
        if let Ok(emitter) = SignalEmitter::new(&self.conn, OBJECT_PATH)
            && let Err(e) = PagerService::page_ended(&emitter, &address, group.1, reason).await
        {
            tracing::warn!("cannot emit PageEnded: {e}");
        }
    }

    /// Holds (or resumes) the call `call` of the SIP agent. A call someone else
    /// held before the page is left as it is, and not resumed after it.
    async fn hold(&mut self, call: &str, hold: bool) {
        if !hold && self.held_elsewhere.take_if(|c| c == call).is_some() {
            return;
        }
        let result = async {
            let proxy = CallProxy::builder(&self.conn)
                .path(zbus::ObjectPath::try_from(call.to_owned())?)
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            if !hold {
                return proxy.resume().await;
            }
            if proxy.state().await? == call_state::HELD {
                self.held_elsewhere = Some(call.to_owned());
                return Ok(());
            }
            proxy.hold().await
        }
        .await;
        let what = if hold { "hold" } else { "resume" };
        match result {
            Ok(()) => tracing::info!(call, "{what}"),
            Err(e) => tracing::warn!(call, "cannot {what} the call: {e}"),
        }
    }

    async fn publish(&self) {
        let listening = self.labels.keys().filter_map(|&group| {
            let priority = self.arbiter.priority(group)?;
            let state = if self.failed.contains(&group) {
                listen_state::FAILED
            } else {
                self.arbiter.state(group)
            };
            Some(Listening {
                address: group.0.to_string(),
                port: group.1,
                priority,
                label: self.labels[&group].clone(),
                state: state.to_owned(),
            })
        });
        let mut listening: Vec<Listening> = listening.collect();
        listening.sort_by_key(|l| l.priority);
        let status = Status {
            listening,
            page: self.page.clone(),
            config_revision: self.revision,
        };
        service::publish(&self.conn, &self.service, status).await;
    }
}

fn show(group: Group) -> SocketAddrV4 {
    SocketAddrV4::new(group.0, group.1)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
