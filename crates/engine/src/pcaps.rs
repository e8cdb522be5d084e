//! Session pcaps: the packets behind every alert.
//!
//! Every flow keeps a bounded [`PacketRing`] of its frames: its first packets, then the last
//! [`PcapConfig::tail_bytes`] of them. When an alert fires, its session (every flow of it: FTP
//! control and data, TFTP request and transfer, the SMB connection; a lone flow is a session of its
//! own) gets one classic pcap file: the rings of its live flows, merged in packet order (the
//! alerting packet among them), then every later packet of the session as it is seen, until the
//! session ends or the file reaches [`PcapConfig::max_bytes_per_session`]. Later alerts of the same
//! session name the same file.
//!
//! File names are made of the alert's packet time, its signature id and the session id, never of
//! packet data. The directory's total size is capped ([`PcapConfig::max_total`]): the oldest
//! finished files go first, counted. Ring memory is bounded per worker; a packet that does not fit
//! is not kept, counted.

use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Session pcap files open at once per worker; an alert beyond it gets no file (counted).
pub const MAX_OPEN_PER_WORKER: usize = 256;
/// Write buffer per open file.
const WRITE_BUFFER: usize = 16 << 10;
/// Bytes kept of one frame (the classic pcap snap length written in every file's header).
pub const SNAPLEN: u32 = 262_144;

/// `[evidence]` pcap settings, for the whole sensor.
#[derive(Clone, Debug)]
pub struct PcapConfig {
    /// Where the files go (created if missing, mode 0750).
    pub dir: PathBuf,
    /// A flow's first packets, always kept until it alerts or ends.
    pub head_packets: usize,
    /// Bytes of the flow's latest packets kept besides.
    pub tail_bytes: usize,
    /// Memory of all rings, the whole sensor (shared out among workers).
    pub ring_memory: usize,
    /// A session's file is closed when it reaches this size (counted).
    pub max_bytes_per_session: u64,
    /// All files in `dir` together; the oldest finished ones are removed first (counted).
    pub max_total: u64,
}

impl PcapConfig {
    /// The documented defaults for a directory.
    pub fn new(dir: PathBuf) -> Self {
        PcapConfig {
            dir,
            head_packets: 8,
            tail_bytes: 32 << 10,
            ring_memory: 16 << 20,
            max_bytes_per_session: 64 << 20,
            max_total: 1 << 30,
        }
    }
}

/// Counters of the session pcaps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcapStats {
    /// Files started (one per alerted session).
    pub files: u64,
    pub packets: u64,
    pub bytes: u64,
    /// Packets not kept in a ring: the worker's ring memory was full.
    pub ring_full: u64,
    /// Files closed at `max_bytes_per_session`.
    pub capped: u64,
    /// Finished files removed to stay under `max_total` (the directory's count).
    pub removed: u64,
    /// Packets not written because `max_total` was reached by files still open.
    pub disk_full: u64,
    /// Alerts that got no file: too many open, or the file could not be created.
    pub refused: u64,
    /// Write or create errors.
    pub errors: u64,
    /// Packets of an alerted session with no frame to write (a datagram that could not be
    /// rebuilt, another link type than the file's).
    pub unwritable: u64,
}

impl PcapStats {
    pub fn merge(&mut self, o: &PcapStats) {
        self.files += o.files;
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.ring_full += o.ring_full;
        self.capped += o.capped;
        self.removed += o.removed;
        self.disk_full += o.disk_full;
        self.refused += o.refused;
        self.errors += o.errors;
        self.unwritable += o.unwritable;
    }
}

/// One captured frame as a pcap record wants it.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub idx: u64,
    pub ts_us: i64,
    pub bytes: &'a [u8],
    pub wire_len: u32,
    pub dlt: u32,
}

#[derive(Clone, Copy, Debug)]
struct Meta {
    idx: u64,
    ts_us: i64,
    len: u32,
    wire: u32,
    dlt: u32,
}

/// A flow's kept frames: the first packets, then the latest ones within a byte budget.
#[derive(Debug, Default)]
pub struct PacketRing {
    head: Vec<Meta>,
    head_data: Vec<u8>,
    tail: VecDeque<Meta>,
    tail_data: VecDeque<u8>,
}

impl PacketRing {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.head_data.len() + self.tail_data.len()
    }

    /// The kept frames, oldest first. The tail is read from the deque's first half: call
    /// `tail_data.make_contiguous()` first (a frame not found there reads as empty).
    fn frames(&self) -> impl Iterator<Item = Frame<'_>> {
        let (tail, _) = self.tail_data.as_slices();
        let (mut h, mut t) = (0usize, 0usize);
        let head = self.head.iter().map(move |m| {
            let len = m.len as usize;
            let b = self.head_data.get(h..h + len).unwrap_or(&[]);
            h += len;
            (m, b)
        });
        let tail = self.tail.iter().map(move |m| {
            let len = m.len as usize;
            let b = tail.get(t..t + len).unwrap_or(&[]);
            t += len;
            (m, b)
        });
        head.chain(tail).map(|(m, b)| Frame {
            idx: m.idx,
            ts_us: m.ts_us,
            bytes: b,
            wire_len: m.wire,
            dlt: m.dlt,
        })
    }
}

/// The directory's size, shared by every worker: files are added as they are written and the
/// oldest finished ones removed when the total passes `max_total`.
#[derive(Debug)]
pub struct DiskBudget {
    max: u64,
    total: AtomicU64,
    /// Finished files, oldest first, with their sizes.
    done: Mutex<VecDeque<(PathBuf, u64)>>,
    removed: AtomicU64,
}

impl DiskBudget {
    /// Creates `dir` if missing and counts the session pcaps already in it (oldest first by
    /// modification time, then name).
    pub fn open(dir: &Path, max: u64) -> std::io::Result<DiskBudget> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode_0750()
            .create(dir)?;
        let mut old = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let p = e.path();
            if p.extension().is_some_and(|x| x == "pcap") {
                if let Ok(m) = e.metadata() {
                    if m.is_file() {
                        let t = m.modified().ok();
                        old.push((t, p, m.len()));
                    }
                }
            }
        }
        old.sort();
        let total = old.iter().map(|o| o.2).sum();
        Ok(DiskBudget {
            max,
            total: AtomicU64::new(total),
            done: Mutex::new(old.into_iter().map(|(_, p, n)| (p, n)).collect()),
            removed: AtomicU64::new(0),
        })
    }

    /// Room for `n` more bytes: removes the oldest finished files while the total would pass the
    /// cap. False when only open files are left and there is no room.
    fn reserve(&self, n: u64) -> bool {
        if self.total.load(Ordering::Relaxed).saturating_add(n) <= self.max {
            self.total.fetch_add(n, Ordering::Relaxed);
            return true;
        }
        let Ok(mut done) = self.done.lock() else {
            return false;
        };
        while self.total.load(Ordering::Relaxed).saturating_add(n) > self.max {
            let Some((p, len)) = done.pop_front() else {
                return false;
            };
            if std::fs::remove_file(&p).is_ok() || !p.exists() {
                self.total.fetch_sub(
                    len.min(self.total.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                self.removed.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.total.fetch_add(n, Ordering::Relaxed);
        true
    }

    fn finished(&self, path: PathBuf, len: u64) {
        if let Ok(mut d) = self.done.lock() {
            d.push_back((path, len));
        }
    }

    /// Finished files removed so far to stay under the cap.
    pub fn removed(&self) -> u64 {
        self.removed.load(Ordering::Relaxed)
    }

    /// Bytes in the directory (session pcaps) now.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

trait Mode0750 {
    fn mode_0750(&mut self) -> &mut Self;
}
impl Mode0750 for std::fs::DirBuilder {
    fn mode_0750(&mut self) -> &mut Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            self.mode(0o750);
        }
        self
    }
}

/// One session's file.
struct Open {
    w: Option<BufWriter<File>>,
    path: PathBuf,
    /// The name alerts carry.
    shown: Arc<str>,
    written: u64,
    dlt: u32,
}

/// A worker's session pcaps.
pub struct SessionPcaps {
    cfg: Arc<PcapConfig>,
    budget: Arc<DiskBudget>,
    /// Ring memory of this worker, and what is used.
    ring_budget: usize,
    ring_used: usize,
    /// By session key (the session id, or a lone flow's id).
    files: FxHashMap<u64, Open>,
    /// Sessions whose rings are to be written into their new file.
    to_dump: Vec<u64>,
    /// Rings of flows that ended while their session goes on (an FTP session's earlier data
    /// connections), kept for the session's pcap should it alert; within the ring memory.
    held: FxHashMap<u64, Vec<PacketRing>>,
    pub stats: PcapStats,
}

impl SessionPcaps {
    pub fn new(cfg: Arc<PcapConfig>, budget: Arc<DiskBudget>, workers: usize) -> Self {
        let ring_budget = cfg.ring_memory / workers.max(1);
        SessionPcaps {
            cfg,
            budget,
            ring_budget,
            ring_used: 0,
            files: FxHashMap::default(),
            to_dump: Vec::new(),
            held: FxHashMap::default(),
            stats: PcapStats::default(),
        }
    }

    /// A packet of a flow of session `key`: written to the session's file when it has one (the
    /// flow's ring first, if it still holds packets), else kept in the flow's ring.
    ///
    /// `may_alert` false: no alert can come for this flow any more (a flow without session whose
    /// port check is done), so its ring is freed and nothing more is kept.
    pub fn packet(
        &mut self,
        key: u64,
        ring: &mut Option<Box<PacketRing>>,
        f: Option<Frame<'_>>,
        may_alert: bool,
    ) {
        if !self.files.is_empty() {
            if let Some(o) = self.files.get_mut(&key) {
                if let Some(r) = ring.take() {
                    self.ring_used = self.ring_used.saturating_sub(r.bytes());
                    let mut r = r;
                    r.tail_data.make_contiguous();
                    for fr in r.frames() {
                        write_frame(o, &self.cfg, &self.budget, &mut self.stats, &fr);
                    }
                }
                match f {
                    Some(fr) => write_frame(o, &self.cfg, &self.budget, &mut self.stats, &fr),
                    None => self.stats.unwritable += 1,
                }
                return;
            }
        }
        if !may_alert {
            self.flow_ended(ring);
            return;
        }
        let Some(f) = f else { return };
        let r = ring.get_or_insert_with(Box::default);
        let len = f.bytes.len().min(SNAPLEN as usize);
        let m = Meta {
            idx: f.idx,
            ts_us: f.ts_us,
            len: len as u32,
            wire: f.wire_len,
            dlt: f.dlt,
        };
        if r.head.len() < self.cfg.head_packets {
            if self.ring_used + len > self.ring_budget {
                self.stats.ring_full += 1;
                return;
            }
            r.head.push(m);
            r.head_data.extend_from_slice(&f.bytes[..len]);
            self.ring_used += len;
            return;
        }
        if len > self.cfg.tail_bytes {
            // Larger than the whole tail: the tail is just this frame's absence.
            self.ring_used = self.ring_used.saturating_sub(r.tail_data.len());
            r.tail.clear();
            r.tail_data.clear();
            return;
        }
        while r.tail_data.len() + len > self.cfg.tail_bytes {
            let Some(old) = r.tail.pop_front() else { break };
            r.tail_data.drain(..old.len as usize);
            self.ring_used = self.ring_used.saturating_sub(old.len as usize);
        }
        if self.ring_used + len > self.ring_budget {
            self.stats.ring_full += 1;
            return;
        }
        r.tail.push_back(m);
        r.tail_data.extend(&f.bytes[..len]);
        self.ring_used += len;
    }

    /// A flow ended: its ring's memory is returned.
    /// A flow of session `key` ended while the session goes on: its ring is kept for the
    /// session's pcap (written into it at once when the session has one).
    pub fn hold(&mut self, key: u64, ring: &mut Option<Box<PacketRing>>) {
        let Some(r) = ring.take() else { return };
        if r.bytes() == 0 {
            return;
        }
        self.held.entry(key).or_default().push(*r);
    }

    pub fn flow_ended(&mut self, ring: &mut Option<Box<PacketRing>>) {
        if let Some(r) = ring.take() {
            self.ring_used = self.ring_used.saturating_sub(r.bytes());
        }
    }

    /// An alert for session `key` at packet time `ts_us`: the session's file (started now when it
    /// has none; its rings are written by [`SessionPcaps::dump`]). None when no file could be had.
    pub fn alert(&mut self, key: u64, sid: u32, ts_us: i64) -> Option<Arc<str>> {
        if let Some(o) = self.files.get(&key) {
            return Some(o.shown.clone());
        }
        if self.files.len() >= MAX_OPEN_PER_WORKER {
            self.stats.refused += 1;
            return None;
        }
        let name = format!("{}-{sid}-{key:014x}.pcap", stamp(ts_us));
        let path = self.cfg.dir.join(&name);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o640);
        }
        let file = match opts.open(&path) {
            Ok(f) => f,
            Err(_) => {
                self.stats.refused += 1;
                self.stats.errors += 1;
                return None;
            }
        };
        let shown: Arc<str> = path.to_string_lossy().into();
        self.files.insert(
            key,
            Open {
                w: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
                path,
                shown: shown.clone(),
                written: 0,
                dlt: u32::MAX,
            },
        );
        self.stats.files += 1;
        self.to_dump.push(key);
        Some(shown)
    }

    /// Sessions whose file was just started, and whose rings are to be written by
    /// [`SessionPcaps::dump`].
    pub fn pending(&self) -> bool {
        !self.to_dump.is_empty()
    }

    /// The session keys [`SessionPcaps::dump`] will write the rings of.
    pub fn pending_keys(&self) -> &[u64] {
        &self.to_dump
    }

    /// Writes the rings of the flows of the sessions just alerted: `flows` yields each flow's
    /// session key and ring (the live table, and a flow that just ended).
    pub fn dump<'a>(
        &mut self,
        flows: impl Iterator<Item = (u64, &'a mut Option<Box<PacketRing>>)>,
    ) {
        let keys = std::mem::take(&mut self.to_dump);
        let mut rings: Vec<(u64, Box<PacketRing>)> = Vec::new();
        for k in &keys {
            for mut r in self.held.remove(k).unwrap_or_default() {
                self.ring_used = self.ring_used.saturating_sub(r.bytes());
                r.tail_data.make_contiguous();
                rings.push((*k, Box::new(r)));
            }
        }
        for (k, ring) in flows {
            if keys.contains(&k) {
                if let Some(mut r) = ring.take() {
                    self.ring_used = self.ring_used.saturating_sub(r.bytes());
                    r.tail_data.make_contiguous();
                    rings.push((k, r));
                }
            }
        }
        for k in keys {
            let Some(o) = self.files.get_mut(&k) else {
                continue;
            };
            let mut frames: Vec<Frame<'_>> = rings
                .iter()
                .filter(|(rk, _)| *rk == k)
                .flat_map(|(_, r)| r.frames())
                .collect();
            frames.sort_by_key(|f| f.idx);
            for fr in &frames {
                write_frame(o, &self.cfg, &self.budget, &mut self.stats, fr);
            }
            if let Some(w) = o.w.as_mut() {
                if w.flush().is_err() {
                    self.stats.errors += 1;
                }
            }
        }
    }

    /// The session ended: its file is finished.
    pub fn session_ended(&mut self, key: u64) {
        if let Some(v) = self.held.remove(&key) {
            let n: usize = v.iter().map(|r| r.bytes()).sum();
            self.ring_used = self.ring_used.saturating_sub(n);
        }
        if self.files.is_empty() {
            return;
        }
        if let Some(o) = self.files.remove(&key) {
            self.finish(o);
        }
    }

    fn finish(&mut self, mut o: Open) {
        if let Some(mut w) = o.w.take() {
            if w.flush().is_err() {
                self.stats.errors += 1;
            }
        }
        self.budget.finished(o.path, o.written);
    }

    /// Every file finished (the input ended, the worker stops).
    pub fn finish_all(&mut self) {
        let all: Vec<Open> = self.files.drain().map(|(_, o)| o).collect();
        for o in all {
            self.finish(o);
        }
    }

    /// Counters; `removed` is the directory's (the sensor's), so only `with_dir` gets it.
    pub fn stats(&self, with_dir: bool) -> PcapStats {
        PcapStats {
            removed: if with_dir { self.budget.removed() } else { 0 },
            ..self.stats
        }
    }
}

fn write_frame(
    o: &mut Open,
    cfg: &PcapConfig,
    budget: &DiskBudget,
    stats: &mut PcapStats,
    f: &Frame<'_>,
) {
    let Some(w) = o.w.as_mut() else {
        return;
    };
    if o.dlt == u32::MAX {
        // The file's link type is its first frame's.
        o.dlt = f.dlt;
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&f.dlt.to_le_bytes());
        if !budget.reserve(24) {
            stats.disk_full += 1;
            return;
        }
        if w.write_all(&h).is_err() {
            stats.errors += 1;
            o.w = None;
            return;
        }
        o.written += 24;
    }
    if f.dlt != o.dlt || f.bytes.is_empty() {
        stats.unwritable += 1;
        return;
    }
    let rec = 16 + f.bytes.len() as u64;
    if o.written + rec > cfg.max_bytes_per_session {
        stats.capped += 1;
        if let Some(mut w) = o.w.take() {
            if w.flush().is_err() {
                stats.errors += 1;
            }
        }
        return;
    }
    if !budget.reserve(rec) {
        stats.disk_full += 1;
        return;
    }
    let secs = f.ts_us.div_euclid(1_000_000).clamp(0, u32::MAX as i64) as u32;
    let us = f.ts_us.rem_euclid(1_000_000) as u32;
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&secs.to_le_bytes());
    h[4..8].copy_from_slice(&us.to_le_bytes());
    h[8..12].copy_from_slice(&(f.bytes.len() as u32).to_le_bytes());
    h[12..16].copy_from_slice(&f.wire_len.max(f.bytes.len() as u32).to_le_bytes());
    if w.write_all(&h).and_then(|_| w.write_all(f.bytes)).is_err() {
        stats.errors += 1;
        o.w = None;
        return;
    }
    o.written += rec;
    stats.packets += 1;
    stats.bytes += rec;
}

/// `YYYYMMDDTHHMMSSZ` of a packet time (UTC).
fn stamp(ts_us: i64) -> String {
    let secs = ts_us.div_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = xferwatch_events::civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(idx: u64, n: usize) -> Vec<u8> {
        vec![(idx & 0xff) as u8; n]
    }

    #[test]
    fn stamps_are_utc_dates() {
        assert_eq!(stamp(0), "19700101T000000Z");
        assert_eq!(stamp(1_764_930_900_000_000), "20251205T103500Z");
    }

    #[test]
    fn ring_keeps_first_packets_and_the_latest_bytes() {
        let cfg = Arc::new(PcapConfig {
            head_packets: 2,
            tail_bytes: 250,
            ..PcapConfig::new(PathBuf::from("/nonexistent"))
        });
        let dir = tempfile::tempdir().unwrap();
        let budget = Arc::new(DiskBudget::open(dir.path(), 1 << 20).unwrap());
        let mut p = SessionPcaps::new(cfg, budget, 1);
        let mut ring = None;
        for i in 0..10u64 {
            let b = frame(i, 100);
            p.packet(
                7,
                &mut ring,
                Some(Frame {
                    idx: i,
                    ts_us: i as i64,
                    bytes: &b,
                    wire_len: 100,
                    dlt: 1,
                }),
                true,
            );
        }
        let mut r = ring.take().unwrap();
        r.tail_data.make_contiguous();
        let idx: Vec<u64> = r.frames().map(|f| f.idx).collect();
        assert_eq!(idx, vec![0, 1, 8, 9]);
        for f in r.frames() {
            assert!(f.bytes.iter().all(|&b| b == f.idx as u8));
        }
        assert_eq!(p.ring_used, 400);
    }

    #[test]
    fn ring_memory_is_bounded_and_counted() {
        let cfg = Arc::new(PcapConfig {
            ring_memory: 300,
            ..PcapConfig::new(PathBuf::from("/nonexistent"))
        });
        let dir = tempfile::tempdir().unwrap();
        let budget = Arc::new(DiskBudget::open(dir.path(), 1 << 20).unwrap());
        let mut p = SessionPcaps::new(cfg, budget, 1);
        let mut rings: Vec<Option<Box<PacketRing>>> = (0..5).map(|_| None).collect();
        let b = frame(1, 100);
        for (i, r) in rings.iter_mut().enumerate() {
            p.packet(
                i as u64,
                r,
                Some(Frame {
                    idx: i as u64,
                    ts_us: 0,
                    bytes: &b,
                    wire_len: 100,
                    dlt: 1,
                }),
                true,
            );
        }
        assert_eq!(p.ring_used, 300);
        assert_eq!(p.stats.ring_full, 2);
        p.flow_ended(&mut rings[0]);
        assert_eq!(p.ring_used, 200);
    }

    #[test]
    fn alert_writes_rings_then_live_packets_and_caps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Arc::new(PcapConfig {
            max_bytes_per_session: 24 + 3 * (16 + 100),
            ..PcapConfig::new(dir.path().to_path_buf())
        });
        let budget = Arc::new(DiskBudget::open(dir.path(), 1 << 20).unwrap());
        let mut p = SessionPcaps::new(cfg, budget, 1);
        let (mut a, mut b) = (None, None);
        let fr = |i: u64, v: &[u8]| -> Vec<u8> {
            let _ = v;
            frame(i, 100)
        };
        for i in 0..2u64 {
            let x = fr(i, &[]);
            let ring = if i == 0 { &mut a } else { &mut b };
            p.packet(
                5,
                ring,
                Some(Frame {
                    idx: i,
                    ts_us: 1_000_000 + i as i64,
                    bytes: &x,
                    wire_len: 100,
                    dlt: 1,
                }),
                true,
            );
        }
        let name = p.alert(5, 1173001, 1_000_001).unwrap();
        assert_eq!(p.alert(5, 1173004, 2_000_000).unwrap(), name);
        p.dump([(5u64, &mut a), (5u64, &mut b)].into_iter());
        for i in 2..6u64 {
            let x = fr(i, &[]);
            p.packet(
                5,
                &mut a,
                Some(Frame {
                    idx: i,
                    ts_us: 1_000_000 + i as i64,
                    bytes: &x,
                    wire_len: 1500,
                    dlt: 1,
                }),
                true,
            );
        }
        p.session_ended(5);
        let bytes = std::fs::read(&*name).unwrap();
        assert_eq!(bytes.len(), 24 + 3 * 116);
        assert_eq!(&bytes[..4], &0xa1b2_c3d4u32.to_le_bytes());
        // Packets 0, 1 from the rings, then 2; 3 and later pass the cap.
        assert_eq!(bytes[24 + 16], 0);
        assert_eq!(bytes[24 + 116 + 16], 1);
        assert_eq!(bytes[24 + 232 + 16], 2);
        assert_eq!(
            u32::from_le_bytes(bytes[24 + 232 + 12..24 + 232 + 16].try_into().unwrap()),
            1500
        );
        assert_eq!(p.stats.capped, 1);
        assert!(name.contains("19700101T000001Z-1173001-"));
    }

    #[test]
    fn rings_of_connections_that_ended_are_written_at_the_sessions_alert() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Arc::new(PcapConfig::new(dir.path().to_path_buf()));
        let budget = Arc::new(DiskBudget::open(dir.path(), 1 << 30).unwrap());
        let mut p = SessionPcaps::new(cfg, budget, 1);
        let b = frame(1, 50);
        let fr = |i: u64| Frame {
            idx: i,
            ts_us: i as i64,
            bytes: &b,
            wire_len: 50,
            dlt: 1,
        };
        // Session 9: a data connection that ends (held), then the one that alerts.
        let (mut ended, mut live) = (None, None);
        p.packet(9, &mut ended, Some(fr(1)), true);
        p.packet(9, &mut ended, Some(fr(2)), true);
        p.hold(9, &mut ended);
        assert!(ended.is_none());
        assert_eq!(p.ring_used, 100);
        p.packet(9, &mut live, Some(fr(3)), true);
        let name = p.alert(9, 1173001, 3).unwrap();
        p.dump(std::iter::once((9, &mut live)));
        p.session_ended(9);
        assert_eq!(p.ring_used, 0);
        let bytes = std::fs::read(&*name).unwrap();
        assert_eq!(bytes.len(), 24 + 3 * (16 + 50));
        // In packet order: the held connection's two, then the live one's.
        for (i, ts) in [1u32, 2, 3].iter().enumerate() {
            let at = 24 + i * 66 + 4;
            assert_eq!(
                u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()),
                *ts
            );
        }
        // A session that ends without alerting returns what it held.
        let mut r = None;
        p.packet(10, &mut r, Some(fr(4)), true);
        p.hold(10, &mut r);
        p.session_ended(10);
        assert_eq!(p.ring_used, 0);
    }

    #[test]
    fn the_directory_is_capped_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Arc::new(PcapConfig {
            max_total: 2 * (24 + 116) + 10,
            ..PcapConfig::new(dir.path().to_path_buf())
        });
        let budget = Arc::new(DiskBudget::open(dir.path(), cfg.max_total).unwrap());
        let mut p = SessionPcaps::new(cfg, budget.clone(), 1);
        let mut names = Vec::new();
        for k in 1..=3u64 {
            let mut ring = None;
            let x = frame(k, 100);
            p.packet(
                k,
                &mut ring,
                Some(Frame {
                    idx: k,
                    ts_us: k as i64 * 1_000_000,
                    bytes: &x,
                    wire_len: 100,
                    dlt: 1,
                }),
                true,
            );
            names.push(p.alert(k, 1173002, k as i64 * 1_000_000).unwrap());
            p.dump(std::iter::once((k, &mut ring)));
            p.session_ended(k);
        }
        assert!(!Path::new(&*names[0]).exists());
        assert!(Path::new(&*names[1]).exists() && Path::new(&*names[2]).exists());
        assert_eq!(budget.removed(), 1);
        assert!(budget.total() <= 2 * (24 + 116) + 10);
    }
}
