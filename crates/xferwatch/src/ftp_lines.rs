//! FTP control lines that announce data connections (RFC 959 PORT/227, RFC 2428 EPRT/229).
//! Pure functions of one line; anything malformed is ignored.

use std::net::{IpAddr, Ipv4Addr};
use xferwatch_wire::Addr;

/// From a client line (`from_client`) or a server reply: the announced address (if the line names
/// one) and port.
pub fn announcement(line: &[u8], from_client: bool) -> Option<(Option<Addr>, u16)> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line)
        .ok()?
        .trim_start_matches(|c: char| c == '\u{ff}' || c.is_whitespace());
    if from_client {
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        if verb.eq_ignore_ascii_case("PORT") {
            return six_numbers(arg);
        }
        if verb.eq_ignore_ascii_case("EPRT") {
            return eprt(arg.trim());
        }
        None
    } else if let Some(rest) = line.strip_prefix("227") {
        six_numbers(rest)
    } else if let Some(rest) = line.strip_prefix("229") {
        epsv(rest).map(|p| (None, p))
    } else {
        None
    }
}

/// The first `h1,h2,h3,h4,p1,p2` in the text.
fn six_numbers(text: &str) -> Option<(Option<Addr>, u16)> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let nums: Vec<u32> = text[start..]
        .split(',')
        .take(6)
        .map(|t| {
            t.trim()
                .trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse::<u32>()
        })
        .collect::<Result<_, _>>()
        .ok()?;
    if nums.len() != 6 || nums.iter().any(|n| *n > 255) {
        return None;
    }
    let port = (nums[4] * 256 + nums[5]) as u16;
    let ip = Ipv4Addr::new(nums[0] as u8, nums[1] as u8, nums[2] as u8, nums[3] as u8);
    (port != 0).then_some((Some(Addr::from(IpAddr::V4(ip))), port))
}

/// `|1|132.235.1.2|6275|` or `|2|::1|6275|` (any delimiter).
fn eprt(arg: &str) -> Option<(Option<Addr>, u16)> {
    let delim = arg.chars().next()?;
    let parts: Vec<&str> = arg.split(delim).collect();
    if parts.len() < 5 {
        return None;
    }
    let ip: IpAddr = parts[2].parse().ok()?;
    let port: u16 = parts[3].parse().ok()?;
    (port != 0).then_some((Some(Addr::from(ip)), port))
}

/// `229 Entering Extended Passive Mode (|||6446|)`.
fn epsv(text: &str) -> Option<u16> {
    let open = text.find('(')?;
    let inner = &text[open + 1..];
    let delim = inner.chars().next()?;
    let parts: Vec<&str> = inner.split(delim).collect();
    let port: u16 = parts.get(3)?.parse().ok()?;
    (port != 0).then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements() {
        let a = announcement(b"227 Entering Passive Mode (90,130,70,73,95,205).\r", false).unwrap();
        assert_eq!(a.1, 24525);
        assert_eq!(a.0.unwrap().to_string(), "90.130.70.73");
        assert_eq!(
            announcement(b"229 Entering Extended Passive Mode (|||40007|)\r", false),
            Some((None, 40007))
        );
        let p = announcement(b"PORT 192,168,0,13,234,10\r", true).unwrap();
        assert_eq!(p.1, 59914);
        let e = announcement(b"EPRT |2|2001:db8::1|4321|\r", true).unwrap();
        assert_eq!(
            (e.0.unwrap().to_string().as_str(), e.1),
            ("2001:db8::1", 4321)
        );
        assert_eq!(announcement(b"227 nothing here", false), None);
        assert_eq!(announcement(b"PORT 300,1,1,1,1,1", true), None);
        assert_eq!(announcement(b"USER anonymous", true), None);
        assert_eq!(announcement(b"227 (1,2,3,4,0,0)", false), None);
    }
}
