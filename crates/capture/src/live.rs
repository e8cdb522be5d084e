//! Live capture through libpcap: opening handles (with a clear one-line error for what goes wrong),
//! joining several handles on one interface in a PACKET_FANOUT hash group (Linux), and the capture
//! loop that feeds an [`Ingest`]. A full worker queue makes the capture thread wait for room at
//! most `LIVE_QUEUE_WAIT` (250 ms) while packets wait in the kernel's ring; past that the
//! batch is dropped (counted by the dispatcher).

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
            "capture.interfaces: {interface}: permission denied ({e}); run as root or grant CAP_NET_RAW (the systemd unit does)"
        )
    } else if l.contains("not up") {
        format!("capture.interfaces: {interface}: the interface is down ({e}); `ip link set {interface} up`")
    } else {
        format!("capture.interfaces: {interface}: cannot capture: {e}")
    }
}

#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "setsockopt(PACKET_FANOUT) has no safe wrapper in pcap or std"
)]
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
#[allow(
    unsafe_code,
    reason = "poll(2) on the capture descriptor has no safe wrapper in pcap or std"
)]
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
    /// libpcap's counters, summed over every handle this thread has had (reopening starts a
    /// handle's counters from zero).
    pub pcap: PcapCounters,
    pub ingest: crate::IngestStats,
    pub defrag: crate::DefragStats,
    pub queue_drops_batches: u64,
    pub queue_drops_packets: u64,
    /// Time spent waiting for room in full worker queues (microseconds).
    pub queue_wait_us: u64,
    /// Packets for a worker whose thread is gone.
    pub dead_worker_packets: u64,
    /// Whether a handle is open and reading now.
    pub up: bool,
    /// Times the handle was lost and opened again.
    pub reopens: u64,
    /// Capture time of the last packet, microseconds since the epoch (0: none yet).
    pub last_packet_us: i64,
}

/// How often a capture thread sends pending batches and reports, at the latest.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Waits between attempts to reopen a lost interface: doubling from the first to the last.
const REOPEN_FIRST: Duration = Duration::from_millis(250);
const REOPEN_MAX: Duration = Duration::from_secs(5);

/// A lost handle: the next reopen attempt, the wait after it, and since when it is lost.
struct Lost {
    next_try: Instant,
    backoff: Duration,
    since: Instant,
    attempts: u64,
    last_error: String,
}

/// Captures until `stop`, feeding `ingest`; `report` is called about every 100 ms and at the end.
/// Time moves on with the wall clock when no packet comes, so idle flows still time out.
///
/// A read error means the handle is lost (the interface was deleted, reset or moved): it is
/// closed and `reopen` is tried with a doubling back-off (0.25 s to 5 s) until it works or `stop`;
/// the report says `up = false` meanwhile, and each reopening is counted and logged.
pub fn capture_loop(
    h: LiveHandle,
    ingest: &mut Ingest,
    stop: &AtomicBool,
    mut reopen: impl FnMut() -> Result<LiveHandle, String>,
    mut report: impl FnMut(&CaptureReport),
) {
    let mut last = Instant::now();
    let mut n: u64 = 0;
    let mut rep = CaptureReport {
        interface: h.interface.clone(),
        up: true,
        ..Default::default()
    };
    let link = h.link;
    let mut handle = Some(h);
    let mut lost: Option<Lost> = None;
    // Counters of the handles closed so far.
    let mut base = PcapCounters::default();
    loop {
        let mut due = false;
        if let Some(h) = handle.as_mut() {
            match h.cap.next_packet() {
                Ok(p) => {
                    n += 1;
                    #[allow(
                        clippy::unnecessary_cast,
                        reason = "timeval fields are i64 here but 32-bit on some platforms"
                    )]
                    let ts = p.header.ts.tv_sec as i64 * 1_000_000 + p.header.ts.tv_usec as i64;
                    rep.bytes += p.data.len() as u64;
                    ingest.frame(link, ts, p.data, p.header.len);
                    rep.last_packet_us = ts;
                    if n.is_multiple_of(256) {
                        due = last.elapsed() >= FLUSH_EVERY;
                    }
                }
                Err(pcap::Error::TimeoutExpired) => {
                    wait_readable(&h.cap, FLUSH_EVERY);
                    due = last.elapsed() >= FLUSH_EVERY;
                }
                Err(e) => {
                    // The handle is lost: keep its counters, close it, reopen with back-off.
                    fill_pcap(h, base, &mut rep);
                    base = rep.pcap;
                    tracing::warn!(
                        "capture on {}: lost ({e}); reopening with back-off",
                        rep.interface
                    );
                    handle = None;
                    rep.up = false;
                    let now = Instant::now();
                    lost = Some(Lost {
                        next_try: now + REOPEN_FIRST,
                        backoff: REOPEN_FIRST,
                        since: now,
                        attempts: 0,
                        last_error: e.to_string(),
                    });
                    due = true;
                }
            }
        } else if let Some(l) = lost.as_mut() {
            let now = Instant::now();
            if now >= l.next_try {
                l.attempts += 1;
                match reopen() {
                    Ok(h) => {
                        tracing::info!(
                            "capture on {}: reopened after {} attempt(s), {:.1} s without capture",
                            rep.interface,
                            l.attempts,
                            l.since.elapsed().as_secs_f64()
                        );
                        handle = Some(h);
                        lost = None;
                        rep.up = true;
                        rep.reopens += 1;
                    }
                    Err(e) => {
                        // Logged when the reason changes and at each back-off ceiling, not per try.
                        if e != l.last_error || l.backoff == REOPEN_MAX {
                            tracing::warn!(
                                "capture on {}: cannot reopen yet ({e}); {} attempt(s) so far",
                                rep.interface,
                                l.attempts
                            );
                        }
                        l.last_error = e;
                        l.backoff = (l.backoff * 2).min(REOPEN_MAX);
                        l.next_try = now + l.backoff;
                    }
                }
            }
            if handle.is_none() {
                std::thread::sleep(FLUSH_EVERY.min(until_next_try(&lost)));
            }
            due = last.elapsed() >= FLUSH_EVERY;
        }
        let stopping = stop.load(Ordering::Relaxed);
        if due || stopping {
            last = Instant::now();
            ingest.advance(wall_us());
            ingest.dispatcher.flush();
            if let Some(h) = handle.as_mut() {
                fill_pcap(h, base, &mut rep);
            }
            fill_report(ingest, &mut rep);
            report(&rep);
        }
        if stopping {
            break;
        }
    }
}

/// How long until the next reopen attempt.
fn until_next_try(lost: &Option<Lost>) -> Duration {
    lost.as_ref().map_or(FLUSH_EVERY, |l| {
        l.next_try.saturating_duration_since(Instant::now())
    })
}

fn fill_pcap(h: &mut LiveHandle, base: PcapCounters, rep: &mut CaptureReport) {
    if let Ok(s) = h.cap.stats() {
        rep.pcap = PcapCounters {
            received: base.received + s.received as u64,
            kernel_drops: base.kernel_drops + s.dropped as u64,
            interface_drops: base.interface_drops + s.if_dropped as u64,
        };
    }
}

fn fill_report(ingest: &Ingest, rep: &mut CaptureReport) {
    rep.ingest = ingest.stats.clone();
    rep.defrag = ingest.defrag.stats;
    rep.queue_drops_batches = ingest.dispatcher.dropped_batches;
    rep.queue_drops_packets = ingest.dispatcher.dropped_packets;
    rep.queue_wait_us = ingest.dispatcher.queue_wait_us;
    rep.dead_worker_packets = ingest.dispatcher.dead_worker_packets;
}

/// Microseconds since the epoch, wall clock.
pub fn wall_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Compiles `filter` as libpcap would for an Ethernet interface, without opening one (no
/// privileges needed): what `check-config` tells of `capture.bpf` before `run` opens the
/// interfaces. An empty filter is no filter.
pub fn check_bpf(filter: &str) -> Result<(), String> {
    if filter.trim().is_empty() {
        return Ok(());
    }
    let dead = pcap::Capture::dead(pcap::Linktype::ETHERNET)
        .map_err(|e| format!("capture.bpf: cannot compile without libpcap: {e}"))?;
    dead.compile(filter, true)
        .map(drop)
        .map_err(|e| format!("capture.bpf: {filter:?} does not compile: {e}"))
}

#[cfg(test)]
mod bpf_tests {
    use super::check_bpf;

    #[test]
    fn filters_compile_or_name_the_key() {
        assert_eq!(check_bpf(""), Ok(()));
        assert_eq!(check_bpf("tcp port 21 or udp port 69"), Ok(()));
        let e = check_bpf("tcp prot 21").unwrap_err();
        assert!(e.starts_with("capture.bpf: \"tcp prot 21\""), "{e}");
    }
}
