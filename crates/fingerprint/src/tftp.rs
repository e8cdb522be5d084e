//! TFTP (RFC 1350, options RFC 2347/2348/2349, windowsize RFC 7440) over UDP.
//!
//! Packets (all strictly parsed, every length checked):
//! * RRQ (1) / WRQ (2): non-empty filename (any bytes but NUL: a UTF-8 or
//!   Latin-1 name, or a stray control byte, does not hide a request), NUL; mode
//!   `netascii`/`octet`/`mail` (any case), NUL; then zero or more
//!   NUL-terminated option/value pairs (printable, non-empty option name);
//!   trailing NUL padding is tolerated;
//! * DATA (3): block number, 0..=65464 bytes of data;
//! * ACK (4): exactly a block number;
//! * ERROR (5): code 0..=8, printable message, NUL (NUL padding tolerated);
//! * OACK (6): one or more NUL-terminated printable option/value pairs.
//!
//! Verdicts, on the datagrams in arrival order:
//! * a request first is a match on its own; `reversed` when it travels in
//!   `to_client`. If the other direction already answered, its first
//!   datagram must parse as TFTP.
//! * transfer flows (the server answers from a new port, so the flow has no
//!   request): first datagram DATA 1, ACK 0 or OACK, followed by the
//!   consistent counterpart from the other side (ACK 1 after DATA 1, DATA 1
//!   after ACK 0, ACK 0 or DATA 1 after OACK, or ERROR). Every further
//!   datagram must keep block numbers consistent (DATA from the data sender
//!   with a block at most one past the last acknowledged window of 64, ACKs
//!   from the other side never ahead of the data). The sender of the first
//!   datagram is the TFTP server: `reversed` when it travels in `to_server`.
//! * a first datagram alone (or only retransmissions of it) says NeedMore.
//!   On a final flow: a lone OACK carrying a known option name
//!   (blksize, tsize, timeout, windowsize, ...) matches; a lone DATA 1 of
//!   1..=511 bytes (a whole one-block file) matches if at least 90 % of it is
//!   printable text; a lone ERROR with a non-empty printable message matches;
//!   anything else does not.
//! * mid-transfer pickup (first datagram DATA n > 1 or ACK n > 0) is not
//!   recognised.

use crate::{need_more, AppProto, Fingerprint, Observed, Transport, Verdict};

/// TFTP fingerprint (UDP only).
#[derive(Debug, Clone, Copy, Default)]
pub struct TftpFingerprint;

/// Largest DATA payload (blksize option maximum, RFC 2348).
const MAX_DATA: usize = 65464;
/// Largest windowsize we accept between ACKs.
const MAX_WINDOW: u16 = 64;

const KNOWN_OPTIONS: &[&[u8]] = &[
    b"blksize",
    b"tsize",
    b"timeout",
    b"windowsize",
    b"multicast",
    b"rollover",
    b"utimeout",
];

impl Fingerprint for TftpFingerprint {
    fn proto(&self) -> AppProto {
        AppProto::Tftp
    }

    fn probe(&self, obs: &Observed<'_>) -> Verdict {
        if obs.transport != Transport::Udp {
            return Verdict::NoMatch;
        }
        let Some(first) = obs.dgrams.first() else {
            return need_more(obs);
        };
        let Some(p0) = packet(first.data) else {
            return Verdict::NoMatch;
        };
        let other = obs.dgrams.iter().find(|d| d.to_server != first.to_server);
        match p0 {
            Pkt::Request => {
                if let Some(o) = other {
                    if packet(o.data).is_none() {
                        return Verdict::NoMatch;
                    }
                }
                Verdict::Match {
                    reversed: !first.to_server,
                }
            }
            Pkt::Data { block: 1, .. } | Pkt::Ack { block: 0 } | Pkt::Oack { .. } => {
                transfer(obs, p0, first.to_server, other.is_some())
            }
            Pkt::Error { printable_msg } => {
                if other.is_some() || obs.dgrams.len() > 1 {
                    Verdict::NoMatch
                } else if !obs.final_ {
                    Verdict::NeedMore
                } else if printable_msg {
                    Verdict::Match {
                        reversed: first.to_server,
                    }
                } else {
                    Verdict::NoMatch
                }
            }
            _ => Verdict::NoMatch,
        }
    }
}

/// Check a transfer flow starting with DATA 1 / ACK 0 / OACK (sent by the server).
fn transfer(obs: &Observed<'_>, p0: Pkt, server_to_server: bool, has_other: bool) -> Verdict {
    // Which side sends DATA: Some(true) = the first sender (the server, i.e. a
    // read transfer), Some(false) = the other side (write transfer), None =
    // not known yet (OACK before the counterpart).
    let mut data_from_first: Option<bool> = match p0 {
        Pkt::Data { .. } => Some(true),
        Pkt::Ack { .. } => Some(false),
        _ => None,
    };
    // Highest DATA block sent and highest ACK seen.
    let mut max_data: u16 = match p0 {
        Pkt::Data { block, .. } => block,
        _ => 0,
    };
    let mut max_ack: u16 = 0;
    let mut counterpart = false;
    for d in obs.dgrams.iter().skip(1) {
        let from_first = d.to_server == server_to_server;
        let Some(p) = packet(d.data) else {
            return Verdict::NoMatch;
        };
        match p {
            Pkt::Error { .. } => {
                // An error ends the transfer; fine from either side once started.
                if !from_first {
                    counterpart = true;
                }
                break;
            }
            Pkt::Request => return Verdict::NoMatch,
            Pkt::Oack { .. } => {
                // Only the first sender may (re)send its OACK, before any data.
                if !from_first || !matches!(p0, Pkt::Oack { .. }) || max_data != 0 {
                    return Verdict::NoMatch;
                }
            }
            Pkt::Data { block, .. } => {
                let dir = *data_from_first.get_or_insert(from_first);
                if dir != from_first || block == 0 {
                    return Verdict::NoMatch;
                }
                // Retransmissions are fine; never more than one block past the
                // highest sent, never behind the acknowledged data, and within a window.
                if block > max_data.saturating_add(1)
                    || block < max_ack
                    || block > max_ack.saturating_add(MAX_WINDOW)
                {
                    return Verdict::NoMatch;
                }
                max_data = max_data.max(block);
                if !from_first {
                    counterpart = true;
                }
            }
            Pkt::Ack { block } => {
                let dir = *data_from_first.get_or_insert(!from_first);
                if dir == from_first
                    || block > max_data
                    || block < max_ack.saturating_sub(MAX_WINDOW)
                {
                    return Verdict::NoMatch;
                }
                // The first ACK of a write transfer (ACK 0) or after an OACK (ACK 0)
                // is block 0; later ones acknowledge data.
                max_ack = max_ack.max(block);
                if !from_first {
                    counterpart = true;
                }
            }
        }
    }
    if counterpart {
        return Verdict::Match {
            reversed: server_to_server,
        };
    }
    if has_other {
        // The other side spoke but only with something we skipped past.
        return Verdict::NoMatch;
    }
    if !obs.final_ {
        return Verdict::NeedMore;
    }
    // Final, one-sided flow.
    let only_retransmissions = obs
        .dgrams
        .iter()
        .all(|d| d.data == obs.dgrams.first().map_or(&[][..], |f| f.data));
    let lone_ok = match p0 {
        Pkt::Oack { known_option } => known_option,
        Pkt::Data { len, printable, .. } => (1..512).contains(&len) && printable,
        _ => false,
    };
    if only_retransmissions && lone_ok {
        Verdict::Match {
            reversed: server_to_server,
        }
    } else {
        Verdict::NoMatch
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pkt {
    Request,
    Data {
        block: u16,
        len: usize,
        printable: bool,
    },
    Ack {
        block: u16,
    },
    Error {
        printable_msg: bool,
    },
    Oack {
        known_option: bool,
    },
}

fn is_printable(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

/// Split off a NUL-terminated string; `None` if there is no NUL.
fn cstr(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = buf.iter().position(|&b| b == 0)?;
    let (s, rest) = buf.split_at(nul);
    Some((s, rest.get(1..).unwrap_or(&[])))
}

/// Parse option/value pairs up to the end (NUL padding allowed at the end).
/// Returns (number of pairs, saw a known option) or `None` if malformed.
fn options(mut rest: &[u8]) -> Option<(usize, bool)> {
    let mut pairs = 0usize;
    let mut known = false;
    while !rest.iter().all(|&b| b == 0) {
        let (name, r) = cstr(rest)?;
        let (value, r) = cstr(r)?;
        if name.is_empty()
            || !name.iter().all(|&b| is_printable(b))
            || !value.iter().all(|&b| is_printable(b))
        {
            return None;
        }
        known |= KNOWN_OPTIONS.iter().any(|k| k.eq_ignore_ascii_case(name));
        pairs += 1;
        rest = r;
    }
    Some((pairs, known))
}

pub(crate) fn is_request(d: &[u8]) -> bool {
    matches!(packet(d), Some(Pkt::Request))
}

fn is_mode(m: &[u8]) -> bool {
    [&b"netascii"[..], b"octet", b"mail"]
        .iter()
        .any(|x| x.eq_ignore_ascii_case(m))
}

/// A request whose file name is empty, NUL-padded or split by NULs: returns what follows the
/// mode's terminating NUL.
fn lenient_request(body: &[u8]) -> Option<&[u8]> {
    let limit = body.len().min(512);
    let mut start = 0;
    while start < limit {
        let end = start + body[start..].iter().position(|&b| b == 0)?;
        let token = &body[start..end];
        if !token.is_empty() && is_mode(token) {
            let name = &body[..start];
            return (name.last() == Some(&0)).then(|| &body[end + 1..]);
        }
        start = end + 1;
    }
    None
}

fn packet(d: &[u8]) -> Option<Pkt> {
    let (&[0, op], body) = d.split_first_chunk::<2>()? else {
        return None;
    };
    match op {
        1 | 2 => {
            // A file name may hold any byte but NUL (a UTF-8 or Latin-1 name, a stray control
            // byte): the NUL-delimited transfer mode is the evidence, not the name's text.
            let strict = cstr(body).and_then(|(file, rest)| {
                if file.is_empty() {
                    return None;
                }
                let (mode, rest) = cstr(rest)?;
                is_mode(mode).then_some(rest)
            });
            // Real clients also send empty or NUL-padded file names; the NUL-delimited transfer
            // mode is the strong evidence, so find it directly.
            let rest = match strict {
                Some(rest) => rest,
                None => lenient_request(body)?,
            };
            options(rest)?;
            Some(Pkt::Request)
        }
        3 => {
            let (&[hi, lo], data) = body.split_first_chunk::<2>()?;
            if data.len() > MAX_DATA {
                return None;
            }
            let text = data
                .iter()
                .filter(|&&b| is_printable(b) || b == b'\n' || b == b'\r' || b == b'\t')
                .count();
            Some(Pkt::Data {
                block: u16::from_be_bytes([hi, lo]),
                len: data.len(),
                printable: text * 10 >= data.len() * 9,
            })
        }
        4 => match body {
            &[hi, lo] => Some(Pkt::Ack {
                block: u16::from_be_bytes([hi, lo]),
            }),
            _ => None,
        },
        5 => {
            let (&[0, code], msg) = body.split_first_chunk::<2>()? else {
                return None;
            };
            if code > 8 {
                return None;
            }
            let (text, rest) = cstr(msg)?;
            if !text.iter().all(|&b| is_printable(b)) || !rest.iter().all(|&b| b == 0) {
                return None;
            }
            Some(Pkt::Error {
                printable_msg: !text.is_empty(),
            })
        }
        6 => {
            let (pairs, known) = options(body)?;
            (pairs > 0).then_some(Pkt::Oack {
                known_option: known,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dgram;

    fn probe(d: &[Dgram<'_>], f: bool) -> Verdict {
        TftpFingerprint.probe(&Observed {
            transport: Transport::Udp,
            to_server: b"",
            to_client: b"",
            dgrams: d,
            final_: f,
        })
    }

    fn dg(to_server: bool, data: &[u8]) -> Dgram<'_> {
        Dgram { to_server, data }
    }

    #[test]
    fn packets() {
        assert_eq!(
            packet(b"\x00\x01rfc1350.txt\x00octet\x00"),
            Some(Pkt::Request)
        );
        assert_eq!(
            packet(b"\x00\x01a\x00NetAscii\x00blksize\x001428\x00"),
            Some(Pkt::Request)
        );
        // empty and NUL-padded file names are sent by real clients (both seen in public captures)
        assert_eq!(packet(b"\x00\x01\x00octet\x00"), Some(Pkt::Request));
        assert_eq!(
            packet(b"\x00\x01\x00\x00\x00\x00octet\x00"),
            Some(Pkt::Request)
        );
        // Issue 12: a file name's bytes do not hide a request (Latin-1, UTF-8, a stray ESC).
        assert_eq!(packet(b"\x00\x01\xff\x00octet\x00"), Some(Pkt::Request));
        assert_eq!(
            packet(b"\x00\x02caf\xe9\x1b.bin\x00octet\x00"),
            Some(Pkt::Request)
        );
        assert_eq!(packet(b"\x00\x02caf\xe9.bin\x00octets\x00"), None);
        assert_eq!(packet(b"\x00\x01a\x00binary\x00"), None);
        assert_eq!(packet(b"\x00\x01a\x00octet\x00blksize\x00"), None); // option without value
        assert_eq!(packet(b"\x00\x04\x00\x01"), Some(Pkt::Ack { block: 1 }));
        assert_eq!(packet(b"\x00\x04\x00"), None);
        assert_eq!(
            packet(b"\x00\x05\x00\x01File not found\x00"),
            Some(Pkt::Error {
                printable_msg: true
            })
        );
        assert_eq!(packet(b"\x00\x05\x00\x09x\x00"), None);
        assert_eq!(
            packet(b"\x00\x06blksize\x00256\x00"),
            Some(Pkt::Oack { known_option: true })
        );
        assert_eq!(packet(b"\x00\x06"), None);
        assert_eq!(packet(b"\x00\x07"), None);
        assert_eq!(packet(b""), None);
    }

    #[test]
    fn transfers() {
        let data1 = b"\x00\x03\x00\x01hello\n";
        let ack1 = b"\x00\x04\x00\x01";
        assert_eq!(probe(&[dg(false, data1)], false), Verdict::NeedMore);
        assert_eq!(
            probe(&[dg(false, data1), dg(true, ack1)], false),
            Verdict::Match { reversed: false }
        );
        assert_eq!(
            probe(&[dg(true, data1), dg(false, ack1)], false),
            Verdict::Match { reversed: true }
        );
        // Lone small printable DATA 1 on a final flow.
        assert_eq!(
            probe(&[dg(false, data1)], true),
            Verdict::Match { reversed: false }
        );
        // ACK for a block never sent.
        assert_eq!(
            probe(&[dg(false, data1), dg(true, b"\x00\x04\x00\x05")], false),
            Verdict::NoMatch
        );
        // Lone ACK 0: never enough.
        assert_eq!(
            probe(&[dg(false, b"\x00\x04\x00\x00")], true),
            Verdict::NoMatch
        );
        // ACK 0 then DATA 1 (write transfer).
        assert_eq!(
            probe(&[dg(false, b"\x00\x04\x00\x00"), dg(true, data1)], false),
            Verdict::Match { reversed: false }
        );
        // Data from the wrong side.
        assert_eq!(
            probe(&[dg(false, b"\x00\x04\x00\x00"), dg(false, data1)], false),
            Verdict::NoMatch
        );
    }
}
