//! Link, IP and transport decoding of one captured frame, for every link type the decoder knows,
//! snapped or whole; every fragment's data then goes through the transport decoder as a reassembled
//! datagram would. Input: `[link selector][snapped bit 0][frame]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xferwatch_wire::{decode, decode_l4, Decoded};

/// True when `inner` lies within `outer` (views never point outside the frame).
fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

fuzz_target!(|data: &[u8]| {
    let [sel, flags, frame @ ..] = data else {
        return;
    };
    let link = xferwatch_fuzz::link(*sel);
    let snapped = flags & 1 == 1;
    match decode(link, frame, snapped) {
        Ok(Decoded::Packet(p)) => assert!(within(frame, p.payload)),
        Ok(Decoded::Fragment(f)) => {
            assert!(within(frame, f.data));
            if let Ok(Decoded::Packet(p)) =
                decode_l4(f.protocol, f.src, f.dst, f.vlan, f.data, f.data.len())
            {
                assert!(within(f.data, p.payload));
            }
        }
        Err(e) => {
            let _ = e.reason();
        }
    }
});
