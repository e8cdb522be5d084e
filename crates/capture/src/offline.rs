//! Capture files through libpcap, in the order given, as one timeline. A damaged file keeps what was
//! read; a file that cannot be opened is reported and the others are still read.

use crate::ingest::Ingest;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use xferwatch_wire::LinkType;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileProblem {
    /// Not a capture, or unreadable: nothing was read from it.
    Open { path: PathBuf, message: String },
    /// Truncated or corrupt after `packet` good packets: those were kept.
    Damaged {
        path: PathBuf,
        packet: u64,
        message: String,
    },
    /// A link type the decoder does not know: the file was skipped.
    LinkType { path: PathBuf, dlt: i32 },
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProblem::Open { path, message } => write!(f, "{}: cannot read capture: {message}", path.display()),
            FileProblem::Damaged { path, packet, message } => write!(
                f,
                "{}: damaged after packet {packet} ({message}); the {packet} packets before it were used",
                path.display()
            ),
            FileProblem::LinkType { path, dlt } => {
                write!(f, "{}: unsupported link type {dlt}; file skipped", path.display())
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub problems: Vec<FileProblem>,
    pub files_read: usize,
}

impl ReadOutcome {
    /// True when some file could not be read at all (exit status 2).
    pub fn any_unreadable(&self) -> bool {
        self.problems
            .iter()
            .any(|p| matches!(p, FileProblem::Open { .. } | FileProblem::LinkType { .. }))
    }
}

/// How far the reading got, for a progress display in another thread. The reading thread stores
/// into it every [`PROGRESS_EVERY`] packets and at the end of each file (never per packet).
#[derive(Debug, Default)]
pub struct ReadProgress {
    /// Bytes of the input files consumed so far (file offsets summed over the files read).
    pub bytes: AtomicU64,
    /// Packets read so far.
    pub packets: AtomicU64,
}

/// Packets between two updates of a [`ReadProgress`] (and between two looks at `stop`).
pub const PROGRESS_EVERY: u64 = 4096;

/// Reads every file into `ingest`, calling `on_problem` as soon as a problem is found.
/// `stop` is polled between packets (a signal handler may set it).
pub fn read_files(
    paths: &[impl AsRef<Path>],
    ingest: &mut Ingest,
    stop: &std::sync::atomic::AtomicBool,
    on_problem: impl FnMut(&FileProblem),
) -> ReadOutcome {
    read_files_progress(paths, ingest, stop, &ReadProgress::default(), on_problem)
}

/// [`read_files`], telling `progress` how far it got.
pub fn read_files_progress(
    paths: &[impl AsRef<Path>],
    ingest: &mut Ingest,
    stop: &std::sync::atomic::AtomicBool,
    progress: &ReadProgress,
    mut on_problem: impl FnMut(&FileProblem),
) -> ReadOutcome {
    let mut out = ReadOutcome::default();
    let mut done = Done {
        progress,
        bytes: 0,
        packets: 0,
    };
    for path in paths {
        let path = path.as_ref();
        // Classic pcap files are read in place (memory-mapped): no copy through read(2), the
        // largest cost of a read loop. pcapng, and anything else, goes through libpcap.
        let r = read_classic_mapped(path, ingest, stop, &done)
            .unwrap_or_else(|| read_with_libpcap(path, ingest, stop, &done));
        // The whole file counts as consumed, whatever was in it.
        done.bytes += std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map_or(0, |m| m.len());
        done.packets += r.packets;
        done.report(0, 0);
        out.files_read += r.read as usize;
        if let Some(p) = r.problem {
            on_problem(&p);
            out.problems.push(p);
        }
        if r.stopped {
            break;
        }
    }
    out
}

/// What the files before the current one added to a [`ReadProgress`].
struct Done<'a> {
    progress: &'a ReadProgress,
    bytes: u64,
    packets: u64,
}

impl Done<'_> {
    /// Stores the totals, with `bytes` and `packets` of the current file.
    fn report(&self, bytes: u64, packets: u64) {
        self.progress
            .bytes
            .store(self.bytes + bytes, Ordering::Relaxed);
        self.progress
            .packets
            .store(self.packets + packets, Ordering::Relaxed);
    }
}

/// The time of the first packet of a capture file (microseconds since the epoch, as the reader
/// takes it), or None when the file has no packet or cannot be read. Reads the header and the first
/// record only.
pub fn first_packet_us(path: &Path) -> Option<i64> {
    if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        use std::io::Read;
        let mut head = [0u8; 40];
        let mut f = std::fs::File::open(path).ok()?;
        let mut got = 0;
        while got < head.len() {
            match f.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => return None,
            }
        }
        if got >= 4 {
            let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let classic = match magic {
                0xa1b2_c3d4 => Some((false, false)),
                0xd4c3_b2a1 => Some((true, false)),
                0xa1b2_3c4d => Some((false, true)),
                0x4d3c_b2a1 => Some((true, true)),
                _ => None,
            };
            if let Some((big, nanos)) = classic {
                if got < 40 {
                    return None;
                }
                let rd = |at: usize| {
                    let w = [head[at], head[at + 1], head[at + 2], head[at + 3]];
                    i64::from(if big {
                        u32::from_be_bytes(w)
                    } else {
                        u32::from_le_bytes(w)
                    })
                };
                let frac = rd(28);
                return Some(rd(24) * 1_000_000 + if nanos { frac / 1000 } else { frac });
            }
        }
    } else {
        // A FIFO or a device: opening it would consume what the replay is to read.
        return None;
    }
    let mut cap = pcap::Capture::from_file(path).ok()?;
    let pkt = cap.next_packet().ok()?;
    Some(libpcap_ts(&pkt.header.ts))
}

/// `paths` in the order of their first packet's time ([`first_packet_us`]), so that several
/// captures read as one timeline need not be named in time order. Files with no readable first
/// packet come first (they add no packet; their problems are reported as before); files with equal
/// times keep the order given.
pub fn order_by_first_packet<P: AsRef<Path> + Clone>(paths: &[P]) -> Vec<P> {
    let mut keyed: Vec<(Option<i64>, P)> = paths
        .iter()
        .map(|p| (first_packet_us(p.as_ref()), p.clone()))
        .collect();
    keyed.sort_by_key(|(t, _)| *t);
    keyed.into_iter().map(|(_, p)| p).collect()
}

/// A libpcap timestamp in microseconds, clamped as the reader does.
fn libpcap_ts(ts: &libc::timeval) -> i64 {
    // timeval fields are 32-bit on some platforms. A pcapng timestamp is 64 bits of
    // (by default) microseconds, so seconds beyond any real date are clamped: the
    // product must not overflow, nor leave no room for the timeouts added to it.
    #[allow(
        clippy::unnecessary_cast,
        reason = "timeval fields are i64 here but 32-bit on some platforms"
    )]
    let sec = (ts.tv_sec as i64).clamp(0, MAX_TS_SECS);
    #[allow(
        clippy::unnecessary_cast,
        reason = "timeval fields are i64 here but 32-bit on some platforms"
    )]
    let usec = (ts.tv_usec as i64).clamp(0, 999_999);
    sec * 1_000_000 + usec
}

/// How reading one file ended.
#[derive(Default)]
struct FileRead {
    /// Packets read from it.
    packets: u64,
    /// Packets were read from it (it counts in `files_read`).
    read: bool,
    /// A stop was requested: no further file is read.
    stopped: bool,
    problem: Option<FileProblem>,
}

impl FileRead {
    fn problem(read: bool, p: FileProblem) -> FileRead {
        FileRead {
            packets: 0,
            read,
            stopped: false,
            problem: Some(p),
        }
    }
}

fn read_with_libpcap(
    path: &Path,
    ingest: &mut Ingest,
    stop: &std::sync::atomic::AtomicBool,
    done: &Done,
) -> FileRead {
    let mut cap = match pcap::Capture::from_file(path) {
        Ok(c) => c,
        Err(e) => {
            return FileRead::problem(
                false,
                FileProblem::Open {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                },
            )
        }
    };
    let dlt = cap.get_datalink().0;
    let link = LinkType::from_dlt(dlt);
    if let LinkType::Unsupported(_) = link {
        return FileRead::problem(
            false,
            FileProblem::LinkType {
                path: path.to_path_buf(),
                dlt,
            },
        );
    }
    let mut n: u64 = 0;
    // libpcap tells no file offset: the records' sizes (and headers) are summed instead.
    let mut consumed: u64 = 24;
    loop {
        if n.is_multiple_of(PROGRESS_EVERY) {
            done.report(consumed, n);
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return FileRead {
                    packets: n,
                    read: true,
                    stopped: true,
                    problem: None,
                };
            }
        }
        match cap.next_packet() {
            Ok(pkt) => {
                n += 1;
                consumed += 16 + u64::from(pkt.header.caplen);
                ingest.frame(link, libpcap_ts(&pkt.header.ts), pkt.data, pkt.header.len);
            }
            Err(pcap::Error::NoMorePackets) => {
                return FileRead {
                    packets: n,
                    read: true,
                    ..FileRead::default()
                }
            }
            Err(e) => {
                let mut r = FileRead::problem(
                    true,
                    FileProblem::Damaged {
                        path: path.to_path_buf(),
                        packet: n,
                        message: e.to_string(),
                    },
                );
                r.packets = n;
                return r;
            }
        }
    }
}

/// Latest packet time believed, in seconds (9999-12-31T23:59:59Z); later ones are clamped to it.
pub const MAX_TS_SECS: i64 = 253_402_300_799;

/// Read pages are released in steps of this many bytes (a multiple of the page size).
const RELEASE_STEP: usize = 4 << 20;

#[cfg(unix)]
#[allow(
    unsafe_code,
    reason = "madvise(MADV_DONTNEED) on the map is unsafe in memmap2"
)]
fn release_pages(map: &memmap2::Mmap, offset: usize, len: usize) {
    // SAFETY: a read-only private mapping of a file: after MADV_DONTNEED a later read of these
    // pages faults them in again from the file, unchanged. Nothing reads them again anyway.
    let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, len) };
}

#[cfg(not(unix))]
fn release_pages(_map: &memmap2::Mmap, _offset: usize, _len: usize) {}

/// Largest record length believed (libpcap's own limit for a bogus length is of this order).
const MAX_RECORD: usize = 256 * 1024 * 4;

/// Reads a classic pcap file (either byte order, micro- or nanosecond timestamps) from a memory map;
/// None when the file is not one (pcapng, not a capture): libpcap reads it then.
fn read_classic_mapped(
    path: &Path,
    ingest: &mut Ingest,
    stop: &std::sync::atomic::AtomicBool,
    done: &Done,
) -> Option<FileRead> {
    // Looked at before opening: opening a FIFO (or a character device) would let its writer start,
    // and closing it again for libpcap would break that writer's pipe.
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return None;
    }
    let Ok(file) = std::fs::File::open(path) else {
        return None;
    };
    let Ok(meta) = file.metadata() else {
        return None;
    };
    if !meta.is_file() || meta.len() < 24 {
        return None;
    }
    #[allow(
        unsafe_code,
        reason = "mapping a file is unsafe in memmap2 (the file could change under the map)"
    )]
    // SAFETY: the map is read-only and private; a capture file changed while it is read could give
    // odd bytes, which every length check below (and the decoder) treats as untrusted anyway.
    let map = match unsafe { memmap2::Mmap::map(&file) } {
        Ok(m) => m,
        Err(_) => return None,
    };
    let b: &[u8] = &map;
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let (big, nanos) = match magic {
        0xa1b2_c3d4 => (false, false),
        0xd4c3_b2a1 => (true, false),
        0xa1b2_3c4d => (false, true),
        0x4d3c_b2a1 => (true, true),
        _ => return None,
    };
    let rd = |at: usize| -> u32 {
        let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if big {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    };
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::Sequential);
    let dlt = (rd(20) & 0xffff) as i32;
    let link = LinkType::from_dlt(dlt);
    if let LinkType::Unsupported(_) = link {
        return Some(FileRead::problem(
            false,
            FileProblem::LinkType {
                path: path.to_path_buf(),
                dlt,
            },
        ));
    }
    let damaged = |packet: u64, message: String| {
        let mut r = FileRead::problem(
            true,
            FileProblem::Damaged {
                path: path.to_path_buf(),
                packet,
                message,
            },
        );
        r.packets = packet;
        Some(r)
    };
    let mut at = 24usize;
    let mut n: u64 = 0;
    // Pages already read are let go every 4 MiB, so a large file never sits in this process's
    // resident memory (they stay in the page cache).
    let mut released = 0usize;
    while at < b.len() {
        if n.is_multiple_of(PROGRESS_EVERY) {
            done.report(at as u64, n);
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Some(FileRead {
                    packets: n,
                    read: true,
                    stopped: true,
                    problem: None,
                });
            }
            let upto = at & !(RELEASE_STEP - 1);
            if upto > released {
                release_pages(&map, released, upto - released);
                released = upto;
            }
        }
        if b.len() - at < 16 {
            return damaged(
                n,
                format!(
                    "truncated dump file; tried to read 16 header bytes, only got {}",
                    b.len() - at
                ),
            );
        }
        let sec = rd(at) as i64;
        let frac = rd(at + 4) as i64;
        let incl = rd(at + 8) as usize;
        let orig = rd(at + 12);
        at += 16;
        if incl > MAX_RECORD {
            return damaged(n, format!("bogus savefile header: record of {incl} bytes"));
        }
        if b.len() - at < incl {
            return damaged(
                n,
                format!(
                    "truncated dump file; tried to read {incl} captured bytes, only got {}",
                    b.len() - at
                ),
            );
        }
        let ts = sec * 1_000_000 + if nanos { frac / 1000 } else { frac };
        ingest.frame(link, ts, &b[at..at + incl], orig);
        at += incl;
        n += 1;
    }
    Some(FileRead {
        packets: n,
        read: true,
        ..FileRead::default()
    })
}
