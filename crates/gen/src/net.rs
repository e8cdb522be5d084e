//! Hosts, addresses and the frames of one TCP connection or UDP conversation: Ethernet, IPv4 or
//! IPv6 with correct header checksums, TCP with handshake state, sequence and acknowledgement
//! numbers and timestamp options, UDP; TCP and UDP checksums are computed too.

use crate::pcap::{csum_add, csum_fold, PcapWriter};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// TCP flag bits.
pub const FIN: u8 = 0x01;
/// SYN.
pub const SYN: u8 = 0x02;
/// PSH.
pub const PSH: u8 = 0x08;
/// ACK.
pub const ACK: u8 = 0x10;

/// Largest TCP payload of an IPv4 segment (MTU 1500, 32-byte TCP header with timestamps).
pub const MSS_V4: usize = 1448;
/// Largest TCP payload of an IPv6 segment.
pub const MSS_V6: usize = 1428;

/// The MAC address of the site's router: every external address is reached through it.
pub const ROUTER_MAC: [u8; 6] = [0x00, 0x1b, 0x21, 0x3a, 0x4c, 0x5e];

/// One end of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Address: IPv4 in the first four bytes, or IPv6.
    pub ip: [u8; 16],
    /// IPv6 address.
    pub v6: bool,
    /// MAC address the end's frames carry (the router's for external hosts).
    pub mac: [u8; 6],
    /// Port.
    pub port: u16,
    /// Inside the site.
    pub internal: bool,
}

impl Endpoint {
    /// The address in its usual text form.
    pub fn addr(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.ip))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                self.ip[0], self.ip[1], self.ip[2], self.ip[3],
            ))
        }
    }

    /// The same host on another port.
    pub fn with_port(mut self, port: u16) -> Endpoint {
        self.port = port;
        self
    }
}

/// Internal host `i`, IPv4: 10.a.b.c with c in 2..=251.
pub fn internal_v4(i: u32) -> [u8; 4] {
    let a = i / 250;
    [
        10,
        ((a >> 8) & 0xff) as u8,
        (a & 0xff) as u8,
        (i % 250 + 2) as u8,
    ]
}

/// External hosts: 198.51.100.1-254 and 203.0.113.1-254 (documentation ranges).
pub const EXTERNAL_HOSTS: u32 = 508;

/// External host `j` (< [`EXTERNAL_HOSTS`]), IPv4.
pub fn external_v4(j: u32) -> [u8; 4] {
    let j = j % EXTERNAL_HOSTS;
    if j < 254 {
        [198, 51, 100, (j + 1) as u8]
    } else {
        [203, 0, 113, (j - 254 + 1) as u8]
    }
}

/// Internal host `i`, IPv6 (unique local, fd0a::/16).
pub fn internal_v6(i: u32) -> [u8; 16] {
    let v4 = internal_v4(i);
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[1] = 0x0a;
    a[2..4].copy_from_slice(&[v4[1], v4[2]]);
    a[15] = v4[3];
    a
}

/// External host `j`, IPv6 (documentation prefix 2001:db8::/32).
pub fn external_v6(j: u32) -> [u8; 16] {
    let v4 = external_v4(j);
    let mut a = [0u8; 16];
    a[0..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[4] = v4[0];
    a[5] = v4[2];
    a[15] = v4[3];
    a
}

/// The MAC address of internal host `i`.
pub fn internal_mac(i: u32) -> [u8; 6] {
    let b = i.to_be_bytes();
    [0x02, 0x42, 0x0a, b[1], b[2], b[3]]
}

/// An internal endpoint.
pub fn internal_ep(i: u32, v6: bool, port: u16) -> Endpoint {
    let mut ip = [0u8; 16];
    if v6 {
        ip = internal_v6(i);
    } else {
        ip[..4].copy_from_slice(&internal_v4(i));
    }
    Endpoint {
        ip,
        v6,
        mac: internal_mac(i),
        port,
        internal: true,
    }
}

/// An external endpoint.
pub fn external_ep(j: u32, v6: bool, port: u16) -> Endpoint {
    let mut ip = [0u8; 16];
    if v6 {
        ip = external_v6(j);
    } else {
        ip[..4].copy_from_slice(&external_v4(j));
    }
    Endpoint {
        ip,
        v6,
        mac: ROUTER_MAC,
        port,
        internal: false,
    }
}

/// No transfer session.
pub const NO_SESSION: u32 = u32::MAX;

/// One TCP connection or UDP conversation. Side 0 is the client (the SYN sender, or the first
/// sender of a UDP conversation), side 1 the server.
#[derive(Clone, Debug)]
pub struct Conn {
    /// UDP conversation.
    pub udp: bool,
    /// The two ends.
    pub ep: [Endpoint; 2],
    /// Next sequence number each side sends.
    pub seq: [u32; 2],
    /// Next IPv4 identification each side sends.
    pub ipid: [u16; 2],
    /// Offset of each side's TCP timestamp clock.
    pub tsoff: [u32; 2],
    /// Last timestamp value each side sent.
    pub last_ts: [u32; 2],
    /// The app_proto the sensor should report for this flow.
    pub app: &'static str,
    /// Index of the transfer session the flow belongs to, or [`NO_SESSION`].
    pub session: u32,
    /// A packet of the flow has been written.
    pub started: bool,
}

impl Conn {
    /// A new flow with initial numbers drawn from `r`.
    pub fn new(udp: bool, client: Endpoint, server: Endpoint, app: &'static str, r: u64) -> Conn {
        let h = crate::rng::mix(r);
        let h2 = crate::rng::mix(h);
        Conn {
            udp,
            ep: [client, server],
            seq: [h as u32, (h >> 32) as u32],
            ipid: [h2 as u16, (h2 >> 16) as u16],
            tsoff: [
                (h2 >> 32) as u32 & 0x7fff_ffff,
                crate::rng::mix(h2) as u32 & 0x7fff_ffff,
            ],
            last_ts: [0, 0],
            app,
            session: NO_SESSION,
            started: false,
        }
    }

    /// IPv6 flow.
    pub fn v6(&self) -> bool {
        self.ep[0].v6
    }

    /// Largest TCP payload per segment.
    pub fn mss(&self) -> usize {
        if self.v6() {
            MSS_V6
        } else {
            MSS_V4
        }
    }

    /// The side (0 or 1) inside the site, if exactly one is.
    pub fn internal_side(&self) -> Option<usize> {
        match (self.ep[0].internal, self.ep[1].internal) {
            (true, false) => Some(0),
            (false, true) => Some(1),
            _ => None,
        }
    }

    fn l3_len(&self) -> usize {
        if self.v6() {
            40
        } else {
            20
        }
    }

    /// Writes Ethernet and IP headers; returns the offset of the transport header.
    fn l3(&mut self, f: &mut [u8], side: usize, proto: u8, l4_len: usize) -> usize {
        let (src, dst) = (self.ep[side], self.ep[1 - side]);
        f[0..6].copy_from_slice(&dst.mac);
        f[6..12].copy_from_slice(&src.mac);
        let ttl = if src.internal { 64 } else { 51 };
        if self.v6() {
            f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            let ip = &mut f[14..54];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            ip[6] = proto;
            ip[7] = ttl;
            ip[8..24].copy_from_slice(&src.ip);
            ip[24..40].copy_from_slice(&dst.ip);
            54
        } else {
            f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let id = self.ipid[side];
            self.ipid[side] = id.wrapping_add(1);
            let ip = &mut f[14..34];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&id.to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = ttl;
            ip[9] = proto;
            ip[12..16].copy_from_slice(&src.ip[..4]);
            ip[16..20].copy_from_slice(&dst.ip[..4]);
            let c = csum_fold(csum_add(0, ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            34
        }
    }

    fn pseudo(&self, side: usize, proto: u8, l4_len: usize) -> u64 {
        let (src, dst) = (&self.ep[side], &self.ep[1 - side]);
        let n = if self.v6() { 16 } else { 4 };
        let acc = csum_add(0, &src.ip[..n]);
        let acc = csum_add(acc, &dst.ip[..n]);
        acc + u64::from(proto) + l4_len as u64
    }

    /// Writes one TCP segment from `side` with payload `a` followed by `b` and advances the
    /// connection's state. Returns the frame length.
    #[allow(
        clippy::too_many_arguments,
        reason = "one TCP segment: its time, side, flags and the two payload pieces"
    )]
    pub fn tcp<W: Write>(
        &mut self,
        w: &mut PcapWriter<W>,
        ts_us: u64,
        side: usize,
        flags: u8,
        a: &[u8],
        b: &[u8],
    ) -> io::Result<usize> {
        let syn = flags & SYN != 0;
        let opt_len = if syn { 20 } else { 12 };
        let payload = a.len() + b.len();
        let l4_len = 20 + opt_len + payload;
        let len = 14 + self.l3_len() + l4_len;
        let seq = self.seq[side];
        let ack = if flags & ACK != 0 {
            self.seq[1 - side]
        } else {
            0
        };
        let tsval = ((ts_us / 1000) as u32).wrapping_add(self.tsoff[side]);
        let tsecr = self.last_ts[1 - side];
        self.last_ts[side] = tsval;
        let mut adv = payload as u32;
        if syn {
            adv += 1;
        }
        if flags & FIN != 0 {
            adv += 1;
        }
        self.seq[side] = seq.wrapping_add(adv);
        let mss = self.mss() as u16 + 12;
        let pseudo = self.pseudo(side, 6, l4_len);
        let (sport, dport) = (self.ep[side].port, self.ep[1 - side].port);
        let f = w.frame(ts_us, len)?;
        let off = self.l3(f, side, 6, l4_len);
        let t = &mut f[off..];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[12] = (((20 + opt_len) / 4) as u8) << 4;
        t[13] = flags;
        let win: u16 = if syn {
            if side == 0 {
                64240
            } else {
                65160
            }
        } else if side == 0 {
            502
        } else {
            509
        };
        t[14..16].copy_from_slice(&win.to_be_bytes());
        let o = &mut t[20..20 + opt_len];
        if syn {
            // MSS, SACK permitted, timestamps, NOP, window scale 7 (as Linux sends them).
            o[0] = 2;
            o[1] = 4;
            o[2..4].copy_from_slice(&mss.to_be_bytes());
            o[4] = 4;
            o[5] = 2;
            o[6] = 8;
            o[7] = 10;
            o[8..12].copy_from_slice(&tsval.to_be_bytes());
            o[12..16].copy_from_slice(&tsecr.to_be_bytes());
            o[16] = 1;
            o[17] = 3;
            o[18] = 3;
            o[19] = 7;
        } else {
            o[0] = 1;
            o[1] = 1;
            o[2] = 8;
            o[3] = 10;
            o[4..8].copy_from_slice(&tsval.to_be_bytes());
            o[8..12].copy_from_slice(&tsecr.to_be_bytes());
        }
        let p = 20 + opt_len;
        t[p..p + a.len()].copy_from_slice(a);
        t[p + a.len()..p + payload].copy_from_slice(b);
        let c = csum_fold(csum_add(pseudo, &t[..l4_len]));
        t[16..18].copy_from_slice(&c.to_be_bytes());
        Ok(len)
    }

    /// Writes one UDP datagram from `side` with payload `a` followed by `b`. Returns the frame
    /// length.
    pub fn udp<W: Write>(
        &mut self,
        w: &mut PcapWriter<W>,
        ts_us: u64,
        side: usize,
        a: &[u8],
        b: &[u8],
    ) -> io::Result<usize> {
        let payload = a.len() + b.len();
        let l4_len = 8 + payload;
        let len = 14 + self.l3_len() + l4_len;
        let pseudo = self.pseudo(side, 17, l4_len);
        let (sport, dport) = (self.ep[side].port, self.ep[1 - side].port);
        let f = w.frame(ts_us, len)?;
        let off = self.l3(f, side, 17, l4_len);
        let u = &mut f[off..];
        u[0..2].copy_from_slice(&sport.to_be_bytes());
        u[2..4].copy_from_slice(&dport.to_be_bytes());
        u[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        u[8..8 + a.len()].copy_from_slice(a);
        u[8 + a.len()..l4_len].copy_from_slice(b);
        let mut c = csum_fold(csum_add(pseudo, &u[..l4_len]));
        if c == 0 {
            c = 0xffff;
        }
        u[6..8].copy_from_slice(&c.to_be_bytes());
        Ok(len)
    }
}
