//! FTP control channel (RFC 959 and extensions: 2228, 2389, 2428, 3659).
//!
//! Evidence, per direction, allocation-free and bounded to the first
//! [`MAX_LINES`] lines:
//! * server side: the first line is a numeric reply `[1-5][0-5][0-9]` followed
//!   by ` `, `-` (multi-line) or the line end, and later lines are replies or
//!   inside a multi-line reply block (up to [`MAX_STRAY_LINES`] other text
//!   lines are tolerated); the first reply block must not mention
//!   SMTP/ESMTP/Postfix/Sendmail/Exim/NNTP/NNRP;
//! * client side: the first complete line starts (after at most
//!   [`STRAY_PREFIX`] stray bytes) with a known FTP command verb
//!   (case-insensitive) followed by a space or the line end, and no later line
//!   starts with a verb of a look-alike protocol (SMTP `EHLO`/`MAIL`, IRC
//!   `NICK`, NNTP `GROUP`, POP3 `CAPA`, ...).
//!
//! The decision rests on the structure of the conversation — reply codes,
//! command verbs, both sides agreeing — never on what the text of a line holds:
//! the banner and the user name are chosen by whoever runs the server or the
//! client, and an ESC, a TAB, a byte 0xff, a NUL or invalid UTF-8 in them does
//! not hide FTP. Binary lines (more than one stray byte in sixteen, see
//! `text::is_texty`) end the inspection of a direction, as does `AUTH` / `234`
//! (TLS follows).
//!
//! Verdict: both sides agreeing (client verb + server reply) is a match.
//! `USER`/`PASS` alone are not enough (POP3 and IRC send them too). A server
//! greeting alone waits for the client; on a final flow, a lone `220` greeting
//! that reads as text and does not look like SMTP/NNTP matches (only if the
//! client sent nothing at all: a client that stopped mid-line is not a lone
//! greeting). An NNTP-style `200`/`201` first reply only matches with an
//! FTP-only client verb (not `LIST`, `MODE`, `QUIT`, ...). POP3 (`+OK`), IMAP
//! (`* OK`) and IRC (`:server ...`) servers fail the first-line test. If the
//! caller's "client" side carries the replies and the other side the
//! commands, the match is `reversed`.

use crate::text::{self, Line};
use crate::{need_more, AppProto, Fingerprint, Observed, Transport, Verdict};

/// Number of lines inspected per direction.
const MAX_LINES: usize = 16;

/// Stray bytes (control bytes, a byte-order mark, a TELNET IAC) skipped in front of the client's
/// first verb.
const STRAY_PREFIX: usize = 3;

/// Text lines the server may send outside any reply (a bare `\n` inside a banner) before the
/// stream is judged not to be FTP.
const MAX_STRAY_LINES: usize = 2;

/// FTP command verbs (RFC 959, 2228, 2389, 2428, 2640, 3659, 7151 and common
/// extensions).
const VERBS: &[&[u8]] = &[
    b"USER", b"PASS", b"ACCT", b"CWD", b"CDUP", b"SMNT", b"QUIT", b"REIN", b"PORT", b"PASV",
    b"TYPE", b"STRU", b"MODE", b"RETR", b"STOR", b"STOU", b"APPE", b"ALLO", b"REST", b"RNFR",
    b"RNTO", b"ABOR", b"DELE", b"RMD", b"MKD", b"PWD", b"LIST", b"NLST", b"SITE", b"SYST", b"STAT",
    b"HELP", b"NOOP", b"AUTH", b"ADAT", b"PROT", b"PBSZ", b"CCC", b"MIC", b"CONF", b"ENC", b"FEAT",
    b"OPTS", b"EPRT", b"EPSV", b"LPRT", b"LPSV", b"LANG", b"MDTM", b"SIZE", b"MLSD", b"MLST",
    b"HOST", b"CLNT", b"MFMT", b"MFCT", b"MFF", b"XCUP", b"XCWD", b"XMKD", b"XPWD", b"XRMD",
    b"XCRC", b"XMD5", b"XSHA", b"AVBL", b"DSIZ", b"CSID", b"HASH", b"RMDA",
];

/// FTP verbs that NNTP also uses: not enough after an NNTP-style `200`/`201` greeting.
const NNTP_SHARED: &[&[u8]] = &[b"LIST", b"MODE", b"HELP", b"QUIT", b"STAT", b"NOOP"];

/// Client verbs of look-alike protocols: seeing one means "not FTP".
const FOREIGN: &[&[u8]] = &[
    // SMTP
    b"EHLO",
    b"HELO",
    b"MAIL",
    b"RCPT",
    b"DATA",
    b"VRFY",
    b"EXPN",
    b"STARTTLS",
    b"BDAT",
    // IRC
    b"NICK",
    b"JOIN",
    b"PRIVMSG",
    b"PONG",
    b"CAP",
    b"USERHOST",
    // NNTP
    b"ARTICLE",
    b"GROUP",
    b"CAPABILITIES",
    b"AUTHINFO",
    b"XOVER",
    b"NEWNEWS",
    b"NEWGROUPS",
    b"IHAVE",
    b"LISTGROUP",
    // POP3
    b"CAPA",
    b"APOP",
    b"UIDL",
    b"STLS",
    // HTTP
    b"GET",
    b"POST",
    b"HEAD",
    b"PUT",
    b"CONNECT",
    b"OPTIONS",
];

/// Words that, in the first server reply block, mean a mail or news server.
const SERVER_FOREIGN_WORDS: &[&[u8]] =
    &[b"SMTP", b"Postfix", b"Sendmail", b"Exim", b"NNTP", b"NNRP"];

/// FTP fingerprint (TCP only).
#[derive(Debug, Clone, Copy, Default)]
pub struct FtpFingerprint;

impl Fingerprint for FtpFingerprint {
    fn proto(&self) -> AppProto {
        AppProto::Ftp
    }

    fn probe(&self, obs: &Observed<'_>) -> Verdict {
        if obs.transport != Transport::Tcp {
            return Verdict::NoMatch;
        }
        let normal = orient(obs.to_server, obs.to_client, obs.final_);
        if normal == Verdict::NoMatch && obs.to_server.is_empty() && obs.to_client.is_empty() {
            return need_more(obs);
        }
        let normal_match = matches!(normal, Verdict::Match { .. });
        if normal_match {
            return Verdict::Match { reversed: false };
        }
        let rev = orient(obs.to_client, obs.to_server, obs.final_);
        if matches!(rev, Verdict::Match { .. }) {
            return Verdict::Match { reversed: true };
        }
        if normal == Verdict::NeedMore || rev == Verdict::NeedMore {
            need_more(obs)
        } else {
            Verdict::NoMatch
        }
    }
}

/// Judge one orientation: `cli` carries the commands, `srv` the replies.
fn orient(cli: &[u8], srv: &[u8], final_: bool) -> Verdict {
    let cs = classify_client(cli);
    if cs == Client::No {
        return Verdict::NoMatch;
    }
    let ss = classify_server(srv);
    let undecided = if final_ {
        Verdict::NoMatch
    } else {
        Verdict::NeedMore
    };
    match (cs, ss) {
        (_, Server::No) | (Client::No, _) => Verdict::NoMatch,
        (Client::Verb { ftp_only }, Server::Reply { first_code, .. }) => {
            if (first_code == 200 || first_code == 201) && !ftp_only {
                Verdict::NoMatch
            } else {
                Verdict::Match { reversed: false }
            }
        }
        (Client::Empty | Client::Pending, Server::Reply { greeting, .. }) => {
            if !final_ {
                Verdict::NeedMore
            } else if greeting && cs == Client::Empty {
                Verdict::Match { reversed: false }
            } else {
                Verdict::NoMatch
            }
        }
        (_, Server::Empty | Server::Pending) => undecided,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Empty,
    /// First line incomplete but consistent with an FTP command.
    Pending,
    /// First line is an FTP command. `ftp_only`: the verb is not shared with NNTP.
    Verb {
        ftp_only: bool,
    },
    No,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Empty,
    /// First line incomplete but consistent with a reply.
    Pending,
    /// Numeric replies. `greeting`: first reply is a plain `220` greeting
    /// (enough on its own for a final flow).
    Reply {
        first_code: u16,
        greeting: bool,
    },
    No,
}

fn in_list(token: &[u8], list: &[&[u8]]) -> bool {
    list.iter().any(|v| v.eq_ignore_ascii_case(token))
}

/// `token` (a whole first word, possibly still incomplete) could be a verb.
fn is_verb_prefix(token: &[u8]) -> bool {
    !token.is_empty() && token.len() <= 4 && VERBS.iter().any(|v| text::is_prefix_ci_of(token, v))
}

fn classify_client(buf: &[u8]) -> Client {
    if buf.is_empty() {
        return Client::Empty;
    }
    let mut result = Client::No;
    for (i, line) in text::lines(buf).take(MAX_LINES).enumerate() {
        match line {
            Line::Partial(p) => {
                if i == 0 {
                    let (p, stripped) = text::strip_stray_prefix(p, STRAY_PREFIX);
                    let (tok, rest) = text::first_token(p);
                    let ok = if rest.is_empty() {
                        // Still inside the verb (or the stray bytes before it), or verb complete
                        // and `\r` pending.
                        let tok = tok.strip_suffix(b"\r").unwrap_or(tok);
                        is_verb_prefix(tok) || (tok.is_empty() && stripped < STRAY_PREFIX)
                    } else {
                        in_list(tok, VERBS) && p.len() <= text::MAX_LINE
                    };
                    return if ok { Client::Pending } else { Client::No };
                }
                break;
            }
            Line::Complete(l) => {
                if i == 0 {
                    // The verb decides; what the argument holds (a user name with an ESC, a
                    // byte 0xff, invalid UTF-8) does not.
                    let (l, _) = text::strip_stray_prefix(l, STRAY_PREFIX);
                    let (tok, _) = text::first_token(l);
                    if !in_list(tok, VERBS) {
                        return Client::No;
                    }
                    result = Client::Verb {
                        ftp_only: !in_list(tok, NNTP_SHARED),
                    };
                    if tok.eq_ignore_ascii_case(b"AUTH") {
                        // TLS follows.
                        break;
                    }
                    continue;
                }
                if !text::is_texty(l) {
                    // Binary: not command text any more (nothing to judge).
                    break;
                }
                let (tok, _) = text::first_token(l);
                if in_list(tok, FOREIGN) {
                    return Client::No;
                }
                if tok.eq_ignore_ascii_case(b"AUTH") {
                    break;
                }
            }
        }
    }
    result
}

fn valid_ftp_code(code: u16) -> bool {
    let (d1, d2) = (code / 100, (code / 10) % 10);
    (1..=5).contains(&d1) && d2 <= 5
}

fn classify_server(buf: &[u8]) -> Server {
    let Some(&b0) = buf.first() else {
        return Server::Empty;
    };
    if !(b'1'..=b'5').contains(&b0) {
        return Server::No;
    }
    let mut first_code = None;
    // Code of the multi-line reply we are inside of, if any.
    let mut in_multi: Option<u16> = None;
    // Still inside the first reply block (checked for mail/news words).
    let mut in_first_block = true;
    // The first reply block reads as text (a lone greeting needs it).
    let mut first_block_text = true;
    // Text lines that are no reply, outside a multi-line block (a bare `\n` in a banner).
    let mut stray_lines = 0usize;
    for (i, line) in text::lines(buf).take(MAX_LINES).enumerate() {
        let l = match line {
            Line::Partial(p) => {
                if i == 0 {
                    return if text::could_be_reply(p, b'1'..=b'5') || partial_reply(p) {
                        Server::Pending
                    } else {
                        Server::No
                    };
                }
                break;
            }
            Line::Complete(l) => l,
        };
        let texty = text::is_texty(l);
        if i > 0 && !texty {
            // Binary after the replies (TLS after `234`, or junk): nothing more to judge.
            break;
        }
        if in_first_block {
            first_block_text &= texty;
            if SERVER_FOREIGN_WORDS.iter().any(|w| text::contains_ci(l, w)) {
                return Server::No;
            }
        }
        match in_multi {
            Some(code) => {
                if text::reply_code(l) == Some((code, b' ')) {
                    in_multi = None;
                    in_first_block = false;
                }
            }
            None => {
                let Some((code, sep)) = text::reply_code(l) else {
                    if i == 0 {
                        return Server::No;
                    }
                    stray_lines += 1;
                    if stray_lines > MAX_STRAY_LINES {
                        return Server::No;
                    }
                    continue;
                };
                if !valid_ftp_code(code) {
                    return Server::No;
                }
                if first_code.is_none() {
                    first_code = Some(code);
                }
                if sep == b'-' {
                    in_multi = Some(code);
                } else {
                    in_first_block = false;
                    if code == 234 {
                        // AUTH TLS accepted: TLS follows.
                        break;
                    }
                }
            }
        }
    }
    match first_code {
        Some(code) => Server::Reply {
            first_code: code,
            greeting: code == 220 && first_block_text,
        },
        None => Server::Pending,
    }
}

/// A partial first reply line whose code and separator are complete: whatever bytes follow (a
/// banner with stray bytes) wait for the line end, within the line limit.
fn partial_reply(p: &[u8]) -> bool {
    p.len() <= text::MAX_LINE && matches!(text::reply_code(p), Some((_, b' ' | b'-')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp<'a>(to_server: &'a [u8], to_client: &'a [u8], final_: bool) -> Observed<'a> {
        Observed {
            transport: Transport::Tcp,
            to_server,
            to_client,
            dgrams: &[],
            final_,
        }
    }

    fn probe(s: &[u8], c: &[u8], f: bool) -> Verdict {
        FtpFingerprint.probe(&tcp(s, c, f))
    }

    #[test]
    fn greeting_alone() {
        let g = b"220 (vsFTPd 3.0.3)\r\n";
        assert_eq!(probe(b"", g, false), Verdict::NeedMore);
        assert_eq!(probe(b"", g, true), Verdict::Match { reversed: false });
        assert_eq!(probe(g, b"", true), Verdict::Match { reversed: true });
        assert_eq!(probe(b"", b"220 (vsF", true), Verdict::NoMatch);
        assert_eq!(probe(b"", b"220 (vsF", false), Verdict::NeedMore);
    }

    #[test]
    fn both_sides() {
        let g = b"220 ready\r\n331 pw\r\n";
        assert_eq!(
            probe(b"user bob\r\n", g, false),
            Verdict::Match { reversed: false }
        );
        assert_eq!(
            probe(g, b"USER bob\r\n", false),
            Verdict::Match { reversed: true }
        );
        assert_eq!(probe(b"USER bob\r\n", b"", false), Verdict::NeedMore);
        assert_eq!(probe(b"USER bob\r\n", b"", true), Verdict::NoMatch);
    }

    #[test]
    fn lookalikes() {
        // SMTP greeting
        assert_eq!(
            probe(b"", b"220 mx ESMTP Postfix\r\n", true),
            Verdict::NoMatch
        );
        assert_eq!(probe(b"EHLO x\r\n", b"220 mx\r\n", true), Verdict::NoMatch);
        // POP3 / IMAP
        assert_eq!(
            probe(b"USER a\r\n", b"+OK ready\r\n", true),
            Verdict::NoMatch
        );
        assert_eq!(
            probe(b"a1 LOGIN x y\r\n", b"* OK IMAP\r\n", true),
            Verdict::NoMatch
        );
        // NNTP
        assert_eq!(
            probe(b"MODE READER\r\n", b"200 news ready\r\n", true),
            Verdict::NoMatch
        );
        assert_eq!(
            probe(b"GROUP alt.x\r\n", b"200 news ready\r\n", true),
            Verdict::NoMatch
        );
        assert_eq!(probe(b"", b"200 news ready\r\n", true), Verdict::NoMatch);
        // FTP mid-stream after a 200 reply with an FTP-only verb is fine.
        assert_eq!(
            probe(b"PASV\r\n", b"200 Switching to Binary mode.\r\n", false),
            Verdict::Match { reversed: false }
        );
        // IRC
        assert_eq!(
            probe(
                b"USER a +iw a :A\r\nNICK a\r\n",
                b"001 a :Welcome\r\n",
                true
            ),
            Verdict::NoMatch
        );
        assert_eq!(
            probe(
                b"USER a +iw a :A\r\n",
                b":irc.example NOTICE * :hi\r\n",
                true
            ),
            Verdict::NoMatch
        );
    }

    #[test]
    fn multiline_reply_block() {
        let s = b"230-\r\n    Welcome\r\n    more text\r\n230 Login ok\r\n250 x\r\n";
        assert!(matches!(
            classify_server(s),
            Server::Reply {
                first_code: 230,
                ..
            }
        ));
        // A stray text line (a bare `\n` in a banner) is tolerated; a stream of them is not FTP.
        assert!(matches!(
            classify_server(b"230 ok\r\nnot a reply\r\n"),
            Server::Reply { .. }
        ));
        assert_eq!(
            classify_server(b"230 ok\r\nnot\r\na\r\nreply\r\n"),
            Server::No
        );
    }
}
