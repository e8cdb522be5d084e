//! The writer: merges the workers' ordered event streams by [`OrderKey`](crate::worker::OrderKey) and
//! writes EVE lines. An event is written once no worker can still produce an earlier one, so the file
//! is identical for any number of workers and the writer holds only events not yet safe to write.

use crate::worker::{Ev, OrderKey, Out, WorkerTotals};
use crossbeam_channel::Receiver;
use std::collections::VecDeque;
use std::io::Write;

pub struct Merged {
    pub totals: Vec<WorkerTotals>,
    pub events: u64,
}

pub fn run(rx: Receiver<Out>, workers: usize, out: &mut dyn Write) -> std::io::Result<Merged> {
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
                .zip(&marks)
                .all(|(q, m)| !q.is_empty() || key <= *m);
            if !safe {
                break;
            }
            let Some((_, line)) = queues[i].pop_front() else {
                break;
            };
            out.write_all(line.as_bytes())?;
            written += 1;
        }
    }
    out.flush()?;
    Ok(Merged {
        totals: totals.into_iter().map(|t| t.unwrap_or_default()).collect(),
        events: written,
    })
}

/// The live daemon's EVE file: appended to, reopened on request (SIGHUP, after logrotate moved it).
pub struct EveSink {
    path: std::path::PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    pub reopen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl EveSink {
    pub fn open(path: &std::path::Path) -> std::io::Result<EveSink> {
        Ok(EveSink {
            path: path.to_path_buf(),
            out: std::io::BufWriter::with_capacity(1 << 16, Self::file(path)?),
            reopen: Default::default(),
        })
    }

    fn file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
    }

    /// Whole lines go out together: a rotation never splits one.
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        self.out.write_all(line.as_bytes())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Flushes, and reopens the path if a reopen was asked for.
    pub fn housekeeping(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::warn!("{}: cannot write: {e}", self.path.display());
        }
        if self.reopen.swap(false, std::sync::atomic::Ordering::AcqRel) {
            match Self::file(&self.path) {
                Ok(f) => {
                    self.out = std::io::BufWriter::with_capacity(1 << 16, f);
                    tracing::info!("{}: reopened", self.path.display());
                }
                Err(e) => tracing::warn!(
                    "{}: cannot reopen ({e}); still writing to the old file",
                    self.path.display()
                ),
            }
        }
    }
}

/// Live mode: events are written as they arrive (there is no global packet order across capture
/// threads); the file is flushed at least every half second. Returns when every worker is done.
pub fn run_live(rx: Receiver<Out>, workers: usize, sink: &mut EveSink) -> std::io::Result<Merged> {
    let mut totals: Vec<Option<WorkerTotals>> = vec![None; workers];
    let mut written = 0u64;
    let mut finished = 0usize;
    let mut last_flush = std::time::Instant::now();
    while finished < workers {
        match rx.recv_timeout(std::time::Duration::from_millis(500)) {
            Ok(msg) => {
                for (_, line) in msg.events {
                    sink.write_line(&line)?;
                    written += 1;
                }
                if let Some(t) = msg.done {
                    if let Some(slot) = totals.get_mut(msg.worker) {
                        *slot = Some(t);
                        finished += 1;
                    }
                }
                if last_flush.elapsed() >= std::time::Duration::from_millis(200) {
                    sink.housekeeping();
                    last_flush = std::time::Instant::now();
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                sink.housekeeping();
                last_flush = std::time::Instant::now();
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    sink.housekeeping();
    Ok(Merged {
        totals: totals.into_iter().map(|t| t.unwrap_or_default()).collect(),
        events: written,
    })
}
