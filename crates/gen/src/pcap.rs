//! Classic pcap output (LINKTYPE_ETHERNET, microsecond timestamps), Internet checksums, and a small
//! reader used to check generated files.

use std::io::{self, Write};

/// Link type of every record: Ethernet.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Snap length written in the file header.
pub const SNAPLEN: u32 = 65535;
/// Size of the file header.
pub const FILE_HEADER_LEN: usize = 24;
/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 16;

const FLUSH_AT: usize = 4 << 20;

/// Buffered pcap writer. Frames are built in place in its buffer, so writing a packet allocates
/// nothing.
pub struct PcapWriter<W: Write> {
    w: W,
    buf: Vec<u8>,
    /// Records written.
    pub packets: u64,
    /// Frame bytes written (record payloads, headers excluded).
    pub frame_bytes: u64,
    /// Bytes of the file so far, headers included.
    pub file_bytes: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header.
    pub fn new(w: W) -> io::Result<Self> {
        let mut buf = Vec::with_capacity(FLUSH_AT + 128 * 1024);
        buf.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        buf.extend_from_slice(&2u16.to_le_bytes());
        buf.extend_from_slice(&4u16.to_le_bytes());
        buf.extend_from_slice(&0i32.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&SNAPLEN.to_le_bytes());
        buf.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        Ok(PcapWriter {
            w,
            buf,
            packets: 0,
            frame_bytes: 0,
            file_bytes: FILE_HEADER_LEN as u64,
        })
    }

    /// Appends a record of `len` frame bytes at time `ts_us` (microseconds since the epoch) and
    /// returns the zeroed frame to fill in.
    pub fn frame(&mut self, ts_us: u64, len: usize) -> io::Result<&mut [u8]> {
        if self.buf.len() >= FLUSH_AT {
            self.w.write_all(&self.buf)?;
            self.buf.clear();
        }
        let start = self.buf.len();
        self.buf.resize(start + RECORD_HEADER_LEN + len, 0);
        let rec = &mut self.buf[start..];
        rec[0..4].copy_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
        rec[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&(len as u32).to_le_bytes());
        self.packets += 1;
        self.frame_bytes += len as u64;
        self.file_bytes += (RECORD_HEADER_LEN + len) as u64;
        Ok(&mut rec[RECORD_HEADER_LEN..])
    }

    /// Flushes everything and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.write_all(&self.buf)?;
        self.buf.clear();
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Adds `data` to a one's-complement accumulator (big-endian 16-bit words; an odd last byte is
/// padded with zero). `data` must start at an even offset of the checksummed range.
#[inline]
pub fn csum_add(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (v >> 32) + (v & 0xffff_ffff);
    }
    let mut rest = chunks.remainder();
    while rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [b] = rest {
        acc += u64::from(*b) << 8;
    }
    acc
}

/// Folds an accumulator into the final (complemented) 16-bit checksum.
#[inline]
pub fn csum_fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// One record of a pcap file.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Timestamp in microseconds.
    pub ts_us: u64,
    /// Captured bytes.
    pub data: &'a [u8],
    /// Original length on the wire.
    pub orig_len: u32,
}

/// Reads a classic little-endian microsecond pcap held in memory.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Link type from the file header.
    pub linktype: u32,
}

impl<'a> Reader<'a> {
    /// Checks the file header.
    pub fn new(buf: &'a [u8]) -> Result<Self, String> {
        if buf.len() < FILE_HEADER_LEN {
            return Err("short file header".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        if u32_at(0) != 0xa1b2_c3d4 {
            return Err(format!("bad magic {:#x}", u32_at(0)));
        }
        if buf[4..8] != [2, 0, 4, 0] {
            return Err("not pcap 2.4".into());
        }
        Ok(Reader {
            buf,
            pos: FILE_HEADER_LEN,
            linktype: u32_at(20),
        })
    }

    /// The next record, `Ok(None)` at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<Record<'a>>, String> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return Ok(None);
        }
        if rest.len() < RECORD_HEADER_LEN {
            return Err(format!("truncated record header at {}", self.pos));
        }
        let u32_at =
            |o: usize| u32::from_le_bytes([rest[o], rest[o + 1], rest[o + 2], rest[o + 3]]);
        let (sec, usec, incl, orig) = (u32_at(0), u32_at(4), u32_at(8), u32_at(12));
        if usec >= 1_000_000 {
            return Err(format!("microseconds out of range at {}", self.pos));
        }
        if incl > SNAPLEN || incl > orig {
            return Err(format!("bad record length {incl}/{orig} at {}", self.pos));
        }
        let end = RECORD_HEADER_LEN + incl as usize;
        if rest.len() < end {
            return Err(format!("truncated record at {}", self.pos));
        }
        self.pos += end;
        Ok(Some(Record {
            ts_us: u64::from(sec) * 1_000_000 + u64::from(usec),
            data: &rest[RECORD_HEADER_LEN..end],
            orig_len: orig,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_known_ipv4_header() {
        // Example header from RFC 1071 discussions (checksum field zeroed): 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(csum_fold(csum_add(0, &h)), 0xb861);
        // Odd lengths pad with zero.
        assert_eq!(csum_fold(csum_add(0, &[0x12])), !0x1200);
        assert_eq!(
            csum_fold(csum_add(0, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])),
            csum_fold(csum_add(
                csum_add(0, &[1, 2, 3, 4]),
                &[5, 6, 7, 8, 9, 10, 11]
            ))
        );
    }

    #[test]
    fn write_then_read() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.frame(1_500_000, 3).unwrap().copy_from_slice(&[1, 2, 3]);
        w.frame(1_500_001, 1).unwrap()[0] = 9;
        let buf = w.finish().unwrap();
        let mut r = Reader::new(&buf).unwrap();
        let a = r.next_record().unwrap().unwrap();
        assert_eq!((a.ts_us, a.data), (1_500_000, &[1u8, 2, 3][..]));
        let b = r.next_record().unwrap().unwrap();
        assert_eq!((b.ts_us, b.data), (1_500_001, &[9u8][..]));
        assert!(r.next_record().unwrap().is_none());
    }
}
