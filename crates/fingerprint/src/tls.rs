//! TLS over TCP (RFC 5246 / RFC 8446 record layer and hello messages).
//!
//! Evidence, per direction:
//! * hello: record header type 0x16 (handshake), version 0x0300..=0x0304,
//!   length 1..=16384+2048, then handshake type 1 (ClientHello) or 2
//!   (ServerHello), a 3-byte handshake length that is at least the minimal
//!   hello body and fits the record (or, for a ClientHello fragmented over
//!   several records, fills this one), and a legacy body version
//!   0x0300..=0x0304;
//! * mid-stream (both directions needed): every record header visible in the
//!   direction is a valid record header (types 0x14..=0x17, version
//!   0x0301..=0x0304, sane length).
//!
//! Direction: ClientHello in `to_server` / ServerHello in `to_client` is
//! `reversed: false`; ServerHello in `to_server` / ClientHello in `to_client`
//! (with no hello in `to_server`) is `reversed: true`. Mid-stream record
//! matches cannot tell and say `reversed: false`.

use crate::{need_more, AppProto, Fingerprint, Observed, Transport, Verdict};

/// TLS fingerprint (TCP only).
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsFingerprint;

impl Fingerprint for TlsFingerprint {
    fn proto(&self) -> AppProto {
        AppProto::Tls
    }

    fn probe(&self, obs: &Observed<'_>) -> Verdict {
        if obs.transport != Transport::Tcp {
            return Verdict::NoMatch;
        }
        let a = hello(obs.to_server);
        match a {
            Hello::Client => return Verdict::Match { reversed: false },
            Hello::Server => return Verdict::Match { reversed: true },
            _ => {}
        }
        let b = hello(obs.to_client);
        match b {
            Hello::Client => return Verdict::Match { reversed: true },
            Hello::Server => return Verdict::Match { reversed: false },
            _ => {}
        }
        // Mid-stream pickup: both directions must carry valid records.
        let ra = records(obs.to_server);
        let rb = records(obs.to_client);
        if ra == Records::Valid && rb == Records::Valid {
            return Verdict::Match { reversed: false };
        }
        let hello_pending = a == Hello::Pending || b == Hello::Pending;
        let records_pending = ra != Records::No && rb != Records::No;
        if hello_pending || records_pending {
            need_more(obs)
        } else {
            Verdict::NoMatch
        }
    }
}

/// Largest TLSCiphertext fragment (2^14 + 2048).
const MAX_RECORD: usize = 16384 + 2048;
/// Minimal ServerHello body: version(2) random(32) sid-len(1) suite(2) compression(1).
const MIN_HELLO: usize = 38;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hello {
    /// Empty or consistent prefix.
    Pending,
    Client,
    Server,
    No,
}

fn hello(buf: &[u8]) -> Hello {
    // Header bytes: 0 type, 1-2 version, 3-4 length, 5 hs type, 6-8 hs length, 9-10 body version.
    for (i, &b) in buf.iter().enumerate().take(11) {
        let ok = match i {
            0 => b == 0x16,
            1 | 9 => b == 0x03,
            2 | 10 => b <= 0x04,
            4 => {
                let len = usize::from(buf.get(3).copied().unwrap_or(0)) << 8 | usize::from(b);
                (4 + MIN_HELLO..=MAX_RECORD).contains(&len)
            }
            5 => b == 1 || b == 2,
            8 => {
                let rec = be16(buf, 3);
                let hs = be24(buf, 6);
                let fits = hs >= MIN_HELLO && hs + 4 <= rec;
                // A large ClientHello may be split over several records.
                let fragmented = buf.get(5) == Some(&1) && hs + 4 > rec && hs <= 0xFFFF;
                fits || fragmented
            }
            _ => true,
        };
        if !ok {
            return Hello::No;
        }
    }
    if buf.len() < 11 {
        return Hello::Pending;
    }
    if buf.get(5) == Some(&1) {
        Hello::Client
    } else {
        Hello::Server
    }
}

fn be16(buf: &[u8], at: usize) -> usize {
    match buf.get(at..at + 2) {
        Some(&[a, b]) => usize::from(a) << 8 | usize::from(b),
        _ => 0,
    }
}

fn be24(buf: &[u8], at: usize) -> usize {
    match buf.get(at..at + 3) {
        Some(&[a, b, c]) => usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c),
        _ => 0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Records {
    /// Empty or a partial first header.
    Pending,
    /// At least one complete valid record header, and all visible headers valid.
    Valid,
    No,
}

/// Walk the record headers of a direction (bounded by the buffer length;
/// each step advances by at least 5 bytes).
fn records(buf: &[u8]) -> Records {
    let mut at = 0usize;
    let mut seen = false;
    while at < buf.len() {
        let hdr = buf.get(at..).unwrap_or(&[]);
        for (i, &b) in hdr.iter().enumerate().take(5) {
            let ok = match i {
                0 => (0x14..=0x17).contains(&b),
                1 => b == 0x03,
                2 => (0x01..=0x04).contains(&b),
                4 => (1..=MAX_RECORD).contains(&be16(hdr, 3)),
                _ => true,
            };
            if !ok {
                return Records::No;
            }
        }
        if hdr.len() < 5 {
            break;
        }
        seen = true;
        at += 5 + be16(hdr, 3);
    }
    if seen {
        Records::Valid
    } else {
        Records::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_prefixes() {
        let ch: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
        assert_eq!(hello(ch), Hello::Client);
        for n in 0..ch.len() {
            assert_eq!(hello(&ch[..n]), Hello::Pending, "{n}");
        }
        let sh: &[u8] = b"\x16\x03\x03\x00\x66\x02\x00\x00\x62\x03\x03";
        assert_eq!(hello(sh), Hello::Server);
        // Handshake length bigger than record for a ServerHello: not a hello.
        assert_eq!(
            hello(b"\x16\x03\x03\x00\x66\x02\x00\x01\x62\x03\x03"),
            Hello::No
        );
        assert_eq!(hello(b"\x17\x03\x03"), Hello::No);
    }

    #[test]
    fn record_walk() {
        assert_eq!(records(b""), Records::Pending);
        assert_eq!(records(b"\x17\x03\x03\x00\x02ab\x17\x03"), Records::Valid);
        assert_eq!(records(b"\x17\x03\x03\x00\x02ab\x99"), Records::No);
        assert_eq!(records(b"\x17\x03\x03\x00\x00"), Records::No);
    }
}
