//! Cross-matrix: every fixture against every fingerprint; only the owner may
//! match, and look-alikes (POP3, IRC, NNTP, IMAP, SMTP) never match FTP.

use crate::support::*;
use xferwatch_fingerprint::{all, AppProto, Verdict};

#[test]
fn only_the_owner_matches_tcp() {
    for f in TCP_FIXTURES {
        for swap in [false, true] {
            let (s, c) = tcp_prefix(f, total_len(f), swap);
            for final_ in [false, true] {
                for fp in all() {
                    let v = fp.probe(&tcp_obs(&s, &c, final_));
                    if Some(fp.proto()) == f.owner {
                        assert!(
                            matches!(v, Verdict::Match { .. }),
                            "{} by {:?}",
                            f.name,
                            fp.proto()
                        );
                    } else {
                        assert!(
                            !matches!(v, Verdict::Match { .. }),
                            "{} swap={swap} final={final_} wrongly matched by {:?}",
                            f.name,
                            fp.proto()
                        );
                    }
                    if final_ {
                        assert_ne!(v, Verdict::NeedMore, "{} {:?}", f.name, fp.proto());
                    }
                }
            }
        }
    }
}

#[test]
fn only_the_owner_matches_udp() {
    for f in UDP_FIXTURES {
        for swap in [false, true] {
            let d = udp_prefix(f, f.dgrams.len(), swap);
            for final_ in [false, true] {
                for fp in all() {
                    let v = fp.probe(&udp_obs(&d, final_));
                    if Some(fp.proto()) == f.owner {
                        assert!(
                            matches!(v, Verdict::Match { .. }),
                            "{} by {:?}",
                            f.name,
                            fp.proto()
                        );
                    } else {
                        assert!(
                            !matches!(v, Verdict::Match { .. }),
                            "{} swap={swap} final={final_} wrongly matched by {:?}",
                            f.name,
                            fp.proto()
                        );
                    }
                    if final_ {
                        assert_ne!(v, Verdict::NeedMore, "{} {:?}", f.name, fp.proto());
                    }
                }
            }
        }
    }
}

#[test]
fn lookalikes_are_not_ftp() {
    use crate::fixtures::{IRC, POP3, SMTP_SENDMAIL};
    let ftp = all().iter().find(|p| p.proto() == AppProto::Ftp).unwrap();
    for f in [
        &POP3,
        &IRC,
        &NNTP_SYNTHETIC,
        &NNTP_PLAIN_SYNTHETIC,
        &IMAP_SYNTHETIC,
        &SMTP_SENDMAIL,
        &SMTP_PLAIN_SYNTHETIC,
    ] {
        for swap in [false, true] {
            for n in 0..=total_len(f) {
                let (s, c) = tcp_prefix(f, n, swap);
                for final_ in [false, true] {
                    let v = ftp.probe(&tcp_obs(&s, &c, final_));
                    if final_ && bare_greeting_only(f, &s, &c) {
                        continue;
                    }
                    assert!(
                        !matches!(v, Verdict::Match { .. }),
                        "{} n={n} swap={swap} final={final_}",
                        f.name
                    );
                }
            }
        }
    }
}

#[test]
fn transports_are_respected() {
    // TCP bytes of a UDP protocol and vice versa match nothing of the wrong kind.
    use crate::fixtures::TFTP_RRQ_REQUEST;
    let (req_client, req) = TFTP_RRQ_REQUEST.dgrams[0];
    assert!(req_client);
    for fp in all() {
        let v = fp.probe(&tcp_obs(req, b"", true));
        assert!(!matches!(v, Verdict::Match { .. }), "{:?}", fp.proto());
    }
}
