//! Flow keys: a canonical, direction-free form of (transport, addresses, ports, outer VLAN), and the
//! symmetric hash that sends both directions of a flow to one worker.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IP address stored in 16 bytes so keys are fixed-size and `Copy` (IPv4 is v4-mapped).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Addr {
    bytes: [u8; 16],
    v6: bool,
}

impl Addr {
    pub fn v4(b: [u8; 4]) -> Self {
        let mut bytes = [0u8; 16];
        bytes[10] = 0xff;
        bytes[11] = 0xff;
        bytes[12..].copy_from_slice(&b);
        Addr { bytes, v6: false }
    }
    pub fn v6(bytes: [u8; 16]) -> Self {
        Addr { bytes, v6: true }
    }
    pub fn is_v6(&self) -> bool {
        self.v6
    }
    pub fn to_ip(self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.bytes))
        } else {
            IpAddr::V4(Ipv4Addr::new(
                self.bytes[12],
                self.bytes[13],
                self.bytes[14],
                self.bytes[15],
            ))
        }
    }
    /// Multicast group (224.0.0.0/4, ff00::/8).
    pub fn is_multicast(&self) -> bool {
        if self.v6 {
            self.bytes[0] == 0xff
        } else {
            self.bytes[12] & 0xf0 == 0xe0
        }
    }
    pub fn octets(&self) -> &[u8; 16] {
        &self.bytes
    }
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Addr::v4(a.octets()),
            IpAddr::V6(a) => Addr::v6(a.octets()),
        }
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_ip())
    }
}
impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_ip())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct Endpoint {
    pub addr: Addr,
    pub port: u16,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        }
    }
}

/// Which end of a canonical key a packet was sent by.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    /// Sent by `FlowKey::lo`.
    Lo,
    /// Sent by `FlowKey::hi`.
    Hi,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }
}

/// Canonical bidirectional key: the two endpoints in sorted order, so both directions map to one key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FlowKey {
    pub transport: Transport,
    pub lo: Endpoint,
    pub hi: Endpoint,
    /// Outermost VLAN id (0 = untagged).
    pub vlan: u16,
}

impl FlowKey {
    /// Builds the canonical key of a packet from `src` to `dst` and says which side sent it.
    pub fn new(transport: Transport, src: Endpoint, dst: Endpoint, vlan: u16) -> (FlowKey, Side) {
        if src <= dst {
            (
                FlowKey {
                    transport,
                    lo: src,
                    hi: dst,
                    vlan,
                },
                Side::Lo,
            )
        } else {
            (
                FlowKey {
                    transport,
                    lo: dst,
                    hi: src,
                    vlan,
                },
                Side::Hi,
            )
        }
    }

    pub fn endpoint(&self, side: Side) -> Endpoint {
        match side {
            Side::Lo => self.lo,
            Side::Hi => self.hi,
        }
    }

    /// A hash equal for both directions (the key is already canonical), stable across runs and
    /// platforms so that sharding, and hence replay output, never depends on a random seed.
    pub fn symmetric_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (self.transport as u64);
        let mut mix = |x: u64| {
            h = (h ^ x).wrapping_mul(0x100_0000_01b3).rotate_left(23);
        };
        for ep in [&self.lo, &self.hi] {
            let o = ep.addr.octets();
            mix(u64::from_le_bytes([
                o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7],
            ]));
            mix(u64::from_le_bytes([
                o[8], o[9], o[10], o[11], o[12], o[13], o[14], o[15],
            ]));
            mix(ep.port as u64);
        }
        mix(self.vlan as u64);
        // final avalanche (splitmix64)
        let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_share_key_and_hash() {
        let a = Endpoint {
            addr: Addr::v4([10, 0, 0, 1]),
            port: 40000,
        };
        let b = Endpoint {
            addr: Addr::v4([8, 8, 8, 8]),
            port: 21,
        };
        let (k1, s1) = FlowKey::new(Transport::Tcp, a, b, 0);
        let (k2, s2) = FlowKey::new(Transport::Tcp, b, a, 0);
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
        assert_eq!(k1.symmetric_hash(), k2.symmetric_hash());
        let (k3, _) = FlowKey::new(Transport::Tcp, a, b, 7);
        assert_ne!(k1, k3);
    }

    #[test]
    fn v4_and_v6_addresses_format() {
        assert_eq!(Addr::v4([192, 168, 1, 2]).to_string(), "192.168.1.2");
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(Addr::v6(v6).to_string(), "::1");
    }
}
