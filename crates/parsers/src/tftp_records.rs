//! TFTP wire records (RFC 1350; option extension RFC 2347), decoded with `nom`.
//!
//! Pure decoders: a datagram in, a typed packet out, borrowing its strings and data from the
//! datagram. No allocation, no panics. The transfer state machine is in [`crate::tftp`].

use nom::bytes::complete::{tag, take_till};
use nom::combinator::{rest, verify};
use nom::number::complete::be_u16;
use nom::sequence::terminated;
use nom::{IResult, Parser};

/// Result of a record decoder: the bytes after the record, and the record.
pub type Decoded<'a, T> = IResult<&'a [u8], T>;

pub const OP_RRQ: u16 = 1;
pub const OP_WRQ: u16 = 2;
pub const OP_DATA: u16 = 3;
pub const OP_ACK: u16 = 4;
pub const OP_ERROR: u16 = 5;
pub const OP_OACK: u16 = 6;

/// The 16-bit big-endian opcode that starts every TFTP packet.
pub fn opcode(i: &[u8]) -> Decoded<'_, u16> {
    be_u16(i)
}

/// A NUL-terminated string (the NUL consumed, not returned).
pub fn cstr(i: &[u8]) -> Decoded<'_, &[u8]> {
    terminated(take_till(|c| c == 0), tag(&b"\0"[..])).parse(i)
}

/// An RRQ or WRQ (RFC 1350 section 5, RFC 2347): file name, mode, and the option bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestPacket<'a> {
    /// WRQ.
    pub write: bool,
    /// Not empty.
    pub file: &'a [u8],
    /// Not empty.
    pub mode: &'a [u8],
    /// The option/value pairs, undecoded (see [`options`]).
    pub options: &'a [u8],
}

/// An RRQ or WRQ datagram; an error for any other opcode, or an empty or unterminated file name
/// or mode.
pub fn request(i: &[u8]) -> Decoded<'_, RequestPacket<'_>> {
    let (i, op) = verify(opcode, |op| *op == OP_RRQ || *op == OP_WRQ).parse(i)?;
    let (i, file) = verify(cstr, |s: &[u8]| !s.is_empty()).parse(i)?;
    let (i, mode) = verify(cstr, |s: &[u8]| !s.is_empty()).parse(i)?;
    let (i, options) = rest(i)?;
    Ok((
        i,
        RequestPacket {
            write: op == OP_WRQ,
            file,
            mode,
            options,
        },
    ))
}

/// A TFTP packet as a transfer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// RRQ/WRQ: the body is not decoded here (see [`request`]).
    Request {
        write: bool,
    },
    Data {
        block: u16,
        data: &'a [u8],
    },
    Ack {
        block: u16,
    },
    /// The message up to its NUL, or to the end of the datagram when it has none.
    Error {
        code: u16,
        message: &'a [u8],
    },
    /// The option/value pairs, undecoded (see [`options`]).
    Oack {
        options: &'a [u8],
    },
}

/// One datagram of a transfer (RFC 1350 section 5, RFC 2347 OACK). An error for an unknown
/// opcode, or a DATA/ACK/ERROR shorter than its 4-byte header.
pub fn packet(i: &[u8]) -> Decoded<'_, Packet<'_>> {
    let (i, op) = opcode(i)?;
    match op {
        OP_RRQ | OP_WRQ => {
            let (i, _body) = rest(i)?;
            Ok((
                i,
                Packet::Request {
                    write: op == OP_WRQ,
                },
            ))
        }
        OP_DATA => {
            let (i, block) = be_u16(i)?;
            let (i, data) = rest(i)?;
            Ok((i, Packet::Data { block, data }))
        }
        OP_ACK => {
            let (i, block) = be_u16(i)?;
            Ok((i, Packet::Ack { block }))
        }
        OP_ERROR => {
            let (i, code) = be_u16(i)?;
            let (i, message) = take_till(|c| c == 0)(i)?;
            Ok((i, Packet::Error { code, message }))
        }
        OP_OACK => {
            let (i, options) = rest(i)?;
            Ok((i, Packet::Oack { options }))
        }
        _ => Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Switch,
        ))),
    }
}

/// One option of an RRQ/WRQ/OACK: name and value, as on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TftpOption<'a> {
    /// Not empty.
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// One NUL-terminated option name (not empty) and its NUL-terminated value.
pub fn option(i: &[u8]) -> Decoded<'_, TftpOption<'_>> {
    let (i, name) = verify(cstr, |s: &[u8]| !s.is_empty()).parse(i)?;
    let (i, value) = cstr(i)?;
    Ok((i, TftpOption { name, value }))
}

/// The option/value pairs of `bytes`, until they end or only NUL padding is left. The iterator
/// yields `Err(())` once, at the first malformed pair, and then stops.
pub fn options(bytes: &[u8]) -> Options<'_> {
    Options { rest: bytes }
}

/// Iterator over option/value pairs (see [`options`]).
#[derive(Clone, Debug)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<TftpOption<'a>, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.iter().all(|&c| c == 0) {
            return None;
        }
        match option(self.rest) {
            Ok((rest, o)) => {
                self.rest = rest;
                Some(Ok(o))
            }
            Err(_) => {
                self.rest = &[];
                Some(Err(()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let d = b"\x00\x02up.bin\x00octet\x00blksize\x001024\x00";
        let (_, r) = request(d).unwrap();
        assert!(r.write);
        assert_eq!((r.file, r.mode), (&b"up.bin"[..], &b"octet"[..]));
        assert_eq!(r.options, b"blksize\x001024\x00");
        assert!(request(b"\x00\x03x\x00octet\x00").is_err());
        assert!(request(b"\x00\x01\x00octet\x00").is_err());
        assert!(request(b"\x00\x01x\x00\x00").is_err());
        assert!(request(b"\x00\x01x\x00octet").is_err());
        assert!(request(b"\x01\x01x\x00octet\x00").is_err());
    }

    #[test]
    fn packets() {
        let cases: [(&[u8], Packet); 7] = [
            (
                b"\x00\x03\x01\x02abc",
                Packet::Data {
                    block: 0x0102,
                    data: b"abc",
                },
            ),
            (
                b"\x00\x03\xff\xff",
                Packet::Data {
                    block: 0xffff,
                    data: b"",
                },
            ),
            (b"\x00\x04\x00\x07", Packet::Ack { block: 7 }),
            (
                b"\x00\x05\x00\x01nope\x00junk",
                Packet::Error {
                    code: 1,
                    message: b"nope",
                },
            ),
            (
                b"\x00\x05\x00\x02no nul",
                Packet::Error {
                    code: 2,
                    message: b"no nul",
                },
            ),
            (
                b"\x00\x06a\x00b\x00",
                Packet::Oack {
                    options: b"a\x00b\x00",
                },
            ),
            (b"\x00\x01", Packet::Request { write: false }),
        ];
        for (d, want) in cases {
            assert_eq!(packet(d).unwrap().1, want, "{d:?}");
        }
        assert!(packet(b"\x00\x07\x00\x00").is_err());
        assert!(packet(b"\x01\x03\x00\x01").is_err());
    }

    #[test]
    fn truncated_at_every_length() {
        let whole: [&[u8]; 4] = [
            b"\x00\x03\x00\x01data",
            b"\x00\x04\x00\x01",
            b"\x00\x05\x00\x01msg\x00",
            b"\x00\x01file\x00octet\x00",
        ];
        for d in whole {
            for n in 0..d.len() {
                let cut = &d[..n];
                let _ = packet(cut);
                let _ = request(cut);
                let _ = options(cut).count();
                if n < 4 && d[1] != 1 {
                    assert!(packet(cut).is_err(), "{cut:?}");
                }
            }
        }
        assert!(request(b"\x00\x01file\x00octet").is_err());
    }

    #[test]
    fn option_pairs() {
        let o: Vec<_> = options(b"blksize\x001024\x00tsize\x000\x00\x00\x00").collect();
        assert_eq!(
            o,
            [
                Ok(TftpOption {
                    name: b"blksize",
                    value: b"1024"
                }),
                Ok(TftpOption {
                    name: b"tsize",
                    value: b"0"
                })
            ]
        );
        // A pair cut short: the pairs before it, then one error.
        let o: Vec<_> = options(b"a\x001\x00b\x00").collect();
        assert_eq!(o.len(), 2);
        assert_eq!(o[1], Err(()));
        // An empty name is malformed.
        assert_eq!(options(b"\x00x\x00y\x00").next(), Some(Err(())));
        assert_eq!(options(b"").next(), None);
        assert_eq!(options(b"\x00\x00").next(), None);
    }

    #[test]
    fn absurd_input() {
        let big = vec![b'a'; 70_000];
        assert!(option(&big).is_err());
        assert_eq!(options(&big).count(), 1);
        let mut many = Vec::new();
        for _ in 0..10_000 {
            many.extend_from_slice(b"k\x00v\x00");
        }
        assert_eq!(options(&many).filter(|o| o.is_ok()).count(), 10_000);
        let mut d = vec![0, 3, 0xff, 0xff];
        d.extend_from_slice(&big);
        assert!(
            matches!(packet(&d).unwrap().1, Packet::Data { block: 0xffff, data } if data.len() == 70_000)
        );
    }
}
