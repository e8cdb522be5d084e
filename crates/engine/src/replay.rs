//! Capture files through the engine as one timeline, events in packet order, the `stats` record
//! last: the same bytes for the same files whatever the number of workers.

use crate::counters::WorkerTotals;
use crate::health::WorkerHealth;
use crate::pipeline::{BaselineFile, Engine, EngineConfig};
use crate::stats::stats_record;
use crate::writer::EventSink;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use xferwatch_capture::{
    read_files_progress, FileProblem, IngestStats, Mode, ReadOutcome, ReadProgress,
};
use xferwatch_events::{write_stats, StatsRecord};

/// What a replay did.
pub struct Replayed {
    /// The files read, and the problems met (each also logged as a warning).
    pub outcome: ReadOutcome,
    pub ingest: IngestStats,
    /// The `stats` record written last.
    pub stats: StatsRecord,
    /// Every worker's final counters, summary lines included.
    pub totals: Vec<WorkerTotals>,
    /// Records written, the `stats` record not counted.
    pub events: u64,
    /// Workers that died (a panic that was not contained), and the panics that were.
    pub dead_workers: usize,
    pub health: WorkerHealth,
}

/// No input could be read at all (each was missing, not a capture, or of an unsupported link
/// type): [`replay`] wrote nothing, not even the `stats` record.
#[derive(Debug)]
pub struct NothingRead {
    pub problems: Vec<FileProblem>,
}

impl std::fmt::Display for NothingRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no capture file could be read")?;
        for p in &self.problems {
            write!(f, "; {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NothingRead {}

/// Replays `files` in order through an engine built from `c`, writing every event to `sink`.
/// Baselines start from `baselines` and are saved back to it. Setting `stop` ends the reading
/// early; every flow read so far still gets its record.
///
/// When no file could be read at all, the error is [`NothingRead`] and nothing was given to `sink`
/// (a [`crate::writer::LazySink`] then creates no file).
pub fn replay(
    c: &EngineConfig,
    baselines: &BaselineFile,
    files: &[PathBuf],
    sink: Box<dyn EventSink>,
    stop: &AtomicBool,
) -> Result<Replayed> {
    replay_progress(c, baselines, files, sink, stop, &ReadProgress::default())
}

/// [`replay`], telling `progress` how far the reading got (for a progress display in another
/// thread; the reading thread only stores into it every few thousand packets).
pub fn replay_progress(
    c: &EngineConfig,
    baselines: &BaselineFile,
    files: &[PathBuf],
    mut sink: Box<dyn EventSink>,
    stop: &AtomicBool,
    progress: &ReadProgress,
) -> Result<Replayed> {
    let mut engine = Engine::start(c, &baselines.saved, false)?;
    let n = engine.workers();
    let rx = engine.take_events().context("events already taken")?;
    let taken = engine.writer_progress();
    let writer = std::thread::Builder::new()
        .name("xw-writer".into())
        .spawn(move || {
            let r = crate::writer::run_paced(rx, n, &mut *sink, taken.as_deref());
            (r, sink)
        })
        .context("cannot start the writer thread")?;
    let mut ingest = engine.ingest(Mode::Replay);
    let outcome = read_files_progress(files, &mut ingest, stop, progress, |p| {
        tracing::warn!("{p}")
    });
    ingest.finish();
    let mut dead_workers = engine.join();
    let (merged, mut sink) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
    let mut merged = merged.context("cannot write the EVE output")?;
    dead_workers = dead_workers.max(n.saturating_sub(merged.finished));

    if outcome.files_read == 0 && outcome.any_unreadable() && merged.events == 0 {
        return Err(NothingRead {
            problems: outcome.problems,
        }
        .into());
    }
    baselines.save(&mut merged.totals);
    let mut stats = stats_record(
        &ingest.stats,
        &ingest.defrag.stats,
        &merged.totals,
        ingest.last_ts_us(),
        // Replay output must not depend on the wall clock: uptime is the packet time the input spans.
        (ingest.last_ts_us() - ingest.first_ts_us()).max(0) / 1_000_000,
    );
    stats.host = c.sensor.clone();
    let mut line = String::new();
    write_stats(&mut line, &stats);
    sink.event(&line)
        .and_then(|_| sink.flush())
        .context("cannot write the EVE output")?;
    let mut health = WorkerHealth::default();
    for t in &merged.totals {
        health.merge(&t.health);
    }
    Ok(Replayed {
        outcome,
        ingest: ingest.stats.clone(),
        stats,
        totals: merged.totals,
        events: merged.events,
        dead_workers,
        health,
    })
}
