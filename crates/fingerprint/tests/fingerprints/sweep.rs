//! Prefix sweeps: every prefix of a fixture gives NeedMore or the final
//! verdict, never another protocol; with `final_` set, never NeedMore.
//! Fingerprints are pure functions of the prefix, so this also covers any
//! chunking of the same bytes.

use crate::support::*;
use xferwatch_fingerprint::{all, identify, Identification, Verdict};

#[test]
fn tcp_prefixes() {
    for f in TCP_FIXTURES {
        for swap in [false, true] {
            let want = expected(f.owner, f.dir_known, swap);
            for n in 0..=total_len(f) {
                let (s, c) = tcp_prefix(f, n, swap);
                let got = identify(&tcp_obs(&s, &c, false));
                assert!(
                    got == Identification::NeedMore || got == want,
                    "{} swap={swap} prefix {n}: {got:?} (want {want:?})",
                    f.name
                );
                // Same answer when asked twice (pure).
                assert_eq!(got, identify(&tcp_obs(&s, &c, false)));
                let fin = identify(&tcp_obs(&s, &c, true));
                match fin {
                    Identification::NeedMore => panic!("{} prefix {n}: NeedMore on final", f.name),
                    Identification::Found { proto, .. } => assert!(
                        Some(proto) == f.owner || bare_greeting_only(f, &s, &c),
                        "{} swap={swap} final prefix {n}: {proto:?}",
                        f.name
                    ),
                    Identification::Unknown => {}
                }
                for fp in all() {
                    assert_ne!(fp.probe(&tcp_obs(&s, &c, true)), Verdict::NeedMore);
                }
            }
        }
    }
}

#[test]
fn udp_prefixes() {
    for f in UDP_FIXTURES {
        for swap in [false, true] {
            let want = expected(f.owner, f.dir_known, swap);
            for k in 0..=f.dgrams.len() {
                let d = udp_prefix(f, k, swap);
                let got = identify(&udp_obs(&d, false));
                assert!(
                    got == Identification::NeedMore || got == want,
                    "{} swap={swap} {k} datagrams: {got:?} (want {want:?})",
                    f.name
                );
                let fin = identify(&udp_obs(&d, true));
                match fin {
                    Identification::NeedMore => panic!("{} {k}: NeedMore on final", f.name),
                    Identification::Found { proto, .. } => {
                        assert_eq!(Some(proto), f.owner, "{} final {k}", f.name)
                    }
                    Identification::Unknown => {}
                }
                for fp in all() {
                    assert_ne!(fp.probe(&udp_obs(&d, true)), Verdict::NeedMore);
                }
            }
        }
    }
}

#[test]
fn identify_on_tcp_prefixes_reaches_the_verdict() {
    // Once the owner matched on a prefix, every longer prefix keeps matching.
    for f in TCP_FIXTURES.iter().filter(|f| f.owner.is_some()) {
        let mut matched = false;
        for n in 0..=total_len(f) {
            let (s, c) = tcp_prefix(f, n, false);
            let got = identify(&tcp_obs(&s, &c, false));
            if matched {
                assert_eq!(
                    got,
                    expected(f.owner, f.dir_known, false),
                    "{} n={n}",
                    f.name
                );
            }
            matched |= got != Identification::NeedMore;
        }
        assert!(matched, "{}", f.name);
    }
}
