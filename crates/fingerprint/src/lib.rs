//! Port-independent application-protocol identification from payload bytes.
//!
//! # What this crate owns
//! Pure byte-level fingerprints for the protocols xferwatch cares about (FTP,
//! TFTP, SMB) and for the common protocols that must *not* be mistaken for
//! them (SMTP, SSH, TLS, HTTP/1.x, DNS). Each fingerprint looks at the first
//! bytes of a flow ([`Observed`]) and answers [`Verdict::Match`],
//! [`Verdict::NeedMore`] or [`Verdict::NoMatch`]; [`identify`] combines them
//! in a fixed priority order.
//!
//! # What it must not know
//! No ports, no addresses, no networks, no tunable thresholds, no clocks and
//! no flow state: the caller (stream reassembly / policy) owns all of that.
//! A fingerprint is a pure function of the bytes it is given, so feeding the
//! same prefix always yields the same verdict, however the bytes were chunked.
//!
//! # Invariants
//! * Never panics, on any input (every length is checked; no indexing without
//!   a bound check, no `unwrap` on data). A randomized test hammers this.
//! * No heap allocation in probes (hot path); cheap rejection first: every
//!   probe looks at the first bytes before doing anything expensive, and all
//!   scanning is bounded by the input length (or a small constant).
//! * When [`Observed::final_`] is set, probes answer `Match` or `NoMatch`,
//!   never `NeedMore`.
//! * Growing a prefix never turns one protocol's `Match` into another's: a
//!   fingerprint says `NeedMore` until its evidence is complete.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod dns;
mod ftp;
mod http;
mod smb;
mod smtp;
mod ssh;
mod text;
mod tftp;
mod tls;

pub use dns::DnsFingerprint;
pub use ftp::FtpFingerprint;
pub use http::HttpFingerprint;
pub use smb::{smb_sync, SmbFingerprint, SmbSync};
pub use smtp::SmtpFingerprint;
pub use ssh::SshFingerprint;
pub use tftp::TftpFingerprint;
pub use tls::TlsFingerprint;

/// Application protocols this crate can recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AppProto {
    /// File Transfer Protocol control channel (RFC 959).
    Ftp,
    /// Trivial File Transfer Protocol (RFC 1350).
    Tftp,
    /// SMB1/SMB2/SMB3 over NetBIOS session service or direct TCP.
    Smb,
    /// HTTP/1.x (and the HTTP/2 prior-knowledge preface).
    Http,
    /// TLS (handshake records).
    Tls,
    /// SSH (version banner).
    Ssh,
    /// DNS (UDP, or TCP with the 2-byte length prefix), including mDNS.
    Dns,
    /// SMTP / ESMTP.
    Smtp,
}

impl AppProto {
    /// Every protocol, in declaration order.
    pub const ALL: [AppProto; 8] = [
        AppProto::Ftp,
        AppProto::Tftp,
        AppProto::Smb,
        AppProto::Http,
        AppProto::Tls,
        AppProto::Ssh,
        AppProto::Dns,
        AppProto::Smtp,
    ];

    /// Lower-case protocol name: "ftp", "tftp", "smb", "http", "tls", "ssh", "dns", "smtp".
    pub fn as_str(self) -> &'static str {
        match self {
            AppProto::Ftp => "ftp",
            AppProto::Tftp => "tftp",
            AppProto::Smb => "smb",
            AppProto::Http => "http",
            AppProto::Tls => "tls",
            AppProto::Ssh => "ssh",
            AppProto::Dns => "dns",
            AppProto::Smtp => "smtp",
        }
    }

    /// Inverse of [`AppProto::as_str`], case-insensitive.
    pub fn from_name(s: &str) -> Option<AppProto> {
        AppProto::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }
}

impl core::fmt::Display for AppProto {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Transport carrying the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP: fingerprints see the in-order reassembled prefix of each direction.
    Tcp,
    /// UDP: fingerprints see the first datagrams of the flow.
    Udp,
}

/// Answer of one fingerprint for one flow prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The bytes are this protocol.
    ///
    /// `reversed`: the side the caller took as client is really the server
    /// (e.g. the first bytes seen were a 220 greeting sent by the "client" side).
    Match {
        /// The caller's client/server guess is the wrong way round.
        reversed: bool,
    },
    /// Consistent with this protocol so far, but not conclusive yet.
    NeedMore,
    /// Not this protocol (more bytes would not change that).
    NoMatch,
}

/// Bytes seen so far on one flow. TCP: the in-order reassembled prefix of each direction (capped by the caller, e.g. 4 KiB).
/// UDP: the first datagrams of each direction (up to 8 each), in arrival order, plus the global arrival order.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// Transport of the flow.
    pub transport: Transport,
    /// TCP stream prefix client->server ("client" = caller's current guess).
    pub to_server: &'a [u8],
    /// TCP stream prefix server->client.
    pub to_client: &'a [u8],
    /// UDP: datagrams in arrival order (both directions interleaved), empty for TCP.
    pub dgrams: &'a [Dgram<'a>],
    /// true when the caller will not deliver more bytes (flow ended or buffer cap reached):
    /// a fingerprint must then decide Match or NoMatch, never NeedMore.
    pub final_: bool,
}

/// One UDP datagram payload and its direction.
#[derive(Debug, Clone, Copy)]
pub struct Dgram<'a> {
    /// Sent client->server (caller's guess).
    pub to_server: bool,
    /// UDP payload.
    pub data: &'a [u8],
}

/// A protocol recogniser. Implementations are pure functions of the bytes.
pub trait Fingerprint: Sync {
    /// The protocol this fingerprint recognises.
    fn proto(&self) -> AppProto;
    /// Judge the bytes seen so far. Pure function of `obs`; never panics.
    fn probe(&self, obs: &Observed<'_>) -> Verdict;
}

static ALL: [&dyn Fingerprint; 8] = [
    &FtpFingerprint,
    &SmbFingerprint,
    &TftpFingerprint,
    &SmtpFingerprint,
    &SshFingerprint,
    &TlsFingerprint,
    &HttpFingerprint,
    &DnsFingerprint,
];

/// All fingerprints, in the priority order `identify` uses:
/// ftp, smb, tftp, smtp, ssh, tls, http, dns.
pub fn all() -> &'static [&'static dyn Fingerprint] {
    &ALL
}

/// True when `datagram` is a well-formed TFTP read or write request (what starts a TFTP exchange, as
/// opposed to a transfer on a new port).
pub fn is_tftp_request(datagram: &[u8]) -> bool {
    tftp::is_request(datagram)
}

/// Result of running every fingerprint on a flow prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identification {
    /// A fingerprint matched.
    Found {
        /// The protocol.
        proto: AppProto,
        /// The caller's client/server guess is the wrong way round.
        reversed: bool,
    },
    /// Some fingerprint still needs more bytes and none matched.
    NeedMore,
    /// Every fingerprint said NoMatch.
    Unknown,
}

/// Runs every fingerprint for the transport (each fingerprint rejects the
/// transports it does not speak).
///
/// The first fingerprint (in [`all`] priority order) that says `Match` wins,
/// even if a higher-priority one still says `NeedMore`: the fingerprints are
/// written to be mutually exclusive (e.g. FTP rejects `220 ... ESMTP`
/// greetings and SMTP client verbs), and the order only breaks ties.
/// `NeedMore` while any fingerprint still says `NeedMore` and none matched;
/// `Unknown` when all say `NoMatch`. With `obs.final_` set the answer is never
/// `NeedMore`.
pub fn identify(obs: &Observed<'_>) -> Identification {
    let mut need_more = false;
    for fp in all() {
        match fp.probe(obs) {
            Verdict::Match { reversed } => {
                return Identification::Found {
                    proto: fp.proto(),
                    reversed,
                }
            }
            Verdict::NeedMore => need_more = true,
            Verdict::NoMatch => {}
        }
    }
    if need_more && !obs.final_ {
        Identification::NeedMore
    } else {
        Identification::Unknown
    }
}

/// Helper for probes: `NeedMore`, or `NoMatch` once the caller said the flow is final.
#[inline]
pub(crate) fn need_more(obs: &Observed<'_>) -> Verdict {
    if obs.final_ {
        Verdict::NoMatch
    } else {
        Verdict::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in AppProto::ALL {
            assert_eq!(AppProto::from_name(p.as_str()), Some(p));
            assert_eq!(
                AppProto::from_name(&p.as_str().to_ascii_uppercase()),
                Some(p)
            );
        }
        assert_eq!(AppProto::from_name("gopher"), None);
        assert_eq!(AppProto::from_name(""), None);
    }

    #[test]
    fn priority_order() {
        let order: Vec<AppProto> = all().iter().map(|f| f.proto()).collect();
        use AppProto::*;
        assert_eq!(order, vec![Ftp, Smb, Tftp, Smtp, Ssh, Tls, Http, Dns]);
    }

    #[test]
    fn empty_flows() {
        for transport in [Transport::Tcp, Transport::Udp] {
            let mut obs = Observed {
                transport,
                to_server: b"",
                to_client: b"",
                dgrams: &[],
                final_: false,
            };
            assert_eq!(identify(&obs), Identification::NeedMore);
            obs.final_ = true;
            assert_eq!(identify(&obs), Identification::Unknown);
        }
    }
}
