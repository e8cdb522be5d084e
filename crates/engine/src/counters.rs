//! The engine's counters: what each worker counts (cheaply, per packet or per flow) and hands over,
//! merged across workers for the stats event, the metrics and the summary. Below every other
//! module of the engine: the worker fills them, the writer carries them, the shell publishes them.

use crate::health::WorkerHealth;
use xferwatch_policy::detect::{DetectStats, HostBaseline, HostKey};
use xferwatch_stream::{ExpectStats, TableStats};

/// Counters kept per worker, cheap, for the stats event and later the metrics.
#[derive(Clone, Debug, Default)]
pub struct AppCounters {
    pub identified: u64,
    pub unknown: u64,
    pub reoriented: u64,
    /// Unidentified connections picked up mid-stream searched for the next SMB message, and those
    /// found to be SMB that way.
    pub midstream_hunts: u64,
    pub midstream_smb: u64,
    /// Connections not searched because `MAX_HUNTS` were searched already.
    pub midstream_hunts_refused: u64,
    /// FTP data connections linked by inference (announcement missed), and inference entries
    /// (activity, waiting connections) forgotten because their table was full.
    pub ftp_data_inferred: u64,
    pub ftp_infer_evictions: u64,
    pub reassembly_gaps: u64,
    pub reassembly_overlaps: u64,
    pub reassembly_memcap_hits: u64,
    /// Parser figures, added when each flow ends.
    pub ftp_commands: u64,
    pub ftp_limit_hits: u64,
    pub ftp_bad_announcements: u64,
    pub smb_messages: u64,
    pub smb_malformed: u64,
    pub smb_resyncs: u64,
    pub smb_limit_hits: u64,
    /// SMB fields cut short and read with a default (counted, the message still used).
    pub smb_field_errors: u64,
    pub tftp_malformed: u64,
}

impl AppCounters {
    pub fn merge(&mut self, o: &AppCounters) {
        self.identified += o.identified;
        self.unknown += o.unknown;
        self.reoriented += o.reoriented;
        self.midstream_hunts += o.midstream_hunts;
        self.midstream_smb += o.midstream_smb;
        self.midstream_hunts_refused += o.midstream_hunts_refused;
        self.ftp_data_inferred += o.ftp_data_inferred;
        self.ftp_infer_evictions += o.ftp_infer_evictions;
        self.reassembly_gaps += o.reassembly_gaps;
        self.reassembly_overlaps += o.reassembly_overlaps;
        self.reassembly_memcap_hits += o.reassembly_memcap_hits;
        self.ftp_commands += o.ftp_commands;
        self.ftp_limit_hits += o.ftp_limit_hits;
        self.ftp_bad_announcements += o.ftp_bad_announcements;
        self.smb_messages += o.smb_messages;
        self.smb_malformed += o.smb_malformed;
        self.smb_resyncs += o.smb_resyncs;
        self.smb_limit_hits += o.smb_limit_hits;
        self.smb_field_errors += o.smb_field_errors;
        self.tftp_malformed += o.tftp_malformed;
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SessionStats {
    pub created: u64,
    pub refused: u64,
    pub queue_limit_hits: u64,
}

impl SessionStats {
    pub fn merge(&mut self, o: &SessionStats) {
        self.created += o.created;
        self.refused += o.refused;
        self.queue_limit_hits += o.queue_limit_hits;
    }
}

#[derive(Clone, Debug, Default)]
pub struct WorkerTotals {
    pub table: TableStats,
    pub app: AppCounters,
    pub expect: ExpectStats,
    pub sessions: SessionStats,
    pub flows_tcp: u64,
    pub flows_udp: u64,
    pub flows_by_app_proto: std::collections::BTreeMap<&'static str, u64>,
    pub events_by_type: std::collections::BTreeMap<&'static str, u64>,
    pub detect: DetectStats,
    pub outbound_by_app_proto: std::collections::BTreeMap<&'static str, u64>,
    pub mismatch_by_app_proto: std::collections::BTreeMap<&'static str, u64>,
    /// Reassembly memory in use, and batches waiting in the worker's queue (live snapshots).
    pub reassembly_memory: u64,
    pub queue_depth: u64,
    /// Contained panics and work lost to them.
    pub health: WorkerHealth,
    /// Session pcaps (`[evidence] dir`).
    pub pcaps: crate::pcaps::PcapStats,
    /// The fleet's Redis (`[fleet]`).
    pub fleet: crate::fleet::FleetStats,
    /// The file store, whole sensor (reported by worker 0 alone): stored, duplicates, skipped.
    pub store: [u64; 3],
    /// Alerts for the human summary, (packet, line), bounded.
    pub alerts: Vec<(u64, String)>,
    /// Baselines at the end, for the state file.
    pub baselines: Vec<(HostKey, HostBaseline)>,
    /// File-transfer and mismatching flows for the human summary, (first packet, line), bounded.
    pub notable: Vec<(u64, String)>,
}

impl WorkerTotals {
    /// Adds another worker's counters (not its summary lines or baselines).
    pub fn merge(&mut self, o: &WorkerTotals) {
        fn add(
            a: &mut std::collections::BTreeMap<&'static str, u64>,
            b: &std::collections::BTreeMap<&'static str, u64>,
        ) {
            for (k, v) in b {
                *a.entry(k).or_default() += v;
            }
        }
        self.table.merge(&o.table);
        self.app.merge(&o.app);
        self.expect.merge(&o.expect);
        self.sessions.merge(&o.sessions);
        self.detect.merge(&o.detect);
        self.pcaps.merge(&o.pcaps);
        self.fleet.merge(&o.fleet);
        for (a, b) in self.store.iter_mut().zip(o.store) {
            *a += b;
        }
        self.flows_tcp += o.flows_tcp;
        self.flows_udp += o.flows_udp;
        add(&mut self.flows_by_app_proto, &o.flows_by_app_proto);
        add(&mut self.events_by_type, &o.events_by_type);
        add(&mut self.outbound_by_app_proto, &o.outbound_by_app_proto);
        add(&mut self.mismatch_by_app_proto, &o.mismatch_by_app_proto);
        self.reassembly_memory += o.reassembly_memory;
        self.queue_depth += o.queue_depth;
        self.health.merge(&o.health);
    }
}

/// Notable flows kept per worker for the summary.
pub const MAX_NOTABLE: usize = 200;

/// (packet number, phase, flow's first packet number): ticks (phase 0) sort before the packet they
/// precede (phase 1: flows it ended; phase 2: what it caused); at one instant, flows are ordered by
/// their first packet.
pub type OrderKey = (u64, u8, u64);

/// What a worker sends the writer: finished EVE lines.
pub type Ev = String;

pub struct Out {
    pub worker: usize,
    pub events: Vec<(OrderKey, Ev)>,
    /// Every event this worker will still send has a key above this.
    pub watermark: OrderKey,
    pub done: Option<WorkerTotals>,
}
