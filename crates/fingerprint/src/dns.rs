//! DNS (RFC 1035) over UDP, and over TCP with the 2-byte length prefix
//! (RFC 1035 §4.2.2, RFC 7766); mDNS (RFC 6762) is recognised as DNS.
//!
//! Evidence: a whole message must parse.
//! * header: opcode 0..=5, QDCOUNT ≤ 32, AN/NS/ARCOUNT ≤ 256, at least one
//!   record; a query (QR=0) has RCODE 0 and at least one question;
//! * names: labels of length ≤ 63 made of printable bytes (≥ 0x20, no DEL),
//!   total ≤ 255, ending with the root label; compression pointers only point
//!   backwards to an earlier name (offset ≥ 12), so the first question can
//!   never use one;
//! * questions: QTYPE ≠ 0, QCLASS (without the mDNS QU bit 0x8000) in
//!   {IN, CH, HS, ANY}; resource records: TYPE ≠ 0, CLASS (without the mDNS
//!   cache-flush bit) in {IN, CH, HS, NONE, ANY} except OPT (type 41) whose
//!   class is a payload size, RDATA inside the message;
//! * the message is consumed exactly (UDP datagram, or the TCP length).
//!
//! UDP: the first datagram decides, and the first datagram of the other
//! direction (if any) must parse too. TCP: the first message of each
//! direction; a message longer than the captured prefix matches on a final
//! flow if its header and first question parsed.
//!
//! Direction: a response (QR=1) as the first `to_server` message, or a query
//! as the first `to_client` message with nothing in `to_server`, is
//! `reversed: true`.

use crate::{need_more, AppProto, Fingerprint, Observed, Transport, Verdict};

/// DNS fingerprint (UDP and TCP).
#[derive(Debug, Clone, Copy, Default)]
pub struct DnsFingerprint;

impl Fingerprint for DnsFingerprint {
    fn proto(&self) -> AppProto {
        AppProto::Dns
    }

    fn probe(&self, obs: &Observed<'_>) -> Verdict {
        match obs.transport {
            Transport::Udp => probe_udp(obs),
            Transport::Tcp => probe_tcp(obs),
        }
    }
}

fn probe_udp(obs: &Observed<'_>) -> Verdict {
    let Some(first) = obs.dgrams.first() else {
        return need_more(obs);
    };
    let Msg::Complete(k0) = parse(first.data, true) else {
        return Verdict::NoMatch;
    };
    let other = obs.dgrams.iter().find(|d| d.to_server != first.to_server);
    if let Some(o) = other {
        if !matches!(parse(o.data, true), Msg::Complete(_)) {
            return Verdict::NoMatch;
        }
    }
    // The first datagram's sender sent a query => it is the client.
    let sender_is_client = k0 == Kind::Query;
    Verdict::Match {
        reversed: sender_is_client != first.to_server,
    }
}

fn probe_tcp(obs: &Observed<'_>) -> Verdict {
    let a = tcp_dir(obs.to_server, obs.final_);
    let b = tcp_dir(obs.to_client, obs.final_);
    if a == Msg::Bad || b == Msg::Bad {
        return Verdict::NoMatch;
    }
    match (a, b) {
        (Msg::Complete(Kind::Query), _) => Verdict::Match { reversed: false },
        (Msg::Complete(Kind::Response), _) => Verdict::Match { reversed: true },
        (_, Msg::Complete(Kind::Query)) => Verdict::Match { reversed: true },
        (_, Msg::Complete(Kind::Response)) => Verdict::Match { reversed: false },
        _ => need_more(obs),
    }
}

/// First length-prefixed message of a TCP direction. On a final flow a
/// truncated message whose header and first question parsed counts as complete.
fn tcp_dir(buf: &[u8], final_: bool) -> Msg {
    let Some(&[hi, lo]) = buf.get(..2) else {
        return if final_ && !buf.is_empty() {
            Msg::Bad
        } else {
            Msg::Truncated { kind: None }
        };
    };
    let len = usize::from(hi) << 8 | usize::from(lo);
    if len < 12 {
        return Msg::Bad;
    }
    let body = buf.get(2..).unwrap_or(&[]);
    let complete = body.len() >= len;
    let msg = body.get(..len).unwrap_or(body);
    match parse(msg, complete) {
        Msg::Truncated { kind: Some(k) } if final_ => Msg::Complete(k),
        Msg::Truncated { .. } if final_ => Msg::Bad,
        m => m,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Query,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    Complete(Kind),
    /// Consistent but cut short; `kind` is known once the header and the
    /// first question parsed.
    Truncated {
        kind: Option<Kind>,
    },
    Bad,
}

/// Why parsing stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Truncated,
    Bad,
}

const MAX_QD: usize = 32;
const MAX_RR: usize = 256;
const TYPE_OPT: u16 = 41;

fn be16(m: &[u8], at: usize) -> Result<u16, Stop> {
    match m.get(at..at + 2) {
        Some(&[a, b]) => Ok(u16::from(a) << 8 | u16::from(b)),
        _ => Err(Stop::Truncated),
    }
}

/// Parse a DNS message. `complete`: `m` is the whole message (must be consumed exactly).
fn parse(m: &[u8], complete: bool) -> Msg {
    let mut kind = None;
    match parse_inner(m, &mut kind) {
        Ok(end) if complete && end == m.len() => kind.map_or(Msg::Bad, Msg::Complete),
        Ok(_) => Msg::Bad,
        Err(Stop::Truncated) if !complete => Msg::Truncated { kind },
        Err(_) => Msg::Bad,
    }
}

fn parse_inner(m: &[u8], kind_out: &mut Option<Kind>) -> Result<usize, Stop> {
    // Check the flags before anything else (cheap rejection).
    let flags = be16(m, 2)?;
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let rcode = flags & 0xf;
    if opcode > 5 || (!qr && rcode != 0) {
        return Err(Stop::Bad);
    }
    let qd = usize::from(be16(m, 4)?);
    let an = usize::from(be16(m, 6)?);
    let ns = usize::from(be16(m, 8)?);
    let ar = usize::from(be16(m, 10)?);
    if qd > MAX_QD || an > MAX_RR || ns > MAX_RR || ar > MAX_RR {
        return Err(Stop::Bad);
    }
    if qd + an + ns + ar == 0 || (!qr && qd == 0) {
        return Err(Stop::Bad);
    }
    let kind = if qr { Kind::Response } else { Kind::Query };
    let mut at = 12usize;
    for i in 0..qd {
        let name_at = at;
        at = name(m, at)?;
        let qtype = be16(m, at)?;
        let raw_class = be16(m, at + 2)?;
        let qclass = raw_class & 0x7fff;
        // Same wire format, other protocols: NetBIOS name service (encoded names), multicast DNS
        // (".local", unicast-response bit). They are not DNS for a sensor that names protocols.
        if raw_class & 0x8000 != 0 || other_name_service(m, name_at) {
            return Err(Stop::Bad);
        }
        if qtype == 0 || !matches!(qclass, 1 | 3 | 4 | 255) {
            return Err(Stop::Bad);
        }
        at += 4;
        if i == 0 {
            *kind_out = Some(kind);
        }
    }
    for _ in 0..an + ns + ar {
        let name_at = at;
        at = name(m, at)?;
        let rtype = be16(m, at)?;
        let raw_class = be16(m, at + 2)?;
        let class = raw_class & 0x7fff;
        if rtype != TYPE_OPT && (raw_class & 0x8000 != 0 || other_name_service(m, name_at)) {
            return Err(Stop::Bad);
        }
        if rtype == 0 || (rtype != TYPE_OPT && !matches!(class, 1 | 3 | 4 | 254 | 255)) {
            return Err(Stop::Bad);
        }
        let rdlen = usize::from(be16(m, at + 8)?);
        at += 10 + rdlen;
        if at > m.len() {
            return Err(Stop::Truncated);
        }
        if kind_out.is_none() {
            *kind_out = Some(kind);
        }
    }
    Ok(at)
}

/// A name only NetBIOS name service (a 32-byte first-level-encoded label, RFC 1001) or multicast DNS
/// (a last label "local" in a message with ID 0, RFC 6762 §18.1) uses. Unicast DNS for an Active
/// Directory domain named `*.local` has a random ID and stays DNS. Pointers are not followed.
fn other_name_service(m: &[u8], start: usize) -> bool {
    let mdns_id = m.get(..2) == Some(&[0, 0][..]);
    let mut at = start;
    let mut first = true;
    let mut last: &[u8] = &[];
    while let Some(&l) = m.get(at) {
        if l == 0 || l & 0xc0 != 0 {
            break;
        }
        let Some(label) = m.get(at + 1..at + 1 + usize::from(l)) else {
            return false;
        };
        if first && label.len() == 32 && label.iter().all(|c| (b'A'..=b'P').contains(c)) {
            return true;
        }
        first = false;
        last = label;
        at += 1 + usize::from(l);
    }
    mdns_id && last.eq_ignore_ascii_case(b"local")
}

/// Parse a (possibly compressed) domain name starting at `start`; returns the
/// offset just after it. Pointers are not followed, only bounds-checked.
fn name(m: &[u8], start: usize) -> Result<usize, Stop> {
    let mut at = start;
    let mut total = 0usize;
    loop {
        let Some(&l) = m.get(at) else {
            return Err(Stop::Truncated);
        };
        match l & 0xc0 {
            0x00 => {
                if l == 0 {
                    return Ok(at + 1);
                }
                let l = usize::from(l);
                total += l + 1;
                if total > 255 {
                    return Err(Stop::Bad);
                }
                let label = m.get(at + 1..).unwrap_or(&[]);
                let avail = label.len().min(l);
                if !label.iter().take(avail).all(|&c| c >= 0x20 && c != 0x7f) {
                    return Err(Stop::Bad);
                }
                if avail < l {
                    return Err(Stop::Truncated);
                }
                at += 1 + l;
            }
            0xc0 => {
                let Some(&lo) = m.get(at + 1) else {
                    return Err(Stop::Truncated);
                };
                let target = usize::from(l & 0x3f) << 8 | usize::from(lo);
                if target < 12 || target >= start {
                    return Err(Stop::Bad);
                }
                return Ok(at + 2);
            }
            _ => return Err(Stop::Bad),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &[u8] = b"\xb7\x89\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03dns\x08msftncsi\x03com\x00\x00\x01\x00\x01";

    #[test]
    fn netbios_and_mdns_are_not_dns() {
        // NBNS name query for "FRED" (encoded), from a real broadcast
        let nbns = b"\x82\x28\x01\x10\x00\x01\x00\x00\x00\x00\x00\x00\x20EGFCEFEECACACACACACACACACACACAAA\x00\x00\x20\x00\x01";
        assert!(!matches!(parse(nbns, true), Msg::Complete(_)));
        let mdns = b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07printer\x05local\x00\x00\x01\x00\x01";
        assert!(!matches!(parse(mdns, true), Msg::Complete(_)));
        assert!(matches!(parse(Q, true), Msg::Complete(_)));
    }

    #[test]
    fn query_parses() {
        assert_eq!(parse(Q, true), Msg::Complete(Kind::Query));
        for n in 0..Q.len() {
            assert!(
                matches!(parse(&Q[..n], false), Msg::Truncated { .. }),
                "{n}"
            );
            assert_eq!(parse(&Q[..n], true), Msg::Bad, "{n}");
        }
        let mut trailing = Q.to_vec();
        trailing.push(0);
        assert_eq!(parse(&trailing, true), Msg::Bad);
    }

    #[test]
    fn pointer_in_first_question_rejected() {
        let m = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01";
        assert_eq!(parse(m, true), Msg::Bad);
    }

    #[test]
    fn bad_opcode_and_counts() {
        let mut m = Q.to_vec();
        m[2] = 0x31; // opcode 6
        assert_eq!(parse(&m, true), Msg::Bad);
        let mut m = Q.to_vec();
        m[6] = 0x10; // ancount 4096
        assert_eq!(parse(&m, true), Msg::Bad);
    }
}
