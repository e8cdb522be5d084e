//! TCP reassembly of one direction, driven by an op interpreter the way a worker drives it: SYNs,
//! segments at any sequence number (overlaps, holes, wrap-around), peer ACKs, parser consumption,
//! skips of unneeded bytes, gaps skipped, and the end. Checked after every op: the delivered prefix
//! stays within the depth and the worker budget is never overdrawn; at the end every byte reserved
//! is given back.
//! Input: `[depth selector][budget selector]` then ops `[op u8][operands]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xferwatch_fuzz::Bytes;
use xferwatch_stream::{Budget, Reassembler};

const DEPTHS: [usize; 4] = [64, 512, 4096, 96 * 1024];
const BUDGETS: [usize; 3] = [256, 4096, 1 << 20];

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let depth = DEPTHS[b.u8() as usize % DEPTHS.len()];
    let mut budget = Budget::new(BUDGETS[b.u8() as usize % BUDGETS.len()]);
    let mut r = Reassembler::new();
    let mut ops = 0;
    while !b.is_empty() && ops < 4096 {
        ops += 1;
        match b.u8() % 10 {
            0 => r.on_syn(b.u32()),
            1..=4 => {
                let seq = b.u32();
                let len = b.u16() as usize;
                let bytes = b.take(len);
                r.segment(seq, bytes, depth, &mut budget);
            }
            5 => {
                r.on_peer_ack(b.u32(), depth, &mut budget);
            }
            6 => r.consume(b.u16() as usize, depth, &mut budget),
            7 => {
                r.skip(b.u32() as u64, depth, &mut budget);
            }
            8 => {
                let _ = r.take_gap();
                r.skip_gap(depth, &mut budget);
            }
            _ => {
                if b.u8() == 0xff {
                    r.finish(&mut budget);
                }
            }
        }
        assert!(
            r.data().len() <= depth,
            "{} bytes held, depth {depth}",
            r.data().len()
        );
        assert!(
            budget.used <= budget.limit,
            "budget {} of {}",
            budget.used,
            budget.limit
        );
    }
    r.release(&mut budget);
    assert_eq!(budget.used, 0, "bytes still reserved after release");
});
