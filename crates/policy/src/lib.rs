//! Policy: every opinion the sensor holds about traffic, kept out of the decoders and parsers.
//!
//! Owns: which networks are internal (and so which way a flow goes), which protocol a server port
//! implies, and in [`detect`] the signatures, thresholds, roll-ups, baselines and allowlists.
//! Parsers report facts; this crate decides what they mean.
//! Invariants: lookups are allocation-free; tables are built once from validated configuration.

#![forbid(unsafe_code)]

pub mod detect;
pub mod rules;

use ipnet::IpNet;
use xferwatch_wire::{Addr, Transport};

/// The default internal networks: RFC 1918, RFC 6598 shared space, IPv6 unique local.
pub const DEFAULT_INTERNAL: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];

#[derive(Clone, Debug)]
pub struct Networks {
    nets: Vec<IpNet>,
    /// The same networks as (network, mask) integers: a lookup is a few ANDs, no conversion.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl Networks {
    pub fn new(nets: Vec<IpNet>) -> Self {
        let nets: Vec<IpNet> = nets.into_iter().map(|n| n.trunc()).collect();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for n in &nets {
            match n {
                IpNet::V4(n) => {
                    let mask = u32::MAX
                        .checked_shl(32 - n.prefix_len() as u32)
                        .unwrap_or(0);
                    v4.push((u32::from(n.network()), mask));
                }
                IpNet::V6(n) => {
                    let mask = u128::MAX
                        .checked_shl(128 - n.prefix_len() as u32)
                        .unwrap_or(0);
                    v6.push((u128::from(n.network()), mask));
                }
            }
        }
        Networks { nets, v4, v6 }
    }
    pub fn default_internal() -> Self {
        Networks::new(
            DEFAULT_INTERNAL
                .iter()
                .map(|s| s.parse().expect("valid default CIDR"))
                .collect(),
        )
    }
    pub fn is_internal(&self, addr: Addr) -> bool {
        let o = addr.octets();
        if addr.is_v6() {
            let a = u128::from_be_bytes(*o);
            self.v6.iter().any(|(n, m)| a & m == *n)
        } else {
            let a = u32::from_be_bytes([o[12], o[13], o[14], o[15]]);
            self.v4.iter().any(|(n, m)| a & m == *n)
        }
    }
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
    /// Which way a flow from `client` to `server` goes across the boundary.
    pub fn direction(&self, client: Addr, server: Addr) -> Direction {
        Direction::of(self.is_internal(client), self.is_internal(server))
    }
    /// The (internal, external) ends of a flow that crosses the boundary; None when it does not.
    pub fn ends(&self, client: Addr, server: Addr) -> Option<(Addr, Addr)> {
        match self.direction(client, server) {
            Direction::Outbound => Some((client, server)),
            Direction::Inbound => Some((server, client)),
            Direction::Internal | Direction::External => None,
        }
    }
}

/// Which way a flow goes across the site boundary, from its client's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Internal client to external server.
    Outbound,
    /// External client to internal server.
    Inbound,
    Internal,
    External,
}

impl Direction {
    pub fn of(client_internal: bool, server_internal: bool) -> Direction {
        match (client_internal, server_internal) {
            (true, false) => Direction::Outbound,
            (false, true) => Direction::Inbound,
            (true, true) => Direction::Internal,
            (false, false) => Direction::External,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
            Direction::Internal => "internal",
            Direction::External => "external",
        }
    }
}

/// Payload bytes sent by the internal end to the external end, whichever end opened the flow.
pub fn outbound_payload(direction: Direction, to_server: u64, to_client: u64) -> u64 {
    match direction {
        Direction::Outbound => to_server,
        Direction::Inbound => to_client,
        Direction::Internal | Direction::External => 0,
    }
}

/// The protocol a server port implies ("port 21 is FTP"), the table the mismatch detector reads.
#[derive(Clone, Debug)]
pub struct PortTable {
    tcp: Vec<(u16, &'static str)>,
    udp: Vec<(u16, &'static str)>,
}

/// Defaults: 21 ftp, 69 tftp, 139/445 smb, 80/8080 http, 443 tls, 22 ssh, 25/587 smtp, 53 dns.
pub const DEFAULT_PORTS: [(Transport, u16, &str); 12] = [
    (Transport::Tcp, 21, "ftp"),
    (Transport::Udp, 69, "tftp"),
    (Transport::Tcp, 139, "smb"),
    (Transport::Tcp, 445, "smb"),
    (Transport::Tcp, 80, "http"),
    (Transport::Tcp, 8080, "http"),
    (Transport::Tcp, 443, "tls"),
    (Transport::Tcp, 22, "ssh"),
    (Transport::Tcp, 25, "smtp"),
    (Transport::Tcp, 587, "smtp"),
    (Transport::Udp, 53, "dns"),
    (Transport::Tcp, 53, "dns"),
];

/// Protocol names the port table may hold.
pub const KNOWN_PROTOCOLS: [&str; 8] = ["ftp", "tftp", "smb", "http", "tls", "ssh", "dns", "smtp"];

/// The file-transfer protocols AN1173 is about: thresholds, allowlists and "off its own port" apply to them.
pub const FILE_TRANSFER_PROTOCOLS: [&str; 3] = ["ftp", "tftp", "smb"];

pub fn is_file_transfer(proto: &str) -> bool {
    FILE_TRANSFER_PROTOCOLS.contains(&proto)
}

/// The transport a protocol runs on, for entries given by protocol name only.
pub fn transports_of(proto: &str) -> &'static [Transport] {
    match proto {
        "tftp" => &[Transport::Udp],
        "dns" => &[Transport::Udp, Transport::Tcp],
        _ => &[Transport::Tcp],
    }
}

impl Default for PortTable {
    fn default() -> Self {
        let mut t = PortTable {
            tcp: Vec::new(),
            udp: Vec::new(),
        };
        for (tr, port, proto) in DEFAULT_PORTS {
            t.set(tr, port, proto);
        }
        t
    }
}

impl PortTable {
    pub fn empty() -> Self {
        PortTable {
            tcp: Vec::new(),
            udp: Vec::new(),
        }
    }
    /// Sets (or replaces) what `port` implies. `proto` must be one of [`KNOWN_PROTOCOLS`].
    pub fn set(&mut self, transport: Transport, port: u16, proto: &str) {
        let Some(p) = KNOWN_PROTOCOLS.iter().find(|k| **k == proto) else {
            return;
        };
        let v = match transport {
            Transport::Tcp => &mut self.tcp,
            Transport::Udp => &mut self.udp,
        };
        v.retain(|(pt, _)| *pt != port);
        v.push((port, p));
        v.sort_unstable();
    }
    pub fn expected(&self, transport: Transport, port: u16) -> Option<&'static str> {
        let v = match transport {
            Transport::Tcp => &self.tcp,
            Transport::Udp => &self.udp,
        };
        v.binary_search_by_key(&port, |(p, _)| *p)
            .ok()
            .map(|i| v[i].1)
    }
    pub fn entries(&self) -> impl Iterator<Item = (Transport, u16, &'static str)> + '_ {
        self.tcp
            .iter()
            .map(|(p, s)| (Transport::Tcp, *p, *s))
            .chain(self.udp.iter().map(|(p, s)| (Transport::Udp, *p, *s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn default_networks() {
        let n = Networks::default_internal();
        assert!(n.is_internal(Addr::v4([10, 1, 2, 3])));
        assert!(n.is_internal(Addr::v4([100, 64, 0, 1])));
        // The integer lookup agrees with IpNet::contains, v4 and v6, on and around the edges.
        let probes = [
            "10.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "172.15.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "172.32.0.0",
            "192.168.255.255",
            "192.169.0.0",
            "100.63.255.255",
            "100.127.255.255",
            "100.128.0.0",
            "0.0.0.0",
            "255.255.255.255",
            "fc00::1",
            "fdff:ffff::1",
            "fe00::1",
            "::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ];
        for p in probes {
            let ip: IpAddr = p.parse().unwrap();
            let slow = n.nets().iter().any(|net| net.contains(&ip));
            assert_eq!(n.is_internal(Addr::from(ip)), slow, "{p}");
        }
        let all = Networks::new(vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]);
        assert!(all.is_internal(Addr::v4([8, 8, 8, 8])));
        assert!(!n.is_internal(Addr::v4([8, 8, 8, 8])));
        let mut fd = [0u8; 16];
        fd[0] = 0xfd;
        assert!(n.is_internal(Addr::v6(fd)));
    }

    #[test]
    fn direction_and_outbound_bytes() {
        assert_eq!(Direction::of(true, false), Direction::Outbound);
        assert_eq!(outbound_payload(Direction::Inbound, 5, 7), 7);
        assert_eq!(outbound_payload(Direction::Outbound, 5, 7), 5);
        assert_eq!(outbound_payload(Direction::Internal, 5, 7), 0);
    }

    #[test]
    fn port_table() {
        let mut t = PortTable::default();
        assert_eq!(t.expected(Transport::Tcp, 21), Some("ftp"));
        assert_eq!(t.expected(Transport::Udp, 21), None);
        assert_eq!(t.expected(Transport::Udp, 69), Some("tftp"));
        t.set(Transport::Tcp, 2121, "ftp");
        assert_eq!(t.expected(Transport::Tcp, 2121), Some("ftp"));
    }
}
