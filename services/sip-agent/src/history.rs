//! Call history: the last 1000 calls and, apart from them, the last 100
//! calls the policy refused, in an SQLite file of the agent's own (0600 in a
//! 0700 folder: it names who called the door). Refusals are kept apart so a
//! flood of strangers never pushes the real calls out. Writes go through one
//! thread, in batches, so a flood never waits on the disk: what comes within
//! [`GATHER`] of a first entry is committed with it, one synchronous write to
//! the flash for a busy second instead of one for each call or refusal. A
//! reading, and the agent's stop ([`History::flush`]), commit at once what
//! came before them.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use doorphone_interfaces::sip::HistoryEntry;
use rusqlite::{Connection, params};

/// How many calls are kept.
pub const KEEP: i64 = 1000;
/// How many refused calls are kept.
pub const KEEP_REFUSALS: i64 = 100;

/// How long the writer gathers entries after the first before it commits them.
pub const GATHER: Duration = Duration::from_secs(1);

const SCHEMA_VERSION: i64 = 2;

pub struct History {
    writer: mpsc::Sender<Request>,
    commits: Arc<AtomicU64>,
}

enum Request {
    Add(HistoryEntry),
    Refused(HistoryEntry),
    List(tokio::sync::oneshot::Sender<Vec<HistoryEntry>>),
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl Request {
    /// Whether the request only writes (and can wait for the next commit).
    fn writes(&self) -> bool {
        matches!(self, Request::Add(_) | Request::Refused(_))
    }
}

impl History {
    /// Opens (or creates) the history at `path`.
    pub fn open(path: &Path) -> Result<History, String> {
        doorphone_daemon::files::private_file(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let db = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let setup = || -> rusqlite::Result<()> {
            db.pragma_update(None, "journal_mode", "WAL")?;
            db.pragma_update(None, "synchronous", "FULL")?;
            let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
            // Schema 1: the calls; 2: the refusals, kept apart, as the calls.
            for (schema, table) in [(1, "calls"), (2, "refusals")] {
                if version < schema {
                    db.execute_batch(&format!(
                        "CREATE TABLE {table} (
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
                        PRAGMA user_version = {schema};"
                    ))?;
                }
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
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        std::thread::Builder::new()
            .name("history".into())
            .spawn(move || writer(db, rx, &counted))
            .map_err(|e| e.to_string())?;
        Ok(History {
            writer: tx,
            commits,
        })
    }

    /// Commits what was added before: the agent stops only after it.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.writer.send(Request::Flush(tx)).is_ok() {
            rx.await.ok();
        }
    }

    /// How many transactions wrote entries so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Records an ended call.
    pub fn add(&self, entry: HistoryEntry) {
        self.writer.send(Request::Add(entry)).ok();
    }

    /// Records a call the policy refused.
    pub fn add_refusal(&self, entry: HistoryEntry) {
        self.writer.send(Request::Refused(entry)).ok();
    }

    /// Every kept call and refusal, oldest first (after the writes already
    /// asked for).
    pub async fn list(&self) -> Vec<HistoryEntry> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.writer.send(Request::List(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

fn writer(mut db: Connection, rx: mpsc::Receiver<Request>, commits: &AtomicU64) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        // Entries gather for `GATHER`, until a reading or a flush wants them
        // committed, or the agent goes.
        let until = Instant::now() + GATHER;
        while batch.last().is_some_and(Request::writes) {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let mut adds = Vec::new();
        let mut refused = Vec::new();
        let mut lists = Vec::new();
        let mut flushes = Vec::new();
        for req in batch {
            match req {
                Request::Add(e) => adds.push(e),
                Request::Refused(e) => refused.push(e),
                Request::List(reply) => lists.push(reply),
                Request::Flush(done) => flushes.push(done),
            }
        }
        if !(adds.is_empty() && refused.is_empty()) {
            match insert(&mut db, &adds, &refused) {
                Ok(()) => {
                    commits.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::error!("call history: {e}"),
            }
        }
        for reply in lists {
            reply.send(list(&db).unwrap_or_default()).ok();
        }
        for done in flushes {
            done.send(()).ok();
        }
    }
}

/// Adds calls and refusals in one transaction, each table cut to what it keeps.
fn insert(
    db: &mut Connection,
    calls: &[HistoryEntry],
    refusals: &[HistoryEntry],
) -> rusqlite::Result<()> {
    let tx = db.transaction()?;
    for (table, entries, keep) in [
        ("calls", calls, KEEP),
        ("refusals", refusals, KEEP_REFUSALS),
    ] {
        if entries.is_empty() {
            continue;
        }
        let mut add = tx.prepare_cached(&format!(
            "INSERT INTO {table} (direction, remote, account, start, answered, end, end_reason, code)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ))?;
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
        tx.prepare_cached(&format!(
            "DELETE FROM {table} WHERE id <= (SELECT max(id) FROM {table}) - ?1"
        ))?
        .execute([keep])?;
    }
    tx.commit()
}

fn list(db: &Connection) -> rusqlite::Result<Vec<HistoryEntry>> {
    let mut q = db.prepare_cached(
        "SELECT direction, remote, account, start, answered, end, end_reason, code FROM (
             SELECT *, 0 AS kind FROM calls UNION ALL SELECT *, 1 AS kind FROM refusals
         ) ORDER BY end, kind, id",
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

    fn refusal(n: u64) -> HistoryEntry {
        HistoryEntry {
            end_reason: "not_whitelisted".into(),
            start: 10_000 + n,
            end: 10_000 + n,
            ..entry(n)
        }
    }

    #[tokio::test]
    async fn a_flood_of_refusals_never_pushes_the_calls_out() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("history.db")).unwrap();
        for n in 0..10 {
            h.add(entry(n));
        }
        for n in 0..5000 {
            h.add_refusal(refusal(n));
        }
        let all = h.list().await;
        assert_eq!(all.len(), 10 + KEEP_REFUSALS as usize);
        assert_eq!(&all[..10], &(0..10).map(entry).collect::<Vec<_>>()[..]);
        assert_eq!(all.last().unwrap(), &refusal(4999));
    }

    /// The entries on disk, as another reader of the file sees them.
    fn on_disk(path: &Path) -> i64 {
        let db = Connection::open(path).unwrap();
        db.query_row("SELECT count(*) FROM calls", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn calls_that_end_close_together_are_written_at_once_and_a_flush_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let h = History::open(&path).unwrap();
        // Five calls ending 10 ms apart, as on a busy door: the writer is idle
        // between them, and would commit each on its own.
        let started = Instant::now();
        for n in 0..5 {
            h.add(entry(n));
            std::thread::sleep(Duration::from_millis(10));
        }
        h.flush().await;
        assert_eq!(on_disk(&path), 5);
        // One commit for the five (two if the machine stalled past `GATHER`
        // between them).
        let most = if started.elapsed() < GATHER { 1 } else { 2 };
        assert!(h.commits() <= most, "{} commits", h.commits());
        // A lone call is written as well, at the latest when asked.
        h.add(entry(5));
        h.flush().await;
        assert_eq!(on_disk(&path), 6);
    }

    #[tokio::test]
    async fn the_history_is_readable_by_the_agent_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sip/history.db");
        // The tests run with the usual umask (022), which would leave the
        // files readable by everyone.
        let h = History::open(&path).unwrap();
        h.add(entry(1));
        h.list().await;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        for file in ["history.db", "history.db-wal", "history.db-shm"] {
            let p = path.with_file_name(file);
            if p.exists() {
                assert_eq!(mode(&p), 0o600, "{file}");
            }
        }
        assert!(path.with_file_name("history.db-wal").exists());
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
