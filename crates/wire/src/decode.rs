//! The decoder proper. Layout constants are named after the RFC/IEEE field they describe; every read goes
//! through `get`/`be16`/`be32`, which return `None` past the end instead of panicking.

use crate::key::{Addr, Endpoint, Transport};
use etherparse::{LaxIpSlice, LenSource};

/// Deepest tunnel nesting followed (VLAN tags, MPLS labels and tunnels each count one level).
pub const MAX_ENCAP_DEPTH: u8 = 8;

const ETH_HEADER_LEN: usize = 14;
const VLAN_TAG_LEN: usize = 4;
const SLL_HEADER_LEN: usize = 16;
const SLL2_HEADER_LEN: usize = 20;
const PPPOE_HEADER_LEN: usize = 6;
const MPLS_LABEL_LEN: usize = 4;
const VXLAN_HEADER_LEN: usize = 8;
const VXLAN_PORT: u16 = 4789;
const TCP_MIN_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const ETHERTYPE_MPLS_UC: u16 = 0x8847;
const ETHERTYPE_MPLS_MC: u16 = 0x8848;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
const ETHERTYPE_TEB: u16 = 0x6558; // transparent Ethernet bridging (GRE)

const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

const IPPROTO_IPIP: u8 = 4;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_GRE: u8 = 47;

/// Link types by their DLT/LINKTYPE numbers as libpcap reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    Null,
    Ethernet,
    Ppp,
    PppSerial,
    Raw,
    Ipv4,
    Ipv6,
    CiscoHdlc,
    Loop,
    LinuxSll,
    LinuxSll2,
    Unsupported(i32),
}

impl LinkType {
    /// The pcap link type number that writes frames of this kind (raw IP for the raw variants).
    pub fn dlt(self) -> u32 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::Ppp => 9,
            LinkType::PppSerial => 50,
            LinkType::Raw => 101,
            LinkType::CiscoHdlc => 104,
            LinkType::Loop => 108,
            LinkType::LinuxSll => 113,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll2 => 276,
            LinkType::Unsupported(n) => n as u32,
        }
    }

    pub fn from_dlt(dlt: i32) -> LinkType {
        match dlt {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            9 => LinkType::Ppp,
            50 => LinkType::PppSerial,
            12 | 14 | 101 => LinkType::Raw,
            104 => LinkType::CiscoHdlc,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Unsupported(other),
        }
    }
}

/// Why a packet produced no flow packet. Reasons are `layer.kind`, from a fixed set, so they can be
/// counters and metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeError {
    LinkUnsupported,
    LinkTruncated,
    VlanTruncated,
    MplsTruncated,
    PppoeTruncated,
    PppUnsupported,
    GreTruncated,
    GreUnsupported,
    VxlanTruncated,
    EncapTooDeep,
    /// Not IP at all (ARP, LLDP, STP, …): not an error, counted so nothing vanishes.
    NotIp,
    IpTruncated,
    IpMalformed,
    Ipv6ExtMalformed,
    /// ICMP, IGMP, ESP, SCTP…: counted, no flow in this version.
    OtherIpProto,
    TcpTruncated,
    TcpMalformed,
    UdpTruncated,
    UdpMalformed,
}

impl DecodeError {
    pub const ALL: [DecodeError; 19] = [
        DecodeError::LinkUnsupported,
        DecodeError::LinkTruncated,
        DecodeError::VlanTruncated,
        DecodeError::MplsTruncated,
        DecodeError::PppoeTruncated,
        DecodeError::PppUnsupported,
        DecodeError::GreTruncated,
        DecodeError::GreUnsupported,
        DecodeError::VxlanTruncated,
        DecodeError::EncapTooDeep,
        DecodeError::NotIp,
        DecodeError::IpTruncated,
        DecodeError::IpMalformed,
        DecodeError::Ipv6ExtMalformed,
        DecodeError::OtherIpProto,
        DecodeError::TcpTruncated,
        DecodeError::TcpMalformed,
        DecodeError::UdpTruncated,
        DecodeError::UdpMalformed,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// `layer.kind`, stable: used in EVE stats and as a metric label.
    pub fn reason(self) -> &'static str {
        match self {
            DecodeError::LinkUnsupported => "link.unsupported",
            DecodeError::LinkTruncated => "link.truncated",
            DecodeError::VlanTruncated => "vlan.truncated",
            DecodeError::MplsTruncated => "mpls.truncated",
            DecodeError::PppoeTruncated => "pppoe.truncated",
            DecodeError::PppUnsupported => "ppp.unsupported_protocol",
            DecodeError::GreTruncated => "gre.truncated",
            DecodeError::GreUnsupported => "gre.unsupported",
            DecodeError::VxlanTruncated => "vxlan.truncated",
            DecodeError::EncapTooDeep => "encap.too_deep",
            DecodeError::NotIp => "link.not_ip",
            DecodeError::IpTruncated => "ip.truncated",
            DecodeError::IpMalformed => "ip.malformed",
            DecodeError::Ipv6ExtMalformed => "ipv6.ext_malformed",
            DecodeError::OtherIpProto => "ip.other_protocol",
            DecodeError::TcpTruncated => "tcp.truncated",
            DecodeError::TcpMalformed => "tcp.malformed",
            DecodeError::UdpTruncated => "udp.truncated",
            DecodeError::UdpMalformed => "udp.malformed",
        }
    }

    /// False for packets that are fine but carry nothing a flow is made of (non-IP, ICMP…).
    pub fn is_error(self) -> bool {
        !matches!(self, DecodeError::NotIp | DecodeError::OtherIpProto)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpInfo {
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub ack_flag: bool,
    pub fin: bool,
    pub rst: bool,
}

impl TcpInfo {
    /// Sequence number of the segment's first payload byte (a SYN occupies one number).
    pub fn data_seq(&self) -> u32 {
        if self.syn {
            self.seq.wrapping_add(1)
        } else {
            self.seq
        }
    }
}

/// A TCP or UDP packet, innermost layer.
#[derive(Clone, Copy, Debug)]
pub struct L4Packet<'a> {
    pub transport: Transport,
    pub src: Endpoint,
    pub dst: Endpoint,
    /// Outermost VLAN id, 0 when untagged.
    pub vlan: u16,
    pub tcp: Option<TcpInfo>,
    /// The captured payload bytes (may be shorter than `payload_len` when snaplen cut the frame).
    pub payload: &'a [u8],
    /// On-wire payload length taken from the headers; capped to what is present when the frame was
    /// captured whole but a header claims more (a bogus length).
    pub payload_len: u32,
}

/// One IP fragment, for the defragmenter. `data` is the fragment's part of the IP payload.
#[derive(Clone, Copy, Debug)]
pub struct Fragment<'a> {
    pub src: Addr,
    pub dst: Addr,
    pub vlan: u16,
    pub protocol: u8,
    pub id: u32,
    /// Byte offset of `data` in the original datagram's payload.
    pub offset: u32,
    pub more: bool,
    pub data: &'a [u8],
    /// The IP header (and IPv6 extension headers) before `data`, as captured.
    pub header: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
pub enum Decoded<'a> {
    Packet(L4Packet<'a>),
    Fragment(Fragment<'a>),
}

#[derive(Clone, Copy)]
struct Ctx {
    vlan: Option<u16>,
    depth: u8,
    /// The frame was cut by the capture's snaplen, so header lengths are believed over what is present.
    snapped: bool,
}

impl Ctx {
    fn deeper(self) -> Result<Ctx, DecodeError> {
        if self.depth >= MAX_ENCAP_DEPTH {
            return Err(DecodeError::EncapTooDeep);
        }
        Ok(Ctx {
            depth: self.depth + 1,
            ..self
        })
    }
}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}
#[inline]
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}
#[inline]
fn tail(b: &[u8], from: usize) -> Option<&[u8]> {
    b.get(from..)
}

/// Decodes one captured frame. `snapped` = the capture length is smaller than the wire length.
pub fn decode(link: LinkType, frame: &[u8], snapped: bool) -> Result<Decoded<'_>, DecodeError> {
    let ctx = Ctx {
        vlan: None,
        depth: 0,
        snapped,
    };
    match link {
        LinkType::Ethernet => ethernet(frame, ctx),
        LinkType::LinuxSll => {
            let proto = be16(frame, 14).ok_or(DecodeError::LinkTruncated)?;
            ethertype(
                proto,
                tail(frame, SLL_HEADER_LEN).ok_or(DecodeError::LinkTruncated)?,
                ctx,
            )
        }
        LinkType::LinuxSll2 => {
            let proto = be16(frame, 0).ok_or(DecodeError::LinkTruncated)?;
            ethertype(
                proto,
                tail(frame, SLL2_HEADER_LEN).ok_or(DecodeError::LinkTruncated)?,
                ctx,
            )
        }
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => ip_by_version(frame, ctx),
        LinkType::Null | LinkType::Loop => {
            let raw = frame.get(..4).ok_or(DecodeError::LinkTruncated)?;
            // DLT_NULL stores the address family in the capturing host's byte order; DLT_LOOP in
            // network order. Either way a small number in one of the two readings is the family.
            let le = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
            let be = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
            let family = if link == LinkType::Loop || le > 0xffff {
                be
            } else {
                le
            };
            let rest = tail(frame, 4).ok_or(DecodeError::LinkTruncated)?;
            match family {
                // AF_INET, then AF_INET6 as Linux, the BSDs and macOS number it.
                2 | 10 | 24 | 28 | 30 => ip(rest, ctx),
                _ => Err(DecodeError::NotIp),
            }
        }
        LinkType::Ppp | LinkType::PppSerial => ppp(frame, ctx),
        LinkType::CiscoHdlc => {
            let proto = be16(frame, 2).ok_or(DecodeError::LinkTruncated)?;
            ethertype(
                proto,
                tail(frame, 4).ok_or(DecodeError::LinkTruncated)?,
                ctx,
            )
        }
        LinkType::Unsupported(_) => Err(DecodeError::LinkUnsupported),
    }
}

fn ethernet(frame: &[u8], ctx: Ctx) -> Result<Decoded<'_>, DecodeError> {
    let proto = be16(frame, 12).ok_or(DecodeError::LinkTruncated)?;
    ethertype(
        proto,
        tail(frame, ETH_HEADER_LEN).ok_or(DecodeError::LinkTruncated)?,
        ctx,
    )
}

fn ethertype(mut proto: u16, mut rest: &[u8], mut ctx: Ctx) -> Result<Decoded<'_>, DecodeError> {
    loop {
        match proto {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => return ip(rest, ctx),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                ctx = ctx.deeper()?;
                let tci = be16(rest, 0).ok_or(DecodeError::VlanTruncated)?;
                if ctx.vlan.is_none() {
                    ctx.vlan = Some(tci & 0x0fff);
                }
                proto = be16(rest, 2).ok_or(DecodeError::VlanTruncated)?;
                rest = tail(rest, VLAN_TAG_LEN).ok_or(DecodeError::VlanTruncated)?;
            }
            ETHERTYPE_MPLS_UC | ETHERTYPE_MPLS_MC => return mpls(rest, ctx),
            ETHERTYPE_PPPOE_SESSION => {
                let body = tail(rest, PPPOE_HEADER_LEN).ok_or(DecodeError::PppoeTruncated)?;
                return ppp_protocol(body, ctx.deeper()?);
            }
            _ => return Err(DecodeError::NotIp),
        }
    }
}

fn mpls(mut rest: &[u8], mut ctx: Ctx) -> Result<Decoded<'_>, DecodeError> {
    loop {
        ctx = ctx.deeper()?;
        let label = be32(rest, 0).ok_or(DecodeError::MplsTruncated)?;
        rest = tail(rest, MPLS_LABEL_LEN).ok_or(DecodeError::MplsTruncated)?;
        if label & 0x100 != 0 {
            break; // bottom of stack
        }
    }
    match rest.first().map(|b| b >> 4) {
        Some(4) | Some(6) => ip(rest, ctx),
        // A zero first nibble is the pseudowire control word followed by an Ethernet frame.
        Some(0) => ethernet(tail(rest, 4).ok_or(DecodeError::MplsTruncated)?, ctx),
        Some(_) => Err(DecodeError::NotIp),
        None => Err(DecodeError::MplsTruncated),
    }
}

fn ppp(frame: &[u8], ctx: Ctx) -> Result<Decoded<'_>, DecodeError> {
    // HDLC-like framing may put address 0xff and control 0x03 before the protocol.
    let body = if frame.first() == Some(&0xff) && frame.get(1) == Some(&0x03) {
        tail(frame, 2).ok_or(DecodeError::LinkTruncated)?
    } else {
        frame
    };
    ppp_protocol(body, ctx)
}

fn ppp_protocol(body: &[u8], ctx: Ctx) -> Result<Decoded<'_>, DecodeError> {
    // Protocol-field compression: a one-byte protocol has its low bit set.
    let (proto, hdr) = match body.first() {
        Some(b) if b & 1 == 1 => (*b as u16, 1),
        Some(_) => (be16(body, 0).ok_or(DecodeError::LinkTruncated)?, 2),
        None => return Err(DecodeError::LinkTruncated),
    };
    let rest = tail(body, hdr).ok_or(DecodeError::LinkTruncated)?;
    match proto {
        PPP_IPV4 | PPP_IPV6 => ip(rest, ctx),
        _ => Err(DecodeError::PppUnsupported),
    }
}

fn ip_by_version(b: &[u8], ctx: Ctx) -> Result<Decoded<'_>, DecodeError> {
    match b.first().map(|v| v >> 4) {
        Some(4) | Some(6) => ip(b, ctx),
        Some(_) => Err(DecodeError::IpMalformed),
        None => Err(DecodeError::IpTruncated),
    }
}

fn ip(b: &[u8], ctx: Ctx) -> Result<Decoded<'_>, DecodeError> {
    use etherparse::err::ip::LaxHeaderSliceError;
    let (slice, ext_err) = match LaxIpSlice::from_slice(b) {
        Ok(v) => v,
        Err(LaxHeaderSliceError::Len(_)) => return Err(DecodeError::IpTruncated),
        Err(LaxHeaderSliceError::Content(_)) => return Err(DecodeError::IpMalformed),
    };
    if ext_err.is_some() {
        return Err(DecodeError::Ipv6ExtMalformed);
    }
    let vlan = ctx.vlan.unwrap_or(0);
    let base = b.as_ptr() as usize;
    let (src, dst, claimed_total, frag) = match &slice {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let frag = if v4.is_payload_fragmented() {
                Some((
                    h.identification() as u32,
                    h.fragments_offset().value() as u32 * 8,
                    h.more_fragments(),
                ))
            } else {
                None
            };
            (
                Addr::v4(h.source()),
                Addr::v4(h.destination()),
                h.total_len() as usize,
                frag,
            )
        }
        LaxIpSlice::Ipv6(v6) => {
            let h = v6.header();
            let frag = if v6.is_payload_fragmented() {
                ipv6_fragment_info(h.next_header().0, v6.extensions().slice())
            } else {
                None
            };
            let plen = h.payload_length() as usize;
            let total = if plen == 0 { b.len() } else { 40 + plen };
            (Addr::v6(h.source()), Addr::v6(h.destination()), total, frag)
        }
    };
    let payload = match &slice {
        LaxIpSlice::Ipv4(v4) => v4.payload(),
        LaxIpSlice::Ipv6(v6) => v6.payload(),
    };
    let proto = payload.ip_number.0;
    let data = payload.payload;
    let offset = (data.as_ptr() as usize).saturating_sub(base);
    // On-wire length of the IP payload: believe the header when the frame was cut by snaplen,
    // otherwise never claim more than is present (bogus total length).
    let claimed = claimed_total.saturating_sub(offset);
    let wire_len = if payload.incomplete && ctx.snapped && payload.len_source == LenSource::Slice {
        claimed.max(data.len())
    } else {
        data.len()
    };
    if let Some((id, off, more)) = frag {
        return Ok(Decoded::Fragment(Fragment {
            src,
            dst,
            vlan,
            protocol: proto,
            id,
            offset: off,
            more,
            data,
            header: b.get(..offset).unwrap_or(&[]),
        }));
    }
    transport(proto, src, dst, data, wire_len, ctx)
}

/// Walks raw IPv6 extension headers to the fragment header: (identification, byte offset, more).
fn ipv6_fragment_info(mut next: u8, exts: &[u8]) -> Option<(u32, u32, bool)> {
    let mut at = 0usize;
    for _ in 0..16 {
        match next {
            44 => {
                let off_flags = be16(exts, at + 2)?;
                let id = be32(exts, at + 4)?;
                return Some((id, (off_flags & 0xfff8) as u32, off_flags & 1 == 1));
            }
            0 | 43 | 60 | 135 | 139 | 140 => {
                let len = (*exts.get(at + 1)? as usize + 1) * 8;
                next = *exts.get(at)?;
                at += len;
            }
            51 => {
                let len = (*exts.get(at + 1)? as usize + 2) * 4;
                next = *exts.get(at)?;
                at += len;
            }
            _ => return None,
        }
    }
    None
}

/// Decodes the transport layer of an IP payload: used for whole packets and for reassembled datagrams.
/// `wire_len` is the on-wire length of `data` (≥ `data.len()` when snaplen cut it).
pub fn decode_l4(
    protocol: u8,
    src: Addr,
    dst: Addr,
    vlan: u16,
    data: &[u8],
    wire_len: usize,
) -> Result<Decoded<'_>, DecodeError> {
    let ctx = Ctx {
        vlan: Some(vlan),
        depth: 0,
        snapped: wire_len > data.len(),
    };
    transport(protocol, src, dst, data, wire_len, ctx)
}

fn transport<'a>(
    proto: u8,
    src: Addr,
    dst: Addr,
    data: &'a [u8],
    wire_len: usize,
    ctx: Ctx,
) -> Result<Decoded<'a>, DecodeError> {
    let vlan = ctx.vlan.unwrap_or(0);
    match proto {
        IPPROTO_TCP => {
            let off = (*data.get(12).ok_or(DecodeError::TcpTruncated)? >> 4) as usize * 4;
            if off < TCP_MIN_HEADER_LEN {
                return Err(DecodeError::TcpMalformed);
            }
            if data.len() < off {
                return Err(DecodeError::TcpTruncated);
            }
            let flags = data[13];
            let tcp = TcpInfo {
                seq: be32(data, 4).ok_or(DecodeError::TcpTruncated)?,
                ack: be32(data, 8).ok_or(DecodeError::TcpTruncated)?,
                fin: flags & 0x01 != 0,
                syn: flags & 0x02 != 0,
                rst: flags & 0x04 != 0,
                ack_flag: flags & 0x10 != 0,
            };
            let payload = &data[off..];
            let payload_len = wire_len.saturating_sub(off).max(payload.len());
            Ok(Decoded::Packet(L4Packet {
                transport: Transport::Tcp,
                src: Endpoint {
                    addr: src,
                    port: be16(data, 0).ok_or(DecodeError::TcpTruncated)?,
                },
                dst: Endpoint {
                    addr: dst,
                    port: be16(data, 2).ok_or(DecodeError::TcpTruncated)?,
                },
                vlan,
                tcp: Some(tcp),
                payload,
                payload_len: payload_len as u32,
            }))
        }
        IPPROTO_UDP => {
            let sport = be16(data, 0).ok_or(DecodeError::UdpTruncated)?;
            let dport = be16(data, 2).ok_or(DecodeError::UdpTruncated)?;
            let ulen = be16(data, 4).ok_or(DecodeError::UdpTruncated)? as usize;
            if data.len() < UDP_HEADER_LEN {
                return Err(DecodeError::UdpTruncated);
            }
            // UDP length 0 happens with jumbograms and some offload captures: use the IP length then.
            let ulen = if ulen == 0 { wire_len } else { ulen };
            if ulen < UDP_HEADER_LEN {
                return Err(DecodeError::UdpMalformed);
            }
            let present = data.len();
            // Trust the UDP length when the packet was snapped; never beyond what IP said otherwise.
            let wire_payload = if ctx.snapped {
                ulen.min(wire_len.max(present))
            } else {
                ulen.min(present)
            };
            let payload_len = wire_payload.saturating_sub(UDP_HEADER_LEN);
            let end = ulen.min(present);
            let payload = data.get(UDP_HEADER_LEN..end).unwrap_or(&[]);
            if dport == VXLAN_PORT && payload.len() >= VXLAN_HEADER_LEN && payload[0] & 0x08 != 0 {
                let inner = tail(payload, VXLAN_HEADER_LEN).ok_or(DecodeError::VxlanTruncated)?;
                let inner_ctx = ctx.deeper()?;
                if let Ok(d) = ethernet(inner, inner_ctx) {
                    return Ok(d);
                }
            }
            Ok(Decoded::Packet(L4Packet {
                transport: Transport::Udp,
                src: Endpoint {
                    addr: src,
                    port: sport,
                },
                dst: Endpoint {
                    addr: dst,
                    port: dport,
                },
                vlan,
                tcp: None,
                payload,
                payload_len: payload_len as u32,
            }))
        }
        IPPROTO_GRE => gre(data, ctx.deeper()?),
        IPPROTO_IPIP | IPPROTO_IPV6 => ip(data, ctx.deeper()?),
        _ => Err(DecodeError::OtherIpProto),
    }
}

fn gre(data: &[u8], ctx: Ctx) -> Result<Decoded<'_>, DecodeError> {
    let flags = be16(data, 0).ok_or(DecodeError::GreTruncated)?;
    let proto = be16(data, 2).ok_or(DecodeError::GreTruncated)?;
    if flags & 0x7 != 0 {
        return Err(DecodeError::GreUnsupported); // version 1 (PPTP) and others
    }
    let mut at = 4;
    if flags & 0x8000 != 0 {
        at += 4; // checksum + reserved
    }
    if flags & 0x2000 != 0 {
        at += 4; // key
    }
    if flags & 0x1000 != 0 {
        at += 4; // sequence number
    }
    let rest = tail(data, at).ok_or(DecodeError::GreTruncated)?;
    match proto {
        ETHERTYPE_TEB => ethernet(rest, ctx),
        _ => ethertype(proto, rest, ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ethernet + IPv4 + TCP SYN, 10.0.0.1:40000 -> 192.0.2.1:21, taken from a real capture and trimmed.
    fn eth_ipv4_tcp(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![
            0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0x08,
            0x00, // ethernet
            0x45, 0x00, 0x00, 0x00, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00,
            0x00, // IPv4, len patched
            10, 0, 0, 1, 192, 0, 2, 1, // addresses
            0x9c, 0x40, 0x00, 0x15, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0,
            0, // TCP
        ];
        f.extend_from_slice(payload);
        let ip_len = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f
    }

    #[test]
    fn ethernet_ipv4_tcp_fields() {
        let f = eth_ipv4_tcp(b"USER x\r\n");
        let Ok(Decoded::Packet(p)) = decode(LinkType::Ethernet, &f, false) else {
            panic!()
        };
        assert_eq!(p.transport, Transport::Tcp);
        assert_eq!(p.src.port, 40000);
        assert_eq!(p.dst.port, 21);
        assert_eq!(p.src.addr.to_string(), "10.0.0.1");
        assert_eq!(p.payload, b"USER x\r\n");
        assert_eq!(p.payload_len, 8);
        assert!(p.tcp.unwrap().ack_flag);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let f = eth_ipv4_tcp(b"hello");
        for n in 0..f.len() {
            let _ = decode(LinkType::Ethernet, &f[..n], true);
            let _ = decode(LinkType::Ethernet, &f[..n], false);
        }
        // snapped inside the payload: the header length wins
        let Ok(Decoded::Packet(p)) = decode(LinkType::Ethernet, &f[..f.len() - 2], true) else {
            panic!()
        };
        assert_eq!(p.payload_len, 5);
        assert_eq!(p.payload.len(), 3);
        // same bytes but the frame was whole: bogus length capped to what is present
        let Ok(Decoded::Packet(p)) = decode(LinkType::Ethernet, &f[..f.len() - 2], false) else {
            panic!()
        };
        assert_eq!(p.payload_len, 3);
    }

    #[test]
    fn vlan_stack_keeps_outer_id() {
        let inner = eth_ipv4_tcp(b"");
        let mut f = inner[..12].to_vec();
        f.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0xc8]); // 802.1ad 100, 802.1Q 200
        f.extend_from_slice(&inner[12..]);
        let Ok(Decoded::Packet(p)) = decode(LinkType::Ethernet, &f, false) else {
            panic!()
        };
        assert_eq!(p.vlan, 100);
    }

    #[test]
    fn null_and_raw_link_types() {
        let eth = eth_ipv4_tcp(b"x");
        let mut null = vec![2, 0, 0, 0];
        null.extend_from_slice(&eth[14..]);
        assert!(matches!(
            decode(LinkType::Null, &null, false),
            Ok(Decoded::Packet(_))
        ));
        assert!(matches!(
            decode(LinkType::Raw, &eth[14..], false),
            Ok(Decoded::Packet(_))
        ));
        let mut sll = vec![0u8; 16];
        sll[14] = 0x08;
        sll.extend_from_slice(&eth[14..]);
        assert!(matches!(
            decode(LinkType::LinuxSll, &sll, false),
            Ok(Decoded::Packet(_))
        ));
    }

    #[test]
    fn fragments_are_reported() {
        let mut f = eth_ipv4_tcp(b"abcdefgh");
        f[20] = 0x20; // MF, offset 0
        assert!(
            matches!(decode(LinkType::Ethernet, &f, false), Ok(Decoded::Fragment(fr)) if fr.more && fr.offset == 0)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x1234_5678;
        let mut buf = vec![0u8; 1600];
        for round in 0..20_000 {
            let n = (round * 7) % buf.len();
            for b in buf.iter_mut().take(n) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            for lt in [
                LinkType::Ethernet,
                LinkType::Raw,
                LinkType::LinuxSll2,
                LinkType::Null,
                LinkType::Ppp,
            ] {
                let _ = decode(lt, &buf[..n], round % 2 == 0);
            }
        }
    }
}
