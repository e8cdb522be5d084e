//! `xferwatch replay`: a reader thread decodes and shards packets into bounded queues (backpressure,
//! nothing dropped), N workers keep the flow tables, one writer merges their events in a fixed order.

use crate::pipeline::{self, worker_count, BaselineFile};
use crate::settings::Settings;
use crate::worker::WorkerTotals;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use xferwatch_capture::{read_files, Dispatcher, Ingest, IngestStats, Mode};
use xferwatch_events::{write_stats, StatsRecord};
use xferwatch_wire::DecodeError;

pub fn run(
    s: &Settings,
    eve: &str,
    workers: Option<usize>,
    quiet: bool,
    pcaps: &[PathBuf],
) -> Result<u8> {
    let started = Instant::now();
    let n = worker_count(workers.unwrap_or(s.engine.workers));
    let mut out: Box<dyn Write + Send> = if eve == "-" {
        Box::new(std::io::BufWriter::with_capacity(
            1 << 16,
            std::io::stdout(),
        ))
    } else {
        let f = std::fs::File::create(eve)
            .with_context(|| format!("{eve}: cannot create the EVE file"))?;
        Box::new(std::io::BufWriter::with_capacity(1 << 16, f))
    };
    let shared = Arc::new(pipeline::shared(s, n, None));
    // Baselines learnt before: each worker takes the hosts of its shard.
    let baselines = BaselineFile::load(s);
    let (out_tx, out_rx) = crossbeam_channel::bounded(n * 64);
    let workers = pipeline::spawn_workers(s, &shared, n, &baselines.saved, &out_tx)?;
    drop(out_tx);
    let writer = std::thread::Builder::new()
        .name("xw-writer".into())
        .spawn(move || {
            let r = crate::writer::run(out_rx, n, &mut *out);
            (r, out)
        })
        .context("cannot start the writer thread")?;

    let dispatcher = Dispatcher::new(
        Mode::Replay,
        shared.shard.clone(),
        workers.senders,
        workers.recycle,
    );
    let mut ingest = Ingest::new(dispatcher, pipeline::defrag_limits(s));
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
    let outcome = read_files(pcaps, &mut ingest, &stop, |p| tracing::warn!("{p}"));
    ingest.finish();
    let mut dead_workers = 0usize;
    for h in workers.handles {
        if h.join().is_err() {
            dead_workers += 1;
        }
    }
    let (merged, mut out) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
    let mut merged = merged.context("cannot write the EVE output")?;
    dead_workers = dead_workers.max(n.saturating_sub(merged.finished));

    baselines.save(&mut merged.totals);
    let stats = stats_record(
        &ingest.stats,
        &ingest.defrag.stats,
        &merged.totals,
        ingest.last_ts_us(),
        // Replay output must not depend on the wall clock: uptime is the packet time the input spans.
        (ingest.last_ts_us() - ingest.first_ts_us()).max(0) / 1_000_000,
    );
    let mut line = String::new();
    write_stats(&mut line, &stats);
    out.write_all(line.as_bytes())
        .and_then(|_| out.flush())
        .context("cannot write the EVE output")?;

    if !quiet {
        summary(
            &ingest.stats,
            &stats,
            &merged.totals,
            merged.events,
            started,
            &outcome,
        );
    }
    let mut health = crate::health::WorkerHealth::default();
    for t in &merged.totals {
        health.merge(&t.health);
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
            ingest.stats.frames, ingest.stats.bytes, outcome.files_read
        );
    }
    if health.panics > 0 || dead_workers > 0 {
        eprintln!(
            "xferwatch replay: internal error: {} panic(s) contained, {} flow(s) lost with them, \
             {dead_workers} worker(s) died; the output is incomplete (exit status 3)",
            health.panics, health.panic_lost_flows
        );
    }
    Ok(exit_code(
        interrupted.map(|i| i.1),
        health.panics > 0 || dead_workers > 0,
        outcome.any_unreadable(),
    ))
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

/// The `stats` event from the counters of the capture side and of every worker.
pub fn stats_record(
    st: &IngestStats,
    d: &xferwatch_capture::DefragStats,
    totals: &[WorkerTotals],
    ts_us: i64,
    uptime_secs: i64,
) -> StatsRecord {
    let mut t = WorkerTotals::default();
    for w in totals {
        t.merge(w);
    }
    let (table, app, x, det, sessions) = (t.table, &t.app, t.expect, t.detect, t.sessions);
    StatsRecord {
        ts_us,
        uptime_secs,
        pkts: st.frames,
        bytes: st.bytes,
        invalid: st.invalid(),
        ipv4: st.ipv4,
        ipv6: st.ipv6,
        tcp: st.tcp,
        udp: st.udp,
        vlan: st.vlan,
        fragments: d.fragments,
        reassembled: d.reassembled,
        flows_active: table.active,
        flows_total: table.created,
        flows_tcp: t.flows_tcp,
        flows_udp: t.flows_udp,
        flows_by_app_proto: t
            .flows_by_app_proto
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.to_string(), *n))
            .collect(),
        decode_errors: DecodeError::ALL
            .iter()
            .map(|e| (e.reason(), st.decode[e.index()]))
            .filter(|(_, v)| *v > 0)
            .collect(),
        ended_by_reason: vec![
            ("timeout", table.ended_timeout),
            ("closed", table.ended_closed),
            ("evicted", table.ended_evicted),
            ("shutdown", table.ended_shutdown),
        ],
        extra: vec![
            ("flows_port_reuse", table.port_reuse),
            ("flows_evicted_half_open", table.evicted_half_open),
            ("flows_evicted_unprotected", table.evicted_unprotected),
            ("flows_evicted_protected", table.evicted_protected),
            ("flows_emergency_entered", table.emergency_entered),
            ("flows_emergency_left", table.emergency_left),
            ("flows_emergency_timeouts", table.emergency_timeouts),
            ("flows_emergency", table.emergency),
            ("identified", app.identified),
            ("identification_gave_up", app.unknown),
            ("reoriented", app.reoriented),
            ("reassembly_gaps", app.reassembly_gaps),
            ("reassembly_overlaps", app.reassembly_overlaps),
            ("reassembly_memcap_hits", app.reassembly_memcap_hits),
            ("ftp_commands", app.ftp_commands),
            ("ftp_limit_hits", app.ftp_limit_hits),
            ("ftp_bad_announcements", app.ftp_bad_announcements),
            ("smb_messages", app.smb_messages),
            ("smb_malformed", app.smb_malformed),
            ("smb_resyncs", app.smb_resyncs),
            ("smb_limit_hits", app.smb_limit_hits),
            ("midstream_hunts", app.midstream_hunts),
            ("midstream_smb", app.midstream_smb),
            ("midstream_hunts_refused", app.midstream_hunts_refused),
            ("ftp_data_inferred", app.ftp_data_inferred),
            ("ftp_infer_evictions", app.ftp_infer_evictions),
            ("tftp_malformed", app.tftp_malformed),
            ("defrag_timeouts", d.timeouts),
            ("defrag_overlaps", d.overlaps),
            ("defrag_limit_drops", d.dropped_limit),
            ("defrag_malformed", d.malformed),
            ("defrag_evicted", d.evicted),
            ("defrag_source_refused", d.source_refused),
            ("expectations_created", x.created),
            ("expectations_matched", x.matched),
            ("expectations_expired", x.expired),
            ("expectations_refused", x.refused),
            ("expectations_evicted", x.evicted),
            ("alerts_1173001", det.alerts[0]),
            ("alerts_1173002", det.alerts[1]),
            ("alerts_1173003", det.alerts[2]),
            ("alerts_1173004", det.alerts[3]),
            ("alerts_1173005", det.alerts[4]),
            ("alerts_suppressed", det.suppressed.iter().sum()),
            ("rollup_evictions", det.rollup_evictions),
            ("baseline_evictions", det.baseline_evictions),
            ("sessions_created", sessions.created),
            ("sessions_refused", sessions.refused),
            ("session_queue_limit_hits", sessions.queue_limit_hits),
            ("worker_panics", t.health.panics),
            ("worker_panic_lost_flows", t.health.panic_lost_flows),
        ],
    }
}

fn summary(
    st: &IngestStats,
    stats: &StatsRecord,
    totals: &[WorkerTotals],
    events: u64,
    started: Instant,
    outcome: &xferwatch_capture::ReadOutcome,
) {
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
    let _ = writeln!(
        e,
        "  alerts: {}{}",
        alerts.len(),
        if suppressed > 0 {
            format!("  ({suppressed} suppressed by [[allow]] entries)")
        } else {
            String::new()
        }
    );
    if !alerts.is_empty() {
        let _ = writeln!(
            e,
            "    {:<7} {:<60} {:>15}    {:<15} {:<8} {:>12}  port",
            "sid", "signature", "internal", "external", "proto", "bytes"
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
