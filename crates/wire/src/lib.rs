//! Decoding only: link layers, VLAN/MPLS/PPPoE/GRE/VXLAN encapsulations, IPv4/IPv6 (via `etherparse`),
//! TCP and UDP headers, and the flow key a packet belongs to.
//!
//! Owns: turning captured bytes into a [`Decoded`] view and a countable [`DecodeError`] when that fails.
//! Must not know: flows, protocols above TCP/UDP, ports' meanings, networks, configuration.
//! Invariants: never panics on any input; never allocates; every length is checked before slicing;
//! tunnel nesting is bounded by [`MAX_ENCAP_DEPTH`]. IP fragments are reported as such
//! ([`Decoded::Fragment`]) so the caller can reassemble them (see `xferwatch-capture`'s defragmenter).

#![forbid(unsafe_code)]

mod decode;
mod key;

pub use decode::{
    decode, decode_l4, DecodeError, Decoded, Fragment, L4Packet, LinkType, TcpInfo, MAX_ENCAP_DEPTH,
};
pub use key::{Addr, Endpoint, FlowKey, Side, Transport};
