//! What `replay` and the live daemon build alike: the workers' shared configuration, the sharding
//! rule, the worker threads and their queues, and the baseline state file.

use crate::app::AppConfig;
use crate::baseline_state::Saved;
use crate::settings::Settings;
use crate::worker::{LiveShared, Out, Shared, Worker, WorkerTotals};
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use xferwatch_capture::{shard_hash, Batch, DefragLimits, ShardFn};
use xferwatch_parsers::ftp::FtpLimits;
use xferwatch_parsers::smb::SmbLimits;
use xferwatch_policy::Networks;
use xferwatch_stream::ExpectLimits;
use xferwatch_wire::Addr;

/// Worker threads for a configured count (0 = one per core), at most 256.
pub fn worker_count(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n.min(256),
    }
}

/// The shard of everything about one internal host.
fn host_shard(host: Addr, vlan: u16) -> u64 {
    shard_hash(&[host], vlan)
}

/// The worker that owns a packet. Everything about one internal host lives on one worker: the flows
/// of its transfers (FTP control and data, TFTP request and transfer), its per-peer roll-ups and its
/// baseline. Traffic that does not cross the boundary is sharded by host pair.
pub fn shard_fn(networks: Networks) -> ShardFn {
    Arc::new(
        move |a, b, vlan| match (networks.is_internal(a), networks.is_internal(b)) {
            (true, false) => host_shard(a, vlan),
            (false, true) => host_shard(b, vlan),
            _ => shard_hash(&[a, b], vlan),
        },
    )
}

/// The configuration every one of `n` workers shares; the whole sensor's limits are shared out.
pub fn shared(s: &Settings, n: usize, live: Option<LiveShared>) -> Shared {
    let networks = Networks::new(s.network.internal.clone());
    Shared {
        shard: shard_fn(networks.clone()),
        networks,
        ports: s.port_table(),
        table: {
            let mut t = s.flow_table_config();
            t.max_flows = t.max_flows.div_ceil(n).max(1);
            t
        },
        app: AppConfig {
            depth: s.limits.reassembly_flow_depth.0.min(1 << 20) as usize,
            memcap: (s.limits.reassembly_memcap.0 as usize / n).max(1 << 16),
            mismatch_min_payload: s.detect.mismatch.min_payload_bytes.0,
            ftp: FtpLimits {
                log_credentials: s.output.log_credentials,
                ..FtpLimits::default()
            },
            smb: SmbLimits::default(),
        },
        expect: ExpectLimits {
            max_total: (s.limits.max_expectations / n).max(64),
            ..ExpectLimits::default()
        },
        log_credentials: s.output.log_credentials,
        detect: s.detect_config(n),
        live,
    }
}

pub fn defrag_limits(s: &Settings) -> DefragLimits {
    DefragLimits {
        max_datagrams: s.limits.defrag_max_datagrams,
        max_per_source: s.limits.defrag_max_per_source,
        max_total_bytes: s.limits.defrag_memcap.0 as usize,
        timeout_us: s.timeouts.defrag.0 as i64 * 1_000_000,
    }
}

/// The worker threads, the queues that feed them and the pool their batches return to.
pub struct Workers {
    pub senders: Vec<Sender<Batch>>,
    pub recycle: Receiver<Batch>,
    pub handles: Vec<JoinHandle<()>>,
}

/// Starts `n` workers sending to `out`; each takes the saved baselines of the hosts it owns.
pub fn spawn_workers(
    s: &Settings,
    shared: &Arc<Shared>,
    n: usize,
    saved: &Saved,
    out: &Sender<Out>,
) -> Result<Workers> {
    let (recycle_tx, recycle) = crossbeam_channel::bounded(n * (s.engine.queue_batches + 4));
    let mut senders = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for id in 0..n {
        let (tx, rx) = crossbeam_channel::bounded(s.engine.queue_batches);
        senders.push(tx);
        let mut w = Worker::new(id, shared.clone());
        w.restore(saved, |k| (host_shard(k.0, k.1) % n as u64) as usize == id);
        let (recycle, out) = (recycle_tx.clone(), out.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("xw-worker-{id}"))
                .spawn(move || w.run(rx, recycle, out))
                .context("cannot start a worker thread")?,
        );
    }
    Ok(Workers {
        senders,
        recycle,
        handles,
    })
}

/// The baseline state file, when baselines are kept: what it held at start, and where to save.
pub struct BaselineFile {
    pub path: Option<PathBuf>,
    pub window_secs: u64,
    pub saved: Saved,
}

impl BaselineFile {
    pub fn load(s: &Settings) -> BaselineFile {
        let b = &s.detect.baseline;
        let path = (b.enabled && !b.state_file.is_empty()).then(|| PathBuf::from(&b.state_file));
        let window_secs = b.window.0;
        let saved = path
            .as_deref()
            .map(|p| crate::baseline_state::load(p, window_secs))
            .unwrap_or_default();
        BaselineFile {
            path,
            window_secs,
            saved,
        }
    }

    /// Saves what the workers handed over (taken out of their totals); a failure is a warning.
    pub fn save(&self, totals: &mut [WorkerTotals]) {
        self.save_all(
            totals
                .iter_mut()
                .flat_map(|t| std::mem::take(&mut t.baselines))
                .collect(),
        );
    }

    pub fn save_all(&self, all: Saved) {
        let Some(p) = &self.path else {
            return;
        };
        if let Err(e) = crate::baseline_state::save(p, self.window_secs, all) {
            tracing::warn!("{e:#}");
        }
    }
}
