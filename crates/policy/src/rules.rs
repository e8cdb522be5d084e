//! The rules that turn what the analyzers observed into opinions: a port/protocol mismatch and
//! which signature it raises, DNS-format traffic to a multicast group, an FTP bounce. The engine
//! gathers the facts; these functions decide, and are tested here.

use crate::detect::Sid;
use crate::{is_file_transfer, Networks};
use xferwatch_wire::Addr;

/// What identification concluded about a flow, as the mismatch rule needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identified<'a> {
    /// Joined an announcing session (FTP data channel, TFTP transfer): new ports by design.
    Linked,
    /// A fingerprint named the protocol. `tftp_request`: a TFTP request (to the server port),
    /// as opposed to the transfer that follows on new ports.
    Found { proto: &'a str, tftp_request: bool },
    /// Nothing matched (or nothing decided yet): `payload` bytes seen, `from_start` when the flow
    /// was seen from its beginning (a TCP SYN, or any UDP flow).
    Nothing { payload: u64, from_start: bool },
}

/// Is the flow on the wrong port? A file-transfer protocol anywhere but a port the table gives
/// it; any other protocol on a port the table gives another; "nothing matched" on a well-known
/// port once `min_payload` bytes of a flow seen from its start say so.
pub fn port_mismatch(id: Identified<'_>, expected: Option<&str>, min_payload: u64) -> bool {
    match id {
        Identified::Linked => false,
        Identified::Found {
            proto: "tftp",
            tftp_request: false,
        } => false,
        Identified::Found { proto, .. } if is_file_transfer(proto) => expected != Some(proto),
        Identified::Found { proto, .. } => expected.is_some_and(|e| e != proto),
        Identified::Nothing {
            payload,
            from_start,
        } => expected.is_some() && payload >= min_payload && from_start,
    }
}

/// The signature a mismatch raises: 1173002 for a file-transfer protocol off its port, 1173003
/// for a well-known port carrying something else (`found` is "failed" when nothing matched).
pub fn mismatch_sid(found: &str) -> Sid {
    if is_file_transfer(found) {
        Sid::OffPort
    } else {
        Sid::PortOtherProto
    }
}

/// DNS-format traffic to a multicast group is LLMNR or mDNS, never unicast DNS: it is not
/// identified as DNS (so it is no mismatch on a DNS port and no DNS on another port).
pub fn dns_format_is_not_dns(server: Addr) -> bool {
    server.is_multicast()
}

/// An FTP PORT/EPRT from `client` (talking to `server`) announcing `announced` as the address to
/// connect to is a bounce when it names a third host — unless the client sits behind NAT:
/// observed outside while announcing an internal (private) address.
pub fn ftp_bounce(networks: &Networks, client: Addr, server: Addr, announced: Addr) -> bool {
    let nat = !networks.is_internal(client) && networks.is_internal(announced);
    announced != server && !nat
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Addr {
        Addr::from(s.parse::<std::net::IpAddr>().unwrap())
    }

    #[test]
    fn mismatch_both_ways() {
        let found = |proto| Identified::Found {
            proto,
            tftp_request: true,
        };
        // FTP on 80, SMB on 443, TFTP requests on 53: off their ports.
        assert!(port_mismatch(found("ftp"), Some("http"), 64));
        assert!(port_mismatch(found("smb"), Some("tls"), 64));
        assert!(port_mismatch(found("tftp"), Some("dns"), 64));
        // FTP on an unlisted port is still off its port; HTTP there is nothing to say.
        assert!(port_mismatch(found("ftp"), None, 64));
        assert!(!port_mismatch(found("http"), None, 64));
        // Port 21 speaking HTTP; port 21 speaking FTP.
        assert!(port_mismatch(found("http"), Some("ftp"), 64));
        assert!(!port_mismatch(found("ftp"), Some("ftp"), 64));
        // Data channels and TFTP transfers move to new ports by design.
        assert!(!port_mismatch(Identified::Linked, Some("http"), 64));
        let transfer = Identified::Found {
            proto: "tftp",
            tftp_request: false,
        };
        assert!(!port_mismatch(transfer, Some("dns"), 64));
        // Nothing matched on a well-known port: only with enough payload from the start.
        let nothing = |payload, from_start| Identified::Nothing {
            payload,
            from_start,
        };
        assert!(port_mismatch(nothing(64, true), Some("ftp"), 64));
        assert!(!port_mismatch(nothing(63, true), Some("ftp"), 64));
        assert!(!port_mismatch(nothing(1000, false), Some("ftp"), 64));
        assert!(!port_mismatch(nothing(1000, true), None, 64));
    }

    #[test]
    fn which_signature() {
        assert_eq!(mismatch_sid("ftp"), Sid::OffPort);
        assert_eq!(mismatch_sid("smb"), Sid::OffPort);
        assert_eq!(mismatch_sid("http"), Sid::PortOtherProto);
        assert_eq!(mismatch_sid("failed"), Sid::PortOtherProto);
    }

    #[test]
    fn multicast_dns_is_not_dns() {
        assert!(dns_format_is_not_dns(a("224.0.0.251")));
        assert!(dns_format_is_not_dns(a("ff02::fb")));
        assert!(!dns_format_is_not_dns(a("8.8.8.8")));
    }

    #[test]
    fn bounce_unless_nat() {
        let n = Networks::default_internal();
        let (client, server) = (a("10.0.0.5"), a("203.0.113.7"));
        assert!(!ftp_bounce(&n, client, server, server));
        assert!(ftp_bounce(&n, client, server, a("198.51.100.9")));
        // A client seen outside (after NAT) announcing its private address: no bounce.
        assert!(!ftp_bounce(
            &n,
            a("198.51.100.1"),
            server,
            a("192.168.1.20")
        ));
    }

    #[test]
    fn ends_and_direction() {
        let n = Networks::default_internal();
        let (i, e) = (a("10.0.0.5"), a("203.0.113.7"));
        assert_eq!(n.ends(i, e), Some((i, e)));
        assert_eq!(n.ends(e, i), Some((i, e)));
        assert_eq!(n.ends(i, i), None);
        assert_eq!(n.direction(e, i), crate::Direction::Inbound);
    }
}
