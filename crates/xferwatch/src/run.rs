//! `xferwatch run`: the live sensor. Capture threads (one or more per interface, joined in a
//! PACKET_FANOUT group) decode and shard packets by host onto bounded per-worker queues — never
//! blocking: a full queue drops the batch and counts it — the workers of replay keep flows, sessions
//! and detection, and a writer appends EVE lines to `[output] eve_path`. The main thread serves
//! signals (SIGTERM/SIGINT: stop, drain, every flow written, exit 0; SIGHUP: reopen the EVE file,
//! reload the allowlist and thresholds), metrics, periodic `stats` events and the systemd watchdog.

use crate::pipeline::{self, worker_count, BaselineFile};
use crate::replay::stats_record;
use crate::settings::Settings;
use crate::worker::{LiveShared, Out, Shared, WorkerTotals};
use crate::writer::EveSink;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use xferwatch_capture::live::{self, CaptureReport, LiveConfig};
use xferwatch_capture::{DefragStats, Dispatcher, Ingest, IngestStats, Mode};
use xferwatch_events::write_stats;

pub fn run(s: &Settings, config_path: &Path) -> Result<u8> {
    let started = Instant::now();
    if s.capture.interfaces.is_empty() {
        bail!("capture.interfaces: empty; name the interface(s) to capture on, e.g. [\"eth1\"]");
    }
    // Everything that needs privileges or can fail at startup comes first, each with one clear line.
    let lc = LiveConfig {
        snaplen: s.capture.snaplen,
        promisc: s.capture.promisc,
        buffer_size: s.capture.buffer_size.0 as usize,
        bpf: s.capture.bpf.clone(),
        immediate: s.capture.immediate,
        timeout_ms: s.capture.timeout_ms,
    };
    let threads = s.capture.threads_per_interface.max(1);
    let mut handles = Vec::new();
    for (i, iface) in s.capture.interfaces.iter().enumerate() {
        let group =
            (threads > 1).then(|| (std::process::id() as u16) ^ (i as u16).wrapping_mul(0x9e37));
        for _ in 0..threads {
            handles.push(live::open(iface, &lc, group).map_err(anyhow::Error::msg)?);
        }
    }
    if s.metrics.enabled {
        let addr = s.metrics.listen.parse().map_err(|_| {
            anyhow::anyhow!(
                "metrics.listen: {:?} is not an address:port",
                s.metrics.listen
            )
        })?;
        crate::metrics::install(addr, &s.metrics.allow).map_err(anyhow::Error::msg)?;
    }
    let eve_path = PathBuf::from(&s.output.eve_path);
    let mut sink = EveSink::open(&eve_path).map_err(|e| {
        anyhow::anyhow!(
            "output.eve_path: cannot open {} for appending ({e}); create the directory or choose another path",
            eve_path.display()
        )
    })?;
    let mut baselines = BaselineFile::load(s);
    if let Some(user) = s.service.user.as_deref().filter(|u| !u.is_empty()) {
        drop_privileges(user).map_err(anyhow::Error::msg)?;
    }

    let n = worker_count(s.engine.workers);
    let live_shared = LiveShared {
        slots: (0..n)
            .map(|_| Mutex::new(WorkerTotals::default()))
            .collect(),
        detect: RwLock::new((0, s.detect_config(n))),
        detect_gen: AtomicU64::new(0),
        save_gen: AtomicU64::new(0),
    };
    let shared = Arc::new(pipeline::shared(s, n, Some(live_shared)));
    let (out_tx, out_rx) = crossbeam_channel::bounded::<Out>(n * 64);
    let workers = pipeline::spawn_workers(s, &shared, n, &baselines.saved, &out_tx)?;
    baselines.saved = Vec::new();
    let reopen = sink.reopen.clone();
    let writer = std::thread::Builder::new()
        .name("xw-writer".into())
        .spawn(move || {
            let r = crate::writer::run_live(out_rx, n, &mut sink);
            (r, sink)
        })?;

    let stop = Arc::new(AtomicBool::new(false));
    let reports: Arc<Vec<Mutex<CaptureReport>>> = Arc::new(
        handles
            .iter()
            .map(|h| {
                Mutex::new(CaptureReport {
                    interface: h.interface.clone(),
                    ..Default::default()
                })
            })
            .collect(),
    );
    let limits = pipeline::defrag_limits(s);
    let mut capture_threads = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        let dispatcher = Dispatcher::new(
            Mode::Live,
            shared.shard.clone(),
            workers.senders.clone(),
            workers.recycle.clone(),
        );
        let (stop, reports) = (stop.clone(), reports.clone());
        capture_threads.push(
            std::thread::Builder::new()
                .name(format!("xw-capture-{i}"))
                .spawn(move || {
                    let mut ingest = Ingest::new(dispatcher, limits);
                    live::capture_loop(h, &mut ingest, &stop, |r| {
                        if let Ok(mut slot) = reports[i].lock() {
                            *slot = r.clone();
                        }
                    });
                    ingest
                })?,
        );
    }
    let worker_threads = workers.handles;
    drop(workers.senders);

    // Signals: the handlers only set flags; this thread acts on them.
    let term = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
    tracing::info!(
        "capturing on {} with {} capture thread(s) and {n} worker(s); EVE to {}",
        s.capture.interfaces.join(", "),
        reports.len(),
        eve_path.display()
    );
    crate::notify::notify("READY=1");
    let watchdog = crate::notify::watchdog_interval();

    let stats_every = Duration::from_secs(s.output.stats_interval.0.max(1));
    let (mut last_metrics, mut last_stats, mut last_dog) =
        (Instant::now(), Instant::now(), Instant::now());
    let mut detect_gen = 0u64;
    let mut settings = s.clone();
    while !term.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if hup.swap(false, Ordering::AcqRel) {
            reopen.store(true, Ordering::Release);
            match Settings::load(Some(config_path)) {
                Ok(new) => {
                    detect_gen += 1;
                    if let Some(live) = shared.live.as_ref() {
                        if let Ok(mut g) = live.detect.write() {
                            *g = (detect_gen, new.detect_config(n));
                        }
                        live.detect_gen.store(detect_gen, Ordering::Release);
                    }
                    tracing::info!(
                        "SIGHUP: EVE file reopened; {} allow entries and the thresholds reloaded from {}",
                        new.allow.len(),
                        config_path.display()
                    );
                    baselines.window_secs = new.detect.baseline.window.0;
                    settings = new;
                }
                Err(e) => tracing::warn!(
                    "SIGHUP: EVE file reopened; configuration not reloaded ({e:#}); the running one stays"
                ),
            }
        }
        if let Some(d) = watchdog {
            if last_dog.elapsed() >= d {
                crate::notify::notify("WATCHDOG=1");
                last_dog = Instant::now();
            }
        }
        if last_metrics.elapsed() >= Duration::from_secs(1) {
            last_metrics = Instant::now();
            if settings.metrics.enabled {
                let (w, c) = snapshot(&shared, &reports);
                crate::metrics::publish(&w, &c);
            }
        }
        if last_stats.elapsed() >= stats_every {
            last_stats = Instant::now();
            let (w, c) = snapshot(&shared, &reports);
            let line = stats_line(&w, &c, started);
            let _ = out_tx.send(Out {
                worker: n,
                events: vec![((0, 0, 0), line)],
                watermark: (0, 0, 0),
                done: None,
            });
            save_baselines(&shared, &baselines);
        }
    }

    // Shutdown: stop capturing, let every queue drain, end every flow, write, exit 0.
    tracing::info!("stopping: draining the queues and writing every open flow");
    crate::notify::notify("STOPPING=1");
    stop.store(true, Ordering::Release);
    let mut ingests = Vec::new();
    for t in capture_threads {
        match t.join() {
            Ok(i) => ingests.push(i),
            Err(_) => tracing::error!("a capture thread panicked"),
        }
    }
    if let Some(first) = ingests.first_mut() {
        first.finish();
    }
    for w in worker_threads {
        let _ = w.join();
    }
    drop(out_tx);
    let (merged, mut sink) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
    let mut merged = merged?;
    let captures: Vec<CaptureReport> = reports
        .iter()
        .filter_map(|r| r.lock().ok().map(|r| r.clone()))
        .collect();
    baselines.save(&mut merged.totals);
    let line = stats_line(&merged.totals, &captures, started);
    sink.write_line(&line)?;
    sink.flush()?;
    if settings.metrics.enabled {
        crate::metrics::publish(&merged.totals, &captures);
    }
    tracing::info!("stopped; {} events written", merged.events + 1);
    Ok(0)
}

/// The latest counters of every worker and capture thread.
fn snapshot(
    shared: &Shared,
    reports: &[Mutex<CaptureReport>],
) -> (Vec<WorkerTotals>, Vec<CaptureReport>) {
    let workers = shared
        .live
        .as_ref()
        .map(|l| {
            l.slots
                .iter()
                .filter_map(|s| {
                    s.lock().ok().map(|t| WorkerTotals {
                        baselines: Vec::new(),
                        ..t.clone()
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let captures = reports
        .iter()
        .filter_map(|r| r.lock().ok().map(|r| r.clone()))
        .collect();
    (workers, captures)
}

fn stats_line(workers: &[WorkerTotals], captures: &[CaptureReport], started: Instant) -> String {
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
        live::wall_us(),
        started.elapsed().as_secs() as i64,
    );
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
    let mut line = String::new();
    write_stats(&mut line, &rec);
    line
}

/// Asks the workers for their baselines and saves what they handed over last time.
fn save_baselines(shared: &Shared, file: &BaselineFile) {
    let Some(live) = shared.live.as_ref() else {
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

/// Started as root with `[service] user` set: become that user, with no capability left, once the
/// capture handles, the metrics port and the EVE file are open.
#[allow(unsafe_code)]
fn drop_privileges(user: &str) -> Result<(), String> {
    // SAFETY: plain libc calls on values owned here; getpwnam's result is read before any other
    // call that could overwrite its static buffer.
    unsafe {
        if libc::geteuid() != 0 {
            tracing::info!("service.user = {user:?}: not started as root, staying as started");
            return Ok(());
        }
        let name = std::ffi::CString::new(user)
            .map_err(|_| format!("service.user: {user:?} is not a valid user name"))?;
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return Err(format!(
                "service.user: no such user {user:?}; create it (useradd --system {user}) or unset it"
            ));
        }
        let (uid, gid) = ((*pw).pw_uid, (*pw).pw_gid);
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            return Err(format!(
                "service.user: cannot switch to {user:?}: {}",
                std::io::Error::last_os_error()
            ));
        }
        if libc::setuid(0) == 0 {
            return Err("service.user: privileges could be regained after the switch".into());
        }
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("CapEff:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        })
        .unwrap_or_default();
    tracing::info!("running as {user}, effective capabilities {caps}");
    Ok(())
}
