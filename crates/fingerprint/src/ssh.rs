//! SSH (RFC 4253 §4.2 protocol version exchange).
//!
//! Evidence: a direction that starts with `SSH-<digits>.<digits>-` followed by
//! at least one software-version byte (anything but a space, CR, LF or NUL: a
//! stray byte in the version chosen by the peer's operator does not hide SSH) (`SSH-2.0-`,
//! `SSH-1.99-`, `SSH-1.5-`, ...). Either side's banner is enough.
//!
//! Direction: both peers send the same kind of banner, so the bytes cannot
//! tell client from server: a match is always `reversed: false`.
//! Not supported: servers that send other text lines before their banner
//! (allowed by RFC 4253, rare in practice).

use crate::{need_more, AppProto, Fingerprint, Observed, Transport, Verdict};

/// SSH fingerprint (TCP only).
#[derive(Debug, Clone, Copy, Default)]
pub struct SshFingerprint;

impl Fingerprint for SshFingerprint {
    fn proto(&self) -> AppProto {
        AppProto::Ssh
    }

    fn probe(&self, obs: &Observed<'_>) -> Verdict {
        if obs.transport != Transport::Tcp {
            return Verdict::NoMatch;
        }
        let a = banner(obs.to_server);
        let b = banner(obs.to_client);
        if a == Banner::Yes || b == Banner::Yes {
            Verdict::Match { reversed: false }
        } else if a == Banner::No && b == Banner::No {
            Verdict::NoMatch
        } else {
            need_more(obs)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Banner {
    /// Empty or a consistent prefix of a banner.
    Pending,
    Yes,
    No,
}

/// Longest accepted protocol-version component (`2`, `99`, ...).
const MAX_DIGITS: usize = 3;

fn banner(buf: &[u8]) -> Banner {
    const MAGIC: &[u8] = b"SSH-";
    let n = buf.len().min(MAGIC.len());
    if buf.get(..n) != MAGIC.get(..n) {
        return Banner::No;
    }
    if buf.len() <= MAGIC.len() {
        return Banner::Pending;
    }
    // state 0: major digits, 1: minor digits, 2: software version
    let mut state = 0u8;
    let mut run = 0usize;
    for &b in buf.iter().skip(MAGIC.len()) {
        match state {
            0 | 1 => {
                if b.is_ascii_digit() {
                    run += 1;
                    if run > MAX_DIGITS {
                        return Banner::No;
                    }
                } else if run > 0 && ((state == 0 && b == b'.') || (state == 1 && b == b'-')) {
                    state += 1;
                    run = 0;
                } else {
                    return Banner::No;
                }
            }
            _ => {
                // The software version is chosen by whoever runs the peer: any byte that does not
                // end or blank it (a stray ESC, a UTF-8 name) is still a version.
                return if !matches!(b, b' ' | b'\r' | b'\n' | 0) {
                    Banner::Yes
                } else {
                    Banner::No
                };
            }
        }
    }
    Banner::Pending
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banners() {
        assert_eq!(banner(b"SSH-2.0-OpenSSH_5.6\r\n"), Banner::Yes);
        assert_eq!(banner(b"SSH-1.99-x"), Banner::Yes);
        assert_eq!(banner(b"SSH-1.5-"), Banner::Pending);
        assert_eq!(banner(b"SS"), Banner::Pending);
        assert_eq!(banner(b""), Banner::Pending);
        assert_eq!(banner(b"SSH-2.0- x"), Banner::No);
        assert_eq!(banner(b"SSH-2.0-\x1bOpenSSH"), Banner::Yes);
        assert_eq!(banner(b"SSH-2.0-\r\n"), Banner::No);
        assert_eq!(banner(b"SSH-.0-x"), Banner::No);
        assert_eq!(banner(b"SSH-2-x"), Banner::No);
        assert_eq!(banner(b"GET / HTTP/1.1"), Banner::No);
    }
}
