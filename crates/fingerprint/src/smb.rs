//! SMB1 / SMB2 / SMB3 over the NetBIOS session service (RFC 1002, port 139
//! style) or direct TCP (port 445 style, MS-SMB2 §2.1).
//!
//! Evidence, per direction:
//! * NBSS control messages at the start of the stream: a session request
//!   (0x81) whose called name is a valid first-level-encoded NetBIOS name
//!   (length byte 0x20, 32 bytes `A`..=`P`, optional scope labels, 0) followed
//!   by a valid calling name is a client message; a negative response (0x83,
//!   length 1, code 0x80..=0x8F) is a server message; positive responses
//!   (0x82) and keepalives (0x85) with length 0 are skipped;
//! * an NBSS session message (type 0x00) whose payload starts with an SMB
//!   protocol id — `\xffSMB` (SMB1, header 32 bytes), `\xfeSMB` (SMB2/3,
//!   64 bytes, StructureSize 64), `\xfdSMB` (SMB3 transform, 52 bytes, flags
//!   0x0001), `\xfcSMB` (compression transform, 16 bytes, algorithm ≤ 4,
//!   flags ≤ 1) — with a length of at least that header. The length field is
//!   17 bits for SMB1 (RFC 1002 E bit) and 24 bits for SMB2/3 (direct TCP
//!   allows large multi-credit messages). When the message ends inside the
//!   buffer, the next bytes must start another NBSS message (chain check).
//!
//! Mid-stream pickup: if the stream does not start with such a message, the
//! first [`SCAN_LIMIT`] bytes are scanned for the next valid message
//! (resync). A resynchronised match needs SMB in both directions (so an HTTP
//! download of a capture file is not SMB), or, on a final flow, SMB in one
//! direction with the other direction empty.
//!
//! Direction: SMB2 header flags bit 0x1 (SERVER_TO_REDIR) and SMB1 flags
//! bit 0x80 (reply) mark responses. If the first message of `to_server` is a
//! response (or, with nothing decisive in `to_server`, the first message of
//! `to_client` is a request) the match is `reversed`. Transform headers carry
//! no direction.

use crate::{need_more, AppProto, Fingerprint, Observed, Transport, Verdict};

/// Bytes of each direction scanned for a resync point.
pub const SCAN_LIMIT: usize = 4096;

/// SMB fingerprint (TCP only).
#[derive(Debug, Clone, Copy, Default)]
pub struct SmbFingerprint;

impl Fingerprint for SmbFingerprint {
    fn proto(&self) -> AppProto {
        AppProto::Smb
    }

    fn probe(&self, obs: &Observed<'_>) -> Verdict {
        if obs.transport != Transport::Tcp {
            return Verdict::NoMatch;
        }
        let a = scan(obs.to_server, obs.final_);
        let b = scan(obs.to_client, obs.final_);
        let (fa, fb) = (a.found(), b.found());
        let matched = fa.is_some_and(|(_, resync)| !resync)
            || fb.is_some_and(|(_, resync)| !resync)
            || (fa.is_some() && fb.is_some())
            || (obs.final_
                && ((fa.is_some() && obs.to_client.is_empty())
                    || (fb.is_some() && obs.to_server.is_empty())));
        if matched {
            let reversed = match (fa.map(|f| f.0), fb.map(|f| f.0)) {
                (Some(Dir::Request), _) => false,
                (Some(Dir::Response), Some(Dir::Response)) => false,
                (Some(Dir::Response), _) => true,
                (_, Some(Dir::Request)) => true,
                _ => false,
            };
            return Verdict::Match { reversed };
        }
        if a == Scan::No || b == Scan::No {
            return Verdict::NoMatch;
        }
        need_more(obs)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Request,
    Response,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Found at the start of the stream (after NBSS control messages).
    Start(Dir),
    /// Found after skipping bytes (mid-stream pickup).
    Resync(Dir),
    /// Nothing yet, but more bytes may bring SMB.
    Pending,
    /// No SMB in the scanned window.
    No,
}

impl Scan {
    fn found(self) -> Option<(Dir, bool)> {
        match self {
            Scan::Start(d) => Some((d, false)),
            Scan::Resync(d) => Some((d, true)),
            _ => None,
        }
    }
}

/// Outcome of checking one position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    Yes(Dir),
    /// Consistent so far, truncated.
    Partial,
    No,
}

fn scan(buf: &[u8], final_: bool) -> Scan {
    if buf.is_empty() {
        return Scan::Pending;
    }
    // NBSS control messages at the start.
    let mut at = 0usize;
    let mut server_side = false;
    loop {
        let Some(&t) = buf.get(at) else {
            return if final_ && server_side {
                Scan::Start(Dir::Response)
            } else {
                Scan::Pending
            };
        };
        match t {
            0x82 | 0x85 => match buf.get(at + 1..at + 4) {
                Some([0, 0, 0]) => {
                    server_side |= t == 0x82;
                    at += 4;
                }
                Some(_) => break,
                None => {
                    if buf.iter().skip(at + 1).all(|&b| b == 0) {
                        return Scan::Pending;
                    }
                    break;
                }
            },
            // A session request is NetBIOS, not yet SMB (it may be refused, or carry something
            // else): skip it and decide on what follows.
            0x81 if at == 0 => match session_request(buf) {
                At::Yes(_) => {
                    at += 4 + nbss_len(buf, 0);
                    if at >= buf.len() {
                        return Scan::Pending;
                    }
                }
                At::Partial => return Scan::Pending,
                At::No => break,
            },
            0x83 => match buf.get(at + 1..at + 5) {
                Some(&[0, 0, 1, code]) if (0x80..=0x8f).contains(&code) => {
                    return Scan::Start(Dir::Response)
                }
                Some(_) => break,
                None => return Scan::Pending,
            },
            _ => break,
        }
    }
    let start = at;
    let end = buf.len().min(SCAN_LIMIT);
    let mut q = start;
    while q < end {
        let Some(off) = buf.get(q..end).and_then(|w| memchr::memchr(0, w)) else {
            break;
        };
        q += off;
        match smb_message(buf, q, final_) {
            At::Yes(d) => {
                let d = if server_side && d == Dir::Unknown {
                    Dir::Response
                } else {
                    d
                };
                return if q == start {
                    Scan::Start(d)
                } else {
                    Scan::Resync(d)
                };
            }
            At::Partial => return Scan::Pending,
            At::No => q += 1,
        }
    }
    if buf.len() < SCAN_LIMIT && !final_ {
        Scan::Pending
    } else {
        Scan::No
    }
}

/// Where a stream picked up in the middle (of a large WRITE, say) may start again: the next NBSS
/// session message carrying an SMB header, checked as [`SmbFingerprint`] checks a first message
/// (header fields, and the message after it when it is visible). Unlike the fingerprint's own
/// resync this is not limited to the first `SCAN_LIMIT` (4096) bytes: the caller scans a stream
/// window by window and bounds the whole search itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmbSync {
    /// A message starts at this offset.
    At(usize),
    /// A message may start at this offset: more bytes are needed to tell.
    Partial(usize),
    /// No message starts in these bytes (the last 7 may still begin one).
    Nothing,
}

/// The first offset in `buf` where an NBSS session message carrying an SMB header starts.
pub fn smb_sync(buf: &[u8]) -> SmbSync {
    let mut q = 0usize;
    while let Some(off) = buf.get(q..).and_then(|w| memchr::memchr(0, w)) {
        q += off;
        match smb_message(buf, q, false) {
            At::Yes(_) => return SmbSync::At(q),
            At::Partial => return SmbSync::Partial(q),
            At::No => q += 1,
        }
    }
    SmbSync::Nothing
}

/// Minimum SMB header size for a protocol-id first byte.
fn min_header(magic0: u8) -> Option<usize> {
    match magic0 {
        0xff => Some(32),
        0xfe => Some(64),
        0xfd => Some(52),
        0xfc => Some(16),
        _ => None,
    }
}

/// Header bytes needed to validate and read the direction.
fn needed(magic0: u8) -> usize {
    match magic0 {
        0xff => 10, // flags at offset 9
        0xfe => 20, // flags (u32 LE) at offset 16
        0xfd => 44, // flags (u16 LE) at offset 42
        _ => 12,    // compression: flags at offset 10
    }
}

/// Is there an NBSS session message carrying an SMB header at `q`?
fn smb_message(buf: &[u8], q: usize, final_: bool) -> At {
    match smb_header(buf, q, final_) {
        At::Yes(d) => {
            // Chain check: the next message (if visible) must be NBSS too.
            let len = nbss_len(buf, q);
            let next = q.saturating_add(4).saturating_add(len);
            if next < buf.len() && next_is_nbss(buf, next) == At::No {
                At::No
            } else {
                At::Yes(d)
            }
        }
        other => other,
    }
}

fn nbss_len(buf: &[u8], q: usize) -> usize {
    match buf.get(q + 1..q + 4) {
        Some(&[a, b, c]) => usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c),
        _ => 0,
    }
}

fn smb_header(buf: &[u8], q: usize, final_: bool) -> At {
    let w = buf.get(q..).unwrap_or(&[]);
    // NBSS header: type 0, then length; the SMB id follows.
    for (i, &b) in w.iter().enumerate().take(8) {
        let ok = match i {
            0 => b == 0,
            4 => min_header(b).is_some(),
            5 => b == b'S',
            6 => b == b'M',
            7 => b == b'B',
            _ => true,
        };
        if !ok {
            return At::No;
        }
    }
    let (Some(&b1), Some(&magic0)) = (w.get(1), w.get(4)) else {
        return At::Partial;
    };
    // SMB1 uses RFC 1002 framing (7 flag bits must be zero, 17-bit length).
    if magic0 == 0xff && b1 & 0xfe != 0 {
        return At::No;
    }
    if w.len() < 8 {
        return At::Partial;
    }
    let len = nbss_len(buf, q);
    match min_header(magic0) {
        Some(m) if len >= m => {}
        _ => return At::No,
    }
    let h = w.get(4..).unwrap_or(&[]);
    if h.len() < needed(magic0) {
        return if final_ {
            At::Yes(Dir::Unknown)
        } else {
            At::Partial
        };
    }
    let byte = |i: usize| h.get(i).copied().unwrap_or(0);
    match magic0 {
        0xff => Some(if byte(9) & 0x80 != 0 {
            Dir::Response
        } else {
            Dir::Request
        }),
        // StructureSize should be 64, but crafted and buggy stacks send other values; NBSS framing
        // plus the 4-byte protocol id is evidence enough.
        0xfe => Some(if byte(16) & 1 != 0 {
            Dir::Response
        } else {
            Dir::Request
        }),
        0xfd => (byte(42) == 1 && byte(43) == 0).then_some(Dir::Unknown),
        _ => {
            (byte(8) <= 4 && byte(9) == 0 && byte(10) <= 1 && byte(11) == 0).then_some(Dir::Unknown)
        }
    }
    .map_or(At::No, At::Yes)
}

/// The bytes at `at` (possibly truncated) start an NBSS message that can
/// appear inside an SMB session: a session message with an SMB id, or a keepalive.
fn next_is_nbss(buf: &[u8], at: usize) -> At {
    match buf.get(at) {
        Some(0x85) => match buf.get(at + 1..at + 4) {
            Some(&[0, 0, 0]) | None => At::Yes(Dir::Unknown),
            Some(_) => At::No,
        },
        Some(0) => match smb_header(buf, at, true) {
            At::No => At::No,
            _ => At::Yes(Dir::Unknown),
        },
        _ => At::No,
    }
}

/// RFC 1002 session request: called and calling names, first-level encoded.
fn session_request(buf: &[u8]) -> At {
    match buf.get(1) {
        None => return At::Partial,
        Some(&b1) if b1 & 0xfe != 0 => return At::No,
        Some(_) => {}
    }
    let Some(&[b1, b2, b3]) = buf.get(1..4) else {
        return At::Partial;
    };
    let len = usize::from(b1 & 1) << 16 | usize::from(b2) << 8 | usize::from(b3);
    if !(68..=4 + 2 * 255).contains(&len) {
        return At::No;
    }
    let msg_end = 4 + len;
    let mut at = 4usize;
    for _ in 0..2 {
        match nb_name(buf, at, msg_end) {
            Name::End(e) => at = e,
            Name::Partial => return At::Partial,
            Name::Bad => return At::No,
        }
    }
    if at == msg_end {
        At::Yes(Dir::Request)
    } else {
        At::No
    }
}

enum Name {
    End(usize),
    Partial,
    Bad,
}

/// One encoded NetBIOS name at `at`: 0x20, 32 bytes `A`..=`P`, then scope labels, 0.
fn nb_name(buf: &[u8], mut at: usize, limit: usize) -> Name {
    let mut first = true;
    loop {
        if at >= limit {
            return Name::Bad;
        }
        let Some(&l) = buf.get(at) else {
            return Name::Partial;
        };
        if l == 0 {
            return if first { Name::Bad } else { Name::End(at + 1) };
        }
        let l = usize::from(l);
        if (first && l != 32) || l > 63 || at + 1 + l > limit {
            return Name::Bad;
        }
        let label = buf.get(at + 1..).unwrap_or(&[]);
        let avail = label.len().min(l);
        let ok = label.iter().take(avail).all(|&c| {
            if first {
                (b'A'..=b'P').contains(&c)
            } else {
                c.is_ascii_graphic()
            }
        });
        if !ok {
            return Name::Bad;
        }
        if avail < l {
            return Name::Partial;
        }
        at += 1 + l;
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(s: &[u8], c: &[u8], f: bool) -> Verdict {
        SmbFingerprint.probe(&Observed {
            transport: Transport::Tcp,
            to_server: s,
            to_client: c,
            dgrams: &[],
            final_: f,
        })
    }

    const REQ: &[u8] = b"\x81\x00\x00\x44 EJECEJEGEIFBDBDBFHFDDADCDDCACACA\x00 FCEPFDEGEIFBDADHFHFDDADADECACAAA\x00";

    #[test]
    fn session_request_names() {
        assert_eq!(session_request(REQ), At::Yes(Dir::Request));
        for n in 1..REQ.len() {
            assert_eq!(session_request(&REQ[..n]), At::Partial, "{n}");
        }
        let mut bad = REQ.to_vec();
        bad[10] = b'Z';
        assert_eq!(session_request(&bad), At::No);
        // A session request alone is NetBIOS: SMB must follow before the flow is called SMB.
        assert_eq!(probe(REQ, b"", false), Verdict::NeedMore);
        assert_eq!(probe(REQ, b"", true), Verdict::NoMatch);
        let mut with_smb = REQ.to_vec();
        with_smb.extend_from_slice(b"\x00\x00\x00\x40\xfeSMB\x40\x00");
        with_smb.extend_from_slice(&[0u8; 58]);
        assert_eq!(
            probe(&with_smb, b"", false),
            Verdict::Match { reversed: false }
        );
    }

    #[test]
    fn control_only() {
        assert_eq!(probe(b"", b"\x82\x00\x00\x00", false), Verdict::NeedMore);
        assert_eq!(
            probe(b"", b"\x83\x00\x00\x01\x82", false),
            Verdict::Match { reversed: false }
        );
        assert_eq!(probe(b"\x85\x00\x00\x00", b"", true), Verdict::NoMatch);
    }

    #[test]
    fn sync_points_in_a_stream() {
        let mut hdr = b"\x00\x00\x00\x40\xfeSMB\x40\x00".to_vec();
        hdr.resize(4 + 64, 0);
        let mut v = vec![0x41u8; 5000];
        v[100] = 0;
        v.extend_from_slice(&hdr);
        assert_eq!(smb_sync(&v), SmbSync::At(5000));
        assert_eq!(smb_sync(&v[..5006]), SmbSync::Partial(5000));
        assert_eq!(smb_sync(&v[..4990]), SmbSync::Nothing);
        // A header whose length runs into bytes that are no NBSS message is not one.
        let mut w = hdr.clone();
        w.extend_from_slice(b"garbage!");
        assert_eq!(smb_sync(&w), SmbSync::Nothing);
        assert_eq!(smb_sync(b""), SmbSync::Nothing);
    }

    #[test]
    fn resync_needs_both_sides() {
        // An SMB1 negotiate request buried in other bytes.
        let mut v = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        v.extend_from_slice(b"\x00\x00\x00\x20\xffSMBr\x00\x00\x00\x00\x18");
        v.resize(v.len() + 22, 0);
        assert_eq!(scan(&v, false), Scan::Resync(Dir::Request));
        assert_eq!(
            probe(b"GET / HTTP/1.1\r\n\r\n", &v, false),
            Verdict::NeedMore
        );
        assert_eq!(probe(b"GET / HTTP/1.1\r\n\r\n", &v, true), Verdict::NoMatch);
        assert_eq!(probe(b"", &v, true), Verdict::Match { reversed: true });
    }
}
