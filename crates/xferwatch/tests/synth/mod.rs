//! Captures written packet by packet for the end-to-end tests: a classic pcap writer (Ethernet,
//! IPv4, UDP) and TFTP write transfers, so every byte count and packet time is known in advance;
//! and the binary and a scratch directory to run it on them.

#![allow(dead_code, reason = "each test crate uses its own part")]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The sensor binary, without a developer's environment overrides.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xferwatch"));
    for (k, _) in std::env::vars() {
        if k.starts_with("XFERWATCH__") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c
}

/// An empty directory for test `name` of `suite`.
pub fn tmpdir(suite: &str, name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("xferwatch-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub const SEC: i64 = 1_000_000;

pub struct Pcap {
    buf: Vec<u8>,
    last_us: i64,
}

impl Pcap {
    pub fn new() -> Pcap {
        let mut buf = Vec::new();
        buf.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // microsecond timestamps
        buf.extend_from_slice(&2u16.to_le_bytes());
        buf.extend_from_slice(&4u16.to_le_bytes());
        buf.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        buf.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        buf.extend_from_slice(&65_535u32.to_le_bytes()); // snaplen
        buf.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        Pcap {
            buf,
            last_us: i64::MIN,
        }
    }

    pub fn udp(
        &mut self,
        ts_us: i64,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        data: &[u8],
    ) {
        assert!(
            ts_us >= self.last_us,
            "packets must be written in time order"
        );
        self.last_us = ts_us;
        let udp_len = 8 + data.len();
        let ip_len = 20 + udp_len;
        let mut f = Vec::with_capacity(14 + ip_len);
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, dst[3]]);
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, src[3]]);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&((self.buf.len() as u16) ^ sport).to_be_bytes());
        ip[6] = 0x40; // don't fragment
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        let mut sum: u32 = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&0u16.to_be_bytes()); // no checksum
        f.extend_from_slice(data);
        self.buf
            .extend_from_slice(&(ts_us.div_euclid(SEC) as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&(ts_us.rem_euclid(SEC) as u32).to_le_bytes());
        self.buf.extend_from_slice(&(f.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&(f.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&f);
    }

    /// The file so far: header and records.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn save(&self, path: PathBuf) -> PathBuf {
        std::fs::write(&path, &self.buf).unwrap();
        path
    }
}

/// One TFTP write transfer: the outbound datagrams as (packet time, session outbound payload bytes
/// after it), in order.
pub struct Upload {
    pub outbound: Vec<(i64, u64)>,
}

impl Upload {
    pub fn total(&self) -> u64 {
        self.outbound.last().unwrap().1
    }

    /// The first outbound datagram after which the session's total is at least `limit`.
    pub fn reaching(&self, limit: u64) -> (i64, u64) {
        *self
            .outbound
            .iter()
            .find(|(_, n)| *n >= limit)
            .expect("the upload reaches the limit")
    }

    /// The first outbound datagram after which the total is above `limit`.
    pub fn above(&self, limit: u64) -> (i64, u64) {
        *self
            .outbound
            .iter()
            .find(|(_, n)| *n > limit)
            .expect("the upload goes above the limit")
    }
}

/// A write request from `client`:(50000+n) to `server` port 69; the server answers from port 40000+n; DATA
/// blocks of 512 bytes, each acknowledged, the last one shorter (empty when `size` is a multiple of
/// 512).
pub fn tftp_upload_to(
    p: &mut Pcap,
    start_us: i64,
    client: [u8; 4],
    server: [u8; 4],
    n: u16,
    size: usize,
) -> Upload {
    let (cport, sport) = (50_000 + n, 40_000 + n);
    let mut wrq = vec![0, 2];
    wrq.extend_from_slice(format!("backup-{n:04}.tar").as_bytes());
    wrq.push(0);
    wrq.extend_from_slice(b"octet");
    wrq.push(0);
    let mut sent = wrq.len() as u64;
    let mut outbound = vec![(start_us, sent)];
    p.udp(start_us, client, cport, server, 69, &wrq);
    let mut t = start_us + 1_000;
    p.udp(t, server, sport, client, cport, &[0, 4, 0, 0]);
    let blocks = size / 512 + 1;
    for b in 1..=blocks {
        let len = if b < blocks { 512 } else { size % 512 };
        let bn = (b as u16).to_be_bytes();
        let mut data = vec![0, 3, bn[0], bn[1]];
        data.extend((0..len).map(|i| (i * 7 + b + n as usize) as u8));
        t += 1_500;
        p.udp(t, client, cport, server, sport, &data);
        sent += data.len() as u64;
        outbound.push((t, sent));
        t += 500;
        p.udp(t, server, sport, client, cport, &[0, 4, bn[0], bn[1]]);
    }
    Upload { outbound }
}
