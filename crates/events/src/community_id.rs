//! Community ID v1: a direction-free flow identifier shared by Zeek, Suricata and Arkime, so a record
//! here can be joined with theirs (specification: github.com/corelight/community-id-spec).
//!
//! The hash input is, in network byte order: the seed (2 bytes), the two addresses (4 or 16 bytes
//! each), the IP protocol number (1 byte), one zero byte of padding and, for protocols that have
//! ports or port equivalents, the two ports (2 bytes each). The endpoints are ordered first, so both
//! directions of a flow give one value: the (address, port) pair that compares smaller goes first.
//! The value is `1:` followed by the standard base64 (with padding) of the input's SHA-1 digest.

use std::net::IpAddr;

use sha1::{Digest, Sha1};

/// IP protocol numbers the specification gives ports or port equivalents.
const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;
const SCTP: u8 = 132;

/// Length of a Community ID v1 string: `1:` and 28 base64 characters.
pub const COMMUNITY_ID_V1_LEN: usize = 30;

/// Appends the Community ID v1 of a flow to `out` (`1:` and 28 base64 characters, 30 bytes); the
/// only allocation is `out`'s growth, if it has less than 30 bytes spare.
///
/// `seed` is 0 unless every tool whose records are joined with these was configured otherwise.
/// `proto` is the IP protocol number. The ports are used for TCP, UDP and SCTP; for ICMP and
/// ICMPv6 pass the message type as `sport` and the code as `dport`, and they are mapped to port
/// equivalents as the specification says (a request and its reply get one id); for any other
/// protocol the ports are ignored. The direction given does not matter for port protocols.
///
/// Addresses of different families cannot belong to one flow; if they come anyway, the IPv4 one is
/// hashed as its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`) so the result is still defined and
/// direction-free, though no other implementation would produce it.
///
/// A caller holding `xferwatch_wire::Addr` passes `addr.to_ip()`.
///
/// ```
/// let mut id = String::new();
/// let (client, server) = ("128.232.110.120".parse().unwrap(), "66.35.250.204".parse().unwrap());
/// xferwatch_events::community_id_v1(&mut id, 0, 6, client, 34855, server, 80);
/// assert_eq!(id, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
/// ```
pub fn community_id_v1(
    out: &mut String,
    seed: u16,
    proto: u8,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
) {
    let d = digest(seed, proto, src, sport, dst, dport);
    out.reserve(COMMUNITY_ID_V1_LEN);
    out.push_str("1:");
    base64_20(out, &d);
}

/// The 20-byte SHA-1 digest behind [`community_id_v1`], before base64.
fn digest(seed: u16, proto: u8, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> [u8; 20] {
    let (a, b) = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (Octets::V4(s.octets()), Octets::V4(d.octets())),
        (s, d) => (Octets::V6(v6_octets(s)), Octets::V6(v6_octets(d))),
    };
    let (a, b) = (a.as_slice(), b.as_slice());

    let ports = match proto {
        TCP | UDP | SCTP => Some((sport, dport, false)),
        ICMP => Some(icmp_ports(sport, dport, icmp_v4_counterpart(sport))),
        ICMPV6 => Some(icmp_ports(sport, dport, icmp_v6_counterpart(sport))),
        _ => None,
    };
    let (sp, dp, one_way) = ports.unwrap_or((0, 0, false));
    // One-way ICMP messages keep the order they were seen in; everything else is ordered.
    let ordered = one_way || (a, sp) <= (b, dp);
    let (a, sp, b, dp) = if ordered {
        (a, sp, b, dp)
    } else {
        (b, dp, a, sp)
    };

    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(a);
    h.update(b);
    h.update([proto, 0]);
    if ports.is_some() {
        h.update(sp.to_be_bytes());
        h.update(dp.to_be_bytes());
    }
    h.finalize().into()
}

enum Octets {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Octets {
    fn as_slice(&self) -> &[u8] {
        match self {
            Octets::V4(b) => b,
            Octets::V6(b) => b,
        }
    }
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// ICMP's (source, destination) port equivalents and whether the message is one-way: a message
/// with a counterpart (echo and echo reply, …) is (type, counterpart type), anything else is
/// (type, code) and is not reordered.
fn icmp_ports(mtype: u16, code: u16, counterpart: Option<u16>) -> (u16, u16, bool) {
    match counterpart {
        Some(c) => (mtype, c, false),
        None => (mtype, code, true),
    }
}

/// ICMPv4 request/reply pairs (echo, router solicitation/advertisement, timestamp, information,
/// address mask), as Zeek and the specification's reference implementation map them.
fn icmp_v4_counterpart(mtype: u16) -> Option<u16> {
    Some(match mtype {
        8 => 0,
        0 => 8,
        10 => 9,
        9 => 10,
        13 => 14,
        14 => 13,
        15 => 16,
        16 => 15,
        17 => 18,
        18 => 17,
        _ => return None,
    })
}

/// ICMPv6 request/reply pairs (echo, MLD query/report, router and neighbor discovery, node
/// information, home agent address discovery).
fn icmp_v6_counterpart(mtype: u16) -> Option<u16> {
    Some(match mtype {
        128 => 129,
        129 => 128,
        130 => 131,
        131 => 130,
        133 => 134,
        134 => 133,
        135 => 136,
        136 => 135,
        139 => 140,
        140 => 139,
        144 => 145,
        145 => 144,
        _ => return None,
    })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding of a 20-byte digest: six full groups and a 2-byte tail, 28 chars.
fn base64_20(out: &mut String, d: &[u8; 20]) {
    let sextet = |v: u32, shift: u32| char::from(B64[((v >> shift) & 63) as usize]);
    for g in d[..18].chunks_exact(3) {
        let v = u32::from(g[0]) << 16 | u32::from(g[1]) << 8 | u32::from(g[2]);
        out.extend([sextet(v, 18), sextet(v, 12), sextet(v, 6), sextet(v, 0)]);
    }
    let v = u32::from(d[18]) << 16 | u32::from(d[19]) << 8;
    out.extend([sextet(v, 18), sextet(v, 12), sextet(v, 6), '=']);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u16, proto: u8, src: &str, sport: u16, dst: &str, dport: u16) -> String {
        let mut s = String::new();
        community_id_v1(
            &mut s,
            seed,
            proto,
            src.parse().unwrap(),
            sport,
            dst.parse().unwrap(),
            dport,
        );
        s
    }

    /// (proto, src, sport, dst, dport, id with seed 0, id with seed 1). For ICMP the "ports" are
    /// type and code.
    type Vector = (
        u8,
        &'static str,
        u16,
        &'static str,
        u16,
        &'static str,
        &'static str,
    );

    /// The specification's published vectors, seed 0 and seed 1: first its baseline/README.md
    /// tables, then baseline_deflt.json and baseline_seed1.json (flows of its combined capture,
    /// whose ICMP "ports" are type and counterpart type, or type and code).
    #[rustfmt::skip]
    const SPEC_VECTORS: &[Vector] = &[
        // baseline/README.md
        (6, "1.2.3.4", 1122, "5.6.7.8", 3344, "1:wCb3OG7yAFWelaUydu0D+125CLM=", "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
        (6, "5.6.7.8", 3344, "1.2.3.4", 1122, "1:wCb3OG7yAFWelaUydu0D+125CLM=", "1:HhA1B+6CoLbiKPEs5nhNYN4XWfk="),
        (17, "1.2.3.4", 1122, "5.6.7.8", 3344, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=", "1:OShq+iKDAMVouh/4bMxB9Sz4amw="),
        (17, "5.6.7.8", 3344, "1.2.3.4", 1122, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg=", "1:OShq+iKDAMVouh/4bMxB9Sz4amw="),
        (132, "1.2.3.4", 1122, "5.6.7.8", 3344, "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=", "1:uitchpn5MMGAQKBJh7bIr/bAr7s="),
        (132, "5.6.7.8", 3344, "1.2.3.4", 1122, "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8=", "1:uitchpn5MMGAQKBJh7bIr/bAr7s="),
        (1, "1.2.3.4", 8, "5.6.7.8", 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=", "1:9pr4ZGTICiuZoIh90RRYE2RyXpU="),
        (1, "5.6.7.8", 0, "1.2.3.4", 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0=", "1:9pr4ZGTICiuZoIh90RRYE2RyXpU="),
        (1, "1.2.3.4", 11, "5.6.7.8", 0, "1:f/YiSyWqczrTgfUCZlBUnvHRcPk=", "1:1DD7cWGC/Yg91YGsQeni8du3pIA="),
        (58, "fe80:0001:0203:0405:0607:0809:0A0B:0C0D", 128, "fe80:1011:1213:1415:1617:1819:1A1B:1C1D", 0, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=", "1:IO27GQzPuCtNnwFvjWALMHu5tJE="),
        (58, "fe80:1011:1213:1415:1617:1819:1A1B:1C1D", 129, "fe80:0001:0203:0405:0607:0809:0A0B:0C0D", 0, "1:0bf7hyMJUwt3fMED7z8LIfRpBeo=", "1:IO27GQzPuCtNnwFvjWALMHu5tJE="),
        (58, "fe80:0001:0203:0405:0607:0809:0A0B:0C0D", 146, "fe80:1011:1213:1415:1617:1819:1A1B:1C1D", 0, "1:fYC8+pz24E+EhANP1EZhpX0Dw10=", "1:Cv4IKJe56BNkF0MBW2YxQ3Nwc3s="),
        (46, "1.2.3.4", 0, "5.6.7.8", 0, "1:ikv3kmf89luf73WPz1jOs49S768=", "1:/buhqeOmaRCopOZFy9HnoJd5XW8="),
        (46, "5.6.7.8", 0, "1.2.3.4", 0, "1:ikv3kmf89luf73WPz1jOs49S768=", "1:/buhqeOmaRCopOZFy9HnoJd5XW8="),
        (46, "fe80:0001:0203:0405:0607:0809:0A0B:0C0D", 0, "fe80:1011:1213:1415:1617:1819:1A1B:1C1D", 0, "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0=", "1:j6EyyfBzL4vWKHFXgUqb5Az3OxM="),
        (46, "fe80:1011:1213:1415:1617:1819:1A1B:1C1D", 0, "fe80:0001:0203:0405:0607:0809:0A0B:0C0D", 0, "1:wQ/2mwrnXP4lmJcHdGL5ePjR+e0=", "1:j6EyyfBzL4vWKHFXgUqb5Az3OxM="),
        // baseline/baseline_deflt.json, baseline/baseline_seed1.json
        (58, "fe80::200:86ff:fe05:80da", 135, "fe80::260:97ff:fe07:69ea", 136, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="),
        (58, "fe80::260:97ff:fe07:69ea", 136, "fe80::200:86ff:fe05:80da", 135, "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="),
        (58, "fe80::260:97ff:fe07:69ea", 135, "fe80::200:86ff:fe05:80da", 136, "1:zavyT/cezQr1fmImYCwYnMXbgck=", "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM="),
        (58, "fe80::200:86ff:fe05:80da", 136, "fe80::260:97ff:fe07:69ea", 135, "1:zavyT/cezQr1fmImYCwYnMXbgck=", "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM="),
        (58, "3ffe:501:1800:2345::2", 3, "3ffe:507:0:1:200:86ff:fe05:80da", 0, "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=", "1:lVEtCZpYu84Xqaa++3lXFyuu2n4="),
        (58, "3ffe:501:410:0:2c0:dfff:fe47:33e", 1, "3ffe:507:0:1:200:86ff:fe05:80da", 4, "1:hLZd0XGWojozrvxqE0dWB1iM6R0=", "1:W8MHwXpWzpoSTD+cGcaJr4u0ys8="),
        (58, "3ffe:507:0:1:200:86ff:fe05:80da", 128, "3ffe:501:0:1001::2", 129, "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=", "1:GfZxjAkDk2MkegpBYHV6tadtFXQ="),
        (58, "3ffe:501:0:1001::2", 129, "3ffe:507:0:1:200:86ff:fe05:80da", 128, "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=", "1:GfZxjAkDk2MkegpBYHV6tadtFXQ="),
        (58, "fe80::200:86ff:fe05:80da", 133, "ff02::2", 134, "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=", "1:L7Ka0ZMYu+J3bL4ulW2PrqyXNo8="),
        (58, "fe80::260:97ff:fe07:69ea", 134, "ff02::1", 133, "1:pkvHqCL88/tg1k4cPigmZXUtL00=", "1:K/ee5UCqAMAQXDorP5nSa2CGLjc="),
        (1, "192.168.0.89", 8, "192.168.0.1", 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
        (1, "192.168.0.1", 0, "192.168.0.89", 8, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
        (1, "10.0.0.1", 11, "10.0.0.2", 0, "1:YHxtAirCG//0OzkcVAukqKQN9xM=", "1:XjUibYHaafLQ3pxQeiMI8g25q20="),
        (6, "2001:470:e5bf:dead:4957:2174:e82c:4887", 63943, "2607:f8b0:400c:c03::1a", 25, "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
        (6, "2607:f8b0:400c:c03::1a", 25, "2001:470:e5bf:dead:4957:2174:e82c:4887", 63943, "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
        (132, "192.168.170.8", 7, "192.168.170.56", 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="),
        (132, "192.168.170.56", 7, "192.168.170.8", 7, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="),
        (6, "128.232.110.120", 34855, "66.35.250.204", 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
        (6, "66.35.250.204", 80, "128.232.110.120", 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
        (17, "192.168.1.52", 54585, "8.8.8.8", 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
        (17, "8.8.8.8", 53, "192.168.1.52", 54585, "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
        (46, "10.1.12.1", 0, "10.1.12.2", 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="),
        (46, "10.1.12.2", 0, "10.1.12.1", 0, "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="),
    ];

    #[test]
    fn specification_vectors() {
        for &(proto, src, sport, dst, dport, seed0, seed1) in SPEC_VECTORS {
            let what = format!("{proto} {src}:{sport} -> {dst}:{dport}");
            assert_eq!(id(0, proto, src, sport, dst, dport), seed0, "{what} seed 0");
            assert_eq!(id(1, proto, src, sport, dst, dport), seed1, "{what} seed 1");
        }
    }

    /// The specification's tables without base64: the digest itself.
    #[test]
    fn digest_without_base64() {
        let hex = |d: [u8; 20]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let tcp = digest(0, 6, ip("1.2.3.4"), 1122, ip("5.6.7.8"), 3344);
        assert_eq!(hex(tcp), "c026f7386ef200559e95a53276ed03fb5db908b3");
        let rsvp6 = digest(
            0,
            46,
            ip("fe80:1011:1213:1415:1617:1819:1A1B:1C1D"),
            0,
            ip("fe80:0001:0203:0405:0607:0809:0A0B:0C0D"),
            0,
        );
        assert_eq!(hex(rsvp6), "c10ff69b0ae75cfe259897077462f978f8d1f9ed");
    }

    #[test]
    fn ports_ignored_without_a_port_protocol() {
        assert_eq!(
            id(0, 46, "1.2.3.4", 80, "5.6.7.8", 443),
            "1:ikv3kmf89luf73WPz1jOs49S768="
        );
    }

    #[test]
    fn same_address_ordered_by_port() {
        let a = id(0, 6, "10.0.0.1", 40000, "10.0.0.1", 80);
        assert_eq!(a, id(0, 6, "10.0.0.1", 80, "10.0.0.1", 40000));
        assert_ne!(a, id(0, 17, "10.0.0.1", 80, "10.0.0.1", 40000));
    }

    #[test]
    fn appends_and_mixed_families_do_not_panic() {
        let mut s = String::from("x");
        let (v4, v6) = ("1.2.3.4".parse().unwrap(), "::1".parse().unwrap());
        community_id_v1(&mut s, 0, 6, v4, 1, v6, 2);
        assert_eq!(s.len(), 1 + COMMUNITY_ID_V1_LEN);
        assert!(s.starts_with("x1:") && s.ends_with('='));
        let mut r = String::from("x");
        community_id_v1(&mut r, 0, 6, v6, 2, v4, 1);
        assert_eq!(s, r);
    }
}
