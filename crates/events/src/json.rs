//! A minimal streaming JSON object writer: fields in the order written, strings escaped per RFC 8259.

use std::fmt::Write;

pub struct JsonObject<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> JsonObject<'a> {
    pub fn begin(out: &'a mut String) -> Self {
        out.push('{');
        JsonObject { out, first: true }
    }
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        escape_into(self.out, k);
        self.out.push(':');
    }
    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        escape_into(self.out, v);
        self
    }
    /// A packet-time timestamp in Suricata's format.
    pub fn ts(&mut self, k: &str, micros: i64) -> &mut Self {
        self.key(k);
        self.out.push('"');
        timestamp(self.out, micros);
        self.out.push('"');
        self
    }
    pub fn u64(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        push_u64(self.out, v);
        self
    }
    pub fn i64(&mut self, k: &str, v: i64) -> &mut Self {
        self.key(k);
        if v < 0 {
            self.out.push('-');
        }
        push_u64(self.out, v.unsigned_abs());
        self
    }
    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k);
        self.out.push_str(if v { "true" } else { "false" });
        self
    }
    /// A nested object, filled by `f`.
    pub fn obj(&mut self, k: &str, f: impl FnOnce(&mut JsonObject<'_>)) -> &mut Self {
        self.key(k);
        let mut inner = JsonObject::begin(self.out);
        f(&mut inner);
        inner.end_inner();
        self
    }
    pub fn u64_array(&mut self, k: &str, v: &[u64]) -> &mut Self {
        self.key(k);
        self.out.push('[');
        for (i, x) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            push_u64(self.out, *x);
        }
        self.out.push(']');
        self
    }
    pub fn str_array<S: AsRef<str>>(&mut self, k: &str, v: &[S]) -> &mut Self {
        self.key(k);
        self.out.push('[');
        for (i, x) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            escape_into(self.out, x.as_ref());
        }
        self.out.push(']');
        self
    }
    /// An array of objects, each filled by `f` from one item.
    pub fn obj_array<T>(
        &mut self,
        k: &str,
        items: impl IntoIterator<Item = T>,
        mut f: impl FnMut(&mut JsonObject<'_>, T),
    ) -> &mut Self {
        self.key(k);
        self.out.push('[');
        for (i, x) in items.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let mut inner = JsonObject::begin(self.out);
            f(&mut inner, x);
            inner.end_inner();
        }
        self.out.push(']');
        self
    }
    fn end_inner(self) {
        self.out.push('}');
    }
    /// Closes the object and ends the line.
    pub fn end(self) {
        self.out.push_str("}\n");
    }
}

pub fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    // Most strings (addresses, protocol names, timestamps) need no escaping: copy them whole.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Suricata's timestamp format, UTC: `2026-01-01T00:00:03.141593+0000`.
pub fn timestamp(out: &mut String, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let us = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        let _ = write!(
            out,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{us:06}+0000",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        );
        return;
    }
    push_padded(out, y as u64, 4);
    out.push('-');
    push_padded(out, m as u64, 2);
    out.push('-');
    push_padded(out, d as u64, 2);
    out.push('T');
    push_padded(out, (sod / 3600) as u64, 2);
    out.push(':');
    push_padded(out, ((sod / 60) % 60) as u64, 2);
    out.push(':');
    push_padded(out, (sod % 60) as u64, 2);
    out.push('.');
    push_padded(out, us as u64, 6);
    out.push_str("+0000");
}

/// An IP address as `Display` writes it (IPv4 without the formatting machinery).
pub fn push_ip(out: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(a) => {
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, o as u64);
            }
        }
        std::net::IpAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
}

/// `v` in decimal (what `write!(out, "{v}")` writes, without the formatting machinery: this runs
/// for every number of every event).
pub fn push_u64(out: &mut String, v: u64) {
    push_padded(out, v, 1);
}

/// `v` in decimal, zero-padded to at least `width` digits (at most 20).
fn push_padded(out: &mut String, mut v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = i.min(buf.len() - width.clamp(1, buf.len()));
    for &b in &buf[start..] {
        out.push(b as char);
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_and_timestamps_are_what_fmt_writes() {
        use super::*;
        for v in [0u64, 1, 9, 10, 99, 100, 12345, u32::MAX as u64, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, v);
            assert_eq!(s, v.to_string());
        }
        for v in [0i64, -1, 42, i64::MIN, i64::MAX] {
            let mut s = String::new();
            let mut o = JsonObject::begin(&mut s);
            o.i64("k", v);
            o.end();
            assert_eq!(s.trim_end(), format!("{{\"k\":{v}}}"));
        }
        for ip in [
            "0.0.0.0",
            "10.1.22.255",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
        for us in [
            0i64,
            1,
            1_700_000_000_123_456,
            -1,
            -86_400_000_001,
            253_402_300_799_999_999,
            951_782_400_000_000,
        ] {
            let mut fast = String::new();
            timestamp(&mut fast, us);
            let secs = us.div_euclid(1_000_000);
            let sod = secs.rem_euclid(86_400);
            let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
            let slow = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}+0000",
                sod / 3600,
                (sod / 60) % 60,
                sod % 60,
                us.rem_euclid(1_000_000)
            );
            assert_eq!(fast, slow, "{us}");
        }
    }

    use super::*;

    #[test]
    fn timestamps() {
        let mut s = String::new();
        timestamp(&mut s, 1_767_225_603_141_593);
        assert_eq!(s, "2026-01-01T00:00:03.141593+0000");
        s.clear();
        timestamp(&mut s, 0);
        assert_eq!(s, "1970-01-01T00:00:00.000000+0000");
        s.clear();
        timestamp(&mut s, 951_782_400_000_000); // 2000-02-29
        assert_eq!(s, "2000-02-29T00:00:00.000000+0000");
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        let mut o = JsonObject::begin(&mut s);
        o.str("a\"b", "x\u{1}\\\n").u64("n", 7).obj("o", |o| {
            o.bool("t", true);
        });
        o.end();
        assert_eq!(
            s,
            "{\"a\\\"b\":\"x\\u0001\\\\\\n\",\"n\":7,\"o\":{\"t\":true}}\n"
        );
    }
}
