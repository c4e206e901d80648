//! Call history: every call, answered or refused, the last 1000, in an SQLite
//! file of the agent's own. Writes go through one thread, in batches, so a flood
//! of refused INVITEs never waits on the disk.

use std::path::Path;
use std::sync::mpsc;

use doorphone_interfaces::sip::HistoryEntry;
use rusqlite::{Connection, params};

/// How many calls are kept.
pub const KEEP: i64 = 1000;

const SCHEMA_VERSION: i64 = 1;

pub struct History {
    writer: mpsc::Sender<Request>,
}

enum Request {
    Add(HistoryEntry),
    List(tokio::sync::oneshot::Sender<Vec<HistoryEntry>>),
}

impl History {
    /// Opens (or creates) the history at `path`.
    pub fn open(path: &Path) -> Result<History, String> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let db = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let setup = || -> rusqlite::Result<()> {
            db.pragma_update(None, "journal_mode", "WAL")?;
            db.pragma_update(None, "synchronous", "FULL")?;
            let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if version < 1 {
                db.execute_batch(
                    "CREATE TABLE calls (
                        id INTEGER PRIMARY KEY,
                        direction TEXT NOT NULL,
                        remote TEXT NOT NULL,
                        account TEXT NOT NULL,
                        start INTEGER NOT NULL,
                        answered INTEGER NOT NULL,
                        end INTEGER NOT NULL,
                        end_reason TEXT NOT NULL,
                        code INTEGER NOT NULL
                    );
                    PRAGMA user_version = 1;",
                )?;
            }
            Ok(())
        };
        setup().map_err(|e| format!("{}: {e}", path.display()))?;
        let version: i64 = db
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if version > SCHEMA_VERSION {
            return Err(format!(
                "{}: call history schema {version} is newer than this agent's ({SCHEMA_VERSION})",
                path.display()
            ));
        }
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("history".into())
            .spawn(move || writer(db, rx))
            .map_err(|e| e.to_string())?;
        Ok(History { writer: tx })
    }

    /// Records an ended call.
    pub fn add(&self, entry: HistoryEntry) {
        self.writer.send(Request::Add(entry)).ok();
    }

    /// Every kept call, oldest first (after the writes already asked for).
    pub async fn list(&self) -> Vec<HistoryEntry> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.writer.send(Request::List(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

fn writer(mut db: Connection, rx: mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let mut adds = Vec::new();
        let mut lists = Vec::new();
        for req in batch {
            match req {
                Request::Add(e) => adds.push(e),
                Request::List(reply) => lists.push(reply),
            }
        }
        if !adds.is_empty()
            && let Err(e) = insert(&mut db, &adds)
        {
            tracing::error!("call history: {e}");
        }
        for reply in lists {
            reply.send(list(&db).unwrap_or_default()).ok();
        }
    }
}

fn insert(db: &mut Connection, entries: &[HistoryEntry]) -> rusqlite::Result<()> {
    let tx = db.transaction()?;
    {
        let mut add = tx.prepare_cached(
            "INSERT INTO calls (direction, remote, account, start, answered, end, end_reason, code)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for e in entries {
            add.execute(params![
                e.direction,
                e.remote,
                e.account,
                e.start as i64,
                e.answered as i64,
                e.end as i64,
                e.end_reason,
                e.code
            ])?;
        }
        tx.execute(
            "DELETE FROM calls WHERE id <= (SELECT max(id) FROM calls) - ?1",
            [KEEP],
        )?;
    }
    tx.commit()
}

fn list(db: &Connection) -> rusqlite::Result<Vec<HistoryEntry>> {
    let mut q = db.prepare_cached(
        "SELECT direction, remote, account, start, answered, end, end_reason, code
         FROM calls ORDER BY id",
    )?;
    q.query_map([], |r| {
        Ok(HistoryEntry {
            direction: r.get(0)?,
            remote: r.get(1)?,
            account: r.get(2)?,
            start: r.get::<_, i64>(3)? as u64,
            answered: r.get::<_, i64>(4)? as u64,
            end: r.get::<_, i64>(5)? as u64,
            end_reason: r.get(6)?,
            code: r.get(7)?,
        })
    })?
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> HistoryEntry {
        HistoryEntry {
            direction: "in".into(),
            remote: format!("sip:{n}@x"),
            account: "ip".into(),
            start: n,
            answered: 0,
            end: n + 1,
            end_reason: "policy".into(),
            code: 403,
        }
    }

    #[tokio::test]
    async fn keeps_the_last_thousand_calls_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        {
            let h = History::open(&path).unwrap();
            for n in 0..1005 {
                h.add(entry(n));
            }
            let all = h.list().await;
            assert_eq!(all.len(), 1000);
            assert_eq!(all[0], entry(5));
        }
        let h = History::open(&path).unwrap();
        let all = h.list().await;
        assert_eq!(all.len(), 1000);
        assert_eq!(all.last().unwrap(), &entry(1004));
    }
}
