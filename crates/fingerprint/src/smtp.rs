//! SMTP / ESMTP (RFC 5321).
//!
//! Evidence:
//! * server side: a complete first reply line `220` (` ` or `-`) whose text
//!   contains `SMTP` (so also `ESMTP`), case-insensitive — enough on its own;
//!   a `220` greeting without that word, or any other numeric reply, is weak
//!   server evidence;
//! * client side: a complete first line `EHLO`/`HELO`/`LHLO` followed by a
//!   space or the line end (strong), or `MAIL FROM:` / `RCPT TO:` for flows
//!   picked up mid-session.
//!
//! Verdict: strong server greeting → match; strong client line plus any
//! numeric reply from the server → match; strong client line alone → match
//! only once the flow is final. If the caller's "client" side carries the
//! replies, the match is `reversed`.

use crate::text::{self, Line};
use crate::{need_more, AppProto, Fingerprint, Observed, Transport, Verdict};

/// SMTP fingerprint (TCP only).
#[derive(Debug, Clone, Copy, Default)]
pub struct SmtpFingerprint;

impl Fingerprint for SmtpFingerprint {
    fn proto(&self) -> AppProto {
        AppProto::Smtp
    }

    fn probe(&self, obs: &Observed<'_>) -> Verdict {
        if obs.transport != Transport::Tcp {
            return Verdict::NoMatch;
        }
        let normal = orient(obs.to_server, obs.to_client, obs.final_);
        if normal == O::Match {
            return Verdict::Match { reversed: false };
        }
        let rev = orient(obs.to_client, obs.to_server, obs.final_);
        if rev == O::Match {
            return Verdict::Match { reversed: true };
        }
        if normal == O::NeedMore || rev == O::NeedMore {
            need_more(obs)
        } else {
            Verdict::NoMatch
        }
    }
}

/// Internal verdict for one orientation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum O {
    Match,
    NeedMore,
    NoMatch,
}

fn orient(cli: &[u8], srv: &[u8], final_: bool) -> O {
    let ss = classify_server(srv);
    if ss == Server::Strong {
        return O::Match;
    }
    let cs = classify_client(cli);
    match (cs, ss) {
        (Client::No, _) | (_, Server::No) => O::NoMatch,
        (Client::Strong, Server::Weak) => O::Match,
        (Client::Strong, _) if final_ => O::Match,
        (_, _) if final_ => O::NoMatch,
        _ => O::NeedMore,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Empty,
    Pending,
    /// Numeric reply without the SMTP word.
    Weak,
    /// `220 ... SMTP ...` greeting.
    Strong,
    No,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Empty,
    Pending,
    Strong,
    No,
}

fn classify_server(buf: &[u8]) -> Server {
    let Some(&b0) = buf.first() else {
        return Server::Empty;
    };
    if !(b'2'..=b'5').contains(&b0) {
        return Server::No;
    }
    match text::lines(buf).next() {
        Some(Line::Complete(l)) => {
            if !text::is_texty(l) {
                return Server::No;
            }
            match text::reply_code(l) {
                Some((220, _)) if text::contains_ci(l, b"SMTP") => Server::Strong,
                Some((code, _)) if (200..=599).contains(&code) => Server::Weak,
                _ => Server::No,
            }
        }
        Some(Line::Partial(p)) => {
            if text::could_be_reply(p, b'2'..=b'5') {
                Server::Pending
            } else {
                Server::No
            }
        }
        None => Server::Empty,
    }
}

const HELLO: &[&[u8]] = &[b"EHLO", b"HELO", b"LHLO"];
const MIDSTREAM: &[&[u8]] = &[b"MAIL FROM:", b"RCPT TO:"];

fn classify_client(buf: &[u8]) -> Client {
    let Some(&b0) = buf.first() else {
        return Client::Empty;
    };
    if !matches!(b0.to_ascii_uppercase(), b'E' | b'H' | b'L' | b'M' | b'R') {
        return Client::No;
    }
    match text::lines(buf).next() {
        Some(Line::Complete(l)) => {
            if !text::is_texty(l) {
                return Client::No;
            }
            let (tok, _) = text::first_token(l);
            if HELLO.iter().any(|v| v.eq_ignore_ascii_case(tok))
                || MIDSTREAM.iter().any(|v| text::starts_with_ci(l, v))
            {
                Client::Strong
            } else {
                Client::No
            }
        }
        Some(Line::Partial(p)) => {
            let p = p.strip_suffix(b"\r").unwrap_or(p);
            let could = HELLO.iter().chain(MIDSTREAM).any(|v| {
                let n = p.len().min(v.len());
                text::starts_with_ci(&p[..n], &v[..n])
            });
            if could && text::is_texty(p) && p.len() <= text::MAX_LINE {
                Client::Pending
            } else {
                Client::No
            }
        }
        None => Client::Empty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(s: &[u8], c: &[u8], f: bool) -> Verdict {
        SmtpFingerprint.probe(&Observed {
            transport: Transport::Tcp,
            to_server: s,
            to_client: c,
            dgrams: &[],
            final_: f,
        })
    }

    #[test]
    fn greeting() {
        let g = b"220 mx.example.org ESMTP Postfix\r\n";
        assert_eq!(probe(b"", g, false), Verdict::Match { reversed: false });
        assert_eq!(probe(g, b"", false), Verdict::Match { reversed: true });
        assert_eq!(
            probe(b"", b"220 mx.example.org\r\n", false),
            Verdict::NeedMore
        );
        assert_eq!(
            probe(b"", b"220 mx.example.org\r\n", true),
            Verdict::NoMatch
        );
        assert_eq!(
            probe(b"EHLO me\r\n", b"220 mx.example.org\r\n", false),
            Verdict::Match { reversed: false }
        );
        assert_eq!(probe(b"EHLO me\r\n", b"", false), Verdict::NeedMore);
        assert_eq!(
            probe(b"EHLO me\r\n", b"", true),
            Verdict::Match { reversed: false }
        );
        assert_eq!(
            probe(b"USER me\r\n", b"220 FTP\r\n", true),
            Verdict::NoMatch
        );
        assert_eq!(
            probe(b"", b"220 (vsFTPd 3.0.3)\r\n", true),
            Verdict::NoMatch
        );
    }
}
