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
    tokio::spawn(async move {
        loop {
            let sections = tokio::select! {
                change = changes.next() => match change {
                    Some(change) => match change.args() {
                        Ok(args) => args.sections,
                        Err(_) => Vec::new(),
                    },
                    None => break,
                },
                owner = owners.next() => match owner {
                    Some(Some(_)) => Vec::new(),
                    // Gone: the last document stays in force.
                    Some(None) => continue,
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
