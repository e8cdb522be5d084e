//! Decoding cost per frame: Ethernet/IPv4/TCP with a full segment, the same behind a VLAN tag, and
//! IPv6/UDP. Run with `cargo bench -p xferwatch-wire`.

use divan::{black_box, Bencher};
use xferwatch_wire::{decode, LinkType};

fn main() {
    divan::main();
}

fn ipv4_tcp(payload: usize, vlan: bool) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let total = 20 + 20 + payload;
    f.extend_from_slice(&[
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        0,
        0,
    ]);
    f.extend_from_slice(&[10, 0, 0, 1, 198, 51, 100, 7]);
    f.extend_from_slice(&[
        0xc3, 0x50, 0x01, 0xbd, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f.extend(std::iter::repeat_n(0xabu8, payload));
    f
}

fn ipv6_udp(payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x86, 0xdd]);
    let len = 8 + payload;
    f.extend_from_slice(&[0x60, 0, 0, 0, (len >> 8) as u8, len as u8, 17, 64]);
    f.extend_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ]);
    f.extend_from_slice(&[0xd4, 0x31, 0, 53, (len >> 8) as u8, len as u8, 0, 0]);
    f.extend(std::iter::repeat_n(0x11u8, payload));
    f
}

#[divan::bench(args = [0, 1448])]
fn ethernet_ipv4_tcp(b: Bencher, payload: usize) {
    let f = ipv4_tcp(payload, false);
    b.bench(|| decode(LinkType::Ethernet, black_box(&f), false).is_ok());
}

#[divan::bench]
fn ethernet_vlan_ipv4_tcp(b: Bencher) {
    let f = ipv4_tcp(1448, true);
    b.bench(|| decode(LinkType::Ethernet, black_box(&f), false).is_ok());
}

#[divan::bench]
fn ethernet_ipv6_udp(b: Bencher) {
    let f = ipv6_udp(64);
    b.bench(|| decode(LinkType::Ethernet, black_box(&f), false).is_ok());
}
