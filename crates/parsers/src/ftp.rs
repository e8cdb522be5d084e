//! FTP control channel (RFC 959, RFC 2428, RFC 4217): commands and replies paired into transactions,
//! multi-line replies, TELNET IAC sequences removed, data connections announced by PORT/EPRT
//! (active) and 227/229 replies (passive), transfer commands with their file names, AUTH TLS.
//!
//! Fed complete lines (the caller splits the reassembled stream at `\n`, bounded). Limits: commands
//! awaiting a reply ([`FtpLimits::max_pending`]), reply lines kept per transaction, text kept per
//! line; a cap reached is counted in [`FtpStats::limit_hits`], never an error.
//!
//! Command and reply lines and the address forms are decoded by [`crate::ftp_records`]; this
//! module is the state machine.

use crate::ftp_records as rec;
use std::collections::VecDeque;
use std::net::IpAddr;
use xferwatch_wire::Addr;

#[derive(Clone, Copy, Debug)]
pub struct FtpLimits {
    pub max_pending: usize,
    pub max_reply_lines: usize,
    /// Bytes kept of a command argument or reply line.
    pub max_text: usize,
    /// Write PASS arguments as they are (otherwise `<hidden>` unless the user is anonymous).
    pub log_credentials: bool,
}

impl Default for FtpLimits {
    fn default() -> Self {
        FtpLimits {
            max_pending: 32,
            max_reply_lines: 8,
            max_text: 256,
            log_credentials: false,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct FtpStats {
    pub commands: u64,
    pub replies: u64,
    pub limit_hits: u64,
    pub malformed_announcements: u64,
}

/// One command and its reply, as Suricata's `ftp` event has them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FtpTx {
    pub command: String,
    pub command_data: Option<String>,
    pub command_truncated: bool,
    pub reply: Vec<String>,
    pub completion_code: Vec<String>,
    pub reply_received: bool,
    pub reply_truncated: bool,
    pub dynamic_port: Option<u16>,
    pub mode: Option<&'static str>,
}

/// A data connection announced on the control channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announce {
    /// Active mode (PORT/EPRT): the client listens. Passive (227/229): the server listens.
    pub client_listens: bool,
    /// The address written in the line, if any (absent in 229).
    pub addr: Option<Addr>,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FtpEvent {
    Tx(FtpTx),
    Announce(Announce),
    /// A command that moves a file or listing over the next data connection.
    Transfer {
        command: &'static str,
        file: String,
        /// STOR/STOU/APPE: the client sends.
        upload: bool,
        /// Where in the file the transfer starts (a REST before it), else 0.
        offset: u64,
    },
    /// AUTH TLS/SSL accepted: the rest of the control channel is encrypted.
    TlsStarted,
    /// The control channel says a data connection is in use, without naming it: a 125/150
    /// (opening) or 226 (transfer complete) reply, or a PORT/EPRT/227/229 that could not be read
    /// (cut by the snap length, or malformed). Evidence for linking a data connection whose
    /// announcement was missed.
    DataActivity,
}

pub struct FtpConn {
    limits: FtpLimits,
    pending: VecDeque<FtpTx>,
    /// A multi-line reply in progress: its code and lines.
    multi: Option<(String, Vec<String>, bool)>,
    user: Option<String>,
    auth_asked: bool,
    /// The REST offset for the next transfer command.
    rest: u64,
    pub tls: bool,
    pub stats: FtpStats,
}

/// The transfer commands, and whether each uploads.
const TRANSFERS: [(&str, bool); 7] = [
    ("STOR", true),
    ("STOU", true),
    ("APPE", true),
    ("RETR", false),
    ("LIST", false),
    ("NLST", false),
    ("MLSD", false),
];

impl FtpConn {
    pub fn new(limits: FtpLimits) -> Self {
        FtpConn {
            limits,
            pending: VecDeque::new(),
            multi: None,
            user: None,
            auth_asked: false,
            rest: 0,
            tls: false,
            stats: FtpStats::default(),
        }
    }

    /// One line (without its `\n`) from the client (`from_client`) or the server.
    pub fn line(&mut self, from_client: bool, raw: &[u8], out: &mut Vec<FtpEvent>) {
        if self.tls {
            return;
        }
        let mut buf = [0u8; CLEAN_ROOM];
        let cut = raw.len() > LINE_LOOKED_AT;
        let text = clean(raw, &mut buf);
        if from_client {
            self.command(text, cut, out);
        } else {
            self.reply(text, out);
        }
    }

    fn command(&mut self, text: &str, cut: bool, out: &mut Vec<FtpEvent>) {
        // Stray bytes in front of the verb (as the fingerprint tolerates them) do not hide it.
        let Ok((_, rec::CommandLine { verb, arg })) = rec::command_line(text) else {
            return;
        };
        self.stats.commands += 1;
        let verb_uc: String = verb
            .chars()
            .take(16)
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let mut tx = FtpTx {
            command: verb_uc.clone(),
            command_truncated: cut || arg.len() > self.limits.max_text,
            ..Default::default()
        };
        match verb_uc.as_str() {
            "USER" => self.user = Some(keep(arg, 64)),
            "AUTH" => self.auth_asked = true,
            "PORT" | "EPRT" => {
                tx.mode = Some("active");
                match if verb_uc == "PORT" {
                    six_numbers(arg)
                } else {
                    eprt(arg)
                } {
                    Some((addr, port)) => {
                        tx.dynamic_port = Some(port);
                        out.push(FtpEvent::Announce(Announce {
                            client_listens: true,
                            addr,
                            port,
                        }));
                    }
                    None => {
                        self.stats.malformed_announcements += 1;
                        out.push(FtpEvent::DataActivity);
                    }
                }
            }
            "PASV" | "EPSV" => tx.mode = Some("passive"),
            "REST" => self.rest = arg.trim().parse().unwrap_or(0),
            _ => {}
        }
        if let Some((name, upload)) = TRANSFERS.iter().find(|(n, _)| *n == verb_uc) {
            out.push(FtpEvent::Transfer {
                command: name,
                file: keep(arg, self.limits.max_text),
                upload: *upload,
                offset: std::mem::take(&mut self.rest),
            });
        }
        if !arg.is_empty() {
            let shown = if verb_uc == "PASS" && !self.limits.log_credentials && !self.anonymous() {
                "<hidden>".to_string()
            } else {
                keep(arg, self.limits.max_text)
            };
            tx.command_data = Some(shown);
        }
        if self.pending.len() >= self.limits.max_pending {
            // A client that never waits for replies: the oldest goes out unanswered.
            self.stats.limit_hits += 1;
            if let Some(old) = self.pending.pop_front() {
                out.push(FtpEvent::Tx(old));
            }
        }
        self.pending.push_back(tx);
    }

    fn anonymous(&self) -> bool {
        self.user
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case("anonymous") || u.eq_ignore_ascii_case("ftp"))
    }

    fn reply(&mut self, text: &str, out: &mut Vec<FtpEvent>) {
        let line = rec::reply_line(text).ok().map(|(_, r)| r);
        let coded = line.is_some();
        let code = line.map_or("", |r| r.code);
        let more = line.is_some_and(|r| r.more);
        // The text after the code and its separator; a line without a code is kept whole.
        let shown = line.map_or(text, |r| r.text);
        if let Some((mcode, lines, cut)) = &mut self.multi {
            // Inside a multi-line reply: it ends at "<code> ".
            let ends = coded && code == mcode.as_str() && !more;
            if lines.len() < self.limits.max_reply_lines {
                lines.push(keep(shown, self.limits.max_text));
            } else {
                *cut = true;
            }
            if !ends {
                return;
            }
            let (code, lines, cut) = self.multi.take().unwrap_or_default();
            self.finish_reply(&code, lines, cut, text, out);
            return;
        }
        if !coded {
            return;
        }
        if more {
            self.multi = Some((
                code.to_string(),
                vec![keep(shown, self.limits.max_text)],
                false,
            ));
            return;
        }
        self.finish_reply(
            code,
            vec![keep(shown, self.limits.max_text)],
            false,
            text,
            out,
        );
    }

    fn finish_reply(
        &mut self,
        code: &str,
        lines: Vec<String>,
        cut: bool,
        last: &str,
        out: &mut Vec<FtpEvent>,
    ) {
        self.stats.replies += 1;
        // 1xx is preliminary: the command stays open for its final reply.
        let preliminary = code.starts_with('1');
        let mut announce = None;
        if code == "227" {
            announce = six_numbers(last.get(3..).unwrap_or(""));
        } else if code == "229" {
            announce = epsv(last).map(|p| (None, p));
        }
        if (code == "227" || code == "229") && announce.is_none() {
            self.stats.malformed_announcements += 1;
            out.push(FtpEvent::DataActivity);
        }
        if matches!(code, "125" | "150" | "226") {
            out.push(FtpEvent::DataActivity);
        }
        if let Some((addr, port)) = announce {
            out.push(FtpEvent::Announce(Announce {
                client_listens: false,
                addr,
                port,
            }));
        }
        let Some(tx) = self.pending.front_mut() else {
            // A greeting or an unsolicited reply: a transaction of its own.
            out.push(FtpEvent::Tx(FtpTx {
                reply: lines,
                completion_code: vec![code.to_string()],
                reply_received: true,
                reply_truncated: cut,
                ..Default::default()
            }));
            return;
        };
        for l in lines {
            if tx.reply.len() < self.limits.max_reply_lines {
                tx.reply.push(l);
            } else {
                tx.reply_truncated = true;
            }
        }
        tx.reply_truncated |= cut;
        if tx.completion_code.len() < self.limits.max_reply_lines {
            tx.completion_code.push(code.to_string());
        }
        tx.reply_received = true;
        if let Some((_, p)) = announce {
            tx.dynamic_port = Some(p);
        }
        if preliminary {
            return;
        }
        let Some(tx) = self.pending.pop_front() else {
            return;
        };
        if tx.command == "AUTH" && self.auth_asked && code == "234" {
            self.tls = true;
            out.push(FtpEvent::Tx(tx));
            out.push(FtpEvent::TlsStarted);
            return;
        }
        out.push(FtpEvent::Tx(tx));
    }

    /// The connection ended: commands never answered go out with `reply_received: false`.
    pub fn finish(&mut self, out: &mut Vec<FtpEvent>) {
        for tx in self.pending.drain(..) {
            out.push(FtpEvent::Tx(tx));
        }
        self.multi = None;
    }

    /// Commands waiting for their final reply.
    pub fn pending(&self) -> usize {
        self.pending.len() + self.multi.is_some() as usize
    }

    /// Whether the server has said anything yet (its greeting comes before any command's reply).
    pub fn greeted(&self) -> bool {
        self.stats.replies > 0
    }

    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

/// Bytes of a line looked at.
const LINE_LOOKED_AT: usize = 512;
/// Room for the cleaned line: every byte of it may become a 3-byte U+FFFD.
const CLEAN_ROOM: usize = 3 * LINE_LOOKED_AT;

/// The line as text: `\r` dropped, TELNET IAC sequences removed, invalid UTF-8 replaced by U+FFFD
/// (the whole line is kept: a byte 0xff or a Latin-1 name in a banner or a user name does not cut
/// it short); at most [`LINE_LOOKED_AT`] bytes looked at. Control bytes are kept as they are: the
/// event writer escapes them.
fn clean<'a>(raw: &[u8], buf: &'a mut [u8; CLEAN_ROOM]) -> &'a str {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let mut plain = [0u8; LINE_LOOKED_AT];
    let mut n = 0;
    let mut i = 0;
    while i < raw.len() && n < plain.len() {
        let b = raw[i];
        if b == 0xff {
            // IAC: IAC IAC is a literal 0xff; WILL/WONT/DO/DONT carry one option byte.
            match raw.get(i + 1) {
                Some(0xff) => {
                    plain[n] = 0xff;
                    n += 1;
                    i += 2;
                }
                Some(251..=254) => i += 3,
                Some(_) => i += 2,
                None => i += 1,
            }
            continue;
        }
        plain[n] = b;
        n += 1;
        i += 1;
    }
    let mut len = 0;
    for chunk in plain[..n].utf8_chunks() {
        let replacement = if chunk.invalid().is_empty() {
            ""
        } else {
            "\u{FFFD}"
        };
        for part in [chunk.valid(), replacement] {
            let end = len + part.len();
            let Some(dst) = buf.get_mut(len..end) else {
                break;
            };
            dst.copy_from_slice(part.as_bytes());
            len = end;
        }
    }
    std::str::from_utf8(&buf[..len]).unwrap_or("")
}

fn keep(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The first `h1,h2,h3,h4,p1,p2` in the text (see [`rec::host_port`]); not port 0.
pub fn six_numbers(text: &str) -> Option<(Option<Addr>, u16)> {
    let (_, hp) = rec::host_port(text).ok()?;
    (hp.port != 0).then_some((Some(Addr::from(IpAddr::V4(hp.ip))), hp.port))
}

/// `|1|132.235.1.2|6275|` or `|2|::1|6275|` (any delimiter; see [`rec::eprt_arg`]); not port 0.
pub fn eprt(arg: &str) -> Option<(Option<Addr>, u16)> {
    let (_, e) = rec::eprt_arg(arg).ok()?;
    (e.port != 0).then_some((Some(Addr::from(e.ip)), e.port))
}

/// `229 Entering Extended Passive Mode (|||6446|)` (see [`rec::epsv_port`]); not port 0.
pub fn epsv(text: &str) -> Option<u16> {
    let (_, port) = rec::epsv_port(text).ok()?;
    (port != 0).then_some(port)
}
