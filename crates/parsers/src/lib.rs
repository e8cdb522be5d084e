//! Transaction parsers for the file-transfer protocols. Each is fed in-order bytes (TCP) or
//! datagrams (UDP) by the worker, keeps bounded state, and reports facts as small event values; it
//! never allocates per packet once a transaction is open and never panics on any input.
//!
//! Wire records are decoded by pure `nom` decoders in a `*_records` module next to the
//! protocol's module, which keeps the state machine.

#![forbid(unsafe_code)]

pub mod ftp;
pub mod ftp_records;
pub mod smb;
pub mod smb_records;
pub mod tftp;
pub mod tftp_records;
