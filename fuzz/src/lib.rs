//! Input formats the fuzz targets share with `seed.py`, so that seeds cut from real captures land on
//! the paths they exercise instead of being rejected at the first byte.
//!
//! A *record stream* is `[flags u8][len u16 LE][len bytes]` repeated; a last record cut short keeps
//! the bytes there are. Flags bit 0 is the direction (1 = client to server, or from the requester);
//! the other bits are the target's own.

use xferwatch_wire::LinkType;

/// The DLT numbers the decoder knows; a decode input's first byte picks one (modulo the length).
pub const LINK_DLTS: [i32; 11] = [0, 1, 9, 50, 101, 104, 108, 113, 228, 229, 276];

/// The link type an input byte selects.
pub fn link(selector: u8) -> LinkType {
    LinkType::from_dlt(LINK_DLTS[selector as usize % LINK_DLTS.len()])
}

/// One record of a record stream.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    pub flags: u8,
    pub data: &'a [u8],
}

impl Record<'_> {
    /// Direction bit: client to server (TCP), from the requester (TFTP).
    pub fn to_server(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// The records of `input`, in order.
pub fn records(input: &[u8]) -> Records<'_> {
    Records { rest: input }
}

pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let (&flags, rest) = self.rest.split_first()?;
        let len = match rest {
            [a, b, ..] => u16::from_le_bytes([*a, *b]) as usize,
            _ => {
                self.rest = &[];
                return None;
            }
        };
        let body = &rest[2..];
        let n = len.min(body.len());
        self.rest = &body[n..];
        Some(Record {
            flags,
            data: &body[..n],
        })
    }
}

/// Little-endian reader over fuzz bytes that yields zeros once the input is spent, so an op
/// interpreter never has to bail out halfway.
pub struct Bytes<'a> {
    rest: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Bytes { rest: b }
    }
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
    pub fn u8(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&b, r)) => {
                self.rest = r;
                b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.rest.len());
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        a
    }
}
