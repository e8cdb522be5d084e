//! FTP control-channel records (RFC 959, RFC 2428), decoded with `nom`.
//!
//! Pure decoders over one cleaned line of text (TELNET sequences removed, see [`crate::ftp`]):
//! command lines, reply lines, and the address forms of PORT / 227 (`h1,h2,h3,h4,p1,p2`), EPRT
//! (`|af|addr|port|`) and 229 (`(|||port|)`). They borrow from the line, never allocate and never
//! panic. Values are returned as written (a port of 0 included): what is acceptable is up to the
//! state machine in [`crate::ftp`].

use nom::bytes::complete::{take_till, take_while, take_while_m_n};
use nom::character::complete::{anychar, char, one_of};
use nom::combinator::{opt, rest};
use nom::error::{Error, ErrorKind};
use nom::{IResult, Parser};
use std::net::{IpAddr, Ipv4Addr};

/// Result of a record decoder: the text after the record, and the record.
pub type Decoded<'a, T> = IResult<&'a str, T>;

fn fail<T>(i: &str) -> Decoded<'_, T> {
    Err(nom::Err::Error(Error::new(i, ErrorKind::Verify)))
}

/// A command line: the verb and its argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandLine<'a> {
    /// As written (not upper-cased), not empty.
    pub verb: &'a str,
    /// After the first space, whitespace trimmed; empty when there is none.
    pub arg: &'a str,
}

/// A command line. Stray whitespace, control characters and U+FFFD before the verb are skipped
/// (as the fingerprint tolerates them); an error when nothing is left.
pub fn command_line(text: &str) -> Decoded<'_, CommandLine<'_>> {
    let (i, _) =
        take_while(|c: char| c.is_whitespace() || c.is_control() || c == '\u{FFFD}')(text)?;
    if i.is_empty() {
        return fail(i);
    }
    let (i, verb) = take_till(|c: char| c == ' ')(i)?;
    let (i, _) = opt(char(' ')).parse(i)?;
    let (i, arg) = rest(i)?;
    Ok((
        i,
        CommandLine {
            verb,
            arg: arg.trim(),
        },
    ))
}

/// A reply line that starts with a three-digit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    /// Three ASCII digits.
    pub code: &'a str,
    /// `-` after the code: the first or a middle line of a multi-line reply.
    pub more: bool,
    /// The text after the code and its separator (one space or dash, if any).
    pub text: &'a str,
}

/// A reply line; an error when it does not start with three digits (a middle line of a
/// multi-line reply may not).
pub fn reply_line(line: &str) -> Decoded<'_, ReplyLine<'_>> {
    let (i, code) = take_while_m_n(3, 3, |c: char| c.is_ascii_digit())(line)?;
    let more = i.starts_with('-');
    let (i, _) = opt(one_of(" -")).parse(i)?;
    let (i, text) = rest(i)?;
    Ok((i, ReplyLine { code, more, text }))
}

/// An IPv4 address and port as PORT and the 227 reply write them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// One of the six numbers: at most three digits after whitespace, trailing non-digits ignored
/// (`227 ... (10,0,0,1,4,1).` ends in `1).`).
fn host_port_number(field: &str) -> Option<u8> {
    let t = field.trim();
    let digits = t.trim_end_matches(|c: char| !c.is_ascii_digit());
    if digits.is_empty() || digits.len() > 3 {
        return None;
    }
    u8::try_from(digits.parse::<u32>().ok()?).ok()
}

/// The first `h1,h2,h3,h4,p1,p2` in the text (PORT argument, 227 reply text): it starts at the
/// first digit.
pub fn host_port(text: &str) -> Decoded<'_, HostPort> {
    let (mut i, _) = take_till(|c: char| c.is_ascii_digit())(text)?;
    let mut nums = [0u8; 6];
    for (k, n) in nums.iter_mut().enumerate() {
        if k > 0 {
            (i, _) = char(',')(i)?;
        }
        let (r, field) = take_till(|c: char| c == ',')(i)?;
        let Some(v) = host_port_number(field) else {
            return fail(i);
        };
        *n = v;
        i = r;
    }
    let [a, b, c, d, p1, p2] = nums;
    Ok((
        i,
        HostPort {
            ip: Ipv4Addr::new(a, b, c, d),
            port: u16::from_be_bytes([p1, p2]),
        },
    ))
}

/// An EPRT argument (RFC 2428 section 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtendedPort<'a> {
    /// The address family field as written (`1`, `2`, ...): not checked.
    pub family: &'a str,
    pub ip: IpAddr,
    pub port: u16,
}

/// A field that ends at `delim` (not consumed) or at the end of the text.
fn until(delim: char) -> impl FnMut(&str) -> Decoded<'_, &str> {
    move |i| take_till(|c: char| c == delim)(i)
}

/// `|1|132.235.1.2|6275|` or `|2|::1|6275|`: any delimiter (the first character), surrounding
/// whitespace ignored, the closing delimiter optional.
pub fn eprt_arg(arg: &str) -> Decoded<'_, ExtendedPort<'_>> {
    let (i, delim) = anychar(arg.trim())?;
    let (i, family) = until(delim)(i)?;
    let (i, _) = char(delim)(i)?;
    let (i, ip) = until(delim)(i)?;
    let (i, _) = char(delim)(i)?;
    let (i, port) = until(delim)(i)?;
    let (Ok(ip), Ok(port)) = (ip.parse::<IpAddr>(), port.parse::<u16>()) else {
        return fail(i);
    };
    Ok((i, ExtendedPort { family, ip, port }))
}

/// The port of a 229 reply, `Entering Extended Passive Mode (|||6446|)`: in the parentheses, the
/// fourth field between the delimiters (the first character after `(`).
pub fn epsv_port(text: &str) -> Decoded<'_, u16> {
    let (i, _) = take_till(|c: char| c == '(')(text)?;
    let (i, _) = char('(')(i)?;
    let (i, delim) = anychar(i)?;
    let (i, _family) = until(delim)(i)?;
    let (i, _) = char(delim)(i)?;
    let (i, _addr) = until(delim)(i)?;
    let (i, _) = char(delim)(i)?;
    let (i, port) = until(delim)(i)?;
    match port.parse::<u16>() {
        Ok(p) => Ok((i, p)),
        Err(_) => fail(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_prefix(s: &str, f: impl Fn(&str)) {
        for (n, _) in s.char_indices().chain([(s.len(), ' ')]) {
            f(&s[..n]);
        }
    }

    #[test]
    fn commands() {
        let (_, c) = command_line("STOR  my file.bin \r").unwrap();
        assert_eq!((c.verb, c.arg), ("STOR", "my file.bin"));
        let (_, c) = command_line("\u{FFFD}\x01 pasv").unwrap();
        assert_eq!((c.verb, c.arg), ("pasv", ""));
        let (_, c) = command_line("NOOP ").unwrap();
        assert_eq!((c.verb, c.arg), ("NOOP", ""));
        assert!(command_line("").is_err());
        assert!(command_line(" \t\u{FFFD}").is_err());
    }

    #[test]
    fn replies() {
        let (_, r) = reply_line("220 ready").unwrap();
        assert_eq!((r.code, r.more, r.text), ("220", false, "ready"));
        let (_, r) = reply_line("230-Welcome").unwrap();
        assert_eq!((r.code, r.more, r.text), ("230", true, "Welcome"));
        let (_, r) = reply_line("331少").unwrap();
        assert_eq!((r.code, r.more, r.text), ("331", false, "少"));
        let (_, r) = reply_line("226").unwrap();
        assert_eq!((r.code, r.more, r.text), ("226", false, ""));
        assert!(reply_line(" 220 x").is_err());
        assert!(reply_line("22").is_err());
        assert!(reply_line("2a0 x").is_err());
    }

    #[test]
    fn port_and_pasv() {
        let (_, h) = host_port("10,0,0,1,4,1").unwrap();
        assert_eq!((h.ip, h.port), (Ipv4Addr::new(10, 0, 0, 1), 1025));
        let (_, h) = host_port(" Entering Passive Mode (192,168,1,2,195,80).").unwrap();
        assert_eq!((h.ip, h.port), (Ipv4Addr::new(192, 168, 1, 2), 50000));
        let (_, h) = host_port("1, 2 ,3,4,0,0").unwrap();
        assert_eq!(h.port, 0);
        every_prefix("227 Entering Passive Mode (192,168,1,2,195,80)", |p| {
            let _ = host_port(p);
        });
    }

    #[test]
    fn eprt_and_epsv() {
        let (_, e) = eprt_arg(" |1|132.235.1.2|6275| ").unwrap();
        assert_eq!(e.family, "1");
        assert_eq!((e.ip, e.port), ("132.235.1.2".parse().unwrap(), 6275));
        let (_, e) = eprt_arg("!2!::1!6275").unwrap();
        assert_eq!((e.ip, e.port), ("::1".parse().unwrap(), 6275));
        assert_eq!(
            epsv_port("229 Entering Extended Passive Mode (|||6446|)")
                .unwrap()
                .1,
            6446
        );
        assert_eq!(epsv_port("229 x (!!!21").unwrap().1, 21);
        every_prefix("|2|fe80::1|6275|", |p| {
            let _ = eprt_arg(p);
        });
        every_prefix("229 Entering Extended Passive Mode (|||6446|)", |p| {
            let _ = epsv_port(p);
        });
    }

    #[test]
    fn rejections() {
        /// A decoder (true: decoded) and lines it must reject.
        type Case<'a> = (fn(&str) -> bool, &'a [&'a str]);
        let cases: [Case; 3] = [
            (
                |t| host_port(t).is_ok(),
                &[
                    "",
                    "no digits",
                    "1,2,3,4,5",
                    "1,2,3,256,0,1",
                    "1,2,3,4,5,1000",
                    "1,2,3,,5,6",
                    "1,2,x3,4,5,6",
                ],
            ),
            (
                |t| eprt_arg(t).is_ok(),
                &[
                    "",
                    "|",
                    "|1|",
                    "|1|1.2.3.4",
                    "|1|1.2.3.4|x|",
                    "|1|300.1.1.1|21|",
                ],
            ),
            (
                |t| epsv_port(t).is_ok(),
                &[
                    "229 no parens",
                    "229 (",
                    "229 (|||",
                    "229 (||6446|)",
                    "229 (|||70000|)",
                ],
            ),
        ];
        for (decode, bad) in cases {
            for b in bad {
                assert!(!decode(b), "{b}");
            }
        }
    }

    #[test]
    fn absurd_lengths() {
        let long = "9".repeat(100_000);
        assert!(host_port(&long).is_err());
        assert!(eprt_arg(&long).is_err());
        assert!(epsv_port(&long).is_err());
        let (_, c) = command_line(&long).unwrap();
        assert_eq!(c.verb.len(), 100_000);
        let many = ",".repeat(100_000);
        assert!(host_port(&many).is_err());
    }
}
