//! HTTP/1.x (RFC 9112), plus the HTTP/2 prior-knowledge preface.
//!
//! Evidence, per direction:
//! * request: `METHOD SP request-target SP HTTP/1.0|HTTP/1.1 CRLF` (a bare
//!   `LF` is tolerated) with a known method (GET, POST, HEAD, PUT, DELETE,
//!   OPTIONS, CONNECT, TRACE, PATCH, WebDAV methods, ...), matched
//!   case-insensitively (real captures contain `get`); the HTTP/2 preface
//!   `PRI * HTTP/2.0` counts as a request;
//! * response: status line `HTTP/1.x SP [1-5]DD` then SP or the line end
//!   (`http/1.1` in lower case is tolerated).
//!
//! A request line longer than the caller's buffer (final flow, ≥ 1 KiB of a
//! consistent request line) also matches.
//! Direction: a request in `to_server` (or a status line in `to_client`) is
//! `reversed: false`; a status line in `to_server` (or a request in
//! `to_client` with nothing recognisable in `to_server`) is `reversed: true`.

use crate::{need_more, AppProto, Fingerprint, Observed, Transport, Verdict};

/// HTTP fingerprint (TCP only).
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpFingerprint;

impl Fingerprint for HttpFingerprint {
    fn proto(&self) -> AppProto {
        AppProto::Http
    }

    fn probe(&self, obs: &Observed<'_>) -> Verdict {
        if obs.transport != Transport::Tcp {
            return Verdict::NoMatch;
        }
        let a = classify(obs.to_server, obs.final_);
        match a {
            Kind::Request => return Verdict::Match { reversed: false },
            Kind::Response => return Verdict::Match { reversed: true },
            _ => {}
        }
        let b = classify(obs.to_client, obs.final_);
        match b {
            Kind::Request => Verdict::Match { reversed: true },
            Kind::Response => Verdict::Match { reversed: false },
            _ if a == Kind::Pending || b == Kind::Pending => need_more(obs),
            _ => Verdict::NoMatch,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Empty, or a consistent prefix of a request or status line.
    Pending,
    Request,
    Response,
    No,
}

const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"HEAD",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"CONNECT",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"SEARCH",
    b"REPORT",
    b"MKACTIVITY",
    b"CHECKOUT",
    b"MERGE",
    b"MKCALENDAR",
    b"ACL",
    b"PURGE",
    b"LINK",
    b"UNLINK",
    b"BIND",
    b"REBIND",
    b"UNBIND",
    b"VERSION-CONTROL",
    b"BASELINE-CONTROL",
    b"PRI",
];

const LONGEST_METHOD: usize = 16;
/// Longest request target we wait for before giving up (`final_` aside).
const MAX_TARGET: usize = 8192;
/// On a final flow, a consistent request-line prefix at least this long matches.
const FINAL_PREFIX: usize = 1024;

fn classify(buf: &[u8], final_: bool) -> Kind {
    let Some(&b0) = buf.first() else {
        return Kind::Pending;
    };
    if b0 == b'H' || b0 == b'h' {
        // Could be HEAD or a status line.
        match status_line(buf) {
            Kind::No => {}
            k => return k,
        }
    }
    if !b0.is_ascii_alphabetic() {
        return Kind::No;
    }
    request_line(buf, final_)
}

/// Match `HTTP/1.x NNN` (then SP, CR or LF).
fn status_line(buf: &[u8]) -> Kind {
    const P: &[u8] = b"HTTP/1.";
    for (i, &b) in buf.iter().enumerate() {
        let ok = match i {
            0..=6 => P.get(i).is_some_and(|p| p.eq_ignore_ascii_case(&b)),
            7 => b == b'0' || b == b'1',
            8 => b == b' ',
            9 => (b'1'..=b'5').contains(&b),
            10 | 11 => b.is_ascii_digit(),
            _ => {
                return if b == b' ' || b == b'\r' || b == b'\n' {
                    Kind::Response
                } else {
                    Kind::No
                };
            }
        };
        if !ok {
            return Kind::No;
        }
    }
    Kind::Pending
}

fn request_line(buf: &[u8], final_: bool) -> Kind {
    // Method
    let sp = buf.iter().take(LONGEST_METHOD + 1).position(|&b| b == b' ');
    let Some(sp) = sp else {
        let tok = buf.get(..buf.len().min(LONGEST_METHOD + 1)).unwrap_or(buf);
        let could = tok.len() <= LONGEST_METHOD
            && METHODS.iter().any(|m| crate::text::is_prefix_ci_of(tok, m));
        return if could { Kind::Pending } else { Kind::No };
    };
    let method = buf.get(..sp).unwrap_or(&[]);
    if !METHODS.iter().any(|m| m.eq_ignore_ascii_case(method)) {
        return Kind::No;
    }
    // Target: visible bytes (and obs-text >= 0x80) up to the next space; a stray control byte
    // (one in sixteen, as `text::is_texty` allows) does not hide a request whose version follows.
    let rest = buf.get(sp + 1..).unwrap_or(&[]);
    let mut tlen = 0usize;
    let mut stray = 0usize;
    for &b in rest {
        if b == b' ' {
            break;
        }
        if !(0x21..0x7f).contains(&b) && b < 0x80 {
            if b == b'\r' || b == b'\n' || b == 0 {
                return Kind::No;
            }
            stray += 1;
            if stray > 1 + tlen / 16 {
                return Kind::No;
            }
        }
        tlen += 1;
        if tlen > MAX_TARGET {
            return Kind::No;
        }
    }
    if tlen == rest.len() {
        // Target not finished yet.
        if final_ && stray == 0 && sp + 1 + tlen >= FINAL_PREFIX && rest.first() == Some(&b'/') {
            return Kind::Request;
        }
        return Kind::Pending;
    }
    if tlen == 0 {
        return Kind::No;
    }
    let version = rest.get(tlen + 1..).unwrap_or(&[]);
    let want: &[u8] = if method == b"PRI" {
        b"HTTP/2.0"
    } else {
        b"HTTP/1."
    };
    for (i, &b) in version.iter().enumerate() {
        let ok = if i < want.len() {
            want.get(i).is_some_and(|w| w.eq_ignore_ascii_case(&b))
        } else if want.len() == 7 && i == 7 {
            b == b'0' || b == b'1'
        } else {
            return if b == b'\r' || b == b'\n' {
                Kind::Request
            } else {
                Kind::No
            };
        };
        if !ok {
            return Kind::No;
        }
    }
    Kind::Pending
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n", false), Kind::Request);
        assert_eq!(classify(b"get /x HTTP/1.0\n", false), Kind::Request);
        assert_eq!(classify(b"HEAD / HTTP/1.1\r", false), Kind::Request);
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n", false), Kind::Request);
        assert_eq!(classify(b"GET / HTTP/1.1", false), Kind::Pending);
        assert_eq!(classify(b"GET /", false), Kind::Pending);
        assert_eq!(classify(b"GE", false), Kind::Pending);
        assert_eq!(classify(b"GET  / HTTP/1.1\r\n", false), Kind::No);
        assert_eq!(classify(b"GET /a\x1bb HTTP/1.1\r\n", false), Kind::Request);
        assert_eq!(classify(b"GET /\x1b\x1b\x1b HTTP/1.1\r\n", false), Kind::No);
        assert_eq!(classify(b"GET /a\r\n", false), Kind::No);
        assert_eq!(classify(b"GET / HTTP/2.0\r\n", false), Kind::No);
        assert_eq!(classify(b"FOO / HTTP/1.1\r\n", false), Kind::No);
        assert_eq!(classify(b"HTTP/1.1 200 OK\r\n", false), Kind::Response);
        assert_eq!(classify(b"http/1.1 404\r\n", false), Kind::Response);
        assert_eq!(classify(b"HTTP/1.1 20", false), Kind::Pending);
        assert_eq!(classify(b"HTTP/1.1 600 x", false), Kind::No);
        assert_eq!(classify(b"HELO x\r\n", false), Kind::No);
        assert_eq!(classify(b"USER x\r\n", false), Kind::No);
    }

    #[test]
    fn long_target_on_final() {
        let mut v = b"GET /".to_vec();
        v.resize(2000, b'a');
        assert_eq!(classify(&v, false), Kind::Pending);
        assert_eq!(classify(&v, true), Kind::Request);
    }
}
