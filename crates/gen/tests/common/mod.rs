//! Decoding of generated captures for the tests: every frame is checked on the way. Also where
//! the end-to-end tests find the sensor.
#![allow(
    dead_code,
    reason = "shared by several test binaries, each using only some helpers"
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use xferwatch_gen::pcap::{csum_add, csum_fold, Reader};

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct Pkt {
    pub ts_us: u64,
    pub frame_len: usize,
    pub v6: bool,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub udp: bool,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Payload length.
    pub len: usize,
    /// The first payload bytes (up to the `keep_payload` of [`decode`]).
    pub head: Vec<u8>,
}

fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}
fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// Decodes every frame, checking record lengths, strictly increasing timestamps, Ethernet,
/// IP lengths and header checksums, and TCP/UDP checksums. `keep_payload`: keep at most this
/// many payload bytes per packet.
pub fn decode(buf: &[u8], keep_payload: usize) -> Result<Vec<Pkt>, String> {
    let mut r = Reader::new(buf)?;
    if r.linktype != 1 {
        return Err(format!("link type {}", r.linktype));
    }
    let mut out = Vec::new();
    let mut last_ts = 0u64;
    let mut n = 0u64;
    while let Some(rec) = r.next_record()? {
        n += 1;
        let f = rec.data;
        let ctx = |m: &str| format!("frame {n}: {m}");
        if rec.orig_len as usize != f.len() {
            return Err(ctx("cut frame"));
        }
        if rec.ts_us <= last_ts {
            return Err(ctx("timestamp not increasing"));
        }
        last_ts = rec.ts_us;
        if f.len() < 14 + 20 + 8 || f.len() > 1514 {
            return Err(ctx(&format!("frame length {}", f.len())));
        }
        let etype = be16(f, 12);
        let (v6, src, dst, proto, l4) = match etype {
            0x0800 => {
                let ip = &f[14..];
                if ip[0] != 0x45 {
                    return Err(ctx("IPv4 version/IHL"));
                }
                if be16(ip, 2) as usize != f.len() - 14 {
                    return Err(ctx("IPv4 total length"));
                }
                if csum_fold(csum_add(0, &ip[..20])) != 0 {
                    return Err(ctx("IPv4 header checksum"));
                }
                let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
                let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
                (false, src, dst, ip[9], &ip[20..])
            }
            0x86dd => {
                let ip = &f[14..];
                if ip[0] >> 4 != 6 {
                    return Err(ctx("IPv6 version"));
                }
                if be16(ip, 4) as usize != f.len() - 54 {
                    return Err(ctx("IPv6 payload length"));
                }
                let mut s = [0u8; 16];
                let mut d = [0u8; 16];
                s.copy_from_slice(&ip[8..24]);
                d.copy_from_slice(&ip[24..40]);
                (
                    true,
                    IpAddr::V6(Ipv6Addr::from(s)),
                    IpAddr::V6(Ipv6Addr::from(d)),
                    ip[6],
                    &ip[40..],
                )
            }
            t => return Err(ctx(&format!("ethertype {t:#x}"))),
        };
        // Pseudo header.
        let mut acc = 0u64;
        match (src, dst) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                acc = csum_add(acc, &a.octets());
                acc = csum_add(acc, &b.octets());
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                acc = csum_add(acc, &a.octets());
                acc = csum_add(acc, &b.octets());
            }
            _ => unreachable!(),
        }
        acc += u64::from(proto) + l4.len() as u64;
        if csum_fold(csum_add(acc, l4)) != 0 {
            return Err(ctx("transport checksum"));
        }
        let (udp, sport, dport, seq, ack, flags, payload) = match proto {
            6 => {
                let off = usize::from(l4[12] >> 4) * 4;
                if !(20..=60).contains(&off) || off > l4.len() {
                    return Err(ctx("TCP data offset"));
                }
                let p = &l4[off..];
                if p.len() > 1448 {
                    return Err(ctx("TCP payload above the MSS"));
                }
                (
                    false,
                    be16(l4, 0),
                    be16(l4, 2),
                    be32(l4, 4),
                    be32(l4, 8),
                    l4[13],
                    p,
                )
            }
            17 => {
                if be16(l4, 4) as usize != l4.len() {
                    return Err(ctx("UDP length"));
                }
                (true, be16(l4, 0), be16(l4, 2), 0, 0, 0, &l4[8..])
            }
            p => return Err(ctx(&format!("IP protocol {p}"))),
        };
        out.push(Pkt {
            ts_us: rec.ts_us,
            frame_len: f.len(),
            v6,
            src,
            dst,
            udp,
            sport,
            dport,
            seq,
            ack,
            flags,
            len: payload.len(),
            head: payload[..payload.len().min(keep_payload)].to_vec(),
        });
    }
    Ok(out)
}

/// Inside the site (10/8 or fc00::/7).
pub fn internal(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.octets()[0] == 10,
        IpAddr::V6(v) => v.octets()[0] & 0xfe == 0xfc,
    }
}

/// The release build of the sensor, or None after saying (past the test harness's capture, for
/// `make test`'s skip summary) that the test needing it is skipped.
pub fn sensor() -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/xferwatch");
    if p.is_file() {
        Some(p)
    } else {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIP: the sensor is not built at {} (cargo build --release -p xferwatch)",
            p.display()
        );
        None
    }
}
