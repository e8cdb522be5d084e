//! Flow table and reassembly costs: a packet of an existing flow among 100,000 (the common case), a
//! packet that creates a flow, and TCP reassembly of 64 full segments in order and shuffled.
//! Run with `cargo bench -p xferwatch-stream`.

use divan::{black_box, Bencher};
use xferwatch_stream::{Budget, Flow, FlowTable, FlowTableConfig, Reassembler};
use xferwatch_wire::{Addr, Endpoint, L4Packet, TcpInfo, Transport};

fn main() {
    divan::main();
}

fn pkt(i: u32, payload: &[u8]) -> L4Packet<'_> {
    L4Packet {
        transport: Transport::Tcp,
        src: Endpoint {
            addr: Addr::v4([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
            port: 40000 + (i % 20000) as u16,
        },
        dst: Endpoint {
            addr: Addr::v4([198, 51, 100, (i % 200) as u8]),
            port: 443,
        },
        vlan: 0,
        tcp: Some(TcpInfo {
            seq: 1000,
            ack: 1,
            syn: false,
            ack_flag: true,
            fin: false,
            rst: false,
        }),
        payload,
        payload_len: payload.len() as u32,
    }
}

#[divan::bench]
fn packet_of_existing_flow_among_100k(b: Bencher) {
    let mut t: FlowTable<()> = FlowTable::new(FlowTableConfig::default());
    let mut ended: Vec<Flow<()>> = Vec::new();
    let payload = [0u8; 0];
    for i in 0..100_000 {
        t.packet(&pkt(i, &payload), 60, 1_000_000, i as u64, &mut ended);
    }
    let mut i = 0u32;
    b.bench_local(|| {
        i = (i + 7919) % 100_000;
        black_box(t.packet(&pkt(i, &payload), 60, 2_000_000, 200_000, &mut ended));
    });
}

#[divan::bench]
fn packet_that_creates_a_flow(b: Bencher) {
    let mut t: FlowTable<()> = FlowTable::new(FlowTableConfig {
        max_flows: 200_000,
        ..FlowTableConfig::default()
    });
    let mut ended: Vec<Flow<()>> = Vec::new();
    let payload = [0u8; 0];
    let mut i = 0u32;
    b.bench_local(|| {
        i = i.wrapping_add(1);
        black_box(t.packet(&pkt(i, &payload), 60, 1_000_000, i as u64, &mut ended));
        ended.clear();
    });
}

fn segments(shuffled: bool) -> Vec<(u32, Vec<u8>)> {
    let mut v: Vec<(u32, Vec<u8>)> = (0..64u32)
        .map(|i| (1 + i * 1448, vec![i as u8; 1448]))
        .collect();
    if shuffled {
        // A fixed permutation: pairs swapped and every fourth moved back by three.
        for i in (0..v.len() - 1).step_by(2) {
            v.swap(i, i + 1);
        }
        for i in (3..v.len()).step_by(4) {
            v.swap(i, i - 3);
        }
    }
    v
}

#[divan::bench(args = [false, true])]
fn reassemble_64_segments(b: Bencher, shuffled: bool) {
    let segs = segments(shuffled);
    b.bench_local(|| {
        let mut budget = Budget::new(64 << 20);
        let mut r = Reassembler::default();
        r.on_syn(0);
        for (seq, data) in &segs {
            r.segment(*seq, data, 1 << 20, &mut budget);
        }
        black_box(r.data().len());
        r.release(&mut budget);
    });
}
