//! Hostile traffic shapes stay within the named memory bounds.

use xferwatch_stream::{Budget, FlowTable, FlowTableConfig, Reassembler};
use xferwatch_wire::{Addr, Endpoint, L4Packet, TcpInfo, Transport};

#[test]
fn one_byte_segments_and_huge_segments_stay_within_depth() {
    let mut budget = Budget::new(1 << 20);
    let mut r = Reassembler::default();
    r.on_syn(0);
    for i in 0..10_000u32 {
        r.segment(1 + i, &[b'a' + (i % 26) as u8], 4096, &mut budget);
    }
    assert_eq!(r.data().len(), 4096);
    assert!(budget.used <= 4096);
    let mut big = Reassembler::default();
    big.on_syn(0);
    big.segment(1, &vec![7u8; 65_536], 4096, &mut budget);
    assert!(big.data().len() <= 4096);
    assert!(budget.used <= 2 * 4096);
}

#[test]
fn overlapping_segments_with_different_data_first_copy_wins() {
    let mut budget = Budget::new(1 << 20);
    let mut r = Reassembler::default();
    r.on_syn(0);
    r.segment(1, b"AAAAAAAA", 4096, &mut budget);
    r.segment(5, b"BBBBBBBBBBBB", 4096, &mut budget);
    r.segment(1, b"CCCCCCCCCCCCCCCCCCCC", 4096, &mut budget);
    assert_eq!(r.data(), b"AAAAAAAABBBBBBBBCCCC");
    assert!(budget.overlaps >= 2);
}

#[test]
fn out_of_order_flood_is_capped() {
    let mut budget = Budget::new(8 * 1024);
    let mut r = Reassembler::default();
    r.on_syn(0);
    // Never fills the first byte: every segment waits, until the caps say no.
    for i in 0..1000u32 {
        r.segment(100 + i * 1000, &[1u8; 900], 4096, &mut budget);
    }
    assert!(budget.used <= 8 * 1024);
    assert!(budget.memcap_hits > 0);
}

#[test]
fn syn_flood_is_bounded_by_max_flows() {
    let cfg = FlowTableConfig {
        max_flows: 1000,
        ..Default::default()
    };
    let mut t: FlowTable<()> = FlowTable::new(cfg);
    let mut ended = Vec::new();
    for i in 0..100_000u32 {
        let p = L4Packet {
            transport: Transport::Tcp,
            src: Endpoint {
                addr: Addr::v4([203, 0, 113, (i >> 16) as u8]),
                port: i as u16,
            },
            dst: Endpoint {
                addr: Addr::v4([10, 0, 0, 1]),
                port: 445,
            },
            vlan: 0,
            tcp: Some(TcpInfo {
                seq: i,
                ack: 0,
                syn: true,
                ack_flag: false,
                fin: false,
                rst: false,
            }),
            payload: &[],
            payload_len: 0,
        };
        t.packet(&p, 60, i as i64, i as u64, &mut ended);
        if ended.len() > 10_000 {
            ended.clear();
        }
    }
    assert!(t.len() <= 1000);
    assert_eq!(t.stats().ended_evicted, 99_000);
}
