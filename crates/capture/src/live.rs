//! Live capture through libpcap: opening handles (with a clear one-line error for what goes wrong),
//! joining several handles on one interface in a PACKET_FANOUT hash group (Linux), and the capture
//! loop that feeds an [`Ingest`]. Live capture never blocks on the workers: a full queue drops the
//! batch (counted by the dispatcher).

use crate::ingest::Ingest;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use xferwatch_wire::LinkType;

#[derive(Clone, Debug)]
pub struct LiveConfig {
    pub snaplen: u32,
    pub promisc: bool,
    pub buffer_size: usize,
    pub bpf: String,
    pub immediate: bool,
    pub timeout_ms: u32,
}

/// An open, active capture handle and what it captures.
pub struct LiveHandle {
    pub interface: String,
    pub cap: pcap::Capture<pcap::Active>,
    pub link: LinkType,
}

/// Opens `interface`; with `fanout` set, joins that PACKET_FANOUT group (flow-hash balanced, IP
/// fragments kept together). The error is one line saying what and how to fix it.
pub fn open(interface: &str, cfg: &LiveConfig, fanout: Option<u16>) -> Result<LiveHandle, String> {
    let inactive = pcap::Capture::from_device(interface)
        .map_err(|e| format!("capture.interfaces: {interface}: {e}"))?;
    let cap = inactive
        .promisc(cfg.promisc)
        .snaplen(cfg.snaplen.clamp(64, 262_144) as i32)
        .buffer_size(cfg.buffer_size.min(i32::MAX as usize) as i32)
        .immediate_mode(cfg.immediate)
        .timeout(cfg.timeout_ms.clamp(1, 10_000) as i32)
        .open()
        .map_err(|e| explain_open_error(interface, &e.to_string()))?;
    // Non-blocking, waited on with poll(2): a blocking read may not return until a packet comes,
    // and the capture thread must notice a stop request on an idle link.
    let mut cap = cap.setnonblock().map_err(|e| {
        format!("capture.interfaces: {interface}: cannot set non-blocking mode: {e}")
    })?;
    if !cfg.bpf.trim().is_empty() {
        cap.filter(&cfg.bpf, true).map_err(|e| {
            format!(
                "capture.bpf: {:?} does not compile on {interface}: {e}",
                cfg.bpf
            )
        })?;
    }
    let dlt = cap.get_datalink().0;
    let link = LinkType::from_dlt(dlt);
    if let LinkType::Unsupported(_) = link {
        return Err(format!(
            "capture.interfaces: {interface}: link type {dlt} is not supported (use an Ethernet, raw IP or cooked interface)"
        ));
    }
    if let Some(group) = fanout {
        join_fanout(&cap, group).map_err(|e| {
            format!("capture.threads_per_interface: {interface}: cannot join a PACKET_FANOUT group ({e}); set threads_per_interface = 1")
        })?;
    }
    Ok(LiveHandle {
        interface: interface.to_string(),
        cap,
        link,
    })
}

fn explain_open_error(interface: &str, e: &str) -> String {
    let l = e.to_ascii_lowercase();
    if l.contains("no such device") || l.contains("doesn't exist") || l.contains("no such") {
        format!(
            "capture.interfaces: {interface}: no such interface ({e}); `ip link` lists the names"
        )
    } else if l.contains("permission") || l.contains("not permitted") {
        format!(
            "capture.interfaces: {interface}: permission denied ({e}); run as root or grant CAP_NET_RAW (and CAP_NET_ADMIN), e.g. through the systemd unit"
        )
    } else if l.contains("not up") {
        format!("capture.interfaces: {interface}: the interface is down ({e}); `ip link set {interface} up`")
    } else {
        format!("capture.interfaces: {interface}: cannot capture: {e}")
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn join_fanout(cap: &pcap::Capture<pcap::Active>, group: u16) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let fd = cap.as_raw_fd();
    let mode: u32 = libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG;
    let arg: u32 = group as u32 | (mode << 16);
    // SAFETY: a valid socket descriptor owned by `cap`, and a pointer to a live u32 of the size given.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            &arg as *const u32 as *const libc::c_void,
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

#[cfg(not(target_os = "linux"))]
fn join_fanout(_cap: &pcap::Capture<pcap::Active>, _group: u16) -> Result<(), String> {
    Err("PACKET_FANOUT is Linux only".into())
}

/// Waits until the handle has packets, or `max` passed.
#[allow(unsafe_code)]
fn wait_readable(cap: &pcap::Capture<pcap::Active>, max: Duration) {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: cap.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, max.as_millis() as libc::c_int) };
    if rc < 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// libpcap's counters for one handle.
#[derive(Clone, Copy, Debug, Default)]
pub struct PcapCounters {
    pub received: u64,
    pub kernel_drops: u64,
    pub interface_drops: u64,
}

/// What a capture thread reports, now and then.
#[derive(Clone, Debug, Default)]
pub struct CaptureReport {
    pub interface: String,
    pub bytes: u64,
    pub pcap: PcapCounters,
    pub ingest: crate::IngestStats,
    pub defrag: crate::DefragStats,
    pub queue_drops_batches: u64,
    pub queue_drops_packets: u64,
}

/// How often a capture thread sends pending batches and reports, at the latest.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Captures until `stop`, feeding `ingest`; `report` is called about every 100 ms and at the end.
/// Time moves on with the wall clock when no packet comes, so idle flows still time out.
pub fn capture_loop(
    mut h: LiveHandle,
    ingest: &mut Ingest,
    stop: &AtomicBool,
    mut report: impl FnMut(&CaptureReport),
) {
    let mut last = Instant::now();
    let mut n: u64 = 0;
    let mut rep = CaptureReport {
        interface: h.interface.clone(),
        ..Default::default()
    };
    let mut errors = 0u64;
    loop {
        let mut due = false;
        match h.cap.next_packet() {
            Ok(p) => {
                n += 1;
                #[allow(clippy::unnecessary_cast)]
                let ts = p.header.ts.tv_sec as i64 * 1_000_000 + p.header.ts.tv_usec as i64;
                rep.bytes += p.data.len() as u64;
                ingest.frame(h.link, ts, p.data, p.header.len);
                if n.is_multiple_of(256) {
                    due = last.elapsed() >= FLUSH_EVERY;
                }
            }
            Err(pcap::Error::TimeoutExpired) => {
                wait_readable(&h.cap, FLUSH_EVERY);
                due = last.elapsed() >= FLUSH_EVERY;
            }
            Err(e) => {
                // An interface that went away or a read error: say so (rate-limited), keep trying.
                errors += 1;
                if errors.is_power_of_two() {
                    tracing::warn!("capture on {}: {e} ({errors} errors so far)", h.interface);
                }
                std::thread::sleep(Duration::from_millis(50));
                due = last.elapsed() >= FLUSH_EVERY;
            }
        }
        let stopping = stop.load(Ordering::Relaxed);
        if due || stopping {
            last = Instant::now();
            ingest.advance(wall_us());
            ingest.dispatcher.flush();
            fill_report(&mut h, ingest, &mut rep);
            report(&rep);
        }
        if stopping {
            break;
        }
    }
}

fn fill_report(h: &mut LiveHandle, ingest: &Ingest, rep: &mut CaptureReport) {
    if let Ok(s) = h.cap.stats() {
        rep.pcap = PcapCounters {
            received: s.received as u64,
            kernel_drops: s.dropped as u64,
            interface_drops: s.if_dropped as u64,
        };
    }
    rep.ingest = ingest.stats.clone();
    rep.defrag = ingest.defrag.stats;
    rep.queue_drops_batches = ingest.dispatcher.dropped_batches;
    rep.queue_drops_packets = ingest.dispatcher.dropped_packets;
}

/// Microseconds since the epoch, wall clock.
pub fn wall_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
