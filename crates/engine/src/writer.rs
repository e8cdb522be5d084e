//! The writer: merges the workers' ordered event streams by [`OrderKey`] and hands EVE lines to an
//! [`EventSink`]. An event is written once no worker can still produce an earlier one, so the file
//! is identical for any number of workers and the writer holds only events not yet safe to write.
//!
//! Sinks: [`WriteSink`] (a file or standard output through any `Write`), [`ChannelSink`] (events
//! to another thread, for embedding), [`EveSink`] (the live daemon's file that never gives up).

use crate::counters::{Ev, OrderKey, Out, WorkerTotals};
use crossbeam_channel::Receiver;
use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Merged {
    pub totals: Vec<WorkerTotals>,
    pub events: u64,
    /// Workers whose final counters arrived; fewer than started means one died.
    pub finished: usize,
}

/// Where events leave the engine. Every record is one JSON object followed by a newline.
pub trait EventSink: Send {
    /// One record. An error ends a replay; a live sink keeps what it cannot write yet.
    fn event(&mut self, line: &str) -> std::io::Result<()>;
    /// Nothing more is ready for now: buffered records should go out.
    fn flush(&mut self) -> std::io::Result<()>;
}

/// Records written to any `Write` (a buffered file, standard output, memory).
pub struct WriteSink<W: Write + Send>(pub W);

impl<W: Write + Send> EventSink for WriteSink<W> {
    fn event(&mut self, line: &str) -> std::io::Result<()> {
        self.0.write_all(line.as_bytes())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A sink opened by its first record: nothing is created (no file truncated) when a replay has
/// nothing to write. A `flush` before the first record does nothing.
pub struct LazySink {
    open: Option<SinkOpener>,
    sink: Option<Box<dyn EventSink>>,
}

/// What opens a [`LazySink`].
pub type SinkOpener = Box<dyn FnOnce() -> std::io::Result<Box<dyn EventSink>> + Send>;

impl LazySink {
    pub fn new(
        open: impl FnOnce() -> std::io::Result<Box<dyn EventSink>> + Send + 'static,
    ) -> Self {
        LazySink {
            open: Some(Box::new(open)),
            sink: None,
        }
    }

    /// True once the sink was opened.
    pub fn opened(&self) -> bool {
        self.sink.is_some()
    }
}

impl EventSink for LazySink {
    fn event(&mut self, line: &str) -> std::io::Result<()> {
        if self.sink.is_none() {
            let open = self
                .open
                .take()
                .ok_or_else(|| std::io::Error::other("the sink could not be opened before"))?;
            self.sink = Some(open()?);
        }
        match &mut self.sink {
            Some(s) => s.event(line),
            None => Ok(()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.sink {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

/// Records sent to another thread, one `String` each; a receiver gone is an error.
pub struct ChannelSink(pub crossbeam_channel::Sender<String>);

impl EventSink for ChannelSink {
    fn event(&mut self, line: &str) -> std::io::Result<()> {
        self.0
            .send(line.to_owned())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "event receiver gone"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl EventSink for EveSink {
    fn event(&mut self, line: &str) -> std::io::Result<()> {
        self.write_line(line);
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.housekeeping();
        Ok(())
    }
}

/// How many of each worker's events the replay writer has taken out of its merge queues.
#[derive(Debug)]
pub struct WriterProgress {
    taken: Vec<AtomicU64>,
}

impl WriterProgress {
    pub fn new(workers: usize) -> Self {
        WriterProgress {
            taken: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Events of worker `w` the writer has taken so far.
    pub fn taken(&self, w: usize) -> u64 {
        self.taken.get(w).map_or(0, |t| t.load(Ordering::Relaxed))
    }
}

/// Replay: writes the workers' events in packet order (the same for any number of workers) until
/// every worker is done or gone.
pub fn run(rx: Receiver<Out>, workers: usize, out: &mut dyn EventSink) -> std::io::Result<Merged> {
    run_paced(rx, workers, out, None)
}

/// [`run`], telling the workers through `progress` how many of their events it has taken.
pub fn run_paced(
    rx: Receiver<Out>,
    workers: usize,
    out: &mut dyn EventSink,
    progress: Option<&WriterProgress>,
) -> std::io::Result<Merged> {
    let mut queues: Vec<VecDeque<(OrderKey, Ev)>> = (0..workers).map(|_| VecDeque::new()).collect();
    let mut marks: Vec<OrderKey> = vec![(0, 0, 0); workers];
    let mut totals: Vec<Option<WorkerTotals>> = vec![None; workers];
    let mut written = 0u64;
    let mut finished = 0usize;
    while finished < workers {
        let Ok(msg) = rx.recv() else { break };
        let w = msg.worker;
        queues[w].extend(msg.events);
        marks[w] = marks[w].max(msg.watermark);
        if let Some(t) = msg.done {
            totals[w] = Some(t);
            marks[w] = (u64::MAX, u8::MAX, u64::MAX);
            finished += 1;
        }
        written += emit_safe(&mut queues, &marks, out, progress)?;
    }
    if finished < workers {
        // A worker is gone without finishing (it died): nothing earlier can come from it any more,
        // so what the others sent is written, in order, rather than held back for ever.
        marks.fill((u64::MAX, u8::MAX, u64::MAX));
        written += emit_safe(&mut queues, &marks, out, progress)?;
    }
    out.flush()?;
    Ok(Merged {
        totals: totals.into_iter().map(|t| t.unwrap_or_default()).collect(),
        events: written,
        finished,
    })
}

/// Writes every queued event that no worker can still precede, smallest key first.
fn emit_safe(
    queues: &mut [VecDeque<(OrderKey, Ev)>],
    marks: &[OrderKey],
    out: &mut dyn EventSink,
    progress: Option<&WriterProgress>,
) -> std::io::Result<u64> {
    let mut written = 0;
    loop {
        // The smallest head among workers…
        let mut best: Option<(OrderKey, usize)> = None;
        for (i, q) in queues.iter().enumerate() {
            if let Some((k, _)) = q.front() {
                if best.is_none_or(|(bk, _)| *k < bk) {
                    best = Some((*k, i));
                }
            }
        }
        let Some((key, i)) = best else { break };
        // …is safe once every worker with nothing queued has moved past it.
        let safe = queues
            .iter()
            .zip(marks)
            .all(|(q, m)| !q.is_empty() || key <= *m);
        if !safe {
            break;
        }
        let Some((_, line)) = queues[i].pop_front() else {
            break;
        };
        out.event(&line)?;
        written += 1;
        if let Some(t) = progress.and_then(|p| p.taken.get(i)) {
            t.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(written)
}

/// How the live EVE output is doing, shared with the daemon's main thread (metrics, status).
#[derive(Debug, Default)]
pub struct OutputStatus {
    /// 1 while writing works, 0 while it fails (`xferwatch_output_up`).
    pub up: AtomicBool,
    /// Bytes held in memory, not yet written (`xferwatch_output_buffer_bytes`).
    pub buffered: AtomicU64,
    /// Events dropped because the buffer was full while writing failed.
    pub dropped_buffer_full: AtomicU64,
    /// Events still held when the daemon stopped and the file could not take them.
    pub dropped_shutdown: AtomicU64,
    /// Failed writes, and times the file was reopened because it was removed or replaced.
    pub write_errors: AtomicU64,
    pub reopens: AtomicU64,
    /// The last write error, for the service status.
    pub last_error: std::sync::Mutex<String>,
    /// The Redis output's counters, when events go to Redis too (`[output.redis]`).
    pub redis: std::sync::OnceLock<Arc<xferwatch_fleet::RedisStatus>>,
}

impl OutputStatus {
    pub fn dropped(&self) -> u64 {
        self.dropped_buffer_full.load(Ordering::Relaxed)
            + self.dropped_shutdown.load(Ordering::Relaxed)
    }
}

/// Retries of a failing EVE file: doubling from the first wait to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// While writing fails, one warning line at most this often (with counts of what happened since).
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Bytes gathered before a write is attempted (as a BufWriter would).
const WRITE_CHUNK: usize = 1 << 16;

/// The live daemon's EVE file: appended to, reopened on request (SIGHUP, after logrotate moved it)
/// or by itself when the path no longer names the open file. It never stops for good: lines are
/// held in a bounded buffer (`[output] buffer_max`) while writing fails, retried with back-off, and
/// written in order once writing works again; only beyond the buffer are events dropped, counted.
pub struct EveSink {
    path: PathBuf,
    file: Option<File>,
    /// Lines not yet fully written; `pending[..head]` is written.
    pending: Vec<u8>,
    head: usize,
    buffer_max: usize,
    failing: Option<Failing>,
    /// Every line goes to Redis too, when set ([`EveSink::attach_redis`]).
    redis: Option<xferwatch_fleet::RedisSink>,
    pub reopen: Arc<AtomicBool>,
    pub status: Arc<OutputStatus>,
}

struct Failing {
    since: Instant,
    next_try: Instant,
    backoff: Duration,
    last_warn: Instant,
    errors_since_warn: u64,
    dropped_at_start: u64,
}

impl EveSink {
    pub fn open(path: &Path, buffer_max: usize) -> std::io::Result<EveSink> {
        let status = Arc::new(OutputStatus::default());
        status.up.store(true, Ordering::Relaxed);
        Ok(EveSink {
            path: path.to_path_buf(),
            file: Some(Self::file(path)?),
            pending: Vec::with_capacity(WRITE_CHUNK * 2),
            head: 0,
            buffer_max: buffer_max.max(WRITE_CHUNK),
            failing: None,
            redis: None,
            reopen: Default::default(),
            status,
        })
    }

    fn file(path: &Path) -> std::io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
    }

    /// Queues one whole line (a rotation never splits one); it is dropped, counted, only when the
    /// buffer is full.
    pub fn write_line(&mut self, line: &str) {
        if let Some(r) = self.redis.as_mut() {
            r.push(line);
        }
        if self.pending.len() - self.head + line.len() > self.buffer_max {
            self.status
                .dropped_buffer_full
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.pending.extend_from_slice(line.as_bytes());
        if self.pending.len() - self.head >= WRITE_CHUNK {
            self.try_write(Instant::now());
        }
    }

    /// Bytes held, not yet written.
    pub fn held(&self) -> usize {
        self.pending.len() - self.head
    }

    /// Writes what is held unless a retry is not due yet. True when nothing is left held.
    fn try_write(&mut self, now: Instant) -> bool {
        if self.failing.as_ref().is_some_and(|f| now < f.next_try) {
            return false;
        }
        let result = self.write_held();
        self.compact();
        match result {
            Ok(()) => {
                if let Some(f) = self.failing.take() {
                    let dropped = self.status.dropped() - f.dropped_at_start;
                    tracing::warn!(
                        "{}: writing again after {:.1} s; held events written, {dropped} dropped meanwhile",
                        self.path.display(),
                        f.since.elapsed().as_secs_f64()
                    );
                    self.status.up.store(true, Ordering::Relaxed);
                }
                true
            }
            Err(e) => {
                self.failed(now, &e);
                false
            }
        }
    }

    fn write_held(&mut self) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the file is not open",
            ));
        };
        while self.head < self.pending.len() {
            match file.write(&self.pending[self.head..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.head += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Forgets the written prefix: at once when everything is written, otherwise (a line half
    /// written) once the written part is large, keeping the start of the unfinished line.
    fn compact(&mut self) {
        if self.head == self.pending.len() {
            self.pending.clear();
            self.head = 0;
        } else if self.head >= WRITE_CHUNK {
            let cut = self.line_start();
            self.pending.drain(..cut);
            self.head -= cut;
        }
        self.status
            .buffered
            .store(self.held() as u64, Ordering::Relaxed);
    }

    /// Where the line that `head` is inside starts.
    fn line_start(&self) -> usize {
        self.pending[..self.head]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
    }

    fn failed(&mut self, now: Instant, e: &std::io::Error) {
        self.status.write_errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut l) = self.status.last_error.lock() {
            *l = e.to_string();
        }
        match self.failing.as_mut() {
            None => {
                tracing::error!(
                    "{}: cannot write ({e}); holding events in memory (up to {} bytes) and retrying",
                    self.path.display(),
                    self.buffer_max
                );
                self.status.up.store(false, Ordering::Relaxed);
                self.failing = Some(Failing {
                    since: now,
                    next_try: now + RETRY_FIRST,
                    backoff: RETRY_FIRST,
                    last_warn: now,
                    errors_since_warn: 0,
                    dropped_at_start: self.status.dropped(),
                });
            }
            Some(f) => {
                f.backoff = (f.backoff * 2).min(RETRY_MAX);
                f.next_try = now + f.backoff;
                f.errors_since_warn += 1;
                if now.duration_since(f.last_warn) >= WARN_EVERY {
                    tracing::error!(
                        "{}: still cannot write ({e}) after {:.0} s: {} failed attempts in the last minute, {} bytes held, {} events dropped so far",
                        self.path.display(),
                        f.since.elapsed().as_secs_f64(),
                        f.errors_since_warn,
                        self.pending.len() - self.head,
                        self.status.dropped() - f.dropped_at_start
                    );
                    f.last_warn = now;
                    f.errors_since_warn = 0;
                }
            }
        }
    }

    /// Whether the path still names the open file (not removed, not replaced by a rotation).
    fn path_is_ours(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Some(f) = self.file.as_ref() else {
            return false;
        };
        match (std::fs::metadata(&self.path), f.metadata()) {
            (Ok(p), Ok(o)) => p.dev() == o.dev() && p.ino() == o.ino(),
            (Err(_), _) => false,
            // The open file cannot be examined: leave it be.
            (Ok(_), Err(_)) => true,
        }
    }

    fn reopen_now(&mut self, why: &str) {
        match Self::file(&self.path) {
            Ok(f) => {
                // A line half written to the old file is written whole to the new one.
                self.head = self.line_start();
                self.file = Some(f);
                self.status.reopens.fetch_add(1, Ordering::Relaxed);
                tracing::info!("{}: reopened ({why})", self.path.display());
                // Retry at once: the new file may be writable where the old one was not.
                if let Some(f) = self.failing.as_mut() {
                    f.next_try = Instant::now();
                }
            }
            Err(e) => {
                self.status.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "{}: cannot reopen ({e}); still writing to the old file",
                    self.path.display()
                );
            }
        }
    }

    /// Writes what is held (or retries when due), and reopens the path if asked (SIGHUP) or if it
    /// no longer names the open file (removed, or moved away by a rotation without SIGHUP).
    pub fn housekeeping(&mut self) {
        if self.reopen.swap(false, Ordering::AcqRel) {
            self.reopen_now("asked");
        } else if !self.path_is_ours() {
            self.reopen_now("the path no longer names the open file");
        }
        self.try_write(Instant::now());
        if let Some(r) = self.redis.as_mut() {
            r.flush();
        }
    }

    /// Sends every line to Redis too (and its counters with [`OutputStatus::redis`]).
    pub fn attach_redis(&mut self, redis: xferwatch_fleet::RedisSink) {
        let _ = self.status.redis.set(redis.status());
        self.redis = Some(redis);
    }

    /// At shutdown: keeps retrying for up to `patience`, then counts what is still held as dropped.
    pub fn finish(&mut self, patience: Duration) {
        let until = Instant::now() + patience;
        loop {
            self.housekeeping();
            if self.held() == 0 || Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let left = self.pending[self.line_start()..]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        if left > 0 {
            self.status
                .dropped_shutdown
                .fetch_add(left, Ordering::Relaxed);
            tracing::error!(
                "{}: {left} events could not be written before stopping",
                self.path.display()
            );
        }
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
        if let Some(r) = self.redis.as_mut() {
            let left = r.finish(patience);
            if left.events > 0 {
                tracing::warn!(
                    "output.redis: {} events ({} bytes) not delivered before stopping; they stay in the spool and are sent first at the next start",
                    left.events,
                    left.bytes
                );
            }
        }
    }
}

/// Live mode: events are written as they arrive (there is no global packet order across capture
/// threads); held lines are written at least every 200 ms. Returns when every worker is done (or
/// gone). Writing problems never end it: see [`EveSink`].
pub fn run_live(
    rx: Receiver<Out>,
    workers: usize,
    sink: &mut dyn EventSink,
    beat: &crate::health::Beat,
) -> Merged {
    let mut totals: Vec<Option<WorkerTotals>> = vec![None; workers];
    let mut written = 0u64;
    let mut finished = 0usize;
    let mut last_flush = Instant::now();
    while finished < workers {
        beat.stamp();
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(msg) => {
                for (_, line) in msg.events {
                    let _ = sink.event(&line);
                    written += 1;
                }
                if let Some(t) = msg.done {
                    if let Some(slot) = totals.get_mut(msg.worker) {
                        *slot = Some(t);
                        finished += 1;
                    }
                }
                if last_flush.elapsed() >= Duration::from_millis(200) {
                    let _ = sink.flush();
                    last_flush = Instant::now();
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let _ = sink.flush();
                last_flush = Instant::now();
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = sink.flush();
    Merged {
        totals: totals.into_iter().map(|t| t.unwrap_or_default()).collect(),
        events: written,
        finished,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: usize) -> String {
        format!(
            "{{\"event_type\":\"flow\",\"n\":{i},\"pad\":\"{}\"}}\n",
            "x".repeat(200)
        )
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xw-sink-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    /// A device that refuses every write with ENOSPC: held up to the buffer, then dropped and
    /// counted; the output is reported down, never a reason to stop.
    #[test]
    fn a_full_disk_holds_then_drops_counted() {
        if !Path::new("/dev/full").exists() {
            println!("skipped: no /dev/full");
            return;
        }
        let max = 1 << 17;
        let mut sink = EveSink::open(Path::new("/dev/full"), max).expect("open /dev/full");
        let n = 2000;
        for i in 0..n {
            sink.write_line(&line(i));
        }
        sink.housekeeping();
        let st = sink.status.clone();
        assert!(!st.up.load(Ordering::Relaxed), "output reported down");
        assert!(st.write_errors.load(Ordering::Relaxed) >= 1);
        assert!(
            sink.held() <= max,
            "held {} > buffer_max {max}",
            sink.held()
        );
        let dropped = st.dropped_buffer_full.load(Ordering::Relaxed);
        let held_lines = sink.held() / line(0).len();
        assert!(dropped > 0, "beyond the buffer events are dropped");
        assert!(
            dropped as usize + held_lines >= n - 1,
            "every event is either held or counted as dropped ({dropped} + {held_lines} of {n})"
        );
        // At shutdown what is still held is counted too.
        sink.finish(Duration::from_millis(50));
        assert_eq!(
            st.dropped() as usize,
            n,
            "each event held or dropped is counted once"
        );
    }

    /// The file removed under the daemon: reopened by itself, events go on to the new file and
    /// none is lost.
    #[test]
    fn a_removed_file_is_reopened_and_nothing_is_lost() {
        let d = tmpdir("removed");
        let p = d.join("eve.json");
        let mut sink = EveSink::open(&p, 1 << 20).expect("open");
        for i in 0..10 {
            sink.write_line(&line(i));
        }
        sink.housekeeping();
        let moved = d.join("eve.json.1");
        std::fs::rename(&p, &moved).expect("rename");
        for i in 10..20 {
            sink.write_line(&line(i));
        }
        // The path no longer names the open file: the next housekeeping reopens it.
        sink.housekeeping();
        for i in 20..30 {
            sink.write_line(&line(i));
        }
        sink.finish(Duration::from_secs(1));
        let old = std::fs::read_to_string(&moved).expect("old file");
        let new = std::fs::read_to_string(&p).expect("new file");
        assert_eq!(
            old.lines().count() + new.lines().count(),
            30,
            "nothing lost"
        );
        assert!(
            new.lines().count() >= 10,
            "events after the move went to the new file"
        );
        assert_eq!(sink.status.reopens.load(Ordering::Relaxed), 1);
        assert_eq!(sink.status.dropped(), 0);
        assert!(sink.status.up.load(Ordering::Relaxed));
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A line half written when writing failed is written whole to the reopened file.
    #[test]
    fn a_half_written_line_is_written_whole_after_reopening() {
        let d = tmpdir("half");
        let p = d.join("eve.json");
        let mut sink = EveSink::open(&p, 1 << 20).expect("open");
        sink.pending.extend_from_slice(b"{\"a\":1}\n{\"b\":2}\n");
        sink.head = 11; // "{"a":1}\n{"b" written, then the disk filled up
        sink.reopen_now("test");
        assert_eq!(&sink.pending[sink.head..], b"{\"b\":2}\n");
        let _ = std::fs::remove_dir_all(&d);
    }
}
