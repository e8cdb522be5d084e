//! The Prometheus metrics of the live daemon: one catalogue (name, kind, help), and a publisher that
//! turns the workers' and capture threads' counters into metric values once a second. Nothing is
//! touched per packet. Labels come only from bounded sets: interface names from the configuration,
//! protocol names, signature ids, decode-error reasons, worker numbers — never addresses or ports.

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};
use metrics_exporter_prometheus::PrometheusHandle;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use xferwatch_capture::live::CaptureReport;
use xferwatch_engine::WorkerTotals;
use xferwatch_wire::DecodeError;

pub const SIGNATURE_IDS: [&str; 6] = [
    "1173001", "1173002", "1173003", "1173004", "1173005", "1173006",
];

/// Every metric: (name, counter?, unit, help).
pub const CATALOGUE: &[(&str, bool, Unit, &str)] = &[
    ("xferwatch_build_info", false, Unit::Count, "Always 1; the version label says which build runs."),
    ("xferwatch_capture_packets_total", true, Unit::Count, "Packets handed to the sensor by an interface (drops are counted apart)."),
    ("xferwatch_capture_bytes_total", true, Unit::Bytes, "Captured bytes handed to the sensor, per interface."),
    ("xferwatch_capture_drops_total", true, Unit::Count, "Packets lost, by where: kernel (socket buffer full), interface (driver), queue (a worker's queue stayed full for 250 ms), dead_worker (the worker's thread had ended)."),
    ("xferwatch_capture_queue_wait_seconds_total", true, Unit::Seconds, "Time capture threads waited for room in a full worker queue (packets meanwhile wait in the kernel ring), per interface."),
    ("xferwatch_decode_errors_total", true, Unit::Count, "Frames that produced no flow packet, by reason (layer.kind)."),
    ("xferwatch_flows_active", false, Unit::Count, "Flows in the flow tables now."),
    ("xferwatch_flows_ended_total", true, Unit::Count, "Flows ended and written, by app_proto (none: no payload)."),
    ("xferwatch_flows_evicted_total", true, Unit::Count, "Flows ended early because the flow table was full (limits.max_flows)."),
    ("xferwatch_outbound_payload_bytes_total", true, Unit::Bytes, "Payload sent by internal hosts to external hosts, by app_proto, counted while flows run (every 64 KiB of a flow once its protocol is known; the rest when it ends)."),
    ("xferwatch_alerts_total", true, Unit::Count, "Alerts raised, by signature id."),
    ("xferwatch_alerts_suppressed_total", true, Unit::Count, "Alerts an [[allow]] entry suppressed, by signature id."),
    ("xferwatch_alerts_aggregated_total", true, Unit::Count, "Mismatch alerts held back by aggregation (detect.mismatch.aggregate_window) and counted into their key's next alert, by signature id."),
    ("xferwatch_port_mismatches_total", true, Unit::Count, "Flows whose protocol and server port disagree, by app_proto."),
    ("xferwatch_reassembly_memory_bytes", false, Unit::Bytes, "Bytes held in TCP reassembly buffers now."),
    ("xferwatch_reassembly_gaps_total", true, Unit::Count, "Holes skipped in reassembled TCP streams."),
    ("xferwatch_reassembly_memcap_hits_total", true, Unit::Count, "Times the reassembly memory cap (limits.reassembly_memcap) was reached."),
    ("xferwatch_expectations_total", true, Unit::Count, "Announced connections (FTP data, TFTP transfers), by event: created, matched, expired, refused."),
    ("xferwatch_sessions_total", true, Unit::Count, "Transfer sessions started."),
    ("xferwatch_evidence_pcaps_total", true, Unit::Count, "Session pcaps started ([evidence] dir), one per alerted session."),
    ("xferwatch_evidence_pcap_bytes_total", true, Unit::Bytes, "Bytes written to session pcaps."),
    ("xferwatch_evidence_losses_total", true, Unit::Count, "Evidence not kept, by reason: ring_full (a packet not kept: [evidence] ring_memory), capped (a session pcap closed at max_bytes_per_session), removed (an old pcap removed to stay under max_total), disk_full (a packet not written: max_total reached by open files), refused (an alert got no pcap), error (a write failed), unwritable (a packet with no frame to write)."),
    ("xferwatch_files_stored_total", true, Unit::Count, "Whole files offered to the file store ([evidence] store_files), by result: stored, duplicate (already there), skipped (max_store reached, or an error)."),
    ("xferwatch_worker_queue_depth", false, Unit::Count, "Batches waiting in a worker's queue."),
    ("xferwatch_events_total", true, Unit::Count, "EVE events written by the workers, by event_type."),
    ("xferwatch_events_dropped_total", true, Unit::Count, "EVE events lost, by reason: buffer_full (the output failed and [output] buffer_max was reached), shutdown (still held when the daemon stopped), writer_gone (the writer thread had ended)."),
    ("xferwatch_output_up", false, Unit::Count, "1 while the EVE file is being written, 0 while writing fails (events are then held, up to [output] buffer_max)."),
    ("xferwatch_output_buffer_bytes", false, Unit::Bytes, "EVE bytes held in memory, not yet written."),
    ("xferwatch_output_write_errors_total", true, Unit::Count, "Failed attempts to write the EVE file."),
    ("xferwatch_output_reopens_total", true, Unit::Count, "Times the EVE file was reopened (SIGHUP, or its path was removed or replaced)."),
    ("xferwatch_worker_panics_total", true, Unit::Count, "Panics caught in a worker; the flow being handled is dropped and the worker goes on."),
    ("xferwatch_worker_panic_lost_flows_total", true, Unit::Count, "Flows dropped unwritten because of a contained panic."),
    ("xferwatch_threads_stalled", false, Unit::Count, "Capture, worker and writer threads that exited or made no progress for 10 s; above 0 the systemd watchdog is not fed."),
    ("xferwatch_capture_up", false, Unit::Count, "1 while the interface's capture handles are open and reading, 0 while it is lost and being reopened."),
    ("xferwatch_capture_reopens_total", true, Unit::Count, "Times a lost capture handle was opened again, per interface."),
    ("xferwatch_capture_last_packet_age_seconds", false, Unit::Seconds, "Seconds since the interface delivered its last packet (since start if none yet)."),
    ("xferwatch_log_messages_suppressed_total", true, Unit::Count, "Log messages held back by the rate limit (a few per minute per place in the code), by level."),
    ("xferwatch_metrics_listener_errors_total", true, Unit::Count, "Connections to this metrics listener that failed (malformed HTTP, peer gone, accept errors)."),
    // The process, as Prometheus' own process collector names it (metrics-process reads /proc at
    // every scrape).
    ("process_cpu_seconds_total", true, Unit::Seconds, "User and system CPU time used, in whole seconds."),
    ("process_resident_memory_bytes", false, Unit::Bytes, "Resident memory size."),
    ("process_virtual_memory_bytes", false, Unit::Bytes, "Virtual memory size."),
    ("process_virtual_memory_max_bytes", false, Unit::Bytes, "Virtual memory size allowed (RLIMIT_AS); absent when unlimited."),
    ("process_open_fds", false, Unit::Count, "Open file descriptors."),
    ("process_max_fds", false, Unit::Count, "Open file descriptors allowed (RLIMIT_NOFILE)."),
    ("process_start_time_seconds", false, Unit::Seconds, "When the process started, in seconds since the Unix epoch."),
    ("process_threads", false, Unit::Count, "Threads in the process."),
    // [output.redis]: EVE events to Redis too (absent when it is not enabled).
    ("xferwatch_redis_events_sent_total", true, Unit::Count, "EVE events Redis acknowledged ([output.redis])."),
    ("xferwatch_redis_events_spooled_total", true, Unit::Count, "EVE events written to the spool because Redis could not take them (they are sent later, in order)."),
    ("xferwatch_redis_spool_bytes", false, Unit::Bytes, "Bytes waiting in the Redis spool now (at most [output.redis] spool_max)."),
    ("xferwatch_redis_events_dropped_total", true, Unit::Count, "EVE events not sent to Redis: the spool was full (or could not be written)."),
    ("xferwatch_redis_output_up", false, Unit::Count, "1 while Redis takes the events, 0 while it is unreachable (events go to the spool)."),
    ("xferwatch_fleet_up", false, Unit::Count, "1 while every worker reaches the fleet's Redis ([fleet]); 0 while detection runs on this sensor's own state."),
    ("xferwatch_fleet_round_trips_total", true, Unit::Count, "Pipelined round trips to the fleet's Redis (one script call per host in each)."),
    ("xferwatch_fleet_updates_total", true, Unit::Count, "Per-host updates sent to the fleet (roll-up, pair roll-up, baseline)."),
    ("xferwatch_fleet_errors_total", true, Unit::Count, "Round trips to the fleet's Redis that failed (their updates are sent again)."),
    ("xferwatch_fleet_updates_pending", false, Unit::Count, "Updates waiting for the fleet's Redis now."),
    ("xferwatch_fleet_updates_dropped_total", true, Unit::Count, "Updates lost: the waiting queue was full (262144 per worker) while Redis was away."),
    ("xferwatch_fleet_local_alerts_total", true, Unit::Count, "Fleet signatures (1173004-1173006) raised from this sensor's own state while Redis was away."),
    ("xferwatch_fleet_reconnects_total", true, Unit::Count, "Times a worker's link to the fleet's Redis came back."),
];

/// What the daemon itself knows, beside the threads' counters.
pub struct Daemon<'a> {
    pub output: &'a xferwatch_engine::writer::OutputStatus,
    pub stalled_threads: usize,
}

/// Starts the metrics endpoint on `listen`, reachable from `allow` only (everyone when empty):
/// `GET /metrics` in the Prometheus text format, 404 on any other path. Binding first makes
/// "address in use" a clear startup error. Returns the address bound (its port chosen by the
/// system when `listen` gives port 0). Installs the process's metrics recorder: once per process.
pub fn install(listen: SocketAddr, allow: &[ipnet::IpNet]) -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind(listen).map_err(|e| {
        format!("metrics.listen: cannot listen on {listen} ({e}); choose a free address:port or set [metrics] enabled = false")
    })?;
    let bound = listener.local_addr().unwrap_or(listen);
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("metrics.listen: cannot start the exporter on {listen}: {e}"))?;
    // Described below with the rest of the catalogue.
    let process = metrics_process::Collector::default();
    process.collect();
    let allow = allow.to_vec();
    std::thread::Builder::new()
        .name("xw-metrics".into())
        .spawn(move || serve(&listener, &handle, &allow, &process))
        .map_err(|e| format!("metrics.listen: cannot start the listener thread: {e}"))?;
    for (name, is_counter, unit, help) in CATALOGUE {
        if *is_counter {
            describe_counter!(*name, *unit, *help);
        } else {
            describe_gauge!(*name, *unit, *help);
        }
    }
    gauge!("xferwatch_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // Series with bounded labels exist from the start, at zero, so rates work from the first scrape.
    for sid in SIGNATURE_IDS {
        counter!("xferwatch_alerts_total", "signature_id" => sid).absolute(0);
        counter!("xferwatch_alerts_suppressed_total", "signature_id" => sid).absolute(0);
        counter!("xferwatch_alerts_aggregated_total", "signature_id" => sid).absolute(0);
    }
    for event in ["created", "matched", "expired", "refused"] {
        counter!("xferwatch_expectations_total", "event" => event).absolute(0);
    }
    for reason in ["buffer_full", "shutdown", "writer_gone"] {
        counter!("xferwatch_events_dropped_total", "reason" => reason).absolute(0);
    }
    std::sync::LazyLock::force(&STARTED_US);
    for level in ["error", "warn", "info"] {
        counter!("xferwatch_log_messages_suppressed_total", "level" => level).increment(0);
    }
    counter!("xferwatch_metrics_listener_errors_total").increment(0);
    Ok(bound)
}

/// The path scraped; every other one is 404.
pub const METRICS_PATH: &str = "/metrics";
/// Connections served at once; more are closed at once (and counted as listener errors).
const MAX_CONNECTIONS: usize = 8;
/// Longest request head read (request line and headers).
const MAX_REQUEST: usize = 8192;
/// Time a client has to send its request, and to take the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn serve(
    listener: &TcpListener,
    handle: &PrometheusHandle,
    allow: &[ipnet::IpNet],
    process: &metrics_process::Collector,
) {
    let busy = Arc::new(AtomicUsize::new(0));
    let process = Arc::new(process.clone());
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                listener_error(None, &format!("accept: {e}"));
                // EMFILE and the like: do not spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let peer = stream.peer_addr().ok();
        let allowed =
            allow.is_empty() || peer.is_some_and(|p| allow.iter().any(|n| n.contains(&p.ip())));
        if busy.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            listener_error(peer, "too many connections at once; closed");
            continue;
        }
        busy.fetch_add(1, Ordering::Relaxed);
        let (handle, process, busy2) = (handle.clone(), process.clone(), busy.clone());
        let spawned = std::thread::Builder::new()
            .name("xw-metrics-conn".into())
            .spawn(move || {
                if let Err(e) = answer(stream, allowed, &handle, &process) {
                    listener_error(peer, &e);
                }
                busy2.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            busy.fetch_sub(1, Ordering::Relaxed);
            listener_error(peer, &format!("cannot start a thread: {e}"));
        }
    }
}

/// One failed or malformed connection: counted, and logged (the log's rate limit keeps a flood of
/// them to a few lines a minute).
fn listener_error(peer: Option<SocketAddr>, what: &str) {
    counter!("xferwatch_metrics_listener_errors_total").increment(1);
    match peer {
        Some(p) => tracing::warn!("metrics listener: Error serving connection from {p}: {what}"),
        None => tracing::warn!("metrics listener: Error serving connection: {what}"),
    }
}

/// Reads one request and answers it; the connection is then closed. An error is a connection
/// that failed or did not speak HTTP (it was answered 400 when it could be).
fn answer(
    mut s: TcpStream,
    allowed: bool,
    handle: &PrometheusHandle,
    process: &metrics_process::Collector,
) -> Result<(), String> {
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() >= MAX_REQUEST {
            let _ = respond(&mut s, 431, "Request Header Fields Too Large", "", b"");
            return Err(format!("request head over {MAX_REQUEST} bytes"));
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("connection closed before a whole request".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the request: {e}")),
        }
    };
    let line = buf[..head_end]
        .split(|b| *b == b'\n')
        .next()
        .unwrap_or_default();
    let Some((method, path)) = request_line(line) else {
        let _ = respond(&mut s, 400, "Bad Request", "", b"");
        return Err("not an HTTP request".into());
    };
    let w = if !allowed {
        respond(&mut s, 403, "Forbidden", "", b"")
    } else if method != "GET" && method != "HEAD" {
        respond(
            &mut s,
            405,
            "Method Not Allowed",
            "Allow: GET, HEAD\r\n",
            b"",
        )
    } else if path != METRICS_PATH {
        respond(
            &mut s,
            404,
            "Not Found",
            "",
            b"not found; the metrics are at /metrics\n",
        )
    } else {
        process.collect();
        handle.run_upkeep();
        let body = handle.render();
        let ctype = "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n";
        if method == "HEAD" {
            let head = format!(
                "HTTP/1.1 200 OK\r\n{ctype}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).and_then(|()| s.flush())
        } else {
            respond(&mut s, 200, "OK", ctype, body.as_bytes())
        }
    };
    w.map_err(|e| format!("writing the answer: {e}"))
}

/// The method and the path (without its query) of an HTTP/1.x request line; None when it is not
/// one.
pub fn request_line(line: &[u8]) -> Option<(&str, &str)> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let ok = parts.next().is_none()
        && !method.is_empty()
        && method.bytes().all(|b| b.is_ascii_uppercase())
        && target.starts_with('/')
        && (version == "HTTP/1.1" || version == "HTTP/1.0");
    ok.then(|| (method, target.split('?').next().unwrap_or(target)))
}

fn respond(
    s: &mut TcpStream,
    code: u16,
    reason: &str,
    headers: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    s.flush()
}

/// When the process started (wall clock), for the age of an interface that never saw a packet.
static STARTED_US: std::sync::LazyLock<i64> =
    std::sync::LazyLock::new(xferwatch_capture::live::wall_us);

/// Sets every metric from the latest counters.
pub fn publish(workers: &[WorkerTotals], captures: &[CaptureReport], daemon: &Daemon) {
    // Capture side, per interface (several threads may share one).
    // Per interface: packets, bytes, kernel, interface and queue drops, queue waits (µs).
    let mut by_iface: std::collections::BTreeMap<&str, (u64, u64, u64, u64, u64, u64)> =
        Default::default();
    // Per interface: all its handles up, reopens, newest packet time.
    let mut liveness: std::collections::BTreeMap<&str, (bool, u64, i64, u64)> = Default::default();
    let mut decode = [0u64; DecodeError::ALL.len()];
    for c in captures {
        let e = by_iface.entry(c.interface.as_str()).or_default();
        e.0 += c.ingest.frames;
        e.1 += c.bytes;
        e.2 += c.pcap.kernel_drops;
        e.3 += c.pcap.interface_drops;
        e.4 += c.queue_drops_packets;
        e.5 += c.queue_wait_us;
        let l = liveness
            .entry(c.interface.as_str())
            .or_insert((true, 0, 0, 0));
        l.0 &= c.up;
        l.1 += c.reopens;
        l.2 = l.2.max(c.last_packet_us);
        l.3 += c.dead_worker_packets;
        for (i, v) in c.ingest.decode.iter().enumerate() {
            decode[i] += v;
        }
    }
    for (iface, (pkts, bytes, kdrop, idrop, qdrop, wait_us)) in by_iface {
        let iface = iface.to_string();
        counter!("xferwatch_capture_packets_total", "interface" => iface.clone()).absolute(pkts);
        counter!("xferwatch_capture_bytes_total", "interface" => iface.clone()).absolute(bytes);
        for (place, v) in [("kernel", kdrop), ("interface", idrop), ("queue", qdrop)] {
            counter!("xferwatch_capture_drops_total", "interface" => iface.clone(), "where" => place)
                .absolute(v);
        }
        counter!("xferwatch_capture_queue_wait_seconds_total", "interface" => iface)
            .absolute(wait_us / 1_000_000);
    }
    let now_us = xferwatch_capture::live::wall_us();
    for (iface, (up, reopens, last_us, dead_worker)) in liveness {
        let iface = iface.to_string();
        counter!("xferwatch_capture_drops_total", "interface" => iface.clone(), "where" => "dead_worker")
            .absolute(dead_worker);
        gauge!("xferwatch_capture_up", "interface" => iface.clone()).set(if up {
            1.0
        } else {
            0.0
        });
        counter!("xferwatch_capture_reopens_total", "interface" => iface.clone()).absolute(reopens);
        let since = if last_us > 0 { last_us } else { *STARTED_US };
        gauge!("xferwatch_capture_last_packet_age_seconds", "interface" => iface)
            .set((now_us - since).max(0) as f64 / 1e6);
    }
    for e in DecodeError::ALL {
        counter!("xferwatch_decode_errors_total", "reason" => e.reason())
            .absolute(decode[e.index()]);
    }
    // Worker side.
    let mut t = WorkerTotals::default();
    for (i, w) in workers.iter().enumerate() {
        gauge!("xferwatch_worker_queue_depth", "worker" => i.to_string()).set(w.queue_depth as f64);
        t.merge(w);
    }
    gauge!("xferwatch_flows_active").set(t.table.active as f64);
    counter!("xferwatch_flows_evicted_total").absolute(t.table.ended_evicted);
    for (k, v) in &t.flows_by_app_proto {
        counter!("xferwatch_flows_ended_total", "app_proto" => *k).absolute(*v);
    }
    for (k, v) in &t.outbound_by_app_proto {
        counter!("xferwatch_outbound_payload_bytes_total", "app_proto" => *k).absolute(*v);
    }
    for (k, v) in &t.mismatch_by_app_proto {
        counter!("xferwatch_port_mismatches_total", "app_proto" => *k).absolute(*v);
    }
    for (i, sid) in SIGNATURE_IDS.iter().enumerate() {
        counter!("xferwatch_alerts_total", "signature_id" => *sid).absolute(t.detect.alerts[i]);
        counter!("xferwatch_alerts_suppressed_total", "signature_id" => *sid)
            .absolute(t.detect.suppressed[i]);
        counter!("xferwatch_alerts_aggregated_total", "signature_id" => *sid)
            .absolute(t.detect.aggregated[i]);
    }
    gauge!("xferwatch_reassembly_memory_bytes").set(t.reassembly_memory as f64);
    counter!("xferwatch_reassembly_gaps_total").absolute(t.app.reassembly_gaps);
    counter!("xferwatch_reassembly_memcap_hits_total").absolute(t.app.reassembly_memcap_hits);
    for (event, v) in [
        ("created", t.expect.created),
        ("matched", t.expect.matched),
        ("expired", t.expect.expired),
        ("refused", t.expect.refused),
    ] {
        counter!("xferwatch_expectations_total", "event" => event).absolute(v);
    }
    counter!("xferwatch_sessions_total").absolute(t.sessions.created);
    let fl = &t.fleet;
    if fl.workers > 0 {
        gauge!("xferwatch_fleet_up").set(if fl.up == fl.workers { 1.0 } else { 0.0 });
        counter!("xferwatch_fleet_round_trips_total").absolute(fl.round_trips);
        counter!("xferwatch_fleet_updates_total").absolute(fl.ops);
        counter!("xferwatch_fleet_errors_total").absolute(fl.errors);
        gauge!("xferwatch_fleet_updates_pending").set(fl.pending as f64);
        counter!("xferwatch_fleet_updates_dropped_total").absolute(fl.ops_dropped);
        counter!("xferwatch_fleet_local_alerts_total").absolute(fl.local_alerts);
        counter!("xferwatch_fleet_reconnects_total").absolute(fl.reconnects);
    }
    let p = &t.pcaps;
    counter!("xferwatch_evidence_pcaps_total").absolute(p.files);
    counter!("xferwatch_evidence_pcap_bytes_total").absolute(p.bytes);
    for (reason, v) in [
        ("ring_full", p.ring_full),
        ("capped", p.capped),
        ("removed", p.removed),
        ("disk_full", p.disk_full),
        ("refused", p.refused),
        ("error", p.errors),
        ("unwritable", p.unwritable),
    ] {
        counter!("xferwatch_evidence_losses_total", "reason" => reason).absolute(v);
    }
    for (result, v) in [
        ("stored", t.store[0]),
        ("duplicate", t.store[1]),
        ("skipped", t.store[2]),
    ] {
        counter!("xferwatch_files_stored_total", "result" => result).absolute(v);
    }
    // Flow records are written by the workers too.
    let flows: u64 = t.flows_by_app_proto.values().sum();
    counter!("xferwatch_events_total", "event_type" => "flow").absolute(flows);
    for (k, v) in &t.events_by_type {
        counter!("xferwatch_events_total", "event_type" => *k).absolute(*v);
    }
    let alerts: u64 = t.detect.alerts.iter().sum();
    counter!("xferwatch_events_total", "event_type" => "alert").absolute(alerts);
    // Health: the output, contained panics, threads.
    use std::sync::atomic::Ordering::Relaxed;
    let o = daemon.output;
    for (reason, v) in [
        ("buffer_full", o.dropped_buffer_full.load(Relaxed)),
        ("shutdown", o.dropped_shutdown.load(Relaxed)),
        ("writer_gone", t.health.writer_gone_events),
    ] {
        counter!("xferwatch_events_dropped_total", "reason" => reason).absolute(v);
    }
    gauge!("xferwatch_output_up").set(if o.up.load(Relaxed) { 1.0 } else { 0.0 });
    gauge!("xferwatch_output_buffer_bytes").set(o.buffered.load(Relaxed) as f64);
    counter!("xferwatch_output_write_errors_total").absolute(o.write_errors.load(Relaxed));
    counter!("xferwatch_output_reopens_total").absolute(o.reopens.load(Relaxed));
    if let Some(r) = o.redis.get() {
        publish_redis(&r.stats());
    }
    counter!("xferwatch_worker_panics_total").absolute(t.health.panics);
    counter!("xferwatch_worker_panic_lost_flows_total").absolute(t.health.panic_lost_flows);
    gauge!("xferwatch_threads_stalled").set(daemon.stalled_threads as f64);
}

/// The Redis output's counters ([`xferwatch_fleet::RedisStats`]).
pub fn publish_redis(st: &xferwatch_fleet::RedisStats) {
    counter!("xferwatch_redis_events_sent_total").absolute(st.sent);
    counter!("xferwatch_redis_events_spooled_total").absolute(st.spooled);
    gauge!("xferwatch_redis_spool_bytes").set(st.spool_bytes as f64);
    counter!("xferwatch_redis_events_dropped_total").absolute(st.dropped);
    gauge!("xferwatch_redis_output_up").set(if st.up { 1.0 } else { 0.0 });
}

#[cfg(test)]
mod tests {
    use super::request_line;

    #[test]
    fn request_lines() {
        assert_eq!(
            request_line(b"GET /metrics HTTP/1.1\r"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(
            request_line(b"HEAD /metrics?a=b HTTP/1.0"),
            Some(("HEAD", "/metrics"))
        );
        assert_eq!(
            request_line(b"GET /other HTTP/1.1"),
            Some(("GET", "/other"))
        );
        for bad in [
            &b"NOT HTTP AT ALL \x01\x02\r"[..],
            b"GET /metrics",
            b"GET metrics HTTP/1.1",
            b"get /metrics HTTP/1.1",
            b"GET /metrics HTTP/2",
            b"GET  /metrics HTTP/1.1",
            b"",
            b"\xff\xfe",
        ] {
            assert_eq!(request_line(bad), None, "{bad:?}");
        }
    }
}
