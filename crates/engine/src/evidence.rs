//! File evidence: a file's bytes hashed incrementally as they arrive (nothing buffered beyond a
//! small bounded reorder window), its size, and whether it was seen whole.
//!
//! A [`FileTrack`] follows one file carried by a byte stream (an FTP data connection) by TCP
//! sequence number, or by explicit offsets and block numbers (TFTP blocks, SMB writes at offsets)
//! through [`FileTrack::at`]. Bytes that arrive ahead of the next expected offset wait in a bounded
//! window ([`MAX_AHEAD_BYTES`], [`MAX_AHEAD_SEGMENTS`]); beyond it, the missing range is a gap and
//! the file is `TRUNCATED`, its hash left out.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Bytes held out of order per file, and pieces.
pub const MAX_AHEAD_BYTES: usize = 256 << 10;
pub const MAX_AHEAD_SEGMENTS: usize = 64;
/// Bytes of a file name kept (longer names are cut on a character boundary).
pub const MAX_NAME: usize = 1024;

/// Which hashes a file gets (`[evidence] hashes`).
#[derive(Clone, Debug)]
pub struct Hashes {
    pub sha256: bool,
    pub sha1: bool,
    pub md5: bool,
    /// Whole files are also saved by SHA-256 (`[evidence] store_files`).
    pub store: Option<std::sync::Arc<FileStore>>,
}

impl Default for Hashes {
    fn default() -> Self {
        Hashes {
            sha256: true,
            sha1: false,
            md5: false,
            store: None,
        }
    }
}

/// The file store: whole files saved as `files/<first two hex digits>/<sha256>` under the
/// evidence directory, written as their bytes arrive (to `files/.partial/`) and renamed once the
/// file is known whole; its total size capped (a file that would pass the cap is not stored,
/// counted). Names come from the hash only, never from packet data.
#[derive(Debug)]
pub struct FileStore {
    dir: std::path::PathBuf,
    max: u64,
    used: std::sync::atomic::AtomicU64,
    serial: std::sync::atomic::AtomicU64,
    /// Files stored, files already there (same hash), files not stored (cap, error).
    pub stored: std::sync::atomic::AtomicU64,
    pub duplicates: std::sync::atomic::AtomicU64,
    pub skipped: std::sync::atomic::AtomicU64,
}

impl FileStore {
    /// The store under `dir` (`dir/files`), created if missing; partial files of an earlier run
    /// are removed and the stored ones counted against `max`.
    pub fn open(dir: &std::path::Path, max: u64) -> std::io::Result<FileStore> {
        let root = dir.join("files");
        let partial = root.join(".partial");
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o750);
        }
        b.create(&partial)?;
        for e in std::fs::read_dir(&partial)? {
            let _ = std::fs::remove_file(e?.path());
        }
        let mut used = 0;
        for e in std::fs::read_dir(&root)? {
            let e = e?;
            if e.file_name().len() == 2 && e.file_type()?.is_dir() {
                for f in std::fs::read_dir(e.path())? {
                    used += f?.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
        Ok(FileStore {
            dir: root,
            max,
            used: std::sync::atomic::AtomicU64::new(used),
            serial: std::sync::atomic::AtomicU64::new(0),
            stored: Default::default(),
            duplicates: Default::default(),
            skipped: Default::default(),
        })
    }

    fn reserve(&self, n: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let mut cur = self.used.load(Relaxed);
        loop {
            if cur.saturating_add(n) > self.max {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(cur, cur + n, Relaxed, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    fn release(&self, n: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = self
            .used
            .fetch_update(Relaxed, Relaxed, |u| Some(u.saturating_sub(n)));
    }
}

/// Write buffer of a file on its way into the store (many may be in flight at once).
const STORE_BUFFER: usize = 8 << 10;

/// One file being written into the store.
#[derive(Debug)]
pub struct StoreFile {
    store: std::sync::Arc<FileStore>,
    tmp: std::path::PathBuf,
    w: Option<std::io::BufWriter<std::fs::File>>,
    written: u64,
    failed: bool,
}

impl StoreFile {
    fn new(store: std::sync::Arc<FileStore>) -> StoreFile {
        let n = store
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = store
            .dir
            .join(".partial")
            .join(format!("{}-{n}", std::process::id()));
        StoreFile {
            store,
            tmp,
            w: None,
            written: 0,
            failed: false,
        }
    }

    fn write(&mut self, b: &[u8]) {
        use std::io::Write;
        if self.failed || b.is_empty() {
            return;
        }
        if !self.store.reserve(b.len() as u64) {
            self.fail();
            return;
        }
        if self.w.is_none() {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(0o640);
            }
            match o.open(&self.tmp) {
                Ok(f) => self.w = Some(std::io::BufWriter::with_capacity(STORE_BUFFER, f)),
                Err(_) => {
                    self.store.release(b.len() as u64);
                    self.fail();
                    return;
                }
            }
        }
        self.written += b.len() as u64;
        if self.w.as_mut().is_some_and(|w| w.write_all(b).is_err()) {
            self.fail();
        }
    }

    fn fail(&mut self) {
        if !self.failed {
            self.failed = true;
            self.discard();
        }
    }

    fn discard(&mut self) {
        if self.w.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        self.store.release(self.written);
        self.written = 0;
    }

    /// The file is whole with this SHA-256: saved under its hash (true), or dropped.
    pub fn commit(mut self, sha256: &str) -> bool {
        use std::io::Write;
        let store = self.store.clone();
        let ok = !self.failed
            && sha256.len() == 64
            && sha256.bytes().all(|b| b.is_ascii_hexdigit())
            && self.w.as_mut().is_none_or(|w| w.flush().is_ok());
        if !ok {
            store
                .skipped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return false;
        }
        let dir = store.dir.join(&sha256[..2]);
        let dest = dir.join(sha256);
        if dest.exists() {
            store
                .duplicates
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return true; // dropped with `self`: the copy already stored stays
        }
        if self.w.take().is_none() {
            // An empty file: nothing was written, create it.
            let _ = std::fs::File::create(&self.tmp);
        }
        let moved =
            std::fs::create_dir_all(&dir).is_ok() && std::fs::rename(&self.tmp, &dest).is_ok();
        if moved {
            self.written = 0; // now the stored file's bytes
            store
                .stored
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            let _ = std::fs::remove_file(&self.tmp);
            store
                .skipped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        moved
    }
}

impl Drop for StoreFile {
    fn drop(&mut self) {
        self.discard();
    }
}

impl Hashes {
    /// Files are followed at all (hashed, or stored).
    pub fn any(&self) -> bool {
        self.sha256 || self.sha1 || self.md5
    }
}

/// Hashes in progress.
#[derive(Clone)]
struct Hashers {
    sha256: Option<Sha256>,
    sha1: Option<Sha1>,
    md5: Option<Md5>,
}

impl Hashers {
    fn new(h: &Hashes) -> Self {
        Hashers {
            sha256: h.sha256.then(Sha256::new),
            sha1: h.sha1.then(Sha1::new),
            md5: h.md5.then(Md5::new),
        }
    }
    fn update(&mut self, b: &[u8]) {
        if let Some(h) = &mut self.sha256 {
            h.update(b);
        }
        if let Some(h) = &mut self.sha1 {
            h.update(b);
        }
        if let Some(h) = &mut self.md5 {
            h.update(b);
        }
    }
}

/// The hashes of a whole file, lower-case hex.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Digests {
    pub sha256: Option<String>,
    pub sha1: Option<String>,
    pub md5: Option<String>,
}

fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

impl std::fmt::Debug for FileTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileTrack")
            .field("size", &self.size)
            .field("gaps", &self.gaps)
            .field("next", &self.next)
            .field("ahead", &self.ahead.len())
            .finish()
    }
}

/// One file followed as its bytes arrive.
pub struct FileTrack {
    hashers: Option<Hashers>,
    /// Offset of the next byte expected (relative to the file's start).
    next: u64,
    /// Bytes ahead of `next`, waiting: (offset, bytes), sorted by offset.
    ahead: Vec<(u64, Vec<u8>)>,
    ahead_bytes: usize,
    /// Bytes hashed in order, and ranges that never arrived.
    pub size: u64,
    pub gaps: u64,
    /// TCP: the sequence number of offset 0.
    isn: Option<u32>,
    /// Seen to its end (FTP 226 / connection closed in order, TFTP short block, SMB CLOSE).
    pub complete: bool,
    /// Its bytes on their way into the file store.
    store: Option<StoreFile>,
}

impl FileTrack {
    pub fn new(hashes: &Hashes) -> Self {
        FileTrack {
            store: hashes
                .store
                .as_ref()
                .filter(|_| hashes.sha256)
                .map(|s| StoreFile::new(s.clone())),
            hashers: hashes.any().then(|| Hashers::new(hashes)),
            next: 0,
            ahead: Vec::new(),
            ahead_bytes: 0,
            size: 0,
            gaps: 0,
            isn: None,
            complete: false,
        }
    }

    /// A TCP segment of the stream carrying the file: `seq` is its first payload byte's number,
    /// `wire_len` its payload's length on the wire (more than `data` when the snap length cut it:
    /// the rest is a gap).
    pub fn tcp(&mut self, seq: u32, data: &[u8], wire_len: usize) {
        if wire_len > data.len() {
            self.gaps += 1;
            self.hashers = None;
            self.store = None;
        }
        if data.is_empty() {
            return;
        }
        let isn = *self.isn.get_or_insert(seq);
        // Offsets relative to the first byte seen; wrapping arithmetic on 32-bit sequence numbers,
        // widened by the distance from the expected byte (a stream under 2 GiB ahead).
        let rel = seq.wrapping_sub(isn);
        let d = rel.wrapping_sub(self.next as u32) as i32;
        let off = (self.next as i128 + d as i128).clamp(0, u64::MAX as i128) as u64;
        self.at(off, data);
    }

    /// Bytes of the file at `offset`.
    pub fn at(&mut self, offset: u64, data: &[u8]) {
        let end = offset.saturating_add(data.len() as u64);
        if end <= self.next {
            return; // all seen already (a retransmission or duplicate block)
        }
        if offset <= self.next {
            let skip = (self.next - offset) as usize;
            self.take(&data[skip..]);
            self.drain_ahead();
            return;
        }
        // Ahead of what is expected: wait in the window, or give up the missing range.
        if self.ahead.len() < MAX_AHEAD_SEGMENTS && self.ahead_bytes + data.len() <= MAX_AHEAD_BYTES
        {
            let i = self.ahead.partition_point(|(o, _)| *o < offset);
            self.ahead.insert(i, (offset, data.to_vec()));
            self.ahead_bytes += data.len();
            return;
        }
        self.skip_to(self.ahead.first().map_or(offset, |(o, _)| (*o).min(offset)));
        self.at(offset, data);
    }

    /// Declares the bytes before `offset` lost: a gap, the hash abandoned.
    fn skip_to(&mut self, offset: u64) {
        if offset > self.next {
            self.gaps += 1;
            self.hashers = None;
            self.store = None;
            self.size = self.size.saturating_add(offset - self.next);
            self.next = offset;
            self.drain_ahead();
        }
    }

    fn take(&mut self, b: &[u8]) {
        if let Some(h) = &mut self.hashers {
            h.update(b);
        }
        if let Some(s) = &mut self.store {
            s.write(b);
        }
        self.size = self.size.saturating_add(b.len() as u64);
        self.next = self.next.saturating_add(b.len() as u64);
    }

    fn drain_ahead(&mut self) {
        while let Some((o, _)) = self.ahead.first() {
            if *o > self.next {
                break;
            }
            let (o, d) = self.ahead.remove(0);
            self.ahead_bytes -= d.len();
            let end = o.saturating_add(d.len() as u64);
            if end > self.next {
                let skip = (self.next - o) as usize;
                self.take(&d[skip..]);
            }
        }
    }

    /// The file is over: whatever still waits ahead leaves gaps. Returns the digests when the whole
    /// file was seen in order.
    pub fn finish(&mut self) -> Option<Digests> {
        if let Some((o, _)) = self.ahead.first() {
            let o = *o;
            self.skip_to(o);
        }
        self.ahead.clear();
        self.ahead_bytes = 0;
        if self.gaps > 0 {
            self.store = None;
            return None;
        }
        let h = self.hashers.take()?;
        Some(Digests {
            sha256: h.sha256.map(|x| hex(&x.finalize())),
            sha1: h.sha1.map(|x| hex(&x.finalize())),
            md5: h.md5.map(|x| hex(&x.finalize())),
        })
    }
}

impl FileTrack {
    /// The file's bytes in the store, to be committed once the file is known whole.
    pub fn take_store(&mut self) -> Option<StoreFile> {
        self.store.take()
    }
}

/// A file name from packet data, bounded for events (never used as a path).
pub fn bounded_name(name: &str) -> &str {
    if name.len() <= MAX_NAME {
        return name;
    }
    let mut end = MAX_NAME;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(b: &[u8]) -> String {
        hex(&Sha256::digest(b))
    }

    #[test]
    fn in_order_and_reordered_give_the_same_hash() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut a = FileTrack::new(&Hashes::default());
        for c in data.chunks(1460) {
            a.at(a.size, c);
        }
        let da = a.finish().unwrap();
        assert_eq!(da.sha256.as_deref(), Some(sha(&data).as_str()));
        // Out of order by TCP sequence, with duplicates, starting at a wrapping ISN.
        let mut b = FileTrack::new(&Hashes::default());
        let isn = u32::MAX - 5000;
        let chunks: Vec<(usize, &[u8])> = data.chunks(1000).enumerate().collect();
        b.tcp(isn, chunks[0].1, chunks[0].1.len());
        for w in chunks[1..].chunks(3) {
            for &(i, c) in w.iter().rev() {
                b.tcp(isn.wrapping_add((i * 1000) as u32), c, c.len());
                b.tcp(isn.wrapping_add((i * 1000) as u32), c, c.len());
            }
        }
        assert_eq!(b.size, data.len() as u64);
        assert_eq!(b.finish(), Some(da));
    }

    #[test]
    fn a_missing_range_is_a_gap_not_a_hash() {
        let mut t = FileTrack::new(&Hashes::default());
        t.at(0, &[1; 100]);
        t.at(200, &[2; 100]);
        assert!(t.finish().is_none());
        assert_eq!(t.gaps, 1);
        assert_eq!(t.size, 300);
    }

    #[test]
    fn the_window_is_bounded() {
        let mut t = FileTrack::new(&Hashes::default());
        t.at(0, &[0; 10]);
        for i in 0..1000u64 {
            t.at(100 + i * 10, &[1; 10]);
            assert!(t.ahead.len() <= MAX_AHEAD_SEGMENTS);
        }
        assert!(t.gaps >= 1);
        assert!(t.finish().is_none());
    }

    #[test]
    fn all_three_hashes() {
        let mut t = FileTrack::new(&Hashes {
            sha256: true,
            sha1: true,
            md5: true,
            store: None,
        });
        t.at(0, b"abc");
        let d = t.finish().unwrap();
        assert_eq!(
            d.sha256.unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.sha1.unwrap(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(d.md5.unwrap(), "900150983cd24fb0d6963f7d28e17f72");
    }

    /// Offsets from packets near the end of the u64 range (a fuzzed SMB WRITE offset) saturate;
    /// nothing overflows.
    #[test]
    fn offsets_at_the_end_of_the_range_do_not_overflow() {
        let mut t = FileTrack::new(&Hashes::default());
        t.at(u64::MAX - 3, &[1; 10]);
        t.at(u64::MAX - 1, &[2; 10]);
        t.tcp(7, &[3; 10], 10);
        t.tcp(u32::MAX, &[4; 10], 20);
        assert!(t.finish().is_none());
    }

    #[test]
    fn names_are_bounded_on_a_char_boundary() {
        let long = "é".repeat(2000);
        let b = bounded_name(&long);
        assert!(b.len() <= MAX_NAME);
        assert!(b.chars().all(|c| c == 'é'));
    }
}
