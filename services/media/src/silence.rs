//! The peer's silence in a call: reported once the peer has sent no RTP for the
//! RTP timeout, counted from the moment the call took the pipeline, or the
//! peer was to send again (the end of a hold), or from its last packet,
//! whichever is later. While the description says the peer does not send (a
//! call on hold, by either side), nothing is counted.
//!
//! The count is media's own. `udpsrc`'s `timeout` is not used: its wait runs on
//! across PAUSED, so a pipeline that waits for the next call carries the last
//! call's silence into it, and a call that starts just before that wait ends is
//! reported silent within milliseconds. It also counts any datagram, where only
//! packets the source gate admits are the peer's.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the watch knows, on the clock it is given: the decisions, apart from
/// the thread and the clock that drive them.
#[derive(Debug)]
pub struct Watch {
    timeout: Duration,
    /// The call's start or the peer's last packet; `None` between calls.
    since: Option<Instant>,
    /// The current silence was reported.
    reported: bool,
    closed: bool,
}

impl Watch {
    pub fn new(timeout: Duration) -> Watch {
        Watch {
            timeout,
            since: None,
            reported: false,
            closed: false,
        }
    }

    /// A call takes the pipeline at `now`: the count starts.
    pub fn start(&mut self, now: Instant) {
        self.since = Some(now);
        self.reported = false;
    }

    /// The call ended: nothing is counted until the next one.
    pub fn rest(&mut self) {
        self.since = None;
        self.reported = false;
    }

    /// What a new description says of the peer's sending, at `now`: a count
    /// under way goes on; one that was stopped (a hold) starts again.
    pub fn expect(&mut self, now: Instant, peer_sends: bool) {
        match (peer_sends, self.since) {
            (true, None) => self.start(now),
            (true, Some(_)) => {}
            (false, _) => self.rest(),
        }
    }

    /// A packet from the peer at `now`. True when it ends a silence that was
    /// reported.
    pub fn heard(&mut self, now: Instant) -> bool {
        if self.since.is_some() {
            self.since = Some(now);
        }
        std::mem::take(&mut self.reported)
    }

    /// When the silence would be due; `None` while there is nothing to count
    /// (between calls, or a silence already reported).
    pub fn next(&self) -> Option<Instant> {
        match self.since {
            Some(since) if !self.reported => Some(since + self.timeout),
            _ => None,
        }
    }

    /// Whether the silence is to be reported at `now` (once per silence).
    pub fn due(&mut self, now: Instant) -> bool {
        match self.next() {
            Some(at) if now >= at => {
                self.reported = true;
                true
            }
            _ => false,
        }
    }
}

/// A [`Watch`] on the system's clock, with a thread of its own that reports
/// each silence. The thread ends when the [`Watcher`] that started it goes.
pub struct Silence {
    watch: Mutex<Watch>,
    wake: Condvar,
}

impl Silence {
    /// Starts the watch's thread; `report` is called once per silence.
    pub fn spawn(
        timeout: Duration,
        report: impl Fn() + Send + 'static,
    ) -> std::io::Result<Watcher> {
        let silence = Arc::new(Silence {
            watch: Mutex::new(Watch::new(timeout)),
            wake: Condvar::new(),
        });
        let watching = silence.clone();
        std::thread::Builder::new()
            .name("rtp-silence".into())
            .stack_size(64 * 1024)
            .spawn(move || watching.run(report))?;
        Ok(Watcher(silence))
    }

    fn lock(&self) -> MutexGuard<'_, Watch> {
        self.watch.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self, report: impl Fn()) {
        let mut watch = self.lock();
        while !watch.closed {
            let now = Instant::now();
            if watch.due(now) {
                drop(watch);
                report();
                watch = self.lock();
                continue;
            }
            watch = match watch.next() {
                Some(at) => {
                    self.wake
                        .wait_timeout(watch, at.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.wake.wait(watch).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    /// A call takes the pipeline.
    pub fn start(&self) {
        self.lock().start(Instant::now());
        self.wake.notify_one();
    }

    /// The call ended.
    pub fn rest(&self) {
        self.lock().rest();
        self.wake.notify_one();
    }

    /// Whether the call's description has the peer send (see [`Watch::expect`]).
    pub fn expect(&self, peer_sends: bool) {
        self.lock().expect(Instant::now(), peer_sends);
        self.wake.notify_one();
    }

    /// A packet from the peer; true when it ends a reported silence. The thread
    /// is not woken: at the old deadline it finds the new one.
    pub fn heard(&self) -> bool {
        self.lock().heard(Instant::now())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

/// The owner of a [`Silence`]: its thread ends when this goes, also when the
/// pipeline it was made for is never built.
pub struct Watcher(Arc<Silence>);

impl Watcher {
    /// The watch, for the callbacks that tell it of the peer's packets.
    pub fn watch(&self) -> Arc<Silence> {
        self.0.clone()
    }
}

impl std::ops::Deref for Watcher {
    type Target = Silence;

    fn deref(&self) -> &Silence {
        &self.0
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    #[test]
    fn the_count_starts_with_the_call_not_with_the_last_one() {
        let t0 = Instant::now();
        let mut watch = Watch::new(TIMEOUT);
        // Nothing is counted before a call.
        assert_eq!(watch.next(), None);
        assert!(!watch.due(t0 + TIMEOUT * 10));
        // A silent call, ended after 29 s: not reported.
        watch.start(t0);
        assert!(!watch.due(t0 + Duration::from_secs(29)));
        watch.rest();
        // The next call 2 s later has its own 30 s.
        let t1 = t0 + Duration::from_secs(31);
        watch.start(t1);
        assert!(!watch.due(t0 + TIMEOUT + Duration::from_secs(2)));
        assert!(!watch.due(t1 + TIMEOUT - Duration::from_millis(1)));
        assert!(watch.due(t1 + TIMEOUT));
    }

    #[test]
    fn each_packet_moves_the_deadline_and_a_silence_is_reported_once() {
        let t0 = Instant::now();
        let mut watch = Watch::new(TIMEOUT);
        watch.start(t0);
        let last = t0 + Duration::from_secs(20);
        assert!(!watch.heard(last));
        assert_eq!(watch.next(), Some(last + TIMEOUT));
        assert!(!watch.due(t0 + TIMEOUT));
        assert!(watch.due(last + TIMEOUT));
        // Once per silence.
        assert!(!watch.due(last + TIMEOUT * 3));
        assert_eq!(watch.next(), None);
        // The peer again: the silence ends, and the count starts over.
        let back = last + TIMEOUT * 4;
        assert!(watch.heard(back));
        assert!(!watch.heard(back));
        assert!(watch.due(back + TIMEOUT));
    }

    #[test]
    fn a_call_that_ends_in_silence_leaves_nothing_for_the_next() {
        let t0 = Instant::now();
        let mut watch = Watch::new(TIMEOUT);
        watch.start(t0);
        assert!(watch.due(t0 + TIMEOUT));
        watch.rest();
        // Packets between calls (the last peer's, stopped by the gate anyway)
        // start no count.
        assert!(!watch.heard(t0 + TIMEOUT * 2));
        assert_eq!(watch.next(), None);
        let t1 = t0 + TIMEOUT * 3;
        watch.start(t1);
        assert!(!watch.due(t1 + TIMEOUT / 2));
        assert!(watch.due(t1 + TIMEOUT));
    }

    #[test]
    fn a_hold_counts_nothing_and_its_end_starts_the_count_again() {
        let t0 = Instant::now();
        let mut watch = Watch::new(TIMEOUT);
        watch.start(t0);
        // Put on hold at 10 s: the peer stops sending, as it should.
        watch.expect(t0 + Duration::from_secs(10), false);
        assert_eq!(watch.next(), None);
        assert!(!watch.due(t0 + TIMEOUT * 4));
        // Resumed at 120 s: 30 s from there.
        let resumed = t0 + Duration::from_secs(120);
        watch.expect(resumed, true);
        assert!(!watch.due(resumed + TIMEOUT - Duration::from_millis(1)));
        // A description that changes nothing else (a session refresh) keeps the count.
        watch.expect(resumed + Duration::from_secs(20), true);
        assert!(watch.due(resumed + TIMEOUT));
    }

    #[test]
    fn the_thread_reports_a_silence_and_ends_with_its_watcher() {
        let (tx, rx) = std::sync::mpsc::channel();
        let silence = Silence::spawn(Duration::from_millis(20), move || {
            tx.send(()).ok();
        })
        .unwrap();
        silence.start();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the silence is reported");
        drop(silence);
        // The thread ends and drops its sender.
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
