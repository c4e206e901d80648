//! Following the configuration: the one way every service reads it.
//!
//! [`follow`] subscribes to `Config1.Changed` and to the config service's
//! arrival and departure on the bus first, then reads the document, so no
//! change made in between is missed. It reloads on every `Changed` and
//! whenever the config service (re)appears: a service started before the
//! config service, or left running while it restarts, takes up its document
//! as soon as it is there. While the config service is absent the last
//! document read stays in force (the defaults before any).

use std::sync::Arc;

use doorphone_interfaces::config::{Config1Proxy, Document};
use futures_util::StreamExt;
use tokio::sync::watch;
use zbus::proxy::CacheProperties;

/// Which export a service reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `Export`: passwords masked (every service but the SIP agent).
    Public,
    /// `ExportSecrets`: with passwords, for the services the bus policy allows.
    Secrets,
}

/// One reading of the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub document: Document,
    /// The config service's revision the document is at least as new as; 0
    /// for the defaults.
    pub revision: u64,
    /// Whether the document came from the config service (false: defaults,
    /// the service was never reachable).
    pub from_service: bool,
    /// The sections this reading may have changed; empty for a full reload
    /// (the first reading, or the config service appearing).
    pub sections: Vec<String>,
}

impl Snapshot {
    /// Whether this reading may have changed `section`.
    pub fn touches(&self, section: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|s| s == section)
    }
}

/// Reads the configuration and follows it: the receiver holds the latest
/// reading and wakes on each new one. It never closes while the bus
/// connection lives.
pub async fn follow(
    conn: &zbus::Connection,
    access: Access,
) -> zbus::Result<watch::Receiver<Arc<Snapshot>>> {
    let proxy = Config1Proxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let mut changes = proxy.receive_changed().await?;
    let mut owners = proxy.inner().receive_owner_changed().await?;
    let first = read(&proxy, access, Vec::new()).await.unwrap_or_else(|e| {
        tracing::warn!("the configuration is not readable ({e}): defaults until it is");
        Snapshot {
            document: Document::default(),
            revision: 0,
            from_service: false,
            sections: Vec::new(),
        }
    });
    let (tx, rx) = watch::channel(Arc::new(first));
    // The signals are taken off their queues as they come, whatever the
    // reader is waiting for: a queue left full stops the connection's every
    // reply. What they ask for is gathered until the reader gets to it.
    let pending = Arc::new(Pending::default());
    let gather = pending.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                change = changes.next() => match change {
                    Some(change) => gather.ask(change.args().map(|a| a.sections).unwrap_or_default()),
                    None => break,
                },
                owner = owners.next() => match owner {
                    Some(Some(_)) => gather.ask(Vec::new()),
                    // Gone: the last document stays in force.
                    Some(None) => {}
                    None => break,
                },
            }
        }
        gather.close();
    });
    tokio::spawn(async move {
        loop {
            let sections = tokio::select! {
                sections = pending.next() => match sections {
                    Some(sections) => sections,
                    None => break,
                },
                () = tx.closed() => break,
            };
            match read(&proxy, access, sections).await {
                Ok(snapshot) => {
                    tracing::info!(revision = snapshot.revision, "configuration reloaded");
                    tx.send_replace(Arc::new(snapshot));
                }
                Err(e) => tracing::warn!("the configuration is not readable ({e}): kept"),
            }
        }
    });
    Ok(rx)
}

/// The sections the signals asked to reload since the last reading, gathered.
#[derive(Default)]
struct Pending {
    /// `None`: nothing asked; an empty list: everything.
    asked: std::sync::Mutex<(Option<Vec<String>>, bool)>,
    wake: tokio::sync::Notify,
}

impl Pending {
    /// Asks for `sections` (none: everything) to be read again.
    fn ask(&self, sections: Vec<String>) {
        let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        asked.0 = Some(gather(asked.0.take(), sections));
        drop(asked);
        self.wake.notify_one();
    }

    /// No more signals will come.
    fn close(&self) {
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.wake.notify_one();
    }

    /// What was asked since the last call, once something was; `None` when
    /// no more signals come.
    async fn next(&self) -> Option<Vec<String>> {
        loop {
            {
                let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(sections) = asked.0.take() {
                    return Some(sections);
                }
                if asked.1 {
                    return None;
                }
            }
            self.wake.notified().await;
        }
    }
}

/// The sections of two requests together; an empty list is every section.
fn gather(before: Option<Vec<String>>, mut sections: Vec<String>) -> Vec<String> {
    match before {
        None => sections,
        Some(before) if before.is_empty() || sections.is_empty() => Vec::new(),
        Some(mut before) => {
            sections.retain(|s| !before.contains(s));
            before.append(&mut sections);
            before
        }
    }
}

async fn read(
    proxy: &Config1Proxy<'_>,
    access: Access,
    sections: Vec<String>,
) -> Result<Snapshot, String> {
    // The revision first: the document read after it is at least that new.
    let revision = proxy.revision().await.map_err(|e| e.to_string())?;
    let text = match access {
        Access::Public => proxy.export().await,
        Access::Secrets => proxy.export_secrets().await,
    }
    .map_err(|e| e.to_string())?;
    let document = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    Ok(Snapshot {
        document,
        revision,
        from_service: true,
        sections,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn gathered_sections_are_their_union_and_everything_wins() {
        assert_eq!(gather(None, list(&["calls"])), list(&["calls"]));
        assert_eq!(
            gather(Some(list(&["calls", "media"])), list(&["media", "relays"])),
            list(&["calls", "media", "relays"])
        );
        assert!(gather(Some(list(&["calls"])), Vec::new()).is_empty());
        assert!(gather(Some(Vec::new()), list(&["calls"])).is_empty());
    }

    #[tokio::test]
    async fn many_requests_while_the_reader_is_busy_make_one_reading() {
        let pending = Pending::default();
        for _ in 0..1000 {
            pending.ask(list(&["dial_plan"]));
        }
        pending.ask(list(&["media"]));
        assert_eq!(pending.next().await, Some(list(&["dial_plan", "media"])));
        pending.close();
        assert_eq!(pending.next().await, None);
    }
}
