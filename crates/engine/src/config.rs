//! What every worker shares: the engine's typed configuration as each worker sees it (the whole
//! sensor's limits shared out), and the live side channel. Below the worker, the per-flow state
//! and the renderer, which all read it.

use crate::counters::WorkerTotals;
use xferwatch_capture::ShardFn;
use xferwatch_parsers::ftp::FtpLimits;
use xferwatch_parsers::smb::SmbLimits;
use xferwatch_policy::detect::DetectConfig;
use xferwatch_policy::{Networks, PortTable};
use xferwatch_stream::{ExpectLimits, FlowTableConfig};

#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Bytes of each TCP direction buffered for identification.
    pub depth: usize,
    /// Reassembly memory per worker.
    pub memcap: usize,
    /// Payload needed on a well-known port before "nothing matched" is a mismatch.
    pub mismatch_min_payload: u64,
    pub ftp: FtpLimits,
    pub smb: SmbLimits,
    /// Hashes computed over every file a flow carries.
    pub hashes: crate::evidence::Hashes,
}

pub struct Shared {
    pub networks: Networks,
    pub ports: PortTable,
    pub table: FlowTableConfig,
    pub app: AppConfig,
    pub expect: ExpectLimits,
    pub shard: ShardFn,
    pub log_credentials: bool,
    /// Community ID seed.
    pub community_id_seed: u16,
    pub detect: DetectConfig,
    /// Session pcaps: settings and the directory's budget (`[evidence] dir`), and the worker count
    /// the ring memory is shared among.
    pub pcaps: Option<(
        std::sync::Arc<crate::pcaps::PcapConfig>,
        std::sync::Arc<crate::pcaps::DiskBudget>,
    )>,
    pub workers: usize,
    /// Interim flow records this often (0: none).
    pub flow_interim_us: i64,
    /// Capture interfaces by index (events name a flow's as `in_iface`); empty in replay.
    pub interfaces: Vec<std::sync::Arc<str>>,
    /// The live daemon's side channel: snapshots for metrics and stats, configuration reloads.
    pub live: Option<LiveShared>,
    /// The sensor's name, every event's `host`.
    pub sensor: Option<std::sync::Arc<str>>,
    /// The fleet whose Redis holds the shared detection state.
    pub fleet: Option<crate::fleet::FleetSetup>,
    /// Replay: how many of each worker's events the writer has taken (the end of the input
    /// waits on it, so that open flows are not all rendered ahead of the writer).
    pub writer_progress: Option<std::sync::Arc<crate::writer::WriterProgress>>,
}

/// What the live daemon shares with its workers (touched once per batch, never per packet).
pub struct LiveShared {
    /// Each worker's latest counters.
    pub slots: Vec<std::sync::Mutex<WorkerTotals>>,
    /// Detection configuration and its generation: SIGHUP bumps the generation.
    pub detect: std::sync::RwLock<(u64, DetectConfig)>,
    pub detect_gen: std::sync::atomic::AtomicU64,
    /// Baselines are handed over (for the state file) when this generation moves.
    pub save_gen: std::sync::atomic::AtomicU64,
    /// Each worker's heartbeat, stamped per batch.
    pub beats: Vec<crate::health::Beat>,
}
