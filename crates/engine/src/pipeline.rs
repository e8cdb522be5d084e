//! The engine: workers started from a typed [`EngineConfig`], packets fed in through [`Ingest`]
//! (one per capture thread), events out through the writer. Replay and the live daemon build the
//! same engine.

use crate::baseline_state::Saved;
use crate::config::{AppConfig, LiveShared, Shared};
use crate::counters::{Out, WorkerTotals};
use crate::health::Beat;
use crate::worker::Worker;
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use ipnet::IpNet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use xferwatch_capture::{shard_hash, Batch, DefragLimits, Dispatcher, Ingest, Mode, ShardFn};
use xferwatch_parsers::ftp::FtpLimits;
use xferwatch_parsers::smb::SmbLimits;
use xferwatch_policy::detect::DetectConfig;
use xferwatch_policy::{Networks, PortTable};
use xferwatch_stream::{ExpectLimits, FlowTableConfig};
use xferwatch_wire::Addr;

/// Everything the engine needs, typed; the whole sensor's figures (the engine shares the limits
/// out among its workers). The command line turns TOML into this at its edge.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads, at least 1 (see [`worker_count`]).
    pub workers: usize,
    /// Batches queued per worker before the capture side waits (replay) or drops (live).
    pub queue_batches: usize,
    /// Networks whose hosts are internal; everything else is external.
    pub internal: Vec<IpNet>,
    /// The protocol each well-known port implies (the mismatch rule reads it).
    pub ports: PortTable,
    /// The flow table: `max_flows` for the whole sensor, timeouts, emergency mode.
    pub table: FlowTableConfig,
    /// Bytes of each TCP direction buffered for identification (at most 1 MiB is used).
    pub reassembly_depth: usize,
    /// Reassembly memory, the whole sensor.
    pub reassembly_memcap: usize,
    /// Payload needed on a well-known port before "nothing matched" is a mismatch.
    pub mismatch_min_payload: u64,
    pub ftp: FtpLimits,
    pub smb: SmbLimits,
    /// Hashes of every file moved (`[evidence] hashes`; sha256 by default).
    pub hashes: crate::evidence::Hashes,
    /// Expected flows (announced FTP data channels, TFTP transfers), the whole sensor.
    pub max_expectations: usize,
    pub defrag: DefragLimits,
    /// FTP passwords in events.
    pub log_credentials: bool,
    /// The seed of every event's Community ID (v1; 0 unless the other tools use another).
    pub community_id_seed: u16,
    /// Detection, with roll-up and baseline table sizes for the whole sensor.
    pub detect: DetectConfig,
    /// Session pcaps for every alert (`[evidence] dir`); none by default.
    pub pcaps: Option<crate::pcaps::PcapConfig>,
    /// Whole files saved by SHA-256 under `DIR/files`, at most so many bytes
    /// (`[evidence] store_files`, `max_store`); none by default.
    pub file_store: Option<(PathBuf, u64)>,
    /// Capture interfaces (live): a packet fed through [`Engine::ingest_on`] with index `i`
    /// carries `interfaces[i]` as its events' `in_iface`.
    pub interfaces: Vec<String>,
    /// Interim `flow` records of running flows this often, packet time (`[output] flow_interim`;
    /// 0: none).
    pub flow_interim_secs: u64,
    /// The sensor's name (`[sensor] name`), every event's `host`; None: no `host` field.
    pub sensor: Option<String>,
    /// The fleet (`[fleet]`): shared detection state in Redis.
    pub fleet: Option<crate::fleet::FleetSetup>,
}

impl Default for EngineConfig {
    /// The sensor's documented defaults (`sensor.toml.example`), one worker.
    fn default() -> Self {
        EngineConfig {
            workers: 1,
            queue_batches: 8,
            internal: xferwatch_policy::DEFAULT_INTERNAL
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
            ports: PortTable::default(),
            table: FlowTableConfig::default(),
            reassembly_depth: 4 << 10,
            reassembly_memcap: 64 << 20,
            mismatch_min_payload: 64,
            ftp: FtpLimits::default(),
            smb: SmbLimits::default(),
            hashes: crate::evidence::Hashes::default(),
            max_expectations: 65_536,
            defrag: DefragLimits::default(),
            log_credentials: false,
            community_id_seed: 0,
            detect: DetectConfig::default(),
            pcaps: None,
            file_store: None,
            interfaces: Vec::new(),
            flow_interim_secs: 0,
            sensor: None,
            fleet: None,
        }
    }
}

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

/// One worker's share of the detection tables.
pub fn detect_per_worker(d: &DetectConfig, workers: usize) -> DetectConfig {
    let share = |n: usize| n.div_ceil(workers.max(1)).max(1);
    let mut d = d.clone();
    d.rollup_max_pairs = share(d.rollup_max_pairs);
    d.baseline.max_hosts = share(d.baseline.max_hosts);
    d.host_rollup.max_hosts = share(d.host_rollup.max_hosts);
    d.mismatch_max_keys = share(d.mismatch_max_keys);
    d
}

/// The configuration every one of `n` workers shares; the whole sensor's limits are shared out.
pub(crate) fn shared(
    c: &EngineConfig,
    n: usize,
    live: Option<LiveShared>,
    pcaps: Option<(Arc<crate::pcaps::PcapConfig>, Arc<crate::pcaps::DiskBudget>)>,
) -> Shared {
    let networks = Networks::new(c.internal.clone());
    Shared {
        pcaps,
        workers: n,
        interfaces: c.interfaces.iter().map(|s| s.as_str().into()).collect(),
        flow_interim_us: (c.flow_interim_secs.min(1 << 30) as i64) * 1_000_000,
        shard: shard_fn(networks.clone()),
        networks,
        ports: c.ports.clone(),
        table: {
            let mut t = c.table;
            t.max_flows = t.max_flows.div_ceil(n).max(1);
            t
        },
        app: AppConfig {
            depth: c.reassembly_depth.min(1 << 20),
            memcap: (c.reassembly_memcap / n).max(1 << 16),
            mismatch_min_payload: c.mismatch_min_payload,
            ftp: FtpLimits {
                log_credentials: c.log_credentials,
                ..c.ftp
            },
            smb: c.smb,
            hashes: c.hashes.clone(),
        },
        expect: ExpectLimits {
            max_total: (c.max_expectations / n).max(64),
            ..ExpectLimits::default()
        },
        log_credentials: c.log_credentials,
        community_id_seed: c.community_id_seed,
        detect: detect_per_worker(&c.detect, n),
        live,
        sensor: c.sensor.as_deref().map(std::sync::Arc::from),
        fleet: c.fleet.clone(),
        writer_progress: None,
    }
}

/// A running engine: its workers, the queues that feed them and the channel its events leave by.
///
/// Feed it through [`Engine::ingest`] (one per capture thread; [`Ingest::finish`] on one of them
/// ends the input), write what [`Engine::take_events`] yields with [`crate::writer`], then
/// [`Engine::join`].
pub struct Engine {
    shared: Arc<Shared>,
    defrag: DefragLimits,
    senders: Vec<Sender<Batch>>,
    recycle: Receiver<Batch>,
    handles: Vec<JoinHandle<()>>,
    events_tx: Sender<Out>,
    events: Option<Receiver<Out>>,
}

impl Engine {
    /// Starts the workers; each takes the saved baselines of the hosts it owns. `live` adds the
    /// side channel a daemon reads (counter snapshots, heartbeats, configuration reloads).
    pub fn start(c: &EngineConfig, saved: &Saved, live: bool) -> Result<Engine> {
        let n = c.workers.max(1);
        let live = live.then(|| LiveShared {
            slots: (0..n)
                .map(|_| Mutex::new(WorkerTotals::default()))
                .collect(),
            detect: RwLock::new((0, detect_per_worker(&c.detect, n))),
            detect_gen: AtomicU64::new(0),
            save_gen: AtomicU64::new(0),
            beats: (0..n).map(|_| Beat::now()).collect(),
        });
        let pcaps = match &c.pcaps {
            Some(p) => {
                let budget =
                    crate::pcaps::DiskBudget::open(&p.dir, p.max_total).with_context(|| {
                        format!(
                            "evidence.dir: cannot use {} for session pcaps",
                            p.dir.display()
                        )
                    })?;
                Some((Arc::new(p.clone()), Arc::new(budget)))
            }
            None => None,
        };
        let replay = live.is_none();
        let mut shared = shared(c, n, live, pcaps);
        if replay {
            shared.writer_progress = Some(Arc::new(crate::writer::WriterProgress::new(n)));
        }
        if let Some((dir, max)) = &c.file_store {
            let store = crate::evidence::FileStore::open(dir, *max).with_context(|| {
                format!("evidence.store_files: cannot use {}/files", dir.display())
            })?;
            shared.app.hashes.store = Some(Arc::new(store));
        }
        let shared = Arc::new(shared);
        let (events_tx, events) = crossbeam_channel::bounded(n * 64);
        let (recycle_tx, recycle) = crossbeam_channel::bounded(n * (c.queue_batches + 4));
        let mut senders = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for id in 0..n {
            let (tx, rx) = crossbeam_channel::bounded(c.queue_batches);
            senders.push(tx);
            let mut w = Worker::new(id, shared.clone());
            w.restore(saved, |k| (host_shard(k.0, k.1) % n as u64) as usize == id);
            let (recycle, out) = (recycle_tx.clone(), events_tx.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("xw-worker-{id}"))
                    .spawn(move || w.run(rx, recycle, out))
                    .context("cannot start a worker thread")?,
            );
        }
        Ok(Engine {
            shared,
            defrag: c.defrag,
            senders,
            recycle,
            handles,
            events_tx,
            events: Some(events),
        })
    }

    /// Replay: where the writer tells the workers how far it got (give it to
    /// [`crate::writer::run_paced`]).
    pub fn writer_progress(&self) -> Option<Arc<crate::writer::WriterProgress>> {
        self.shared.writer_progress.clone()
    }

    /// Worker threads running.
    pub fn workers(&self) -> usize {
        self.senders.len()
    }

    /// What the workers share (the live side channel among it).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// A packet entry point: frames in, decoded, defragmented and sharded onto the workers.
    /// `Mode::Replay` waits for room in a full queue; `Mode::Live` drops (counted).
    pub fn ingest(&self, mode: Mode) -> Ingest {
        let d = Dispatcher::new(
            mode,
            self.shared.shard.clone(),
            self.senders.clone(),
            self.recycle.clone(),
        );
        let mut d = d;
        d.keep_frames(self.shared.pcaps.is_some());
        Ingest::new(d, self.defrag)
    }

    /// [`Engine::ingest`] for the capture interface `interfaces[index]`: the flows it starts
    /// carry the interface's name (`in_iface`).
    pub fn ingest_on(&self, mode: Mode, index: usize) -> Ingest {
        let mut i = self.ingest(mode);
        if index < self.shared.interfaces.len() {
            i.dispatcher.set_iface(index as u16 + 1);
        }
        i
    }

    /// The workers' events, for the writer (once).
    pub fn take_events(&mut self) -> Option<Receiver<Out>> {
        self.events.take()
    }

    /// Sends one record of the caller's own (the daemon's periodic stats) to the writer.
    pub fn send_record(&self, line: String) {
        let _ = self.events_tx.send(Out {
            worker: self.workers(),
            events: vec![((0, 0, 0), line)],
            watermark: (0, 0, 0),
            done: None,
        });
    }

    /// The workers' threads, looked at by a watchdog.
    pub fn threads(&self) -> &[JoinHandle<()>] {
        &self.handles
    }

    /// Live: every worker's latest counters (baselines left out).
    pub fn snapshot(&self) -> Vec<WorkerTotals> {
        let Some(live) = self.shared.live.as_ref() else {
            return Vec::new();
        };
        live.slots
            .iter()
            .filter_map(|s| {
                s.lock().ok().map(|t| WorkerTotals {
                    baselines: Vec::new(),
                    ..t.clone()
                })
            })
            .collect()
    }

    /// Live: new detection settings (whole-sensor figures), taken by every worker at its next batch.
    pub fn reload_detect(&self, generation: u64, d: &DetectConfig) {
        if let Some(live) = self.shared.live.as_ref() {
            if let Ok(mut g) = live.detect.write() {
                *g = (generation, detect_per_worker(d, self.workers()));
            }
            live.detect_gen.store(generation, Ordering::Release);
        }
    }

    /// Live: saves the baselines the workers handed over since the last call, and asks for fresh ones.
    pub fn save_baselines(&self, file: &BaselineFile) {
        let Some(live) = self.shared.live.as_ref() else {
            return;
        };
        if file.path.is_none() {
            return;
        }
        let mut all = Vec::new();
        for slot in &live.slots {
            if let Ok(mut s) = slot.lock() {
                all.extend(std::mem::take(&mut s.baselines));
            }
        }
        if !all.is_empty() {
            file.save_all(all);
        }
        live.save_gen.fetch_add(1, Ordering::AcqRel);
    }

    /// Waits for every worker (the input must have been finished). Returns how many had died.
    pub fn join(self) -> usize {
        drop(self.senders);
        drop(self.events_tx);
        self.handles
            .into_iter()
            .map(|h| h.join())
            .filter(|r| r.is_err())
            .count()
    }
}

/// The baseline state file, when baselines are kept: what it held at start, and where to save.
pub struct BaselineFile {
    pub path: Option<PathBuf>,
    pub window_secs: u64,
    pub saved: Saved,
}

impl BaselineFile {
    /// Reads `path` (a missing or unreadable file is a warning: learning starts afresh).
    pub fn load(path: Option<PathBuf>, window_secs: u64) -> BaselineFile {
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
