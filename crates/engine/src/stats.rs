//! The `stats` event: the counters of the capture side and of every worker in one record, as
//! replay writes it at the end and the live daemon every `stats_interval`.

use crate::counters::WorkerTotals;
use crate::writer::OutputStatus;
use std::sync::atomic::Ordering;
use std::time::Instant;
use xferwatch_capture::live::CaptureReport;
use xferwatch_capture::{DefragStats, IngestStats};
use xferwatch_events::{write_stats, StatsRecord};
use xferwatch_wire::DecodeError;

/// The `stats` event from the counters of the capture side and of every worker.
pub fn stats_record(
    st: &IngestStats,
    d: &DefragStats,
    totals: &[WorkerTotals],
    ts_us: i64,
    uptime_secs: i64,
) -> StatsRecord {
    let mut t = WorkerTotals::default();
    for w in totals {
        t.merge(w);
    }
    let (table, app, x, det, sessions) = (t.table, &t.app, t.expect, t.detect, t.sessions);
    let mut rec = StatsRecord {
        ts_us,
        host: None,
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
            ("alerts_1173006", det.alerts[5]),
            ("alerts_suppressed", det.suppressed.iter().sum()),
            ("alerts_aggregated", det.aggregated.iter().sum()),
            ("rollup_evictions", det.rollup_evictions),
            ("host_rollup_evictions", det.host_rollup_evictions),
            ("baseline_evictions", det.baseline_evictions),
            ("mismatch_aggregate_evictions", det.mismatch_evictions),
            ("sessions_created", sessions.created),
            ("sessions_refused", sessions.refused),
            ("session_queue_limit_hits", sessions.queue_limit_hits),
            ("worker_panics", t.health.panics),
            ("worker_panic_lost_flows", t.health.panic_lost_flows),
        ],
    };
    // Written when non-zero only, so the records of clean traffic keep their shape.
    if st.time_clamped > 0 {
        rec.extra.push(("time_clamped", st.time_clamped));
    }
    if app.smb_field_errors > 0 {
        rec.extra.push(("smb_field_errors", app.smb_field_errors));
    }
    let fl = &t.fleet;
    if fl.workers > 0 {
        // With a fleet only: its link and traffic.
        rec.extra.push(("fleet_up", u64::from(fl.up == fl.workers)));
        for (k, v) in [
            ("fleet_round_trips", fl.round_trips),
            ("fleet_ops", fl.ops),
            ("fleet_errors", fl.errors),
            ("fleet_ops_dropped", fl.ops_dropped),
            ("fleet_ops_pending", fl.pending),
            ("fleet_local_alerts", fl.local_alerts),
            ("fleet_reconnects", fl.reconnects),
        ] {
            rec.extra.push((k, v));
        }
    }
    let p = &t.pcaps;
    for (k, v) in [
        ("evidence_pcaps", p.files),
        ("evidence_pcap_packets", p.packets),
        ("evidence_pcap_bytes", p.bytes),
        ("evidence_ring_full", p.ring_full),
        ("evidence_pcaps_capped", p.capped),
        ("evidence_pcaps_removed", p.removed),
        ("evidence_disk_full", p.disk_full),
        ("evidence_pcaps_refused", p.refused),
        ("evidence_errors", p.errors),
        ("evidence_unwritable", p.unwritable),
        ("files_stored", t.store[0]),
        ("files_store_duplicates", t.store[1]),
        ("files_store_skipped", t.store[2]),
    ] {
        if v > 0 {
            rec.extra.push((k, v));
        }
    }
    rec
}

/// The live daemon's `stats` event: the record of [`stats_record`] with the capture threads' and
/// the EVE output's own counters; wall-clock time.
pub fn live_stats_line(
    workers: &[WorkerTotals],
    captures: &[CaptureReport],
    output: &OutputStatus,
    started: Instant,
    host: Option<&str>,
) -> String {
    let mut st = IngestStats::default();
    let mut d = DefragStats::default();
    for c in captures {
        st.merge(&c.ingest);
        d.merge(&c.defrag);
    }
    let mut rec = stats_record(
        &st,
        &d,
        workers,
        xferwatch_capture::live::wall_us(),
        started.elapsed().as_secs() as i64,
    );
    rec.host = host.map(String::from);
    let (kd, idrop, qd): (u64, u64, u64) = captures.iter().fold((0, 0, 0), |a, c| {
        (
            a.0 + c.pcap.kernel_drops,
            a.1 + c.pcap.interface_drops,
            a.2 + c.queue_drops_packets,
        )
    });
    rec.extra.push(("capture_kernel_drops", kd));
    rec.extra.push(("capture_interface_drops", idrop));
    rec.extra.push(("capture_queue_drops", qd));
    rec.extra.push((
        "capture_dead_worker_drops",
        captures.iter().map(|c| c.dead_worker_packets).sum(),
    ));
    rec.extra
        .push(("capture_reopens", captures.iter().map(|c| c.reopens).sum()));
    let writer_gone: u64 = workers.iter().map(|w| w.health.writer_gone_events).sum();
    rec.extra
        .push(("events_dropped", output.dropped() + writer_gone));
    rec.extra.push((
        "output_write_errors",
        output.write_errors.load(Ordering::Relaxed),
    ));
    let mut line = String::new();
    write_stats(&mut line, &rec);
    line
}
