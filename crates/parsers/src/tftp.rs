//! TFTP transactions (RFC 1350; options RFC 2347/2348/2349; windowsize RFC 7440).
//!
//! [`parse_request`] reads an RRQ/WRQ: file, mode, options. A [`Transfer`] then follows the
//! datagrams of the transfer (on the server's new port, or on the request flow itself when the
//! server answers from port 69): OACK options, DATA blocks counted once each (retransmissions and
//! window re-sends are duplicates, block numbers may wrap past 65535), completion on a short block,
//! ERROR. Bounded: names and option values are truncated, at most [`MAX_OPTIONS`] options kept.
//!
//! The packets are decoded by [`crate::tftp_records`]; this module is the state machine.

use crate::tftp_records::{self as rec, Packet};

pub const MAX_OPTIONS: usize = 8;
const MAX_TEXT: usize = 256;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// WRQ: the requester sends the file.
    pub write: bool,
    pub file: String,
    pub mode: String,
    pub options: Vec<(String, String)>,
}

fn text(b: &[u8]) -> String {
    let b = &b[..b.len().min(MAX_TEXT)];
    String::from_utf8_lossy(b).into_owned()
}

/// Option/value pairs until the bytes end (NUL padding tolerated).
fn options(rest: &[u8], out: &mut Vec<(String, String)>) -> bool {
    for o in rec::options(rest) {
        let Ok(o) = o else {
            return false;
        };
        if out.len() < MAX_OPTIONS {
            out.push((text(o.name).to_ascii_lowercase(), text(o.value)));
        }
    }
    true
}

/// An RRQ or WRQ datagram.
pub fn parse_request(d: &[u8]) -> Option<Request> {
    let (_, p) = rec::request(d).ok()?;
    let mut r = Request {
        write: p.write,
        file: text(p.file),
        mode: text(p.mode).to_ascii_lowercase(),
        options: Vec::new(),
    };
    options(p.options, &mut r.options);
    Some(r)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TftpError {
    pub code: u16,
    pub message: String,
}

/// The state of one transfer, seen from the requester (`from_requester` on each datagram).
#[derive(Clone, Debug)]
pub struct Transfer {
    /// WRQ: DATA flows from the requester.
    pub write: bool,
    /// False for a transfer seen without its request: the first DATA tells the direction.
    pub write_known: bool,
    pub blksize: u32,
    pub windowsize: u32,
    pub tsize: Option<u64>,
    /// Options the server acknowledged (OACK).
    pub oack: Vec<(String, String)>,
    /// File bytes, each block counted once.
    pub file_bytes: u64,
    /// Distinct DATA blocks.
    pub blocks: u64,
    pub duplicates: u64,
    /// Blocks that were never seen (a gap in the capture or lost packets).
    pub missing: u64,
    pub complete: bool,
    pub error: Option<TftpError>,
    /// Block numbers seen so far, extended past 65535 (0 = none yet).
    highest: u64,
    /// Which of the 64 blocks below `highest` were seen (bit i = highest - i).
    window: u64,
    pub malformed: u64,
}

impl Transfer {
    /// A transfer a request asked for: the options count once the server's OACK accepts them.
    pub fn new(write: bool) -> Self {
        Transfer {
            write,
            write_known: true,
            blksize: 512,
            windowsize: 1,
            tsize: None,
            oack: Vec::new(),
            file_bytes: 0,
            blocks: 0,
            duplicates: 0,
            missing: 0,
            complete: false,
            error: None,
            highest: 0,
            window: 0,
            malformed: 0,
        }
    }

    /// A transfer whose request was not seen (the capture started later, or the request went
    /// elsewhere): the requester is the side that did not send first.
    pub fn without_request() -> Self {
        let mut t = Transfer::new(false);
        t.write_known = false;
        t
    }

    /// One datagram of the transfer.
    /// One datagram of the transfer. A DATA block seen for the first time is returned as the
    /// file offset it starts at and its bytes (duplicates and malformed blocks are not).
    pub fn datagram<'a>(&mut self, from_requester: bool, d: &'a [u8]) -> Option<(u64, &'a [u8])> {
        let Ok((_, p)) = rec::packet(d) else {
            self.malformed += 1;
            return None;
        };
        match p {
            Packet::Data { block, data } => {
                // DATA travels from the requester on a write, from the server on a read.
                if !self.write_known {
                    self.write = from_requester;
                    self.write_known = true;
                }
                if from_requester != self.write {
                    self.malformed += 1;
                    return None;
                }
                let ext = self.data(block, data.len() as u64)?;
                return Some(((ext - 1).saturating_mul(self.blksize as u64), data));
            }
            Packet::Ack { .. } => {}
            Packet::Error { code, message } => {
                self.error = Some(TftpError {
                    code,
                    message: text(message),
                });
            }
            Packet::Oack { options: bytes } if !from_requester => {
                let mut o = Vec::new();
                if !options(bytes, &mut o) {
                    self.malformed += 1;
                }
                for (k, v) in &o {
                    match k.as_str() {
                        "blksize" => {
                            if let Ok(n) = v.parse::<u32>() {
                                if (8..=65464).contains(&n) {
                                    self.blksize = n;
                                }
                            }
                        }
                        "windowsize" => {
                            if let Ok(n) = v.parse::<u32>() {
                                if (1..=65535).contains(&n) {
                                    self.windowsize = n;
                                }
                            }
                        }
                        "tsize" => self.tsize = v.parse().ok(),
                        _ => {}
                    }
                }
                self.oack = o;
            }
            // A retransmitted request on the request flow.
            Packet::Request { .. } => {}
            // An OACK from the requester.
            Packet::Oack { .. } => self.malformed += 1,
        }
        None
    }

    /// Counts a DATA block; its 1-based number (16-bit wraps extended) when seen for the first time.
    fn data(&mut self, block: u16, len: u64) -> Option<u64> {
        // Extend the 16-bit block number to the candidate nearest the highest seen.
        let ext = if self.highest == 0 {
            block as u64
        } else {
            let base = self.highest & !0xffff;
            let cands = [
                base.wrapping_sub(0x10000) | block as u64,
                base | block as u64,
                (base + 0x10000) | block as u64,
            ];
            cands
                .into_iter()
                .filter(|c| *c < (1 << 48))
                .min_by_key(|c| c.abs_diff(self.highest))
                .unwrap_or(block as u64)
        };
        // Block 0 after a wrap is valid (rollover to 0); block 0 at the start is not data.
        if ext == 0 {
            self.malformed += 1;
            return None;
        }
        if ext > self.highest {
            let jump = ext - self.highest;
            let expected = if self.highest == 0 { ext - 1 } else { jump - 1 };
            // Blocks skipped over were not seen (yet).
            self.missing += expected.min(1 << 20);
            self.window = if jump >= 64 { 0 } else { self.window << jump };
            self.window |= 1;
            self.highest = ext;
            self.count(len);
            Some(ext)
        } else {
            let back = self.highest - ext;
            if back >= 64 {
                self.duplicates += 1;
                return None;
            }
            if self.window & (1 << back) != 0 {
                self.duplicates += 1;
                return None;
            }
            // A block re-ordered within the window: first time seen.
            self.window |= 1 << back;
            self.missing = self.missing.saturating_sub(1);
            self.count(len);
            Some(ext)
        }
    }

    fn count(&mut self, len: u64) {
        self.blocks += 1;
        self.file_bytes += len;
        if len < self.blksize as u64 {
            self.complete = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(block: u16, n: usize) -> Vec<u8> {
        let mut v = vec![0, 3];
        v.extend_from_slice(&block.to_be_bytes());
        v.extend(std::iter::repeat_n(b'x', n));
        v
    }

    #[test]
    fn request_with_options() {
        let r = parse_request(b"\x00\x02up.bin\x00octet\x00blksize\x001024\x00tsize\x00300000\x00")
            .unwrap();
        assert!(r.write);
        assert_eq!((r.file.as_str(), r.mode.as_str()), ("up.bin", "octet"));
        assert_eq!(r.options.len(), 2);
        assert!(parse_request(b"\x00\x03x\x00octet\x00").is_none());
        assert!(parse_request(b"\x00\x01").is_none());
        assert!(parse_request(b"\x00\x01abc").is_none());
    }

    #[test]
    fn counts_blocks_once_and_completes() {
        let mut t = Transfer::new(true);
        t.datagram(false, b"\x00\x06blksize\x001024\x00windowsize\x004\x00");
        assert_eq!((t.blksize, t.windowsize), (1024, 4));
        for b in 1..=3 {
            t.datagram(true, &data(b, 1024));
        }
        t.datagram(true, &data(2, 1024)); // window re-send
        t.datagram(true, &data(4, 100));
        assert_eq!((t.blocks, t.duplicates, t.file_bytes), (4, 1, 3172));
        assert!(t.complete);
        // DATA from the wrong side is not file data.
        t.datagram(false, &data(5, 10));
        assert_eq!(t.file_bytes, 3172);
    }

    #[test]
    fn block_numbers_wrap() {
        let mut t = Transfer::new(false);
        for i in 1..=70_000u64 {
            t.datagram(false, &data((i % 65536) as u16, 512));
        }
        assert_eq!(t.blocks, 70_000);
        assert_eq!(t.duplicates, 0);
        assert_eq!(t.file_bytes, 70_000 * 512);
        assert!(!t.complete);
    }

    #[test]
    fn error_and_junk() {
        let mut t = Transfer::new(false);
        t.datagram(false, b"\x00\x05\x00\x01File not found\x00");
        assert_eq!(t.error.as_ref().unwrap().code, 1);
        for junk in [
            &b""[..],
            b"\x00",
            b"\x01\x02",
            b"\x00\x03\x00",
            b"\x00\x09abc",
        ] {
            t.datagram(false, junk);
        }
        assert!(t.malformed >= 3);
    }
}
