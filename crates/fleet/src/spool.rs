//! The on-disk spool of [`RedisSink`](crate::sink::RedisSink): events waiting, in order, while
//! Redis cannot take them. A directory of segment files (`<seq>.spool`, one event a line, the
//! oldest the lowest number) and `head.offset`, how much of the oldest segment Redis has already
//! acknowledged. Events are appended to the newest segment and read from the oldest; a segment is
//! removed once all of it is acknowledged. Nothing is fsynced: the spool survives a restart of the
//! sensor, not a crash of the machine.
//!
//! A spool left by an earlier run is taken over: its events come first. A torn last line (the
//! process died in the middle of writing it) and lines longer than [`MAX_EVENT`] are skipped and
//! counted; so is anything that is not UTF-8.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// An event longer than this is never spooled (nor read back from a spool).
pub const MAX_EVENT: usize = 16 << 20;
/// A segment is closed and a new one started past this size.
const SEGMENT_MAX: u64 = 16 << 20;
/// Segment files a spool directory may hold; past it, events are dropped (counted).
const MAX_SEGMENTS: usize = 100_000;
const OFFSET_FILE: &str = "head.offset";
/// Held locked (flock) while a process uses the spool: one process per spool directory.
const LOCK_FILE: &str = "lock";

pub struct Spool {
    dir: PathBuf,
    max: u64,
    seg_max: u64,
    /// Segments, oldest first: (number, bytes in the file).
    segs: VecDeque<(u64, u64)>,
    /// Bytes of the oldest segment already acknowledged.
    head_off: u64,
    /// The newest segment, open for appending (its number).
    writer: Option<(u64, BufWriter<File>)>,
    /// Events held (lines not yet acknowledged).
    events: u64,
    /// Lines skipped while reading (torn, too long, not UTF-8).
    pub skipped: u64,
    /// The lock, released when the spool is dropped (or the process ends).
    _lock: File,
}

/// What [`Spool::peek`] read: the events and the bytes they take in the spool (with any skipped
/// line among them).
pub struct Peeked {
    pub lines: Vec<String>,
    pub bytes: u64,
    /// Lines skipped in those bytes.
    pub skipped: u64,
}

impl Spool {
    /// Opens (creating it, mode 0750) the spool directory and takes over what an earlier run
    /// left there. `max`: bytes held at most.
    pub fn open(dir: &Path, max: u64) -> std::io::Result<Spool> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)?;
        let lock = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o640)
                .open(dir.join(LOCK_FILE))?
        };
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ResourceBusy,
                    "in use by another xferwatch process (one spool directory per process)",
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let mut segs = Vec::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".spool"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let meta = e.metadata()?;
            if meta.is_file() {
                segs.push((seq, meta.len()));
            }
            if segs.len() >= MAX_SEGMENTS {
                break;
            }
        }
        segs.sort_unstable();
        let mut s = Spool {
            dir: dir.to_path_buf(),
            max,
            seg_max: (max / 8).clamp(64 << 10, SEGMENT_MAX),
            segs: segs.into(),
            head_off: 0,
            writer: None,
            events: 0,
            skipped: 0,
            _lock: lock,
        };
        if let Some(&(first, size)) = s.segs.front() {
            if let Ok(t) = std::fs::read_to_string(dir.join(OFFSET_FILE)) {
                let mut it = t.split_whitespace().map(|v| v.parse::<u64>().ok());
                if let (Some(Some(seq)), Some(Some(off))) = (it.next(), it.next()) {
                    if seq == first {
                        s.head_off = off.min(size);
                    }
                }
            }
        }
        s.events = s.count_events();
        Ok(s)
    }

    /// Lines held by the segments (read once, when a spool is taken over).
    fn count_events(&self) -> u64 {
        let mut n = 0u64;
        for (i, &(seq, _)) in self.segs.iter().enumerate() {
            let Ok(mut f) = File::open(self.path(seq)) else {
                continue;
            };
            if i == 0 && f.seek(SeekFrom::Start(self.head_off)).is_err() {
                continue;
            }
            let mut buf = [0u8; 1 << 16];
            loop {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += buf[..k].iter().filter(|&&b| b == b'\n').count() as u64,
                }
            }
        }
        n
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.spool"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes held (not yet acknowledged).
    pub fn bytes(&self) -> u64 {
        self.segs
            .iter()
            .map(|s| s.1)
            .sum::<u64>()
            .saturating_sub(self.head_off)
    }

    /// Events held.
    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Appends one event (a line without its newline). `Ok(false)`: the spool is full (or the
    /// event too long): not spooled.
    pub fn append(&mut self, line: &str) -> std::io::Result<bool> {
        let len = line.len() as u64 + 1;
        if line.len() > MAX_EVENT || self.bytes().saturating_add(len) > self.max {
            return Ok(false);
        }
        let need_new = match (&self.writer, self.segs.back()) {
            (Some((seq, _)), Some(&(last, size))) => *seq != last || size >= self.seg_max,
            _ => true,
        };
        if need_new {
            if self.segs.len() >= MAX_SEGMENTS {
                return Ok(false);
            }
            self.close_writer()?;
            let seq = self.segs.back().map_or(1, |s| s.0.saturating_add(1));
            let f = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .create_new(true)
                    .append(true)
                    .mode(0o640)
                    .open(self.path(seq))?
            };
            self.segs.push_back((seq, 0));
            self.writer = Some((seq, BufWriter::with_capacity(1 << 16, f)));
        }
        let Some((_, w)) = self.writer.as_mut() else {
            return Ok(false);
        };
        let r = w
            .write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\n"));
        if let Err(e) = r {
            // What part reached the file is read back as a torn line and skipped.
            self.writer = None;
            return Err(e);
        }
        if let Some(last) = self.segs.back_mut() {
            last.1 += len;
        }
        self.events += 1;
        Ok(true)
    }

    /// Writes buffered appends to the segment file.
    pub fn sync_writes(&mut self) -> std::io::Result<()> {
        match self.writer.as_mut() {
            Some((_, w)) => w.flush(),
            None => Ok(()),
        }
    }

    fn close_writer(&mut self) -> std::io::Result<()> {
        match self.writer.take() {
            Some((_, mut w)) => w.flush(),
            None => Ok(()),
        }
    }

    /// Reads up to `n` events from the oldest segment, without removing them; see [`Spool::ack`].
    pub fn peek(&mut self, n: usize) -> std::io::Result<Peeked> {
        let mut p = Peeked {
            lines: Vec::new(),
            bytes: 0,
            skipped: 0,
        };
        let Some(&(seq, size)) = self.segs.front() else {
            return Ok(p);
        };
        let active = self.writer.as_ref().is_some_and(|w| w.0 == seq);
        if active {
            self.sync_writes()?;
        }
        let f = match File::open(self.path(seq)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Removed by someone else: what it held is gone.
                p.bytes = size.saturating_sub(self.head_off);
                return Ok(p);
            }
            Err(e) => return Err(e),
        };
        let mut r = BufReader::with_capacity(1 << 16, f);
        r.seek(SeekFrom::Start(self.head_off))?;
        let mut buf = Vec::new();
        while p.lines.len() < n {
            buf.clear();
            let got = (&mut r)
                .take(MAX_EVENT as u64 + 1)
                .read_until(b'\n', &mut buf)?;
            if got == 0 {
                // The end of the file. Of a segment no longer written, what the size says is
                // beyond it was lost: count it read.
                if !active && self.head_off + p.bytes < size {
                    p.bytes = size - self.head_off;
                }
                break;
            }
            p.bytes += got as u64;
            if buf.last() != Some(&b'\n') {
                if got > MAX_EVENT {
                    // Too long: skip up to its end.
                    p.skipped += 1;
                    p.bytes += skip_line(&mut r)?;
                    continue;
                }
                if active {
                    // Being written (cannot happen: writes are whole lines, flushed above).
                    p.bytes -= got as u64;
                    break;
                }
                // A torn last line.
                p.skipped += 1;
                continue;
            }
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            match String::from_utf8(std::mem::take(&mut buf)) {
                Ok(s) if !s.is_empty() => p.lines.push(s),
                Ok(_) => {}
                Err(_) => p.skipped += 1,
            }
        }
        Ok(p)
    }

    /// Forgets what [`Spool::peek`] returned (Redis took it): `bytes` of the oldest segment, and
    /// `events` events.
    pub fn ack(&mut self, bytes: u64, events: u64) -> std::io::Result<()> {
        self.events = self.events.saturating_sub(events);
        let Some(&(seq, size)) = self.segs.front() else {
            return Ok(());
        };
        self.head_off = self.head_off.saturating_add(bytes).min(size);
        if self.head_off >= size {
            if self.writer.as_ref().is_some_and(|w| w.0 == seq) {
                self.writer = None;
            }
            self.segs.pop_front();
            self.head_off = 0;
            match std::fs::remove_file(self.path(seq)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            if self.segs.is_empty() {
                self.events = 0;
                let _ = std::fs::remove_file(self.dir.join(OFFSET_FILE));
                return Ok(());
            }
        }
        let head = self.segs.front().map_or(0, |s| s.0);
        std::fs::write(
            self.dir.join(OFFSET_FILE),
            format!("{head} {}\n", self.head_off),
        )
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = self.close_writer();
    }
}

/// Reads up to and including the next newline (or the end); returns the bytes read.
fn skip_line(r: &mut impl BufRead) -> std::io::Result<u64> {
    let mut n = 0u64;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(n);
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(n + i as u64 + 1);
            }
            None => {
                let k = buf.len();
                r.consume(k);
                n += k as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xw-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn in_order_across_segments_and_restarts() {
        let d = tmp("order");
        let mut s = Spool::open(&d, 1 << 30).unwrap();
        s.seg_max = 100;
        for i in 0..50 {
            assert!(s.append(&format!("{{\"n\":{i}}}")).unwrap());
        }
        assert_eq!(s.events(), 50);
        assert!(s.segs.len() > 3);
        let p = s.peek(7).unwrap();
        assert_eq!(p.lines[0], "{\"n\":0}");
        s.ack(p.bytes, p.lines.len() as u64).unwrap();
        drop(s);
        // Taken over by the next run: from where Redis stopped acknowledging.
        let mut s = Spool::open(&d, 1 << 30).unwrap();
        let mut got = Vec::new();
        loop {
            let p = s.peek(5).unwrap();
            if p.bytes == 0 {
                break;
            }
            got.extend(p.lines.iter().cloned());
            s.ack(p.bytes, p.lines.len() as u64).unwrap();
        }
        let want: Vec<String> = (7..50).map(|i| format!("{{\"n\":{i}}}")).collect();
        assert_eq!(got, want);
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
        assert_eq!(s.events(), 0);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn one_process_per_spool() {
        let d = tmp("lock");
        let s = Spool::open(&d, 1 << 20).unwrap();
        let e = Spool::open(&d, 1 << 20)
            .err()
            .expect("a second user is refused");
        assert!(e.to_string().contains("another"), "{e}");
        drop(s);
        assert!(Spool::open(&d, 1 << 20).is_ok(), "free again once dropped");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bounded_and_torn_lines_are_skipped() {
        let d = tmp("bound");
        let mut s = Spool::open(&d, 30).unwrap();
        assert!(s.append("0123456789").unwrap());
        assert!(s.append("0123456789").unwrap());
        assert!(!s.append("0123456789").unwrap(), "over the bound");
        assert_eq!(s.bytes(), 22);
        drop(s);
        // A torn line and garbage at the end of a segment left behind.
        std::fs::write(d.join(format!("{:020}.spool", 9)), b"ok\n\xff\xfe\nhalf").unwrap();
        let mut s = Spool::open(&d, 1 << 20).unwrap();
        let mut got = Vec::new();
        let mut skipped = 0;
        loop {
            let p = s.peek(10).unwrap();
            if p.bytes == 0 {
                break;
            }
            skipped += p.skipped;
            got.extend(p.lines.iter().cloned());
            s.ack(p.bytes, p.lines.len() as u64).unwrap();
        }
        assert_eq!(got, ["0123456789", "0123456789", "ok"]);
        assert_eq!(skipped, 2);
        let _ = std::fs::remove_dir_all(&d);
    }
}
