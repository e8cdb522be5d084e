//! Small allocation-free helpers for line-oriented text protocols (FTP, SMTP,
//! HTTP, SSH). Everything is bounds-checked and bounded by the input length.

/// Maximum length of a control-protocol line we are willing to wait for.
pub(crate) const MAX_LINE: usize = 2048;

/// One line of a text buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Line<'a> {
    /// A complete line, without its `\n` / `\r\n` terminator.
    Complete(&'a [u8]),
    /// Bytes after the last line terminator (the line is still being received).
    Partial(&'a [u8]),
}

/// Iterator over the lines of `buf` (split on `\n`, trailing `\r` stripped).
/// The last item is `Partial` when `buf` does not end with `\n` (and is
/// omitted when empty).
pub(crate) struct Lines<'a> {
    rest: &'a [u8],
}

pub(crate) fn lines(buf: &[u8]) -> Lines<'_> {
    Lines { rest: buf }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;
    fn next(&mut self) -> Option<Line<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        match self.rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let (line, tail) = self.rest.split_at(i);
                self.rest = tail.get(1..).unwrap_or(&[]);
                Some(Line::Complete(strip_cr(line)))
            }
            None => {
                let line = self.rest;
                self.rest = &[];
                Some(Line::Partial(line))
            }
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', head)) => head,
        _ => line,
    }
}

/// Printable ASCII, tab, or a byte >= 0x80 (UTF-8 / Latin-1 text in greetings).
#[inline]
pub(crate) fn is_text_byte(b: u8) -> bool {
    b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80
}

/// Mostly text: at most one stray byte (a control byte other than TAB: an ESC colour code, a NUL,
/// a bare `\r`) in sixteen, and always one. A hostile or careless peer can put a stray byte in any
/// line it controls (a banner, a user name), so one is never a reason to give up; binary data
/// (a TLS record, a file) has about one in eight and is told apart. A `\r` ending a partial line
/// (its `\n` not yet arrived) is not counted.
pub(crate) fn is_texty(line: &[u8]) -> bool {
    let body = match line.split_last() {
        Some((b'\r', head)) => head,
        _ => line,
    };
    let stray = body.iter().filter(|&&b| !is_text_byte(b)).count();
    stray <= 1 + body.len() / 16
}

/// Strips up to `max` leading bytes that cannot start a command (control bytes, bytes >= 0x80 such
/// as a UTF-8 byte-order mark or a TELNET IAC): a stray byte in front of a verb does not hide it.
/// Returns the rest and the number of bytes stripped.
pub(crate) fn strip_stray_prefix(line: &[u8], max: usize) -> (&[u8], usize) {
    let n = line
        .iter()
        .take(max)
        .take_while(|&&b| !(0x20..0x7f).contains(&b))
        .count();
    (line.get(n..).unwrap_or(&[]), n)
}

/// ASCII case-insensitive prefix test.
#[inline]
pub(crate) fn starts_with_ci(hay: &[u8], prefix: &[u8]) -> bool {
    hay.len() >= prefix.len()
        && hay
            .iter()
            .zip(prefix)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
}

/// `hay` is a (possibly complete) case-insensitive prefix of `whole`.
#[inline]
pub(crate) fn is_prefix_ci_of(hay: &[u8], whole: &[u8]) -> bool {
    hay.len() <= whole.len() && starts_with_ci(whole, hay)
}

/// ASCII case-insensitive substring search (needle is short; bounded by hay length).
pub(crate) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    if hay.len() < needle.len() {
        return false;
    }
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// First whitespace-delimited token of a line and what follows it.
/// Returns (token, rest-after-token).
pub(crate) fn first_token(line: &[u8]) -> (&[u8], &[u8]) {
    let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    line.split_at(end)
}

/// A line that looks like a numeric reply (`NNN`, then ` `, `-`, or end of line).
/// Returns the 3-digit code and the separator (`b' '`, `b'-'` or 0 for end of line).
pub(crate) fn reply_code(line: &[u8]) -> Option<(u16, u8)> {
    let d = line.get(..3)?;
    if !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sep = match line.get(3) {
        None => 0,
        Some(&s) if s == b' ' || s == b'-' => s,
        Some(_) => return None,
    };
    let code = u16::from(d[0] - b'0') * 100 + u16::from(d[1] - b'0') * 10 + u16::from(d[2] - b'0');
    Some((code, sep))
}

/// `partial` (bytes of an unfinished first line) could still become a reply line
/// `NNN[ -]...` whose first digit is in `first_digits`.
pub(crate) fn could_be_reply(partial: &[u8], first_digits: core::ops::RangeInclusive<u8>) -> bool {
    for (i, &b) in partial.iter().enumerate() {
        let ok = match i {
            0 => first_digits.contains(&b),
            1 | 2 => b.is_ascii_digit(),
            3 => b == b' ' || b == b'-' || b == b'\r',
            _ => return is_texty(partial) && partial.len() <= MAX_LINE,
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_splitting() {
        let v: Vec<_> = lines(b"a\r\nbc\nd").collect();
        assert!(matches!(v[0], Line::Complete(b"a")));
        assert!(matches!(v[1], Line::Complete(b"bc")));
        assert!(matches!(v[2], Line::Partial(b"d")));
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"x\n").count(), 1);
    }

    #[test]
    fn reply_codes() {
        assert_eq!(reply_code(b"220 hi"), Some((220, b' ')));
        assert_eq!(reply_code(b"211-x"), Some((211, b'-')));
        assert_eq!(reply_code(b"226"), Some((226, 0)));
        assert_eq!(reply_code(b"22"), None);
        assert_eq!(reply_code(b"2a0 "), None);
        assert_eq!(reply_code(b"2200"), None);
        assert!(could_be_reply(b"22", b'1'..=b'5'));
        assert!(could_be_reply(b"220 (vsF", b'1'..=b'5'));
        assert!(!could_be_reply(b"+OK", b'1'..=b'5'));
    }

    #[test]
    fn stray_bytes_are_tolerated_binary_is_not() {
        assert!(is_texty(b"220 (vsFTPd\x1b3.0.3)"));
        assert!(is_texty(b"220 \x1b[1;31mWelcome\x1b[0m to the server"));
        assert!(is_texty(b"USER anon\x00mous\r"));
        assert!(is_texty("220 \u{6b22}\u{8fce}".as_bytes()));
        assert!(!is_texty(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x10\x02\x05\x00"
        ));
        assert_eq!(strip_stray_prefix(b"\x1bUSER x", 3), (&b"USER x"[..], 1));
        assert_eq!(
            strip_stray_prefix(b"\xef\xbb\xbfUSER", 3),
            (&b"USER"[..], 3)
        );
        assert_eq!(strip_stray_prefix(b"\x00\x00\x00\x00USER", 3).1, 3);
        assert_eq!(strip_stray_prefix(b"USER", 3).1, 0);
    }

    #[test]
    fn case_helpers() {
        assert!(starts_with_ci(b"eHLo x", b"EHLO"));
        assert!(is_prefix_ci_of(b"ss", b"SSH-"));
        assert!(contains_ci(b"220 foo EsMtP bar", b"ESMTP"));
        assert!(!contains_ci(b"SMT", b"SMTP"));
    }
}
