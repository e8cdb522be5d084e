//! Every owned fixture is recognised by its fingerprint, in both orientations,
//! by `identify` and by the fingerprint itself, final or not.

use crate::support::*;
use xferwatch_fingerprint::{all, identify, Identification, Verdict};

#[test]
fn tcp_fixtures_identified_both_orientations() {
    for f in TCP_FIXTURES {
        for swap in [false, true] {
            let (s, c) = tcp_prefix(f, total_len(f), swap);
            for final_ in [false, true] {
                let got = identify(&tcp_obs(&s, &c, final_));
                let want = expected(f.owner, f.dir_known, swap);
                // Look-alikes may keep SMB's mid-stream resync waiting until final.
                let ok = got == want
                    || (f.owner.is_none() && !final_ && got == Identification::NeedMore);
                assert!(ok, "{} swap={swap} final={final_}: {got:?}", f.name);
            }
        }
    }
}

#[test]
fn udp_fixtures_identified_both_orientations() {
    for f in UDP_FIXTURES {
        for swap in [false, true] {
            let d = udp_prefix(f, f.dgrams.len(), swap);
            for final_ in [false, true] {
                let got = identify(&udp_obs(&d, final_));
                assert_eq!(
                    got,
                    expected(f.owner, f.dir_known, swap),
                    "{} swap={swap} final={final_}",
                    f.name
                );
            }
        }
    }
}

#[test]
fn owner_fingerprint_matches_directly() {
    for f in TCP_FIXTURES {
        let Some(owner) = f.owner else { continue };
        let fp = all().iter().find(|p| p.proto() == owner).unwrap();
        for swap in [false, true] {
            let (s, c) = tcp_prefix(f, total_len(f), swap);
            assert_eq!(
                fp.probe(&tcp_obs(&s, &c, false)),
                Verdict::Match {
                    reversed: swap && f.dir_known
                },
                "{} swap={swap}",
                f.name
            );
        }
    }
}

#[test]
fn one_direction_alone() {
    use crate::fixtures::*;
    // Server greeting alone: FTP waits for the client, then decides on final.
    let (s, c) = tcp_prefix(&FTP_VSFTPD, 20, false);
    assert!(s.is_empty());
    assert_eq!(identify(&tcp_obs(&s, &c, false)), Identification::NeedMore);
    assert_eq!(
        identify(&tcp_obs(&s, &c, true)),
        Identification::Found {
            proto: xferwatch_fingerprint::AppProto::Ftp,
            reversed: false
        }
    );
    // The same greeting on the caller's "client" side: reversed.
    assert_eq!(
        identify(&tcp_obs(&c, &s, true)),
        Identification::Found {
            proto: xferwatch_fingerprint::AppProto::Ftp,
            reversed: true
        }
    );
    // ESMTP greeting alone is SMTP immediately.
    let (s, c) = tcp_prefix(&SMTP_SENDMAIL, 84, false);
    assert_eq!(
        identify(&tcp_obs(&s, &c, false)),
        Identification::Found {
            proto: xferwatch_fingerprint::AppProto::Smtp,
            reversed: false
        }
    );
    // A lone TFTP request (the server answers from another port).
    let d = udp_prefix(&TFTP_OACK_REQUEST, 1, true);
    assert_eq!(
        identify(&udp_obs(&d, false)),
        Identification::Found {
            proto: xferwatch_fingerprint::AppProto::Tftp,
            reversed: true
        }
    );
}

#[test]
fn smb_resync_mid_stream() {
    use crate::fixtures::SMB2_PETER;
    // Drop the first bytes of each direction: the flow is picked up mid-message.
    let (s, c) = tcp_prefix(&SMB2_PETER, total_len(&SMB2_PETER), false);
    for (cut_s, cut_c) in [(50usize, 30usize), (1, 1), (105, 7)] {
        let (s, c) = (&s[cut_s..], &c[cut_c..]);
        assert_eq!(
            identify(&tcp_obs(s, c, false)),
            Identification::Found {
                proto: xferwatch_fingerprint::AppProto::Smb,
                reversed: false
            },
            "cut {cut_s}/{cut_c}"
        );
        assert_eq!(
            identify(&tcp_obs(c, s, false)),
            Identification::Found {
                proto: xferwatch_fingerprint::AppProto::Smb,
                reversed: true
            },
            "swapped cut {cut_s}/{cut_c}"
        );
        // One resynchronised direction alone waits for the other.
        assert_eq!(identify(&tcp_obs(s, b"", false)), Identification::NeedMore);
    }
}
