//! `xferwatch replay`: the engine's [`replay`](xferwatch_engine::replay::replay) (a reader thread
//! shards packets into bounded queues, nothing dropped; N workers; one writer merging their events
//! in a fixed order) with what the command adds: the EVE file or standard output, SIGINT/SIGTERM,
//! the summary on standard error and the exit status.

use crate::settings::Settings;
use crate::talkers::TopTalkers;
use anyhow::{Context, Result};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;
use xferwatch_capture::{order_by_first_packet, ReadProgress};
use xferwatch_engine::replay::{replay_progress, NothingRead, Replayed};
use xferwatch_engine::worker_count;
use xferwatch_engine::writer::{EventSink, LazySink, WriteSink};

pub fn run(
    s: &Settings,
    eve: &str,
    force: bool,
    workers: Option<usize>,
    quiet: bool,
    fleet_optional: bool,
    pcaps: &[PathBuf],
) -> Result<u8> {
    let started = Instant::now();
    let n = worker_count(workers.unwrap_or(s.engine.workers));
    let mut config = s.engine_config(n);
    if let Some(f) = s.fleet_config() {
        // A replay judges its input with the fleet's state from the first packet, or says why
        // it cannot, before reading anything.
        let reached = xferwatch_fleet::state::probe(&f.target, f.timeout);
        if let Err(e) = &reached {
            let key = if s.fleet.redis.is_empty() {
                "fleet.redis_cluster"
            } else {
                "fleet.redis"
            };
            if !fleet_optional {
                eprintln!(
                    "xferwatch replay: {key}: the fleet's Redis cannot be reached: {e:#}; nothing \
                     was read (--fleet-optional replays with this sensor's own state instead)"
                );
                return Ok(2);
            }
            eprintln!(
                "xferwatch replay: warning: {key}: the fleet's Redis cannot be reached: {e:#}; \
                 replaying with this sensor's own state (--fleet-optional)"
            );
        }
        config.fleet = Some(xferwatch_engine::fleet::FleetSetup {
            connect_at_start: reached.is_ok(),
            cfg: f,
        });
    }
    // The fleet lists this replay (xferwatch fleet status) from its start to its end.
    let mut heartbeat = s.fleet_config().map(|f| {
        let mut h =
            xferwatch_fleet::status::Heartbeat::new(f, xferwatch_fleet::status::Mode::Replay);
        h.beat(0, 0, 0);
        h
    });
    // One timeline: the files are read in the order of their first packet, not as named, so that
    // no packet of a later-named but earlier file is taken as happening at the latest time seen.
    let given = pcaps;
    let ordered = order_by_first_packet(pcaps);
    let pcaps = &ordered[..];
    let moved = given.iter().zip(pcaps).filter(|(a, b)| a != b).count();
    let sink: Box<dyn EventSink> = if eve == "-" {
        Box::new(WriteSink(std::io::BufWriter::with_capacity(
            1 << 16,
            std::io::stdout(),
        )))
    } else {
        // Refused here, before reading; the file itself is created by the first record, so a
        // replay that cannot read any input creates (or truncates) nothing.
        refuse_existing(Path::new(eve), force)?;
        let path = PathBuf::from(eve);
        Box::new(LazySink::new(move || {
            let f = open_eve(&path, force).map_err(|e| std::io::Error::other(format!("{e:#}")))?;
            Ok(
                Box::new(WriteSink(std::io::BufWriter::with_capacity(1 << 16, f)))
                    as Box<dyn EventSink>,
            )
        }))
    };
    let (mut sink, redis) = crate::redis_out::tee_replay(s, sink)?;
    // SIGINT/SIGTERM stop reading; every flow read so far still gets its record, and the exit
    // status (130/143) tells a script the run was cut short.
    let stop = Arc::new(AtomicBool::new(false));
    let (sigint, sigterm) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    for (sig, flag) in [
        (signal_hook::consts::SIGINT, &sigint),
        (signal_hook::consts::SIGTERM, &sigterm),
    ] {
        signal_hook::flag::register(sig, stop.clone())
            .and_then(|_| signal_hook::flag::register(sig, flag.clone()))
            .context("cannot install the signal handlers")?;
    }
    // The summary's top talkers are summed from the records as the writer writes them.
    let talkers = Arc::new(Mutex::new(TopTalkers::default()));
    if !quiet {
        sink = Box::new(Tee {
            inner: sink,
            talkers: talkers.clone(),
        });
    }
    let progress = Arc::new(ReadProgress::default());
    let bar = crate::progress::Bar::start(
        crate::progress::wanted(quiet, std::io::stderr().is_terminal()),
        pcaps,
        progress.clone(),
    );
    let replayed = replay_progress(&config, &s.baseline_file(), pcaps, sink, &stop, &progress);
    drop(bar);
    if let (Some(h), Ok(r)) = (heartbeat.as_mut(), replayed.as_ref()) {
        let fleet = r.totals.iter().fold(
            xferwatch_engine::fleet::FleetStats::default(),
            |mut a, t| {
                a.merge(&t.fleet);
                a
            },
        );
        h.set_fleet_up(fleet.workers > 0 && fleet.up == fleet.workers);
        let alerts = r
            .totals
            .iter()
            .map(|t| t.detect.alerts.iter().sum::<u64>())
            .sum();
        h.final_beat(r.ingest.frames, alerts, r.events);
    }
    let r = match replayed {
        Ok(r) => r,
        Err(e) if e.is::<NothingRead>() => {
            let target = if eve == "-" { "standard output" } else { eve };
            eprintln!(
                "xferwatch replay: none of the {} capture file(s) could be read; nothing written to \
                 {target}",
                pcaps.len()
            );
            return Ok(2);
        }
        Err(e) => return Err(e),
    };
    if let Some(redis) = &redis {
        redis.finish();
    }
    if !quiet {
        let talkers = talkers.lock().unwrap_or_else(|e| e.into_inner());
        summary(&r, started, moved, &talkers);
    }
    let interrupted = if sigterm.load(Ordering::Relaxed) {
        Some(("SIGTERM", 143))
    } else if sigint.load(Ordering::Relaxed) {
        Some(("SIGINT", 130))
    } else {
        None
    };
    if let Some((sig, _)) = interrupted {
        eprintln!(
            "xferwatch replay: interrupted by {sig} after {} packets ({} bytes) of {} file(s); \
             the flows read so far were written",
            r.ingest.frames, r.ingest.bytes, r.outcome.files_read
        );
    }
    let internal_error = r.health.panics > 0 || r.dead_workers > 0;
    if internal_error {
        eprintln!(
            "xferwatch replay: internal error: {} panic(s) contained, {} flow(s) lost with them, \
             {} worker(s) died; the output is incomplete (exit status 3)",
            r.health.panics, r.health.panic_lost_flows, r.dead_workers
        );
    }
    Ok(exit_code(
        interrupted.map(|i| i.1),
        internal_error,
        r.outcome.any_unreadable(),
    ))
}

/// Opens the EVE file for writing. A replay never destroys a regular file it did not create: an
/// existing one is refused unless `force`. What is not a regular file (`/dev/null`, a FIFO) is
/// written as before.
pub fn open_eve(path: &Path, force: bool) -> Result<std::fs::File> {
    let shown = path.display();
    match std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => return Ok(f),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("{shown}: cannot create the EVE file"))
            )
        }
    }
    // A dangling symlink, or anything that cannot be looked at, is protected like a regular file.
    let regular = std::fs::metadata(path).map_or(true, |m| m.is_file());
    if regular && !force {
        anyhow::bail!(
            "{shown}: the EVE file already exists; not overwriting it (give --force to replace it, \
             or another --eve)"
        );
    }
    std::fs::File::create(path).with_context(|| format!("{shown}: cannot create the EVE file"))
}

/// An error when `path` exists as a regular file (or a dangling symlink, or anything that cannot be
/// looked at) and `force` is not given.
pub fn refuse_existing(path: &Path, force: bool) -> Result<()> {
    if force || std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    if std::fs::metadata(path).map_or(true, |m| m.is_file()) {
        anyhow::bail!(
            "{}: the EVE file already exists; not overwriting it (give --force to replace it, \
             or another --eve)",
            path.display()
        );
    }
    Ok(())
}

/// The exit status of a replay, most serious first: interrupted by a signal (128 + its number),
/// an internal error contained or a worker lost (3), a capture file that could not be read (2).
pub fn exit_code(signal: Option<u8>, internal_error: bool, unreadable: bool) -> u8 {
    match (signal, internal_error, unreadable) {
        (Some(code), _, _) => code,
        (None, true, _) => 3,
        (None, false, true) => 2,
        _ => 0,
    }
}

/// Writes every record to `inner` and shows it to the top-talkers table.
struct Tee {
    inner: Box<dyn EventSink>,
    talkers: Arc<Mutex<TopTalkers>>,
}

impl EventSink for Tee {
    fn event(&mut self, line: &str) -> std::io::Result<()> {
        self.inner.event(line)?;
        if let Ok(mut t) = self.talkers.lock() {
            t.event(line);
        }
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Rows of the summary's top-talkers table.
pub const TOP_TALKERS: usize = 10;

fn summary(r: &Replayed, started: Instant, moved: usize, talkers: &TopTalkers) {
    let (st, stats, totals, events, outcome) =
        (&r.ingest, &r.stats, &r.totals[..], r.events, &r.outcome);
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    let mut e = std::io::stderr().lock();
    let _ = writeln!(
        e,
        "xferwatch replay: {} file(s) read, {} problem(s)",
        outcome.files_read,
        outcome.problems.len()
    );
    let _ = writeln!(
        e,
        "  packets {}  ({} MB)  in {:.2}s  = {:.0} pkt/s, {:.2} Gbit/s",
        st.frames,
        st.bytes / 1_000_000,
        secs,
        st.frames as f64 / secs,
        st.bytes as f64 * 8.0 / secs / 1e9
    );
    let _ = writeln!(
        e,
        "  flows {}  (tcp {}, udp {}), {} events written",
        stats.flows_total,
        stats.flows_tcp,
        stats.flows_udp,
        events + 1
    );
    let protos = join_counts(
        stats
            .flows_by_app_proto
            .iter()
            .map(|(k, v)| (k.as_str(), *v)),
    );
    let _ = writeln!(e, "  by app_proto: {}", protos.as_deref().unwrap_or("-"));
    let mut alerts: Vec<&(u64, String)> = totals.iter().flat_map(|t| t.alerts.iter()).collect();
    alerts.sort();
    let suppressed: u64 = totals
        .iter()
        .map(|t| t.detect.suppressed.iter().sum::<u64>())
        .sum();
    let aggregated: u64 = totals
        .iter()
        .map(|t| t.detect.aggregated.iter().sum::<u64>())
        .sum();
    let _ = writeln!(
        e,
        "  alerts: {}{}{}",
        alerts.len(),
        if suppressed > 0 {
            format!("  ({suppressed} suppressed by [[allow]] entries)")
        } else {
            String::new()
        },
        if aggregated > 0 {
            format!("  ({aggregated} mismatch flows aggregated into earlier alerts)")
        } else {
            String::new()
        }
    );
    if !alerts.is_empty() {
        // Internal -> external when the alert crosses the boundary, client -> server otherwise.
        let _ = writeln!(
            e,
            "    {:<7} {:<60} {:>15}    {:<15} {:<8} {:<8} {:>12}  port",
            "sid", "signature", "internal", "external", "dir", "proto", "bytes"
        );
        for (_, l) in alerts {
            let _ = writeln!(e, "    {l}");
        }
    }
    let mut notable: Vec<&(u64, String)> = totals.iter().flat_map(|t| t.notable.iter()).collect();
    notable.sort();
    if !notable.is_empty() {
        let _ = writeln!(
            e,
            "  file transfers and port mismatches (first {}):",
            notable.len()
        );
        for (_, l) in notable {
            let _ = writeln!(e, "    {l}");
        }
    }
    if !talkers.is_empty() {
        let _ = writeln!(
            e,
            "  top talkers, internal -> external, by bytes sent out (first {} of {}):",
            TOP_TALKERS.min(talkers.len()),
            talkers.len()
        );
        let top = talkers.top(TOP_TALKERS);
        let wi = top
            .iter()
            .map(|(p, _)| p.internal.len())
            .fold(8, usize::max);
        let we = top
            .iter()
            .map(|(p, _)| p.external.len())
            .fold(8, usize::max);
        let _ = writeln!(
            e,
            "    {:>wi$}    {:<we$} {:<9} {:>5} {:>12} {:>5} {:>6}",
            "internal", "external", "proto", "port", "bytes", "files", "alerts"
        );
        for (p, t) in top {
            let port = p.port.map_or_else(|| "data".to_string(), |p| p.to_string());
            let _ = writeln!(
                e,
                "    {:>wi$} -> {:<we$} {:<9} {:>5} {:>12} {:>5} {:>6}",
                p.internal, p.external, p.proto, port, t.bytes, t.files, t.alerts
            );
        }
        if talkers.others.flows > 0 || talkers.unattributed > 0 {
            let _ = writeln!(
                e,
                "    (table full: {} more flow(s) with {} bytes not ranked; {} file(s)/alert(s) not \
                 attributed)",
                talkers.others.flows, talkers.others.bytes, talkers.unattributed
            );
        }
    }
    if moved > 0 {
        let _ = writeln!(
            e,
            "  input order: read in the order of their first packet, {moved} file(s) not where \
             given"
        );
    }
    if st.time_clamped > 0 {
        let _ = writeln!(
            e,
            "  time went backwards: {} packet(s) older than the newest time seen were taken as \
             happening at it (their capture files overlap in time; events carry those times)",
            st.time_clamped
        );
    }
    let errs = join_counts(stats.decode_errors.iter().copied());
    let _ = writeln!(e, "  not decoded: {}", errs.as_deref().unwrap_or("none"));
    if stats.fragments > 0 {
        let _ = writeln!(
            e,
            "  ip fragments {} → {} datagrams reassembled",
            stats.fragments, stats.reassembled
        );
    }
}

/// "name count, name count", or None for an empty list.
fn join_counts<'a>(pairs: impl Iterator<Item = (&'a str, u64)>) -> Option<String> {
    let parts: Vec<String> = pairs.map(|(k, v)| format!("{k} {v}")).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}
