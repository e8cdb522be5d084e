//! Liveness: each long-lived thread (capture, worker, writer) stamps a heartbeat as it makes
//! progress, and the daemon feeds the systemd watchdog only while every one of them is recent and at
//! least one capture is up. A worker that died or hangs, a writer that stopped, or captures that
//! are all gone then make systemd restart the service instead of a silent sensor looking healthy.
//! Contained panics and lost work are counted here too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Milliseconds on a monotonic clock shared by the process (never 0 once read, so 0 means "never").
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// A thread's last sign of progress.
#[derive(Debug, Default)]
pub struct Beat(AtomicU64);

impl Beat {
    pub fn now() -> Beat {
        Beat(AtomicU64::new(now_ms()))
    }
    pub fn store(&self, ms: u64, o: Ordering) {
        self.0.store(ms, o)
    }
    pub fn stamp(&self) {
        self.0.store(now_ms(), Ordering::Relaxed)
    }
    /// How long since the last stamp.
    pub fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.0.load(Ordering::Relaxed)))
    }
}

/// What went wrong inside a worker and was survived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerHealth {
    /// Panics caught and contained (`xferwatch_worker_panics_total`).
    pub panics: u64,
    /// Flows dropped, unwritten, because a panic happened while they were being handled.
    pub panic_lost_flows: u64,
    /// Events the writer was no longer there to take.
    pub writer_gone_events: u64,
}

impl WorkerHealth {
    pub fn merge(&mut self, o: &WorkerHealth) {
        self.panics += o.panics;
        self.panic_lost_flows += o.panic_lost_flows;
        self.writer_gone_events += o.writer_gone_events;
    }
}

/// A thread is taken as stuck when it has not stamped for this long. Workers get a batch at least
/// every 100 ms from each capture thread, the writer wakes every 500 ms and captures poll every
/// 100 ms, so this is tens of missed beats, not a slow moment.
pub const STALL_AFTER: Duration = Duration::from_secs(10);

/// The daemon's verdict on its threads, for the watchdog and the service status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Names of the threads that are gone or stuck.
    pub stalled: Vec<String>,
    /// Whether at least one capture handle is open and reading.
    pub any_capture_up: bool,
}

impl Verdict {
    pub fn healthy(&self) -> bool {
        self.stalled.is_empty() && self.any_capture_up
    }

    /// One line for `STATUS=` and the log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.any_capture_up {
            parts.push("no capture is up".to_string());
        }
        if !self.stalled.is_empty() {
            parts.push(format!("stalled: {}", self.stalled.join(", ")));
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beat_age_grows_until_stamped() {
        let b = Beat::now();
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.age() >= Duration::from_millis(25));
        b.stamp();
        assert!(b.age() < Duration::from_millis(25));
        // Never stamped: as old as the process clock.
        let never = Beat::default();
        assert!(never.age() >= b.age());
    }

    #[test]
    fn verdict_needs_a_capture_and_no_stall() {
        let mut v = Verdict {
            stalled: vec![],
            any_capture_up: true,
        };
        assert!(v.healthy());
        v.stalled.push("xw-worker-1".into());
        assert!(!v.healthy());
        assert_eq!(v.describe(), "stalled: xw-worker-1");
        v.stalled.clear();
        v.any_capture_up = false;
        assert!(!v.healthy());
        assert_eq!(v.describe(), "no capture is up");
    }
}
