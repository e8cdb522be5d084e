//! IPv4/IPv6 defragmentation as the capture path drives it: each record is a frame, decoded; its
//! fragments go to the defragmenter (small limits, so the datagram, memory and piece caps are hit),
//! time moves by the record's flags, expiry runs every packet-time second, and every whole datagram
//! is decoded again at the transport layer.
//! Record flags: bit 0 = raw IP (else Ethernet), bit 1 = snapped, bits 2..7 = time step in 250 ms.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xferwatch_capture::{Defrag, DefragLimits};
use xferwatch_wire::{decode, decode_l4, Decoded, LinkType};

fuzz_target!(|data: &[u8]| {
    // Limits added later (per-source caps) keep their defaults.
    #[allow(
        clippy::needless_update,
        reason = "limits added later (per-source caps) keep their defaults"
    )]
    let mut defrag = Defrag::new(DefragLimits {
        max_datagrams: 8,
        max_total_bytes: 64 * 1024,
        timeout_us: 5_000_000,
        ..DefragLimits::default()
    });
    let mut whole = Vec::new();
    let mut now_us = 1_700_000_000_000_000i64;
    let mut last_sec = now_us / 1_000_000;
    for r in xferwatch_fuzz::records(data) {
        now_us += (r.flags >> 2) as i64 * 250_000;
        if now_us / 1_000_000 != last_sec {
            last_sec = now_us / 1_000_000;
            defrag.expire(now_us);
        }
        let link = if r.flags & 1 == 1 {
            LinkType::Raw
        } else {
            LinkType::Ethernet
        };
        let Ok(Decoded::Fragment(f)) = decode(link, r.data, r.flags & 2 == 2) else {
            continue;
        };
        if let Some(w) = defrag.add(&f, now_us, &mut whole) {
            assert!(w.data.len() <= 65_535, "reassembled {} bytes", w.data.len());
            let _ = decode_l4(w.protocol, w.src, w.dst, w.vlan, w.data, w.data.len());
        }
    }
    let s = defrag.stats;
    assert!(s.reassembled <= s.fragments);
});
