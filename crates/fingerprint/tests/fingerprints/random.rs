//! Randomized robustness: no panics, no FTP/TFTP/SMB on random bytes, and
//! never NeedMore on a final flow.

use crate::support::*;
use xferwatch_fingerprint::{all, identify, AppProto, Dgram, Identification, Verdict};

fn not_transfer_proto(id: Identification, what: &str) {
    if let Identification::Found { proto, .. } = id {
        assert!(
            !matches!(proto, AppProto::Ftp | AppProto::Tftp | AppProto::Smb),
            "{what}: random bytes identified as {proto:?}"
        );
    }
}

#[test]
fn random_tcp_buffers() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..10_000 {
        let a = {
            let n = rng.below(2000);
            rng.bytes(n)
        };
        let b = if i % 3 == 0 {
            Vec::new()
        } else {
            let n = rng.below(2000);
            rng.bytes(n)
        };
        for final_ in [false, true] {
            let obs = tcp_obs(&a, &b, final_);
            let id = identify(&obs);
            not_transfer_proto(id, "tcp");
            if final_ {
                assert_ne!(id, Identification::NeedMore);
                for fp in all() {
                    assert_ne!(fp.probe(&obs), Verdict::NeedMore, "{:?}", fp.proto());
                }
            }
        }
    }
}

#[test]
fn random_udp_datagrams() {
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    for _ in 0..10_000 {
        let count = 1 + rng.below(6);
        let bufs: Vec<(bool, Vec<u8>)> = (0..count)
            .map(|_| {
                let n = rng.below(2000);
                (rng.next() & 1 == 0, rng.bytes(n))
            })
            .collect();
        let d: Vec<Dgram<'_>> = bufs
            .iter()
            .map(|(to_server, data)| Dgram {
                to_server: *to_server,
                data,
            })
            .collect();
        for final_ in [false, true] {
            let obs = udp_obs(&d, final_);
            let id = identify(&obs);
            not_transfer_proto(id, "udp");
            if final_ {
                assert_ne!(id, Identification::NeedMore);
            }
        }
    }
}

/// Random bytes behind plausible protocol prefixes reach the deeper parsing paths.
#[test]
fn random_tails_after_magic_prefixes() {
    let prefixes: &[&[u8]] = &[
        b"220 ",
        b"220-",
        b"USER ",
        b"\x00\x00\x00\x40\xfeSMB",
        b"\x00\x00\x00\x40\xffSMB",
        b"\x00\x00\x00\x40\xfdSMB",
        b"\x81\x00\x00\x44\x20",
        b"\x16\x03\x01\x02\x00\x01",
        b"GET /",
        b"HTTP/1.1 ",
        b"SSH-2.0-",
        b"\x00\x34\x12\x34\x01\x00\x00\x01",
    ];
    let udp_prefixes: &[&[u8]] = &[
        b"\x00\x01",
        b"\x00\x03\x00\x01",
        b"\x00\x04\x00\x00",
        b"\x00\x05\x00\x01",
        b"\x00\x06",
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
    ];
    let mut rng = XorShift(42);
    for _ in 0..2_000 {
        for p in prefixes {
            let n = rng.below(600);
            let mut a = p.to_vec();
            a.extend(rng.bytes(n));
            let n = rng.below(600);
            let b = rng.bytes(n);
            for final_ in [false, true] {
                let id = identify(&tcp_obs(&a, &b, final_));
                let id2 = identify(&tcp_obs(&b, &a, final_));
                if final_ {
                    assert_ne!(id, Identification::NeedMore);
                    assert_ne!(id2, Identification::NeedMore);
                }
            }
        }
        for p in udp_prefixes {
            let n = rng.below(600);
            let mut a = p.to_vec();
            a.extend(rng.bytes(n));
            let n = rng.below(100);
            let b = rng.bytes(n);
            let d = [
                Dgram {
                    to_server: false,
                    data: &a,
                },
                Dgram {
                    to_server: true,
                    data: &b,
                },
            ];
            for final_ in [false, true] {
                let id = identify(&udp_obs(&d, final_));
                if final_ {
                    assert_ne!(id, Identification::NeedMore);
                }
            }
        }
    }
}

/// Fixtures with random byte flips: no panic, never NeedMore on final.
#[test]
fn mutated_fixtures() {
    let mut rng = XorShift(7);
    for f in TCP_FIXTURES {
        let (s, c) = tcp_prefix(f, total_len(f), false);
        for _ in 0..200 {
            let (mut s, mut c) = (s.clone(), c.clone());
            for _ in 0..1 + rng.below(4) {
                let buf = if rng.next() & 1 == 0 { &mut s } else { &mut c };
                if !buf.is_empty() {
                    let i = rng.below(buf.len());
                    buf[i] = rng.next() as u8;
                }
            }
            let cut_s = rng.below(s.len() + 1);
            let cut_c = rng.below(c.len() + 1);
            assert_ne!(
                identify(&tcp_obs(&s[..cut_s], &c[..cut_c], true)),
                Identification::NeedMore
            );
            let _ = identify(&tcp_obs(&s[..cut_s], &c[..cut_c], false));
        }
    }
    for f in UDP_FIXTURES {
        for _ in 0..200 {
            let mut bufs: Vec<(bool, Vec<u8>)> =
                f.dgrams.iter().map(|&(d, b)| (d, b.to_vec())).collect();
            let j = rng.below(bufs.len());
            let buf = &mut bufs[j].1;
            if !buf.is_empty() {
                let i = rng.below(buf.len());
                buf[i] = rng.next() as u8;
                let cut = rng.below(buf.len() + 1);
                if rng.next() & 3 == 0 {
                    buf.truncate(cut);
                }
            }
            let d: Vec<Dgram<'_>> = bufs
                .iter()
                .map(|(t, b)| Dgram {
                    to_server: *t,
                    data: b,
                })
                .collect();
            assert_ne!(identify(&udp_obs(&d, true)), Identification::NeedMore);
        }
    }
}
