//! Every fingerprinter, both directions (the caller's client guess and its reverse), on TCP stream
//! prefixes grown record by record (arbitrary chunking) and on UDP datagram sequences. Checked:
//! with `final_` set, no fingerprint and not `identify` answers NeedMore (the documented contract).
//! Input: `[mode: bit 0 = UDP]` then a record stream (bit 0 = client to server).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xferwatch_fingerprint::{all, identify, Dgram, Identification, Observed, Transport, Verdict};

/// Bytes of each direction a worker hands the fingerprints at most.
const PREFIX: usize = 4096;
/// Datagrams a worker keeps for identification.
const DGRAMS: usize = 16;

fn judge(obs: &Observed<'_>) {
    for fp in all() {
        let v = fp.probe(obs);
        assert!(
            !(obs.final_ && v == Verdict::NeedMore),
            "{} said NeedMore on a final flow",
            fp.proto()
        );
    }
    let id = identify(obs);
    assert!(!(obs.final_ && id == Identification::NeedMore));
}

/// Judges the flow both ways round, not final then final.
fn both_ways(
    transport: Transport,
    a: &[u8],
    b: &[u8],
    dgrams: &[Dgram<'_>],
    flipped: &[Dgram<'_>],
) {
    for final_ in [false, true] {
        judge(&Observed {
            transport,
            to_server: a,
            to_client: b,
            dgrams,
            final_,
        });
        judge(&Observed {
            transport,
            to_server: b,
            to_client: a,
            dgrams: flipped,
            final_,
        });
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        let mut dgrams: Vec<Dgram<'_>> = Vec::new();
        let mut flipped: Vec<Dgram<'_>> = Vec::new();
        for r in xferwatch_fuzz::records(rest).take(DGRAMS) {
            dgrams.push(Dgram {
                to_server: r.to_server(),
                data: r.data,
            });
            flipped.push(Dgram {
                to_server: !r.to_server(),
                data: r.data,
            });
            both_ways(Transport::Udp, &[], &[], &dgrams, &flipped);
        }
    } else {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for r in xferwatch_fuzz::records(rest) {
            let side = if r.to_server() { &mut up } else { &mut down };
            let n = r.data.len().min(PREFIX - side.len());
            side.extend_from_slice(&r.data[..n]);
            both_ways(Transport::Tcp, &up, &down, &[], &[]);
            if up.len() == PREFIX && down.len() == PREFIX {
                break;
            }
        }
    }
});
