//! EVE events to Redis (`[output.redis]`): [`RedisSink`] sends every line the EVE writer writes,
//! pipelined in batches, to a stream (XADD), a list (RPUSH) or a channel (PUBLISH).
//!
//! Redis being down never stops the sensor nor blocks its writer for long: a failed connection is
//! retried with back-off (0.5 s doubling to 30 s, wall clock), not per event, and meanwhile events
//! go to a bounded on-disk [`Spool`]. Once Redis answers again the spool is sent first, in order,
//! then live events; a spool left by an earlier run is sent first too. Only what Redis
//! acknowledged leaves the spool, so a batch cut short by a failure is sent again whole (an event
//! may reach Redis twice, never zero times, below the bound). Past `spool_max` events are dropped
//! and counted.

use crate::spool::{Spool, MAX_EVENT};
use crate::{Conn, OutputConfig, OutputMode};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xferwatch_logging::RateLimited;

/// Retries of an unreachable Redis: doubling from the first wait to the last.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Batches held in memory at most before they go to the spool.
const QUEUE_BATCHES: usize = 4;
/// Bytes held in memory at most before they go to the spool.
const QUEUE_BYTES: usize = 8 << 20;
/// Time one call spends sending the spool at most (the writer waits meanwhile).
const SPOOL_SLICE: Duration = Duration::from_millis(200);

/// The counters of a [`RedisSink`], shared with whoever publishes metrics.
#[derive(Debug, Default)]
pub struct RedisStatus {
    /// Events Redis acknowledged.
    pub sent: AtomicU64,
    /// Events written to the spool.
    pub spooled: AtomicU64,
    /// Bytes in the spool now.
    pub spool_bytes: AtomicU64,
    /// Events lost: the spool was full (or could not be written, or held an unreadable line).
    pub dropped: AtomicU64,
    /// Failed connections and sends.
    pub send_errors: AtomicU64,
    /// Connected, and the last send worked.
    pub up: AtomicBool,
}

/// A snapshot of [`RedisStatus`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedisStats {
    pub sent: u64,
    pub spooled: u64,
    pub spool_bytes: u64,
    pub dropped: u64,
    pub send_errors: u64,
    pub up: bool,
}

impl RedisStatus {
    pub fn stats(&self) -> RedisStats {
        RedisStats {
            sent: self.sent.load(Relaxed),
            spooled: self.spooled.load(Relaxed),
            spool_bytes: self.spool_bytes.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
            up: self.up.load(Relaxed),
        }
    }
}

/// What [`RedisSink::finish`] left behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Undelivered {
    /// Events still in the spool (sent first by the next run).
    pub events: u64,
    pub bytes: u64,
}

/// Sends EVE lines to Redis; see the module's documentation.
pub struct RedisSink {
    cfg: OutputConfig,
    batch: usize,
    conn: Option<Conn>,
    /// Events not yet sent nor spooled; all newer than the spool's.
    queue: VecDeque<String>,
    queue_bytes: usize,
    spool: Spool,
    /// While Redis is unreachable: when to try again, the wait after that, since when.
    down: Option<Down>,
    status: Arc<RedisStatus>,
    warn: RateLimited,
}

struct Down {
    since: Instant,
    next_try: Instant,
    backoff: Duration,
}

impl RedisSink {
    /// Opens the spool (creating its directory, mode 0750) and takes over what an earlier run
    /// left in it. Connecting waits for the first event or [`RedisSink::flush`].
    pub fn new(cfg: OutputConfig) -> std::io::Result<RedisSink> {
        let spool = Spool::open(&cfg.spool_dir, cfg.spool_max).map_err(|e| {
            std::io::Error::new(e.kind(), format!("spool {}: {e}", cfg.spool_dir.display()))
        })?;
        let status = Arc::new(RedisStatus::default());
        status.spool_bytes.store(spool.bytes(), Relaxed);
        if !spool.is_empty() {
            tracing::info!(
                "output.redis: {} events ({} bytes) left in {} by an earlier run are sent first",
                spool.events(),
                spool.bytes(),
                spool.dir().display()
            );
        }
        Ok(RedisSink {
            batch: cfg.batch.clamp(1, 10_000),
            cfg,
            conn: None,
            queue: VecDeque::new(),
            queue_bytes: 0,
            spool,
            down: None,
            status,
            warn: RateLimited::new(3, Duration::from_secs(60)),
        })
    }

    /// The counters, to share.
    pub fn status(&self) -> Arc<RedisStatus> {
        self.status.clone()
    }

    /// The counters now.
    pub fn stats(&self) -> RedisStats {
        self.status.stats()
    }

    /// Events held in the spool now.
    pub fn spooled_events(&self) -> u64 {
        self.spool.events()
    }

    /// Queues one event (a line, its newline optional; several lines are several events). Full
    /// batches are sent at once; while Redis is down events go to the spool.
    pub fn push(&mut self, line: &str) {
        for ev in line.split('\n') {
            let ev = ev.strip_suffix('\r').unwrap_or(ev);
            if ev.is_empty() {
                continue;
            }
            if ev.len() > MAX_EVENT {
                self.status.dropped.fetch_add(1, Relaxed);
                continue;
            }
            if self.waiting(Instant::now()) {
                self.spool_one(ev);
                continue;
            }
            self.queue_bytes += ev.len();
            self.queue.push_back(ev.to_owned());
            if self.queue.len() >= self.batch {
                self.pump(false, Instant::now() + SPOOL_SLICE);
            }
            if self.queue.len() >= self.batch * QUEUE_BATCHES || self.queue_bytes > QUEUE_BYTES {
                self.spill();
            }
        }
    }

    /// Sends what is queued (and some of the spool); while Redis is down, moves it to the spool.
    pub fn flush(&mut self) {
        self.pump(true, Instant::now() + SPOOL_SLICE);
        if self.down.is_some() {
            self.spill();
        }
        if let Err(e) = self.spool.sync_writes() {
            self.warn_now(&format!("cannot write the spool: {e}"));
        }
        self.publish_spool();
    }

    /// At the end: sends everything (the spool first), retrying for up to `patience`; what is
    /// still not sent then stays in the spool, for the next run.
    pub fn finish(&mut self, patience: Duration) -> Undelivered {
        let until = Instant::now() + patience;
        loop {
            let now = Instant::now();
            // A retry due before the end is waited for.
            if let Some(d) = &self.down {
                if d.next_try > now {
                    if d.next_try >= until {
                        break;
                    }
                    std::thread::sleep(d.next_try - now);
                }
            }
            self.pump(true, until);
            if self.queue.is_empty() && self.spool.is_empty() {
                break;
            }
            if Instant::now() >= until {
                break;
            }
        }
        self.spill();
        if let Err(e) = self.spool.sync_writes() {
            self.warn_now(&format!("cannot write the spool: {e}"));
        }
        self.publish_spool();
        Undelivered {
            events: self.spool.events(),
            bytes: self.spool.bytes(),
        }
    }

    /// Redis is down and no retry is due yet.
    fn waiting(&self, now: Instant) -> bool {
        self.down.as_ref().is_some_and(|d| now < d.next_try)
    }

    /// Connects if needed and a retry is due; sends the spool (until `deadline`), then the queue
    /// (whole batches, or everything if `partial`).
    fn pump(&mut self, partial: bool, deadline: Instant) {
        let now = Instant::now();
        if self.conn.is_none() {
            if self.waiting(now) {
                return;
            }
            match Conn::open(&self.cfg.target, self.cfg.timeout) {
                Ok(c) => self.conn = Some(c),
                Err(e) => return self.failed(now, &format!("{e:#}")),
            }
            if let Some(d) = self.down.take() {
                tracing::warn!(
                    "output.redis: {} answers again after {:.1} s; {} spooled events are sent first",
                    self.cfg.target.describe(),
                    d.since.elapsed().as_secs_f64(),
                    self.spool.events()
                );
            }
            self.status.up.store(true, Relaxed);
        }
        if !self.spool.is_empty() {
            // Queued events must wait for the spool: to keep the order, they join it.
            self.spill();
            if let Err(e) = self.spool.sync_writes() {
                self.warn_now(&format!("cannot write the spool: {e}"));
            }
        }
        while !self.spool.is_empty() {
            if Instant::now() >= deadline {
                self.publish_spool();
                return;
            }
            let p = match self.spool.peek(self.batch) {
                Ok(p) => p,
                Err(e) => {
                    self.warn_now(&format!(
                        "cannot read the spool {}: {e}",
                        self.spool.dir().display()
                    ));
                    self.publish_spool();
                    return;
                }
            };
            if !p.lines.is_empty() {
                if let Err(e) = self.send(p.lines.iter().map(String::as_str)) {
                    let e = format!("{}: {e}", self.cfg.target.describe());
                    return self.failed(Instant::now(), &e);
                }
            }
            self.status.sent.fetch_add(p.lines.len() as u64, Relaxed);
            self.status.dropped.fetch_add(p.skipped, Relaxed);
            if let Err(e) = self.spool.ack(p.bytes, p.lines.len() as u64 + p.skipped) {
                self.warn_now(&format!(
                    "cannot update the spool {}: {e}",
                    self.spool.dir().display()
                ));
            }
            if p.bytes == 0 {
                break;
            }
        }
        self.publish_spool();
        while self.queue.len() >= self.batch || (partial && !self.queue.is_empty()) {
            let n = self.batch.min(self.queue.len());
            let r = {
                let (a, b) = self.queue.as_slices();
                let it = a.iter().chain(b).take(n).map(String::as_str);
                send_on(self.conn.as_mut(), &self.cfg, it)
            };
            if let Err(e) = r {
                let e = format!("{}: {e}", self.cfg.target.describe());
                return self.failed(Instant::now(), &e);
            }
            for ev in self.queue.drain(..n) {
                self.queue_bytes = self.queue_bytes.saturating_sub(ev.len());
            }
            self.status.sent.fetch_add(n as u64, Relaxed);
        }
    }

    fn send<'a>(&mut self, events: impl Iterator<Item = &'a str>) -> Result<(), String> {
        send_on(self.conn.as_mut(), &self.cfg, events)
    }

    /// The connection failed: back off, and the queue goes to the spool.
    fn failed(&mut self, now: Instant, e: &str) {
        self.conn = None;
        self.status.send_errors.fetch_add(1, Relaxed);
        self.status.up.store(false, Relaxed);
        let d = self.down.get_or_insert(Down {
            since: now,
            next_try: now,
            backoff: RETRY_FIRST / 2,
        });
        d.backoff = (d.backoff * 2).min(RETRY_MAX);
        d.next_try = now + d.backoff;
        let wait = d.backoff;
        self.warn_now(&format!(
            "{e}; events go to the spool {} (up to {} bytes), next try in {:.1} s",
            self.spool.dir().display(),
            self.cfg.spool_max,
            wait.as_secs_f64()
        ));
        self.spill();
    }

    fn warn_now(&mut self, what: &str) {
        if let Some(n) = self.warn.should_log(Instant::now()) {
            if n > 0 {
                tracing::warn!("output.redis: {what} ({n} similar messages suppressed)");
            } else {
                tracing::warn!("output.redis: {what}");
            }
        }
    }

    /// Moves the queue to the end of the spool.
    fn spill(&mut self) {
        while let Some(ev) = self.queue.pop_front() {
            self.spool_one(&ev);
        }
        self.queue_bytes = 0;
        self.publish_spool();
    }

    fn spool_one(&mut self, ev: &str) {
        match self.spool.append(ev) {
            Ok(true) => {
                self.status.spooled.fetch_add(1, Relaxed);
            }
            Ok(false) => {
                self.status.dropped.fetch_add(1, Relaxed);
            }
            Err(e) => {
                self.status.dropped.fetch_add(1, Relaxed);
                self.warn_now(&format!(
                    "cannot write the spool {}: {e}; event dropped",
                    self.spool.dir().display()
                ));
            }
        }
        self.status.spool_bytes.store(self.spool.bytes(), Relaxed);
    }

    fn publish_spool(&self) {
        self.status.spool_bytes.store(self.spool.bytes(), Relaxed);
    }
}

impl Drop for RedisSink {
    /// What was never sent is kept for the next run.
    fn drop(&mut self) {
        self.spill();
        let _ = self.spool.sync_writes();
    }
}

/// One pipelined round trip with every event of `events`.
fn send_on<'a>(
    conn: Option<&mut Conn>,
    cfg: &OutputConfig,
    events: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    let Some(conn) = conn else {
        return Err("not connected".into());
    };
    let cmds = events.map(|ev| {
        let mut c;
        match cfg.mode {
            OutputMode::Stream => {
                c = redis::cmd("XADD");
                c.arg(&cfg.key);
                if cfg.maxlen > 0 {
                    c.arg("MAXLEN").arg("~").arg(cfg.maxlen);
                }
                c.arg("*").arg("event").arg(ev);
            }
            OutputMode::List => {
                c = redis::cmd("RPUSH");
                c.arg(&cfg.key).arg(ev);
            }
            OutputMode::Channel => {
                c = redis::cmd("PUBLISH");
                c.arg(&cfg.key).arg(ev);
            }
        }
        c
    });
    let r = match conn {
        Conn::Single(c) => {
            let mut p = redis::pipe();
            for c in cmds {
                p.add_command(c).ignore();
            }
            p.exec(c)
        }
        Conn::Cluster(c) => {
            let mut p = redis::cluster::cluster_pipe();
            for c in cmds {
                p.add_command(c).ignore();
            }
            p.exec(c)
        }
    };
    r.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{available, RedisServer};
    use crate::Target;
    use std::path::PathBuf;

    fn spool_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xw-redis-sink-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn cfg(url: &str, mode: OutputMode, dir: &std::path::Path) -> OutputConfig {
        OutputConfig {
            target: Target::Single(url.into()),
            mode,
            key: "eve".into(),
            maxlen: 0,
            batch: 16,
            spool_dir: dir.to_path_buf(),
            spool_max: 1 << 20,
            timeout: Duration::from_secs(2),
        }
    }

    fn ev(i: usize) -> String {
        format!("{{\"event_type\":\"flow\",\"n\":{i}}}\n")
    }

    fn want(r: std::ops::Range<usize>) -> Vec<String> {
        r.map(|i| ev(i).trim_end().to_string()).collect()
    }

    fn stream(s: &RedisServer, key: &str) -> Vec<String> {
        let mut c = Conn::open(&Target::Single(s.url()), Duration::from_secs(2)).unwrap();
        let v: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(key)
            .arg("-")
            .arg("+")
            .query(c.link())
            .unwrap();
        v.into_iter()
            .map(|(_, mut f)| {
                assert_eq!(f.len(), 1);
                let (k, v) = f.remove(0);
                assert_eq!(k, "event");
                v
            })
            .collect()
    }

    fn list(s: &RedisServer, key: &str) -> Vec<String> {
        let mut c = Conn::open(&Target::Single(s.url()), Duration::from_secs(2)).unwrap();
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query(c.link())
            .unwrap()
    }

    macro_rules! need_redis {
        ($name:literal) => {
            if let Err(why) = available() {
                eprintln!("SKIP {}: {why}", $name);
                return;
            }
        };
    }

    #[test]
    fn stream_and_list_deliver_in_order() {
        need_redis!("stream_and_list_deliver_in_order");
        let s = RedisServer::start().unwrap();
        for mode in [OutputMode::Stream, OutputMode::List] {
            let d = spool_dir(mode.as_str());
            let mut sink = RedisSink::new(cfg(&s.url(), mode, &d)).unwrap();
            for i in 0..1000 {
                sink.push(&ev(i));
                if i % 100 == 0 {
                    sink.flush();
                }
            }
            let left = sink.finish(Duration::from_secs(2));
            assert_eq!(left, Undelivered::default());
            let st = sink.stats();
            assert_eq!((st.sent, st.spooled, st.dropped), (1000, 0, 0));
            assert!(st.up);
            let got = match mode {
                OutputMode::Stream => stream(&s, "eve"),
                _ => list(&s, "eve"),
            };
            assert_eq!(got, want(0..1000), "{mode:?}");
            s.cli(&["DEL", "eve"]).unwrap();
            let _ = std::fs::remove_dir_all(&d);
        }
    }

    #[test]
    fn channel_delivers_in_order() {
        need_redis!("channel_delivers_in_order");
        let s = RedisServer::start().unwrap();
        let client = redis::Client::open(s.url()).unwrap();
        let mut sub = client.get_connection().unwrap();
        let mut ps = sub.as_pubsub();
        ps.subscribe("eve").unwrap();
        ps.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let d = spool_dir("channel");
        let mut sink = RedisSink::new(cfg(&s.url(), OutputMode::Channel, &d)).unwrap();
        for i in 0..300 {
            sink.push(&ev(i));
        }
        assert_eq!(sink.finish(Duration::from_secs(2)).events, 0);
        let got: Vec<String> = (0..300)
            .map(|_| ps.get_message().unwrap().get_payload().unwrap())
            .collect();
        assert_eq!(got, want(0..300));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn maxlen_trims_approximately() {
        need_redis!("maxlen_trims_approximately");
        let s = RedisServer::start().unwrap();
        let d = spool_dir("maxlen");
        let mut c = cfg(&s.url(), OutputMode::Stream, &d);
        c.maxlen = 100;
        let mut sink = RedisSink::new(c).unwrap();
        for i in 0..5000 {
            sink.push(&ev(i));
        }
        sink.finish(Duration::from_secs(2));
        let got = stream(&s, "eve");
        // "~": trimmed by whole radix-tree nodes (100 entries each by default), so a little
        // over 100 are kept, never fewer; the newest are the last sent.
        assert!(got.len() >= 100 && got.len() <= 300, "{}", got.len());
        assert_eq!(got.last(), Some(&want(4999..5000)[0]));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_restarted_server_gets_everything_in_order() {
        need_redis!("a_restarted_server_gets_everything_in_order");
        let mut s = RedisServer::start().unwrap();
        let d = spool_dir("restart");
        let mut sink = RedisSink::new(cfg(&s.url(), OutputMode::List, &d)).unwrap();
        for i in 0..100 {
            sink.push(&ev(i));
        }
        sink.flush();
        assert_eq!(list(&s, "eve"), want(0..100));
        // A crash loses what the server held (it persists nothing); what comes meanwhile is
        // spooled, and sent first when it is back.
        s.kill();
        let t0 = Instant::now();
        for i in 100..2000 {
            sink.push(&ev(i));
            if i % 50 == 0 {
                sink.flush();
            }
        }
        sink.flush();
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "the writer is not held up"
        );
        let st = sink.stats();
        assert!(!st.up);
        assert!(st.send_errors >= 1);
        assert_eq!(st.spooled, 1900, "{st:?}");
        assert!(st.spool_bytes > 0);
        assert_eq!(sink.spooled_events(), 1900);
        s.restart().unwrap();
        for i in 2000..2100 {
            sink.push(&ev(i));
        }
        let left = sink.finish(Duration::from_secs(5));
        assert_eq!(left, Undelivered::default());
        assert_eq!(list(&s, "eve"), want(100..2100));
        let st = sink.stats();
        assert!(st.up);
        assert_eq!((st.sent, st.dropped, st.spool_bytes), (2100, 0, 0));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_spool_left_behind_is_sent_first() {
        need_redis!("a_spool_left_behind_is_sent_first");
        let mut s = RedisServer::start().unwrap();
        let url = s.url();
        s.kill();
        let d = spool_dir("left");
        let mut sink = RedisSink::new(cfg(&url, OutputMode::Stream, &d)).unwrap();
        for i in 0..500 {
            sink.push(&ev(i));
        }
        let left = sink.finish(Duration::from_millis(100));
        assert_eq!(left.events, 500);
        drop(sink);
        s.restart().unwrap();
        let mut sink = RedisSink::new(cfg(&url, OutputMode::Stream, &d)).unwrap();
        for i in 500..600 {
            sink.push(&ev(i));
        }
        assert_eq!(sink.finish(Duration::from_secs(5)).events, 0);
        assert_eq!(stream(&s, "eve"), want(0..600));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_cluster_gets_the_stream() {
        need_redis!("a_cluster_gets_the_stream");
        let cl = crate::testing::RedisCluster::start(3).unwrap();
        let d = spool_dir("cluster");
        let mut c = cfg("", OutputMode::Stream, &d);
        c.target = Target::Cluster(cl.urls());
        let mut sink = RedisSink::new(c).unwrap();
        for i in 0..500 {
            sink.push(&ev(i));
        }
        assert_eq!(sink.finish(Duration::from_secs(5)).events, 0);
        let mut conn = Conn::open(&Target::Cluster(cl.urls()), Duration::from_secs(2)).unwrap();
        let v: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg("eve")
            .arg("-")
            .arg("+")
            .query(conn.link())
            .unwrap();
        let got: Vec<String> = v.into_iter().map(|(_, mut f)| f.remove(0).1).collect();
        assert_eq!(got, want(0..500));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_small_spool_drops_and_counts() {
        need_redis!("a_small_spool_drops_and_counts");
        let mut s = RedisServer::start().unwrap();
        let url = s.url();
        s.kill();
        let d = spool_dir("small");
        let mut c = cfg(&url, OutputMode::List, &d);
        c.spool_max = 10 * ev(0).len() as u64;
        let mut sink = RedisSink::new(c).unwrap();
        for i in 0..100 {
            sink.push(&ev(i));
        }
        sink.flush();
        let st = sink.stats();
        assert_eq!((st.spooled, st.dropped), (10, 90), "{st:?}");
        assert!(st.spool_bytes <= 10 * ev(0).len() as u64);
        s.restart().unwrap();
        assert_eq!(sink.finish(Duration::from_secs(5)).events, 0);
        assert_eq!(list(&s, "eve"), want(0..10), "the oldest are kept");
        let _ = std::fs::remove_dir_all(&d);
    }
}
