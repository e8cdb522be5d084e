//! xferwatch-gen: a deterministic generator of synthetic captures for xferwatch, and of what
//! xferwatch should report for them.
//!
//! ```text
//! xferwatch-gen --profile <bulk|many-flows|mixed> --bytes <SIZE> --seed <N>
//!               [--hosts H] [--flows F] [--concurrency C] [--threshold SIZE]
//!               -o OUT.pcap [--expect OUT.json]
//! ```
//!
//! # The capture
//! A classic pcap (LINKTYPE_ETHERNET, microsecond timestamps, strictly increasing packet time
//! paced as a 1 Gbit/s link). Frames are Ethernet with IPv4, and IPv6 for some sessions; IP,
//! TCP and UDP checksums are correct. TCP connections open with SYN, SYN/ACK, ACK, carry correct
//! sequence and acknowledgement numbers and timestamp options, cut messages into 1448-byte
//! segments (1428 over IPv6) plus a short last one, are acknowledged by the receiver every
//! second segment (or by its answer), and close with FIN/ACK, FIN/ACK, ACK. A scheduler keeps
//! `--concurrency` sessions running and takes one packet from each in turn.
//!
//! Internal hosts are 10.a.b.c (and fd0a::/16 for IPv6), `--hosts` of them; external hosts are
//! 198.51.100.1-254 and 203.0.113.1-254 (2001:db8::/32). Every flow crosses the boundary.
//!
//! Sessions:
//! * FTP: a control connection with a real dialogue (greeting, USER/PASS, SYST, FEAT, TYPE I,
//!   PASV/227, EPSV/229, PORT or EPRT/200 with the server connecting from port 20, STOR or
//!   RETR with 150/226, QUIT/221) and one data connection per file carrying its bytes.
//! * TFTP: a WRQ or RRQ to udp/69 (with blksize, tsize and windowsize options or none), answered
//!   from a new server port with OACK, ACK 0 or DATA 1; DATA blocks of blksize acknowledged per
//!   window, a short last block.
//! * SMB2/SMB3 over direct TCP (445, or 139 with an NBSS session request): NEGOTIATE (3.1.1 or
//!   3.0.2), SESSION_SETUP with NTLMSSP, TREE_CONNECT, CREATE, WRITE requests of 64 KiB or 1 MiB
//!   (or READs), CLOSE, TREE_DISCONNECT, LOGOFF; encrypted SMB3 sessions wrap everything after
//!   the session setup in transform headers.
//! * Background: HTTP/1.1 GET and POST, TLS 1.3 handshakes and records, DNS over UDP, SSH.
//! * Mismatches: FTP on 80 and 2121, SMB on 443, TFTP to udp/53, HTTP on 21.
//!
//! Profiles: `bulk` (a few large transfers, `--flows` of them, default 8, among a little
//! background), `many-flows` (tens of thousands of concurrent short sessions, default
//! concurrency 60,000 over 5,000 internal hosts; about 400 MB or more are needed to keep
//! 60,000 running at once) and `mixed` (every kind of transfer and mismatch among background
//! traffic). The same seed and arguments give a byte-identical file.
//!
//! # The expectation
//! `--expect` writes, for the threshold of `--threshold` (the sensor's
//! `detect.large_outbound.threshold_bytes`, default 50 MiB): every transfer session (protocol,
//! internal and external host, server port, outbound payload of all its flows, upload or not,
//! its flows with their expected `app_proto`), the alerts the sensor should raise (1173001 for
//! each session whose internal-to-external payload reaches the threshold, on the flow that
//! crosses it; 1173002 and 1173003 for each flow whose protocol and port disagree), and the
//! packet, byte and flow counts. Transfer sessions use distinct host pairs, so the sensor's
//! per-pair roll-up (1173005) never adds two of them together.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod expect;
pub mod gen;
pub mod net;
pub mod pcap;
pub mod plan;
pub mod proto;
pub mod rng;
pub mod session;
pub mod split;

pub use gen::{generate, parse_size, Config, Outcome, DEFAULT_THRESHOLD};
pub use plan::Profile;
