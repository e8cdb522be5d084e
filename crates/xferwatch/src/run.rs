//! `xferwatch run`: the live sensor, the daemon around an [`Engine`]. Capture threads (one or more per interface, joined in a
//! PACKET_FANOUT group) decode and shard packets by host onto bounded per-worker queues — never
//! blocking: a full queue drops the batch and counts it — the workers of replay keep flows, sessions
//! and detection, and a writer appends EVE lines to `[output] eve_path`. The main thread serves
//! signals (SIGTERM/SIGINT: stop, drain, every flow written, exit 0; SIGHUP: reopen the EVE file,
//! reload the allowlist and thresholds), metrics, periodic `stats` events and the systemd watchdog.

use crate::settings::Settings;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use xferwatch_capture::live::{self, CaptureReport, LiveConfig};
use xferwatch_capture::{Ingest, Mode};
use xferwatch_engine::health::{Beat, Verdict, STALL_AFTER};
use xferwatch_engine::stats::live_stats_line;
use xferwatch_engine::writer::{EveSink, Merged, OutputStatus};
use xferwatch_engine::{worker_count, Engine};

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
            handles.push((
                live::open(iface, &lc, group).map_err(anyhow::Error::msg)?,
                group,
            ));
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
    let mut sink = EveSink::open(&eve_path, s.output.buffer_max.0 as usize).map_err(|e| {
        anyhow::anyhow!(
            "output.eve_path: cannot open {} for appending ({e}); create the directory or choose another path",
            eve_path.display()
        )
    })?;
    crate::redis_out::attach_live(s, &mut sink)?;
    let mut baselines = s.baseline_file();
    if let Some(user) = s.service.user.as_deref().filter(|u| !u.is_empty()) {
        drop_privileges(user).map_err(anyhow::Error::msg)?;
    }

    let n = worker_count(s.engine.workers);
    let mut config = s.engine_config(n);
    config.interfaces = s.capture.interfaces.clone();
    // The daemon never waits for the fleet: it starts with its own state and connects (again)
    // in the background whenever Redis answers.
    config.fleet = s
        .fleet_config()
        .map(|cfg| xferwatch_engine::fleet::FleetSetup {
            cfg,
            connect_at_start: false,
        });
    let sensor = config.sensor.clone();
    // Heartbeats to the fleet (xferwatch fleet status), from their own thread: a Redis that is
    // away never holds up this loop.
    let heartbeat = s.fleet_config().map(crate::fleet_status::Beats::start);
    let mut last_beat = Instant::now();
    let mut engine = Engine::start(&config, &baselines.saved, true)?;
    let out_rx = engine.take_events().context("events already taken")?;
    let reopen = sink.reopen.clone();
    let output = sink.status.clone();
    let writer_beat = Arc::new(Beat::now());
    let writer = {
        let beat = writer_beat.clone();
        std::thread::Builder::new()
            .name("xw-writer".into())
            .spawn(move || {
                let r = xferwatch_engine::writer::run_live(out_rx, n, &mut sink, &beat);
                (r, sink)
            })?
    };

    let stop = Arc::new(AtomicBool::new(false));
    let reports: Arc<Vec<Mutex<CaptureReport>>> = Arc::new(
        handles
            .iter()
            .map(|(h, _)| {
                Mutex::new(CaptureReport {
                    interface: h.interface.clone(),
                    up: true,
                    ..Default::default()
                })
            })
            .collect(),
    );
    let capture_beats: Arc<Vec<Beat>> = Arc::new(handles.iter().map(|_| Beat::now()).collect());
    let mut capture_threads = Vec::new();
    for (i, (h, group)) in handles.into_iter().enumerate() {
        let index = s
            .capture
            .interfaces
            .iter()
            .position(|n| *n == h.interface)
            .unwrap_or(usize::MAX);
        let mut ingest = engine.ingest_on(Mode::Live, index);
        let (stop, reports, beats) = (stop.clone(), reports.clone(), capture_beats.clone());
        let (iface, lc) = (h.interface.clone(), lc.clone());
        capture_threads.push(
            std::thread::Builder::new()
                .name(format!("xw-capture-{i}"))
                .spawn(move || {
                    let reopen = || live::open(&iface, &lc, group);
                    live::capture_loop(h, &mut ingest, &stop, reopen, |r| {
                        beats[i].stamp();
                        if let Ok(mut slot) = reports[i].lock() {
                            *slot = r.clone();
                        }
                    });
                    ingest
                })?,
        );
    }

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
    let threads = Threads {
        workers: engine.threads(),
        worker_beats: engine
            .shared()
            .live
            .as_ref()
            .map_or(&[][..], |l| &l.beats[..]),
        writer: &writer,
        writer_beat: &writer_beat,
        captures: &capture_threads,
        capture_beats: &capture_beats,
        reports: &reports,
    };
    let mut last_verdict = Verdict {
        stalled: Vec::new(),
        any_capture_up: true,
    };
    let mut last_status = String::new();

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
                    engine.reload_detect(detect_gen, &new.detect_config());
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
        let verdict = threads.verdict();
        if verdict != last_verdict {
            if verdict.healthy() {
                tracing::warn!(
                    "every thread is making progress and capture is up again; the watchdog is fed"
                );
            } else {
                tracing::error!(
                    "{}; the systemd watchdog is no longer fed (the service will be restarted if it has WatchdogSec)",
                    verdict.describe()
                );
            }
            last_verdict = verdict.clone();
        }
        if let Some(d) = watchdog {
            if verdict.healthy() && last_dog.elapsed() >= d {
                crate::notify::notify("WATCHDOG=1");
                last_dog = Instant::now();
            }
        }
        if last_metrics.elapsed() >= Duration::from_secs(1) {
            last_metrics = Instant::now();
            let status = status_line(&settings, &verdict, &output);
            if status != last_status {
                crate::notify::notify(&format!("STATUS={status}"));
                last_status = status;
            }
            if settings.metrics.enabled {
                let (w, c) = (engine.snapshot(), reports_now(&reports));
                crate::metrics::publish(
                    &w,
                    &c,
                    &crate::metrics::Daemon {
                        output: &output,
                        stalled_threads: verdict.stalled.len(),
                    },
                );
            }
        }
        if let Some(hb) = heartbeat.as_ref() {
            if last_beat.elapsed() >= Duration::from_secs(1) {
                last_beat = Instant::now();
                hb.update(&engine.snapshot(), &reports_now(&reports));
            }
        }
        if last_stats.elapsed() >= stats_every {
            last_stats = Instant::now();
            let (w, c) = (engine.snapshot(), reports_now(&reports));
            engine.send_record(live_stats_line(&w, &c, &output, started, sensor.as_deref()));
            engine.save_baselines(&baselines);
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
    let dead = engine.join();
    if dead > 0 {
        tracing::error!("{dead} worker(s) had died; the flows of their shards were lost");
    }
    let (mut merged, mut sink) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
    let captures = reports_now(&reports);
    baselines.save(&mut merged.totals);
    let line = live_stats_line(
        &merged.totals,
        &captures,
        &output,
        started,
        sensor.as_deref(),
    );
    sink.write_line(&line);
    sink.finish(Duration::from_secs(10));
    if let Some(hb) = heartbeat {
        hb.finish(&merged.totals, &captures);
    }
    if settings.metrics.enabled {
        crate::metrics::publish(
            &merged.totals,
            &captures,
            &crate::metrics::Daemon {
                output: &output,
                stalled_threads: 0,
            },
        );
    }
    tracing::info!("stopped; {} events written", merged.events + 1);
    Ok(0)
}

/// The latest report of every capture thread.
fn reports_now(reports: &[Mutex<CaptureReport>]) -> Vec<CaptureReport> {
    reports
        .iter()
        .filter_map(|r| r.lock().ok().map(|r| r.clone()))
        .collect()
}

/// The daemon's long-lived threads and their heartbeats, looked at once a second.
struct Threads<'a> {
    workers: &'a [JoinHandle<()>],
    worker_beats: &'a [Beat],
    writer: &'a JoinHandle<(Merged, EveSink)>,
    writer_beat: &'a Beat,
    captures: &'a [JoinHandle<Ingest>],
    capture_beats: &'a [Beat],
    reports: &'a [Mutex<CaptureReport>],
}

impl Threads<'_> {
    fn verdict(&self) -> Verdict {
        let mut stalled = Vec::new();
        let mut look = |name: String, finished: bool, beat: Option<&Beat>| {
            if finished {
                stalled.push(format!("{name} (exited)"));
            } else if let Some(age) = beat.map(Beat::age).filter(|a| *a > STALL_AFTER) {
                stalled.push(format!("{name} (no progress for {} s)", age.as_secs()));
            }
        };
        for (i, w) in self.workers.iter().enumerate() {
            look(
                format!("xw-worker-{i}"),
                w.is_finished(),
                self.worker_beats.get(i),
            );
        }
        look(
            "xw-writer".into(),
            self.writer.is_finished(),
            Some(self.writer_beat),
        );
        for (i, c) in self.captures.iter().enumerate() {
            look(
                format!("xw-capture-{i}"),
                c.is_finished(),
                self.capture_beats.get(i),
            );
        }
        let any_capture_up = self
            .reports
            .iter()
            .any(|r| r.lock().map(|r| r.up).unwrap_or(false));
        Verdict {
            stalled,
            any_capture_up,
        }
    }
}

/// The one-line service status (`systemctl status`): healthy, or what is wrong.
fn status_line(s: &Settings, v: &Verdict, output: &OutputStatus) -> String {
    let mut problems = Vec::new();
    if !v.healthy() {
        problems.push(v.describe());
    }
    if !output.up.load(Ordering::Relaxed) {
        let err = output
            .last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        problems.push(format!(
            "EVE output failing ({err}): {} bytes held, {} events dropped",
            output.buffered.load(Ordering::Relaxed),
            output.dropped()
        ));
    }
    if problems.is_empty() {
        format!("capturing on {}", s.capture.interfaces.join(", "))
    } else {
        format!("DEGRADED: {}", problems.join("; "))
    }
}

/// Started as root with `[service] user` set: become that user, with no capability left, once the
/// capture handles, the metrics port and the EVE file are open.
#[allow(
    unsafe_code,
    reason = "getpwnam, setgroups, setgid, setuid and prctl have no safe wrapper in std"
)]
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
