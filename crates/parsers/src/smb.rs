//! SMB transaction parser for one TCP connection (SMB1, SMB2 and SMB3), streaming and bounded.
//!
//! # What is parsed
//!
//! The caller feeds the in-order reassembled bytes of each direction to [`SmbConn::feed`] (or
//! [`SmbConn::feed_files`], which also hands file data over; see "File data" below). The
//! parser walks the NetBIOS session service framing (RFC 1002 / MS-SMB2 2.1 "Direct TCP": one
//! type byte and a 24-bit big-endian length) and reads:
//!
//! * **SMB2/SMB3** (`\xfeSMB`, MS-SMB2), including compound chains (`NextCommand`, with the
//!   related-operations `FileId` of all ones resolved to the chain's CREATE):
//!   NEGOTIATE (dialect), SESSION_SETUP (NTLMSSP AUTHENTICATE user/domain/host, final status),
//!   TREE_CONNECT (share path), CREATE (name, disposition, FileId, end-of-file), WRITE (data
//!   length, counted at the request), READ (data length of the response, matched to the request's
//!   FileId by MessageId), CLOSE (end-of-file when `SMB2_CLOSE_FLAG_POSTQUERY_ATTRIB` is set).
//!   Interim `STATUS_PENDING` async responses are ignored.
//! * **SMB3 transform** (`\xfdSMB`): `OriginalMessageSize` is summed per `SessionId` and
//!   direction; the encrypted payload is skipped.
//! * **SMB 3.1.1 compression transform** (`\xfcSMB`): counted as a message and skipped (not an
//!   error).
//! * **SMB1** (`\xffSMB`, MS-CIFS / MS-SMB): NEGOTIATE (chosen dialect string), SESSION_SETUP_ANDX
//!   (extended security, NTLMSSP), TREE_CONNECT_ANDX, NT_CREATE_ANDX, WRITE_ANDX, READ_ANDX and
//!   CLOSE, following AndX chains (at most 8 commands, offsets strictly increasing). Responses are
//!   matched to requests by (PID, MID, command).
//! * NBSS session request/response/retarget/keep-alive messages (types 0x81-0x85) are skipped by
//!   their length.
//!
//! # Transactions
//!
//! NEGOTIATE, SESSION_SETUP (final response only), TREE_CONNECT and CREATE push an [`SmbTx`] at
//! their response. WRITE and READ push nothing: they add to the file table entry of their file
//! and to [`SmbStats`]. CLOSE pushes one tx for the file (name, share, size, bytes written and
//! read) and forgets it. [`SmbConn::finish`] pushes a CLOSE-shaped tx (status `None`) for every
//! file still open that moved bytes, and one `"SMB3_ENCRYPTED"` tx per encrypted session.
//!
//! # File data
//!
//! [`SmbConn::feed_files`] hands the data of WRITE requests (SMB2 WRITE, SMB1 WRITE_ANDX) and READ
//! responses (SMB2 READ, SMB1 READ_ANDX) to its callback as [`FileOp::Bytes`], by file
//! ([`FileKey`]), direction and file offset, in stream order, without buffering: data inside the
//! part of a message the parser reads is handed over once the message is parsed, data after it
//! while the rest of the message passes. A READ response's file and offset are those of its
//! request (kept in the pending table, matched by MessageId or PID/MID), so pipelined reads
//! answered in any order land at their offsets. A related compound WRITE (FileId all ones after a
//! CREATE in the same request) is handed over as [`FileKey::Compound`] of the CREATE's MessageId;
//! the CREATE response then sends [`FileOp::Rekey`] to its FileId (or to `None` when the open
//! failed). Data offsets that point into the header are not used (`field_errors`); file offsets
//! near `u64::MAX` saturate.
//!
//! `fuid`: an SMB2 FileId is printed as Suricata prints a GUID (lower-case 8-4-4-4-12, bytes in
//! Suricata's order 3210-54-76-98-BA FEDC); an SMB1 FID is printed as 4 lower-case hex digits of
//! its 16-bit value (as Suricata does). `filename` is `Some("")` for the share root, and `None`
//! when the file was opened before the parser saw it. `size` is the end-of-file of the CREATE
//! response, replaced by the CLOSE response's when that one carries attributes.
//!
//! # Limits
//!
//! * Buffering: the parser never needs more than [`SmbConn::MAX_NEED`] bytes buffered to make
//!   progress. Large messages are read only as far as needed (the WRITE request and READ response
//!   fixed parts, the 52-byte transform header, the first `MAX_NEED` bytes of anything else) and
//!   the rest is consumed as it arrives, or skipped through [`SmbConn::skippable`] /
//!   [`SmbConn::skipped`].
//! * Tables: open files (`max_files`), SMB trees (`max_files`), encrypted sessions (`max_files`)
//!   and requests awaiting a response (`max_pending`). When a table is full its oldest entry is
//!   evicted and `limit_hits` is incremented; an evicted file that moved bytes, or an evicted
//!   encrypted session, is pushed as its tx at that moment so no volume is lost.
//! * Names (share, file, NTLM user/domain/host) are cut to `max_name` bytes of UTF-8.
//! * Heap allocation happens only for the names and file ids kept for a tx and for table growth
//!   up to the caps.
//! * A compound chain is walked as far as it lies in the first `MAX_NEED` bytes of its message
//!   (a chain that starts with a large WRITE loses the commands after it; the data of the last
//!   command read may extend past them and is still handed over).
//! * File operations queued for one message: at most one per command read.
//!
//! # Errors and gaps
//!
//! An NBSS type that is not a session-service type, or a session message that does not start
//! with an SMB magic, counts as `malformed` and starts a resynchronisation: the parser scans for
//! `0x00`, a 24-bit length, an SMB magic and (for SMB2) the header's StructureSize 64, with a
//! length no smaller than that protocol's header. [`SmbConn::gap`] starts the same scan.
//! `resyncs` counts the headers found by a scan. A message whose SMB content is truncated or
//! inconsistent counts as `malformed` but does not break the framing. A field the parser reads
//! with a default when it is missing (a request body cut short: an offset, a length, a name's
//! descriptor) counts as `field_errors` and the message is used with that default.
//!
//! The wire records (NBSS header, SMB1/SMB2 headers, transform header, command bodies, NTLMSSP)
//! are decoded by [`crate::smb_records`]; this module is the state machine.
//!
//! # Not parsed
//!
//! Anything inside an encrypted or compressed message, Kerberos or other non-NTLMSSP
//! authentication blobs (the tx then has no `ntlmssp`), SMB1 non-extended-security session setup
//! account names, SMB1 TRANS/TRANS2/NT_TRANS and the legacy (non-AndX) read/write/open commands,
//! SMB2 IOCTL/QUERY_DIRECTORY/QUERY_INFO/SET_INFO (renames, deletes), DCE/RPC over named pipes,
//! the data of SMB1 raw and legacy read/write commands, SMB over QUIC or RDMA, and the NBSS 17-bit
//! length form's extension bit for message types other than 0x81-0x85 (session messages use the
//! 24-bit SMB2 framing).

use crate::smb_records::{
    self as rec, Magic, Smb1Header, Smb2Header, COMPRESSED_HDR, NBSS_HDR, SMB1_HDR, SMB2_HDR,
    TRANSFORM_HDR,
};

/// Parser limits; every table the parser keeps is bounded by one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmbLimits {
    /// Open file ids tracked (also bounds the tree and encrypted-session tables). Default 1024.
    pub max_files: usize,
    /// Requests awaiting a response. Default 256.
    pub max_pending: usize,
    /// Bytes of a name (UTF-8) kept. Default 512.
    pub max_name: usize,
}

impl Default for SmbLimits {
    fn default() -> Self {
        SmbLimits {
            max_files: 1024,
            max_pending: 256,
            max_name: 512,
        }
    }
}

/// Counters of one connection.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct SmbStats {
    /// SMB messages seen (one per NBSS session message with an SMB magic; a compound chain is one).
    pub messages: u64,
    /// Sum of WRITE data lengths (SMB2 WRITE, SMB1 WRITE_ANDX), counted at the request.
    pub bytes_written: u64,
    /// Sum of READ response data lengths (SMB2 READ, SMB1 READ_ANDX).
    pub bytes_read: u64,
    /// Sum of SMB3 transform `OriginalMessageSize`, `[to_server, to_client]`.
    pub encrypted_bytes: [u64; 2],
    /// Headers found by a resynchronisation scan (after a gap or malformed framing).
    pub resyncs: u64,
    /// Malformed framing or SMB content.
    pub malformed: u64,
    /// Fields that could not be read and were taken as their default (zero, empty, absent): a
    /// record cut short inside a message that is otherwise used. Not part of `malformed`.
    pub field_errors: u64,
    /// A table cap was reached (oldest entry evicted) or a table was configured with 0 entries.
    pub limit_hits: u64,
    /// SMB2 dialect revision from the NEGOTIATE response (e.g. 0x0311). `None` for SMB1.
    pub dialect: Option<u16>,
}

/// Names from an NTLMSSP AUTHENTICATE (type 3) message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ntlm {
    pub user: String,
    pub domain: String,
    pub host: String,
}

/// One finished SMB transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SmbTx {
    /// Suricata's command name (see [`cmd`]), or `"SMB3_ENCRYPTED"` for an encrypted session.
    pub command: &'static str,
    /// NT status name (see [`nt_status_name`]); `None` for txs pushed by eviction or `finish()`.
    pub status: Option<&'static str>,
    pub status_code: Option<u32>,
    /// Connection dialect: "2.02", "2.10", "3.00", "3.02", "3.1.1", ... or an SMB1 dialect string.
    pub dialect: Option<&'static str>,
    pub session_id: u64,
    pub tree_id: u32,
    pub share: Option<String>,
    pub filename: Option<String>,
    pub fuid: Option<String>,
    /// "FILE_SUPERSEDE", "FILE_OPEN", "FILE_CREATE", "FILE_OPEN_IF", "FILE_OVERWRITE", "FILE_OVERWRITE_IF".
    pub disposition: Option<&'static str>,
    /// End-of-file from the CREATE response or the CLOSE response.
    pub size: Option<u64>,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub ntlmssp: Option<Ntlm>,
    /// `SMB3_ENCRYPTED` only: `OriginalMessageSize` sums for the session, `[to_server, to_client]`.
    pub encrypted_bytes: [u64; 2],
}

/// Command names used in [`SmbTx::command`] (Suricata's names).
pub mod cmd {
    pub const SMB2_NEGOTIATE: &str = "SMB2_COMMAND_NEGOTIATE_PROTOCOL";
    pub const SMB2_SESSION_SETUP: &str = "SMB2_COMMAND_SESSION_SETUP";
    pub const SMB2_TREE_CONNECT: &str = "SMB2_COMMAND_TREE_CONNECT";
    pub const SMB2_CREATE: &str = "SMB2_COMMAND_CREATE";
    pub const SMB2_CLOSE: &str = "SMB2_COMMAND_CLOSE";
    pub const SMB1_NEGOTIATE: &str = "SMB1_COMMAND_NEGOTIATE_PROTOCOL";
    pub const SMB1_SESSION_SETUP: &str = "SMB1_COMMAND_SESSION_SETUP_ANDX";
    pub const SMB1_TREE_CONNECT: &str = "SMB1_COMMAND_TREE_CONNECT_ANDX";
    pub const SMB1_NT_CREATE: &str = "SMB1_COMMAND_NT_CREATE_ANDX";
    pub const SMB1_CLOSE: &str = "SMB1_COMMAND_CLOSE";
    pub const SMB3_ENCRYPTED: &str = "SMB3_ENCRYPTED";
}

// ---------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------

/// Smallest SMB1 message: header, WordCount and ByteCount.
const SMB1_MIN: usize = SMB1_HDR + 3;
/// Any message longer than this is absurd (the 24-bit framing cannot exceed it anyway).
const MAX_MSG_LEN: usize = 16 << 20;
const MAX_CHAIN: usize = 64;
const MAX_ANDX: usize = 8;

const SMB2_NEGOTIATE: u16 = 0x00;
const SMB2_SESSION_SETUP: u16 = 0x01;
const SMB2_TREE_CONNECT: u16 = 0x03;
const SMB2_CREATE: u16 = 0x05;
const SMB2_CLOSE: u16 = 0x06;
const SMB2_READ: u16 = 0x08;
const SMB2_WRITE: u16 = 0x09;

const SMB2_FLAGS_SERVER_TO_REDIR: u32 = 0x0000_0001;
const SMB2_FLAGS_ASYNC_COMMAND: u32 = 0x0000_0002;
const SMB2_FLAGS_RELATED_OPERATIONS: u32 = 0x0000_0004;

/// WRITE request fixed part (StructureSize 49 less the 1-byte buffer).
const SMB2_WRITE_REQ_FIXED: usize = 48;
/// READ response fixed part (StructureSize 17 less the 1-byte buffer).
const SMB2_READ_RSP_FIXED: usize = 16;

const SMB1_NEGOTIATE: u8 = 0x72;
const SMB1_SESSION_SETUP_ANDX: u8 = 0x73;
const SMB1_TREE_CONNECT_ANDX: u8 = 0x75;
const SMB1_NT_CREATE_ANDX: u8 = 0xa2;
const SMB1_WRITE_ANDX: u8 = 0x2f;
const SMB1_READ_ANDX: u8 = 0x2e;
const SMB1_CLOSE: u8 = 0x04;
const SMB1_LOGOFF_ANDX: u8 = 0x74;
const SMB1_LOCKING_ANDX: u8 = 0x24;
const SMB1_OPEN_ANDX: u8 = 0x2d;

const SMB1_FLAGS_REPLY: u8 = 0x80;
const SMB1_FLAGS2_UNICODE: u16 = 0x8000;
/// WRITE_ANDX request: header, WordCount, 14 words, ByteCount.
const SMB1_WRITE_PREFIX: usize = SMB1_HDR + 1 + 28 + 2;
/// READ_ANDX response: header, WordCount, 12 words, ByteCount.
const SMB1_READ_PREFIX: usize = SMB1_HDR + 1 + 24 + 2;

const STATUS_SUCCESS: u32 = 0x0000_0000;
const STATUS_PENDING: u32 = 0x0000_0103;
const STATUS_BUFFER_OVERFLOW: u32 = 0x8000_0005;
const STATUS_MORE_PROCESSING_REQUIRED: u32 = 0xc000_0016;

/// The FileId that related compound operations use for "the file of the chain".
const CHAIN_FID: [u8; 16] = [0xff; 16];

/// SMB1 dialect strings we name (index into this table is kept per NEGOTIATE request).
const SMB1_DIALECTS: [&str; 12] = [
    "PC NETWORK PROGRAM 1.0",
    "MICROSOFT NETWORKS 1.03",
    "MICROSOFT NETWORKS 3.0",
    "LANMAN1.0",
    "Windows for Workgroups 3.1a",
    "LM1.2X002",
    "DOS LANMAN2.1",
    "LANMAN2.1",
    "Samba",
    "NT LANMAN 1.0",
    "NT LM 0.12",
    "SMB 2.002",
];
const SMB1_DIALECT_UNKNOWN: u8 = 0xff;
const SMB1_MAX_DIALECTS: usize = 32;

// ---------------------------------------------------------------------------------------------
// Little helpers (all bounds-checked)
// ---------------------------------------------------------------------------------------------

/// UTF-16LE up to the first NUL unit, lossy, cut to `max` bytes of UTF-8.
fn utf16_name(b: &[u8], max: usize) -> String {
    let units = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0);
    let mut s = String::new();
    for r in char::decode_utf16(units) {
        let c = r.unwrap_or(char::REPLACEMENT_CHARACTER);
        if s.len() + c.len_utf8() > max {
            break;
        }
        s.push(c);
    }
    s
}

/// 8-bit (OEM) string up to the first NUL, lossy, cut to `max` bytes of UTF-8.
fn oem_name(b: &[u8], max: usize) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let mut s = String::new();
    for c in String::from_utf8_lossy(&b[..end]).chars() {
        if s.len() + c.len_utf8() > max {
            break;
        }
        s.push(c);
    }
    s
}

fn disposition_name(d: u32) -> Option<&'static str> {
    Some(match d {
        0 => "FILE_SUPERSEDE",
        1 => "FILE_OPEN",
        2 => "FILE_CREATE",
        3 => "FILE_OPEN_IF",
        4 => "FILE_OVERWRITE",
        5 => "FILE_OVERWRITE_IF",
        _ => return None,
    })
}

/// Name of an SMB2 dialect revision.
pub fn smb2_dialect_name(d: u16) -> &'static str {
    match d {
        0x0202 => "2.02",
        0x0210 => "2.10",
        0x0222 => "2.22",
        0x0224 => "2.24",
        0x02ff => "2.??",
        0x0300 => "3.00",
        0x0302 => "3.02",
        0x0310 => "3.10",
        0x0311 => "3.1.1",
        _ => "UNKNOWN",
    }
}

/// Name of an NT status code as Suricata logs it, or `"UNKNOWN"`.
pub fn nt_status_name(code: u32) -> &'static str {
    match code {
        0x0000_0000 => "STATUS_SUCCESS",
        0x0000_0103 => "STATUS_PENDING",
        0x0000_0104 => "STATUS_REPARSE",
        0x0000_0105 => "STATUS_MORE_ENTRIES",
        0x0000_010b => "STATUS_NOTIFY_CLEANUP",
        0x0000_010c => "STATUS_NOTIFY_ENUM_DIR",
        0x8000_0005 => "STATUS_BUFFER_OVERFLOW",
        0x8000_0006 => "STATUS_NO_MORE_FILES",
        0x8000_001a => "STATUS_NO_MORE_ENTRIES",
        0x8000_002d => "STATUS_STOPPED_ON_SYMLINK",
        0xc000_0001 => "STATUS_UNSUCCESSFUL",
        0xc000_0002 => "STATUS_NOT_IMPLEMENTED",
        0xc000_0003 => "STATUS_INVALID_INFO_CLASS",
        0xc000_0004 => "STATUS_INFO_LENGTH_MISMATCH",
        0xc000_0005 => "STATUS_ACCESS_VIOLATION",
        0xc000_0008 => "STATUS_INVALID_HANDLE",
        0xc000_000d => "STATUS_INVALID_PARAMETER",
        0xc000_000e => "STATUS_NO_SUCH_DEVICE",
        0xc000_000f => "STATUS_NO_SUCH_FILE",
        0xc000_0010 => "STATUS_INVALID_DEVICE_REQUEST",
        0xc000_0011 => "STATUS_END_OF_FILE",
        0xc000_0016 => "STATUS_MORE_PROCESSING_REQUIRED",
        0xc000_0017 => "STATUS_NO_MEMORY",
        0xc000_0022 => "STATUS_ACCESS_DENIED",
        0xc000_0023 => "STATUS_BUFFER_TOO_SMALL",
        0xc000_0024 => "STATUS_OBJECT_TYPE_MISMATCH",
        0xc000_0033 => "STATUS_OBJECT_NAME_INVALID",
        0xc000_0034 => "STATUS_OBJECT_NAME_NOT_FOUND",
        0xc000_0035 => "STATUS_OBJECT_NAME_COLLISION",
        0xc000_003a => "STATUS_OBJECT_PATH_NOT_FOUND",
        0xc000_003b => "STATUS_OBJECT_PATH_SYNTAX_BAD",
        0xc000_0043 => "STATUS_SHARING_VIOLATION",
        0xc000_0044 => "STATUS_QUOTA_EXCEEDED",
        0xc000_004f => "STATUS_EAS_NOT_SUPPORTED",
        0xc000_0054 => "STATUS_FILE_LOCK_CONFLICT",
        0xc000_0055 => "STATUS_LOCK_NOT_GRANTED",
        0xc000_0056 => "STATUS_DELETE_PENDING",
        0xc000_005e => "STATUS_NO_LOGON_SERVERS",
        0xc000_0061 => "STATUS_PRIVILEGE_NOT_HELD",
        0xc000_0064 => "STATUS_NO_SUCH_USER",
        0xc000_006a => "STATUS_WRONG_PASSWORD",
        0xc000_006d => "STATUS_LOGON_FAILURE",
        0xc000_006e => "STATUS_ACCOUNT_RESTRICTION",
        0xc000_006f => "STATUS_INVALID_LOGON_HOURS",
        0xc000_0070 => "STATUS_INVALID_WORKSTATION",
        0xc000_0071 => "STATUS_PASSWORD_EXPIRED",
        0xc000_0072 => "STATUS_ACCOUNT_DISABLED",
        0xc000_007e => "STATUS_RANGE_NOT_LOCKED",
        0xc000_007f => "STATUS_DISK_FULL",
        0xc000_009a => "STATUS_INSUFFICIENT_RESOURCES",
        0xc000_00a2 => "STATUS_MEDIA_WRITE_PROTECTED",
        0xc000_00a5 => "STATUS_BAD_IMPERSONATION_LEVEL",
        0xc000_00b0 => "STATUS_PIPE_DISCONNECTED",
        0xc000_00b5 => "STATUS_IO_TIMEOUT",
        0xc000_00ba => "STATUS_FILE_IS_A_DIRECTORY",
        0xc000_00bb => "STATUS_NOT_SUPPORTED",
        0xc000_00c3 => "STATUS_INVALID_NETWORK_RESPONSE",
        0xc000_00c9 => "STATUS_NETWORK_NAME_DELETED",
        0xc000_00ca => "STATUS_NETWORK_ACCESS_DENIED",
        0xc000_00cb => "STATUS_BAD_DEVICE_TYPE",
        0xc000_00cc => "STATUS_BAD_NETWORK_NAME",
        0xc000_00d0 => "STATUS_REQUEST_NOT_ACCEPTED",
        0xc000_00d4 => "STATUS_NOT_SAME_DEVICE",
        0xc000_00d5 => "STATUS_FILE_RENAMED",
        0xc000_00d9 => "STATUS_PIPE_EMPTY",
        0xc000_00e2 => "STATUS_OPLOCK_NOT_GRANTED",
        0xc000_00e5 => "STATUS_INTERNAL_ERROR",
        0xc000_0101 => "STATUS_DIRECTORY_NOT_EMPTY",
        0xc000_0103 => "STATUS_NOT_A_DIRECTORY",
        0xc000_011f => "STATUS_TOO_MANY_OPENED_FILES",
        0xc000_0120 => "STATUS_CANCELLED",
        0xc000_0121 => "STATUS_CANNOT_DELETE",
        0xc000_0128 => "STATUS_FILE_CLOSED",
        0xc000_014b => "STATUS_PIPE_BROKEN",
        0xc000_015b => "STATUS_LOGON_TYPE_NOT_GRANTED",
        0xc000_0184 => "STATUS_INVALID_DEVICE_STATE",
        0xc000_018d => "STATUS_TRUSTED_RELATIONSHIP_FAILURE",
        0xc000_0193 => "STATUS_ACCOUNT_EXPIRED",
        0xc000_019c => "STATUS_FS_DRIVER_REQUIRED",
        0xc000_0203 => "STATUS_USER_SESSION_DELETED",
        0xc000_0224 => "STATUS_PASSWORD_MUST_CHANGE",
        0xc000_0225 => "STATUS_NOT_FOUND",
        0xc000_0234 => "STATUS_ACCOUNT_LOCKED_OUT",
        0xc000_0257 => "STATUS_PATH_NOT_COVERED",
        0xc000_0275 => "STATUS_NOT_A_REPARSE_POINT",
        0xc000_035c => "STATUS_NETWORK_SESSION_EXPIRED",
        0xc000_0466 => "STATUS_SERVER_UNAVAILABLE",
        0xc000_0467 => "STATUS_FILE_NOT_AVAILABLE",
        0xc000_0480 => "STATUS_SHARE_UNAVAILABLE",
        _ => "UNKNOWN",
    }
}

fn fuid_string(key: &FileKey) -> String {
    match key {
        FileKey::Compound(m) => format!("compound-{m}"),
        FileKey::V2(g) => format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[9], g[8], g[11], g[10], g[15], g[14],
            g[13], g[12]
        ),
        FileKey::V1(fid) => format!("{fid:04x}"),
    }
}

/// Names from an NTLMSSP AUTHENTICATE message found anywhere in a security blob. Descriptors or
/// flags cut off by the end of the blob are counted in `field_errors` (names empty, Unicode).
fn ntlm_auth(blob: &[u8], max: usize, field_errors: &mut u64) -> Option<Ntlm> {
    let m = rec::find_ntlmssp(blob)?;
    let (_, a) = rec::ntlmssp_authenticate(m).ok()?;
    let flags = a.negotiate_flags.unwrap_or_else(|| {
        *field_errors += 1;
        rec::NTLMSSP_NEGOTIATE_UNICODE
    });
    let unicode = flags & rec::NTLMSSP_NEGOTIATE_UNICODE != 0;
    let mut field = |f: Option<rec::SecBuf>| -> String {
        let bytes = match f {
            Some(f) => f.bytes(m).unwrap_or(&[]),
            None => {
                *field_errors += 1;
                &[]
            }
        };
        if unicode {
            utf16_name(bytes, max)
        } else {
            oem_name(bytes, max)
        }
    };
    Some(Ntlm {
        domain: field(a.domain),
        user: field(a.user),
        host: field(a.workstation),
    })
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// A file of the connection, as [`FileBytes`] names it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FileKey {
    /// An SMB2 FileId.
    V2([u8; 16]),
    /// An SMB1 FID.
    V1(u16),
    /// The file a compound request's CREATE (this MessageId) opens, before its response names
    /// the FileId; a [`FileOp::Rekey`] follows at that response.
    Compound(u64),
}

#[derive(Debug)]
struct FileEntry {
    key: FileKey,
    session_id: u64,
    tree_id: u32,
    name: Option<String>,
    share: Option<String>,
    disposition: Option<&'static str>,
    size: Option<u64>,
    written: u64,
    read: u64,
}

impl FileEntry {
    fn moved_bytes(&self) -> bool {
        self.written > 0 || self.read > 0
    }
}

#[derive(Debug)]
struct Tree {
    session_id: u64,
    tree_id: u32,
    share: String,
}

#[derive(Debug)]
struct EncSession {
    session_id: u64,
    bytes: [u64; 2],
}

#[derive(Debug)]
enum Req {
    /// SMB1 NEGOTIATE: for each offered dialect (in order), its index in `SMB1_DIALECTS`.
    Negotiate1 {
        ids: [u8; SMB1_MAX_DIALECTS],
        n: u8,
    },
    Plain,
    SessionSetup(Option<Ntlm>),
    TreeConnect(Option<String>),
    Create {
        name: Option<String>,
        disposition: Option<&'static str>,
        /// Part of a compound request: related WRITEs after it handed their data over as
        /// `FileKey::Compound(MessageId)`.
        chained: bool,
    },
    /// CLOSE: the file the response is about.
    File(FileKey),
    /// READ: the file and the offset the response's data starts at.
    Read {
        key: FileKey,
        offset: u64,
    },
    /// A related compound WRITE on the chain's file: data length, attributed at the response.
    ChainWrite(u64),
}

#[derive(Debug)]
struct Pending {
    v1: bool,
    key: u64,
    cmd: u16,
    session_id: u64,
    tree_id: u32,
    req: Req,
}

#[derive(Default, Debug, Clone, Copy)]
struct DirState {
    skip: u64,
    resync: bool,
    /// The data of a WRITE request or READ response being skipped, delivered to the caller as it
    /// passes.
    run: Option<DataRun>,
}

/// Where the file data of a message lies within the bytes skipped after the part read.
#[derive(Debug, Clone, Copy)]
struct DataRun {
    key: FileKey,
    read: bool,
    /// File offset of the next data byte.
    offset: u64,
    /// Skipped bytes before the data starts (padding between the fixed part and DataOffset).
    pre: u64,
    /// Data bytes still to come.
    left: u64,
}

/// Bytes of a file as they pass (see [`SmbConn::feed_files`]): the data of a WRITE request
/// (SMB2 WRITE, SMB1 WRITE_ANDX) or of a READ response (SMB2 READ, SMB1 READ_ANDX).
#[derive(Debug, Clone, Copy)]
pub struct FileBytes<'a> {
    /// The file, as [`fuid_of`] writes it in `SmbTx::fuid`.
    pub key: FileKey,
    /// READ response data (server to client); otherwise WRITE request data (client to server).
    pub read: bool,
    /// Offset in the file of `data`'s first byte.
    pub offset: u64,
    pub data: &'a [u8],
}

/// What [`SmbConn::feed_files`] hands its callback, in stream order.
#[derive(Debug, Clone, Copy)]
pub enum FileOp<'a> {
    Bytes(FileBytes<'a>),
    /// The bytes handed over as `from` (a [`FileKey::Compound`]) belong to the file `to`; `None`:
    /// the open failed, forget them.
    Rekey {
        from: FileKey,
        to: Option<FileKey>,
    },
}

/// Where file data lies in the message being parsed (collected while its commands are read,
/// delivered once the message is done).
#[derive(Debug, Clone, Copy)]
enum MsgOp {
    Data {
        key: FileKey,
        read: bool,
        offset: u64,
        /// From the start of the SMB message (after the NBSS header).
        at: usize,
        n: u64,
    },
    Rekey {
        from: FileKey,
        to: Option<FileKey>,
    },
}

/// File operations one message may queue (one per command at most).
const MAX_MSG_OPS: usize = MAX_CHAIN + MAX_ANDX;

/// The `fuid` text of a file, as `SmbTx::fuid` carries it.
pub fn fuid_of(key: &FileKey) -> String {
    fuid_string(key)
}

/// Parsed SMB2 header fields.
#[derive(Clone, Copy, Debug)]
struct H2 {
    cmd: u16,
    status: u32,
    flags: u32,
    msg_id: u64,
    tree_id: u32,
    session_id: u64,
}

impl H2 {
    fn new(h: &Smb2Header<'_>) -> Self {
        H2 {
            cmd: h.command,
            status: h.status,
            flags: h.flags,
            msg_id: h.message_id,
            tree_id: h.tree_id,
            session_id: h.session_id,
        }
    }
}

/// Parsed SMB1 header fields.
#[derive(Clone, Copy, Debug)]
struct H1 {
    status: u32,
    reply: bool,
    unicode: bool,
    key: u64,
    tid: u16,
    uid: u16,
}

impl H1 {
    fn new(h: &Smb1Header<'_>) -> Self {
        H1 {
            // With FLAGS2_NT_STATUS this is an NT status; otherwise a DOS error (class, reserved,
            // code) kept raw: zero is success either way and any other value names as "UNKNOWN".
            status: h.status,
            reply: h.flags & SMB1_FLAGS_REPLY != 0,
            unicode: h.flags2 & SMB1_FLAGS2_UNICODE != 0,
            key: ((h.pid_high as u64) << 32) | ((h.pid_low as u64) << 16) | h.mid as u64,
            tid: h.tid,
            uid: h.uid,
        }
    }
}

enum Scan {
    Found(usize),
    /// A candidate starts here but is not complete yet.
    Partial(usize),
    Nothing,
}

/// SMB parser state for one TCP connection.
#[derive(Debug)]
pub struct SmbConn {
    limits: SmbLimits,
    dirs: [DirState; 2],
    pending: Vec<Pending>,
    files: Vec<FileEntry>,
    trees: Vec<Tree>,
    encrypted: Vec<EncSession>,
    dialect: Option<&'static str>,
    chain_fid: Option<[u8; 16]>,
    /// In a compound request: the file of the previous command (for related operations).
    req_chain: Option<FileKey>,
    /// Offset of the SMB2 command being read from the start of its message.
    cmd_at: usize,
    /// File data of the message being read, and compound files named (bounded by
    /// [`MAX_MSG_OPS`]).
    ops: Vec<MsgOp>,
    stats: SmbStats,
}

fn dir_index(to_server: bool) -> usize {
    if to_server {
        0
    } else {
        1
    }
}

/// Is `h` (at least 10 bytes, starting at an NBSS type byte) a plausible SMB message header?
fn plausible_header(h: &[u8]) -> bool {
    let Ok((_, f)) = rec::frame_start(h) else {
        return false;
    };
    let len = f.nbss.length as usize;
    if f.nbss.kind != 0 || len > MAX_MSG_LEN {
        return false;
    }
    match f.magic {
        Magic::Smb2 => len >= SMB2_HDR && f.structure_size == SMB2_HDR as u16,
        Magic::Transform => len >= TRANSFORM_HDR,
        Magic::Smb1 => len >= SMB1_MIN,
        Magic::Compressed => len >= COMPRESSED_HDR,
        Magic::Other => false,
    }
}

fn scan_header(buf: &[u8]) -> Scan {
    let mut p = 0;
    while p < buf.len() {
        match buf[p..].iter().position(|&b| b == 0) {
            None => return Scan::Nothing,
            Some(z) => p += z,
        }
        let rest = &buf[p..];
        if rest.len() < 10 {
            return Scan::Partial(p);
        }
        if plausible_header(rest) {
            return Scan::Found(p);
        }
        p += 1;
    }
    Scan::Nothing
}

impl SmbConn {
    /// Most bytes of one direction the parser ever needs buffered to make progress.
    pub const MAX_NEED: usize = 64 * 1024;
    /// Most bytes of one message (after the NBSS header) the parser reads.
    const MAX_BODY: usize = Self::MAX_NEED - NBSS_HDR;

    /// A parser for one TCP connection.
    pub fn new(limits: SmbLimits) -> Self {
        SmbConn {
            limits,
            dirs: [DirState::default(); 2],
            pending: Vec::new(),
            files: Vec::new(),
            trees: Vec::new(),
            encrypted: Vec::new(),
            dialect: None,
            chain_fid: None,
            req_chain: None,
            cmd_at: 0,
            ops: Vec::new(),
            stats: SmbStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &SmbStats {
        &self.stats
    }

    /// Bytes of this direction the caller may skip without delivering them (the rest of a message
    /// body the parser does not need).
    pub fn skippable(&self, to_server: bool) -> u64 {
        self.dirs[dir_index(to_server)].skip
    }

    /// The bytes to skip hold file data (WRITE request or READ response): a caller that hashes
    /// files passes them through
    /// [`feed_files`](Self::feed_files) instead of skipping them.
    pub fn file_data_ahead(&self, to_server: bool) -> bool {
        self.dirs[dir_index(to_server)].run.is_some()
    }

    /// The caller skipped `n` (≤ skippable) bytes of this direction.
    pub fn skipped(&mut self, to_server: bool, n: u64) {
        let d = &mut self.dirs[dir_index(to_server)];
        d.skip = d.skip.saturating_sub(n);
        // File data skipped unseen: its file has a gap there.
        d.run = None;
    }

    /// Bytes were lost in this direction: resynchronise on the next plausible SMB header.
    pub fn gap(&mut self, to_server: bool) {
        let d = &mut self.dirs[dir_index(to_server)];
        d.skip = 0;
        d.resync = true;
        d.run = None;
    }

    /// The connection ended: push a CLOSE-shaped tx for every open file that moved bytes and one
    /// `SMB3_ENCRYPTED` tx per encrypted session. Tables are emptied.
    pub fn finish(&mut self, out: &mut Vec<SmbTx>) {
        let files = std::mem::take(&mut self.files);
        for f in files {
            if f.moved_bytes() {
                out.push(self.close_tx(f, None));
            }
        }
        let enc = std::mem::take(&mut self.encrypted);
        for e in enc {
            out.push(self.encrypted_tx(&e));
        }
        self.pending.clear();
        self.trees.clear();
    }

    /// In-order bytes of one direction (`to_server` = client→server). Parses every complete
    /// message present, pushes finished transactions to `out`, and returns how many bytes of
    /// `data` it consumed. The caller drops the consumed bytes, keeps the rest, and calls again with
    /// more appended; what is kept is never more than [`SmbConn::MAX_NEED`] bytes. Body bytes the
    /// parser does not need are consumed as they come; if such a body extends past `data`, all of
    /// `data` is consumed and the rest is reported by [`SmbConn::skippable`].
    pub fn feed(&mut self, to_server: bool, data: &[u8], out: &mut Vec<SmbTx>) -> usize {
        self.feed_files(to_server, data, out, &mut |_| {})
    }

    /// [`feed`](Self::feed), also handing file data to `files` as it passes, by file and file
    /// offset: WRITE requests (SMB2 WRITE, lone or in a compound; SMB1 WRITE_ANDX) and READ
    /// responses (SMB2 READ, SMB1 READ_ANDX, paired with their request's file and offset), so the
    /// caller can hash uploads and downloads without buffering. Data is handed over once per
    /// message, in stream order; nothing is held back.
    pub fn feed_files(
        &mut self,
        to_server: bool,
        data: &[u8],
        out: &mut Vec<SmbTx>,
        files: &mut dyn FnMut(FileOp<'_>),
    ) -> usize {
        let d = dir_index(to_server);
        let mut pos = 0usize;
        loop {
            if self.dirs[d].skip > 0 {
                let avail = (data.len() - pos) as u64;
                let n = self.dirs[d].skip.min(avail);
                if let Some(run) = &mut self.dirs[d].run {
                    let mut chunk = &data[pos..pos + n as usize];
                    let pre = run.pre.min(chunk.len() as u64);
                    run.pre -= pre;
                    chunk = &chunk[pre as usize..];
                    let take = run.left.min(chunk.len() as u64) as usize;
                    if take > 0 {
                        files(FileOp::Bytes(FileBytes {
                            key: run.key,
                            read: run.read,
                            offset: run.offset,
                            data: &chunk[..take],
                        }));
                        run.offset = run.offset.saturating_add(take as u64);
                        run.left -= take as u64;
                    }
                    if run.left == 0 {
                        self.dirs[d].run = None;
                    }
                }
                pos += n as usize;
                self.dirs[d].skip -= n;
                if self.dirs[d].skip > 0 {
                    return pos;
                }
            }
            if self.dirs[d].resync {
                match scan_header(&data[pos..]) {
                    Scan::Found(off) => {
                        pos += off;
                        self.dirs[d].resync = false;
                        self.stats.resyncs += 1;
                    }
                    Scan::Partial(off) => return pos + off,
                    Scan::Nothing => return data.len(),
                }
            }
            let rest = &data[pos..];
            let Ok((after, nbss)) = rec::nbss_header(rest) else {
                return pos;
            };
            match nbss.kind {
                0x00 => {}
                0x81..=0x85 => {
                    // Session request / responses / retarget / keep-alive: 17-bit length.
                    pos += NBSS_HDR;
                    self.dirs[d].skip = nbss.length17() as u64;
                    continue;
                }
                _ => {
                    self.malformed_framing(d);
                    pos += 1;
                    continue;
                }
            }
            let len = nbss.length as usize;
            if len == 0 {
                pos += NBSS_HDR;
                continue;
            }
            if !(4..=MAX_MSG_LEN).contains(&len) {
                self.malformed_framing(d);
                pos += 1;
                continue;
            }
            let Ok((_, magic)) = rec::magic(after) else {
                return pos;
            };
            // The smallest message of each protocol; not an SMB magic: malformed.
            let min_len = match magic {
                Magic::Smb2 => Some(SMB2_HDR),
                Magic::Transform => Some(TRANSFORM_HDR),
                Magic::Smb1 => Some(SMB1_MIN),
                Magic::Compressed => Some(0),
                Magic::Other => None,
            };
            if min_len.is_none_or(|min| len < min) {
                self.malformed_framing(d);
                pos += 1;
                continue;
            }
            let want = match magic {
                Magic::Smb2 => match rec::smb2_header(after) {
                    Ok((_, h)) => Self::smb2_want(&h, len),
                    Err(_) => return pos,
                },
                Magic::Smb1 => match rec::smb1_header(after) {
                    Ok((_, h)) => Self::smb1_want(&h, len),
                    Err(_) => return pos,
                },
                Magic::Transform => TRANSFORM_HDR,
                Magic::Compressed | Magic::Other => 0,
            };
            let want = want.min(len);
            let Some(msg) = after.get(..want) else {
                return pos;
            };
            self.stats.messages += 1;
            match magic {
                Magic::Smb2 => self.smb2_message(msg, len, out),
                Magic::Transform => self.transform(d, msg, len, out),
                Magic::Smb1 => self.smb1_message(msg, len, out),
                Magic::Compressed | Magic::Other => {}
            }
            pos += NBSS_HDR + want;
            self.dirs[d].skip = (len - want) as u64;
            self.dirs[d].run = self.deliver(msg, len, to_server, files);
        }
    }

    /// Hands over the file data of the message just read: what lies in `msg` (the part read)
    /// now; what lies after it (in the `len` bytes on the wire) as the run to deliver while the
    /// rest of the message passes. Only one run can extend past the part read (a compound chain
    /// is read only as far as `msg`); if several claim to, the last is kept. Data that travels
    /// against its command (read data to the server, written data to the client: a stream that
    /// sends responses the wrong way) is no file's and is dropped.
    fn deliver(
        &mut self,
        msg: &[u8],
        len: usize,
        to_server: bool,
        files: &mut dyn FnMut(FileOp<'_>),
    ) -> Option<DataRun> {
        let want = msg.len();
        let mut run = None;
        for op in self.ops.drain(..) {
            let (key, read, offset, at, n) = match op {
                MsgOp::Rekey { from, to } => {
                    files(FileOp::Rekey { from, to });
                    continue;
                }
                MsgOp::Data {
                    key,
                    read,
                    offset,
                    at,
                    n,
                } => (key, read, offset, at, n),
            };
            if read == to_server {
                self.stats.field_errors += 1;
                continue;
            }
            // The data never extends past the message on the wire.
            let end = (at as u64).saturating_add(n).min(len as u64);
            if (at as u64) >= end {
                continue;
            }
            if at < want {
                let in_msg = end.min(want as u64) as usize;
                if let Some(b) = msg.get(at..in_msg) {
                    files(FileOp::Bytes(FileBytes {
                        key,
                        read,
                        offset,
                        data: b,
                    }));
                }
            }
            if end > want as u64 {
                let start = at.max(want);
                run = Some(DataRun {
                    key,
                    read,
                    offset: offset.saturating_add((start - at) as u64),
                    pre: (start - want) as u64,
                    left: end - start as u64,
                });
            }
        }
        run
    }

    /// File data at `at` (from the message start) of `n` bytes: handed over once the message is
    /// read.
    fn queue_data(&mut self, key: FileKey, read: bool, offset: u64, at: usize, n: u64) {
        if n == 0 || self.ops.len() >= MAX_MSG_OPS {
            return;
        }
        self.ops.push(MsgOp::Data {
            key,
            read,
            offset,
            at,
            n,
        });
    }

    fn malformed_framing(&mut self, d: usize) {
        self.stats.malformed += 1;
        self.dirs[d].resync = true;
    }

    /// How much of an SMB2 message (of `len` bytes, first header `h`) to read.
    fn smb2_want(h: &Smb2Header<'_>, len: usize) -> usize {
        let cmd = h.command;
        let next = h.next_command;
        let response = h.flags & SMB2_FLAGS_SERVER_TO_REDIR != 0;
        let full = len.min(Self::MAX_BODY);
        if next != 0 {
            return full;
        }
        match (cmd, response) {
            (SMB2_WRITE, false) => SMB2_HDR + SMB2_WRITE_REQ_FIXED,
            (SMB2_READ, true) => SMB2_HDR + SMB2_READ_RSP_FIXED,
            (SMB2_READ, false) => full,
            (
                SMB2_NEGOTIATE | SMB2_SESSION_SETUP | SMB2_TREE_CONNECT | SMB2_CREATE | SMB2_CLOSE,
                _,
            ) => full,
            _ => SMB2_HDR,
        }
    }

    /// How much of an SMB1 message (of `len` bytes, header `h`) to read.
    fn smb1_want(h: &Smb1Header<'_>, len: usize) -> usize {
        let cmd = h.command;
        let reply = h.flags & SMB1_FLAGS_REPLY != 0;
        let full = len.min(Self::MAX_BODY);
        match (cmd, reply) {
            (SMB1_WRITE_ANDX, false) => SMB1_WRITE_PREFIX,
            (SMB1_READ_ANDX, true) => SMB1_READ_PREFIX,
            (
                SMB1_NEGOTIATE
                | SMB1_SESSION_SETUP_ANDX
                | SMB1_TREE_CONNECT_ANDX
                | SMB1_NT_CREATE_ANDX
                | SMB1_READ_ANDX
                | SMB1_CLOSE
                | SMB1_LOGOFF_ANDX
                | SMB1_LOCKING_ANDX
                | SMB1_OPEN_ANDX,
                _,
            ) => full,
            _ => SMB1_HDR,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Tables
    // -----------------------------------------------------------------------------------------

    fn add_pending(&mut self, p: Pending) {
        if self.limits.max_pending == 0 {
            self.stats.limit_hits += 1;
            return;
        }
        if let Some(i) = self
            .pending
            .iter()
            .position(|q| q.v1 == p.v1 && q.key == p.key && q.cmd == p.cmd)
        {
            self.pending.remove(i);
        }
        if self.pending.len() >= self.limits.max_pending {
            self.pending.remove(0);
            self.stats.limit_hits += 1;
        }
        self.pending.push(p);
    }

    fn take_pending(&mut self, v1: bool, key: u64, cmd: u16) -> Option<Pending> {
        let i = self
            .pending
            .iter()
            .position(|q| q.v1 == v1 && q.key == key && q.cmd == cmd)?;
        Some(self.pending.remove(i))
    }

    fn share_of(&self, session_id: u64, tree_id: u32) -> Option<String> {
        self.trees
            .iter()
            .find(|t| t.session_id == session_id && t.tree_id == tree_id)
            .map(|t| t.share.clone())
    }

    fn add_tree(&mut self, t: Tree) {
        if let Some(i) = self
            .trees
            .iter()
            .position(|x| x.session_id == t.session_id && x.tree_id == t.tree_id)
        {
            self.trees.remove(i);
        }
        if self.limits.max_files == 0 {
            self.stats.limit_hits += 1;
            return;
        }
        if self.trees.len() >= self.limits.max_files {
            self.trees.remove(0);
            self.stats.limit_hits += 1;
        }
        self.trees.push(t);
    }

    /// Insert a file entry (replacing one with the same key), evicting the oldest when full.
    /// A CREATE succeeded: the tx gets the file id and size, the file table an entry.
    fn file_opened(
        &mut self,
        key: FileKey,
        size: Option<u64>,
        tx: &mut SmbTx,
        out: &mut Vec<SmbTx>,
    ) {
        tx.fuid = Some(fuid_string(&key));
        tx.size = size;
        self.add_file(
            FileEntry {
                key,
                session_id: tx.session_id,
                tree_id: tx.tree_id,
                name: tx.filename.clone(),
                share: tx.share.clone(),
                disposition: tx.disposition,
                size,
                written: 0,
                read: 0,
            },
            out,
        );
    }

    fn add_file(&mut self, f: FileEntry, out: &mut Vec<SmbTx>) -> Option<usize> {
        if let Some(i) = self.files.iter().position(|x| x.key == f.key) {
            // The same id again without a CLOSE seen: report what the old one moved.
            let old = self.files.remove(i);
            if old.moved_bytes() {
                out.push(self.close_tx(old, None));
            }
        }
        if self.limits.max_files == 0 {
            self.stats.limit_hits += 1;
            return None;
        }
        if self.files.len() >= self.limits.max_files {
            let old = self.files.remove(0);
            self.stats.limit_hits += 1;
            if old.moved_bytes() {
                out.push(self.close_tx(old, None));
            }
        }
        self.files.push(f);
        Some(self.files.len() - 1)
    }

    /// The entry of `key`, created without a name when the open was not seen.
    fn file_entry(
        &mut self,
        key: FileKey,
        session_id: u64,
        tree_id: u32,
        out: &mut Vec<SmbTx>,
    ) -> Option<&mut FileEntry> {
        let i = match self.files.iter().position(|x| x.key == key) {
            Some(i) => i,
            None => {
                let share = self.share_of(session_id, tree_id);
                self.add_file(
                    FileEntry {
                        key,
                        session_id,
                        tree_id,
                        name: None,
                        share,
                        disposition: None,
                        size: None,
                        written: 0,
                        read: 0,
                    },
                    out,
                )?
            }
        };
        self.files.get_mut(i)
    }

    fn add_written(
        &mut self,
        key: FileKey,
        session_id: u64,
        tree_id: u32,
        n: u64,
        out: &mut Vec<SmbTx>,
    ) {
        if let Some(f) = self.file_entry(key, session_id, tree_id, out) {
            f.written = f.written.saturating_add(n);
        }
    }

    fn add_read(
        &mut self,
        key: FileKey,
        session_id: u64,
        tree_id: u32,
        n: u64,
        out: &mut Vec<SmbTx>,
    ) {
        if let Some(f) = self.file_entry(key, session_id, tree_id, out) {
            f.read = f.read.saturating_add(n);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Transactions
    // -----------------------------------------------------------------------------------------

    fn tx(
        &self,
        command: &'static str,
        status: Option<u32>,
        session_id: u64,
        tree_id: u32,
    ) -> SmbTx {
        SmbTx {
            command,
            status: status.map(nt_status_name),
            status_code: status,
            dialect: self.dialect,
            session_id,
            tree_id,
            ..SmbTx::default()
        }
    }

    fn close_tx(&self, f: FileEntry, status: Option<u32>) -> SmbTx {
        let command = match f.key {
            FileKey::V2(_) | FileKey::Compound(_) => cmd::SMB2_CLOSE,
            FileKey::V1(_) => cmd::SMB1_CLOSE,
        };
        let mut tx = self.tx(command, status, f.session_id, f.tree_id);
        tx.fuid = Some(fuid_string(&f.key));
        tx.share = f.share;
        tx.filename = f.name;
        tx.disposition = f.disposition;
        tx.size = f.size;
        tx.bytes_written = f.written;
        tx.bytes_read = f.read;
        tx
    }

    /// A SESSION_SETUP response: a transaction once the exchange is over, with the NTLMSSP names of
    /// the request (not on STATUS_MORE_PROCESSING_REQUIRED).
    fn session_setup_tx(
        &self,
        command: &'static str,
        status: u32,
        session_id: u64,
        tree_id: u32,
        req: Option<Req>,
    ) -> Option<SmbTx> {
        if status == STATUS_MORE_PROCESSING_REQUIRED {
            return None;
        }
        let mut tx = self.tx(command, Some(status), session_id, tree_id);
        if let Some(Req::SessionSetup(ntlm)) = req {
            tx.ntlmssp = ntlm;
        }
        Some(tx)
    }

    /// A TREE_CONNECT response: the share of the request, remembered for the tree when it succeeded.
    fn tree_connect_tx(
        &mut self,
        command: &'static str,
        status: u32,
        session_id: u64,
        tree_id: u32,
        req: Option<Req>,
    ) -> SmbTx {
        let share = match req {
            Some(Req::TreeConnect(s)) => s,
            _ => None,
        };
        if status == STATUS_SUCCESS {
            if let Some(s) = &share {
                self.add_tree(Tree {
                    session_id,
                    tree_id,
                    share: s.clone(),
                });
            }
        }
        let mut tx = self.tx(command, Some(status), session_id, tree_id);
        tx.share = share;
        tx
    }

    /// A CREATE response: the name and disposition of the request, the tree's share. The caller
    /// adds the file id (`file_opened`).
    fn create_tx(
        &self,
        command: &'static str,
        status: u32,
        session_id: u64,
        tree_id: u32,
        req: Option<Req>,
    ) -> SmbTx {
        let mut tx = self.tx(command, Some(status), session_id, tree_id);
        if let Some(Req::Create {
            name, disposition, ..
        }) = req
        {
            tx.filename = name;
            tx.disposition = disposition;
        }
        tx.share = self.share_of(session_id, tree_id);
        tx
    }

    /// A CLOSE response: the file's transaction with its totals, and the file forgotten; a file
    /// never seen opened gets a bare transaction.
    fn close_response_tx(
        &mut self,
        command: &'static str,
        status: u32,
        session_id: u64,
        tree_id: u32,
        key: Option<FileKey>,
    ) -> SmbTx {
        let entry = key.and_then(|k| {
            let i = self.files.iter().position(|f| f.key == k)?;
            Some(self.files.remove(i))
        });
        match entry {
            Some(f) => self.close_tx(f, Some(status)),
            None => {
                let mut tx = self.tx(command, Some(status), session_id, tree_id);
                tx.fuid = key.as_ref().map(fuid_string);
                tx.share = self.share_of(session_id, tree_id);
                tx
            }
        }
    }

    /// The file an SMB2 request named: a compound's "previous file" is the file the chain opened.
    fn smb2_file(&self, req: Option<Req>) -> Option<FileKey> {
        match req {
            Some(Req::File(k)) | Some(Req::Read { key: k, .. }) => self.smb2_resolve(k),
            _ => None,
        }
    }

    /// A compound's "previous file" (all-ones FileId) is the file the response chain opened.
    fn smb2_resolve(&self, k: FileKey) -> Option<FileKey> {
        match k {
            FileKey::V2(fid) if fid == CHAIN_FID => self.chain_fid.map(FileKey::V2),
            k => Some(k),
        }
    }

    fn encrypted_tx(&self, e: &EncSession) -> SmbTx {
        let mut tx = self.tx(cmd::SMB3_ENCRYPTED, None, e.session_id, 0);
        tx.encrypted_bytes = e.bytes;
        tx
    }

    // -----------------------------------------------------------------------------------------
    // SMB3 transform
    // -----------------------------------------------------------------------------------------

    fn transform(&mut self, d: usize, msg: &[u8], len: usize, out: &mut Vec<SmbTx>) {
        let Ok((_, t)) = rec::transform_header(msg) else {
            self.stats.malformed += 1;
            return;
        };
        let (orig, session_id) = (t.original_message_size, t.session_id);
        let payload = (len - TRANSFORM_HDR) as u64;
        let mut orig = orig as u64;
        if orig > payload {
            // OriginalMessageSize larger than what is carried: count what is on the wire.
            self.stats.malformed += 1;
            orig = payload;
        }
        self.stats.encrypted_bytes[d] += orig;
        if let Some(e) = self
            .encrypted
            .iter_mut()
            .find(|e| e.session_id == session_id)
        {
            e.bytes[d] += orig;
            return;
        }
        if self.limits.max_files == 0 {
            self.stats.limit_hits += 1;
            return;
        }
        if self.encrypted.len() >= self.limits.max_files {
            let old = self.encrypted.remove(0);
            self.stats.limit_hits += 1;
            out.push(self.encrypted_tx(&old));
        }
        let mut bytes = [0u64; 2];
        bytes[d] = orig;
        self.encrypted.push(EncSession { session_id, bytes });
    }

    // -----------------------------------------------------------------------------------------
    // SMB2
    // -----------------------------------------------------------------------------------------

    /// An SMB2 message: `msg` is what was read (a prefix of the `len` bytes on the wire).
    fn smb2_message(&mut self, msg: &[u8], len: usize, out: &mut Vec<SmbTx>) {
        self.chain_fid = None;
        self.req_chain = None;
        let mut off = 0usize;
        for _ in 0..MAX_CHAIN {
            let Some(cmd_buf) = msg.get(off..) else {
                break;
            };
            if cmd_buf.len() < SMB2_HDR {
                // The rest of the chain was not read (message larger than MAX_NEED).
                break;
            }
            let h = match rec::smb2_header(cmd_buf) {
                Ok((_, h)) if h.structure_size == SMB2_HDR as u16 => h,
                _ => {
                    self.stats.malformed += 1;
                    break;
                }
            };
            let next = h.next_command as usize;
            let hdr = H2::new(&h);
            // This command's bytes (read) and its length on the wire.
            let (cmd_slice, wire_len) = if next != 0 {
                (&cmd_buf[..next.min(cmd_buf.len())], next)
            } else {
                (cmd_buf, len - off)
            };
            self.cmd_at = off;
            self.smb2_command(&hdr, cmd_slice, next != 0, wire_len, out);
            if next == 0 {
                break;
            }
            if next < SMB2_HDR || off + next >= len {
                self.stats.malformed += 1;
                break;
            }
            off += next;
        }
    }

    fn smb2_command(
        &mut self,
        h: &H2,
        c: &[u8],
        chained: bool,
        wire_len: usize,
        out: &mut Vec<SmbTx>,
    ) {
        if h.flags & SMB2_FLAGS_SERVER_TO_REDIR == 0 {
            self.smb2_request(h, c, chained, wire_len, out);
        } else {
            self.smb2_response(h, c, wire_len, out);
        }
    }

    /// The file a request names: a related operation's all-ones FileId is the file of the
    /// previous command of the compound request (`None` when no command before it named one).
    fn smb2_req_file(&mut self, fid: [u8; 16], related: bool) -> Option<FileKey> {
        if fid == CHAIN_FID && related {
            return self.req_chain;
        }
        let key = FileKey::V2(fid);
        self.req_chain = Some(key);
        Some(key)
    }

    fn smb2_request(
        &mut self,
        h: &H2,
        c: &[u8],
        chained: bool,
        wire_len: usize,
        out: &mut Vec<SmbTx>,
    ) {
        let max = self.limits.max_name;
        let related = h.flags & SMB2_FLAGS_RELATED_OPERATIONS != 0;
        // The last command of a chain has NextCommand 0 but is part of it when related.
        let chained = chained || related;
        // Offsets in the body count from the start of the header (`c`).
        let body = c.get(SMB2_HDR..).unwrap_or(&[]);
        let req = match h.cmd {
            SMB2_NEGOTIATE => Req::Plain,
            SMB2_SESSION_SETUP => {
                let blob = match rec::session_setup_request(body) {
                    Ok((_, r)) => {
                        rec::buffer(c, r.security_buffer_offset, r.security_buffer_length)
                            .unwrap_or(&[])
                    }
                    Err(_) => {
                        self.stats.field_errors += 1;
                        &[]
                    }
                };
                Req::SessionSetup(ntlm_auth(blob, max, &mut self.stats.field_errors))
            }
            SMB2_TREE_CONNECT => match rec::tree_connect_request(body) {
                Ok((_, r)) => {
                    let plen = r.path_length.unwrap_or_else(|| {
                        self.stats.field_errors += 1;
                        0
                    });
                    Req::TreeConnect(
                        rec::buffer(c, r.path_offset, plen).map(|p| utf16_name(p, max)),
                    )
                }
                Err(_) => {
                    // Offset and length taken as 0: an empty path.
                    self.stats.field_errors += 1;
                    Req::TreeConnect(Some(String::new()))
                }
            },
            SMB2_CREATE => {
                let (disposition, name) = match rec::create_request(body) {
                    Ok((_, r)) => (disposition_name(r.create_disposition), r.name),
                    Err(_) => (None, None),
                };
                let name = match name {
                    // The share root.
                    Some(n) if n.length == 0 => Some(String::new()),
                    Some(n) => rec::buffer(c, n.offset, n.length).map(|p| utf16_name(p, max)),
                    None => {
                        // Name length taken as 0: the share root.
                        self.stats.field_errors += 1;
                        Some(String::new())
                    }
                };
                if chained {
                    // Related commands after it work on the file it opens.
                    self.req_chain = Some(FileKey::Compound(h.msg_id));
                }
                Req::Create {
                    name,
                    disposition,
                    chained,
                }
            }
            SMB2_CLOSE => match rec::close_request(body) {
                Ok((_, r)) => {
                    // Resolved at the response, from the response chain's CREATE.
                    let _ = self.smb2_req_file(*r.file_id, related);
                    Req::File(FileKey::V2(*r.file_id))
                }
                Err(_) => {
                    self.stats.malformed += 1;
                    return;
                }
            },
            SMB2_READ => match rec::read_request(body) {
                Ok((_, r)) => {
                    let _ = self.smb2_req_file(*r.file_id, related);
                    // The data comes with the response: its file (a related FileId is resolved
                    // from the response chain's CREATE) and offset are kept until then.
                    Req::Read {
                        key: FileKey::V2(*r.file_id),
                        offset: r.offset,
                    }
                }
                Err(_) => {
                    self.stats.malformed += 1;
                    return;
                }
            },
            SMB2_WRITE => {
                let Ok((_, w)) = rec::write_request(body) else {
                    self.stats.malformed += 1;
                    return;
                };
                let fid = *w.file_id;
                // The data cannot extend past this command on the wire.
                let room = wire_len.saturating_sub(w.data_offset as usize) as u64;
                let n = (w.length as u64).min(room);
                self.stats.bytes_written += n;
                // The data: in the part read (a compound) or after it (a lone WRITE); never in
                // the header.
                if let Some(key) = self.smb2_req_file(fid, related) {
                    if w.data_offset as usize >= SMB2_HDR {
                        let at = self.cmd_at.saturating_add(w.data_offset as usize);
                        self.queue_data(key, false, w.offset, at, n);
                    } else if n > 0 {
                        self.stats.field_errors += 1;
                    }
                }
                if fid == CHAIN_FID && related {
                    Req::ChainWrite(n)
                } else {
                    self.add_written(FileKey::V2(fid), h.session_id, h.tree_id, n, out);
                    return;
                }
            }
            _ => return,
        };
        self.add_pending(Pending {
            v1: false,
            key: h.msg_id,
            cmd: h.cmd,
            session_id: h.session_id,
            tree_id: h.tree_id,
            req,
        });
    }

    fn smb2_response(&mut self, h: &H2, c: &[u8], wire_len: usize, out: &mut Vec<SmbTx>) {
        if h.flags & SMB2_FLAGS_ASYNC_COMMAND != 0 && h.status == STATUS_PENDING {
            // Interim response: the final one follows.
            return;
        }
        let ok = h.status == STATUS_SUCCESS;
        let pending = self.take_pending(false, h.msg_id, h.cmd);
        // Async responses carry an AsyncId instead of the TreeId.
        let tree_id = match (&pending, h.flags & SMB2_FLAGS_ASYNC_COMMAND != 0) {
            (Some(p), true) => p.tree_id,
            _ => h.tree_id,
        };
        let (p_session, p_tree) = pending
            .as_ref()
            .map(|p| (p.session_id, p.tree_id))
            .unwrap_or((h.session_id, tree_id));
        let req = pending.map(|p| p.req);
        let body = c.get(SMB2_HDR..).unwrap_or(&[]);
        match h.cmd {
            SMB2_NEGOTIATE => {
                if ok {
                    match rec::negotiate_response(body) {
                        Ok((_, r)) => {
                            self.stats.dialect = Some(r.dialect);
                            self.dialect = Some(smb2_dialect_name(r.dialect));
                        }
                        Err(_) => self.stats.field_errors += 1,
                    }
                }
                out.push(self.tx(cmd::SMB2_NEGOTIATE, Some(h.status), h.session_id, tree_id));
            }
            SMB2_SESSION_SETUP => {
                out.extend(self.session_setup_tx(
                    cmd::SMB2_SESSION_SETUP,
                    h.status,
                    h.session_id,
                    tree_id,
                    req,
                ));
            }
            SMB2_TREE_CONNECT => {
                let tx = self.tree_connect_tx(
                    cmd::SMB2_TREE_CONNECT,
                    h.status,
                    h.session_id,
                    tree_id,
                    req,
                );
                out.push(tx);
            }
            SMB2_CREATE => {
                let chained = matches!(req, Some(Req::Create { chained: true, .. }));
                let mut tx = self.create_tx(cmd::SMB2_CREATE, h.status, p_session, p_tree, req);
                let mut opened = None;
                if ok {
                    match rec::create_response(body) {
                        Ok((_, r)) => {
                            let fid = *r.file_id;
                            self.chain_fid = Some(fid);
                            opened = Some(FileKey::V2(fid));
                            self.file_opened(FileKey::V2(fid), Some(r.end_of_file), &mut tx, out);
                        }
                        Err(_) => self.stats.malformed += 1,
                    }
                }
                if chained && self.ops.len() < MAX_MSG_OPS {
                    // Data the compound request wrote before the FileId was known.
                    self.ops.push(MsgOp::Rekey {
                        from: FileKey::Compound(h.msg_id),
                        to: opened,
                    });
                }
                out.push(tx);
            }
            SMB2_CLOSE => {
                let key = self.smb2_file(req);
                let close_size = if ok {
                    match rec::close_response(body) {
                        Ok((_, r)) if r.flags & rec::SMB2_CLOSE_FLAG_POSTQUERY_ATTRIB != 0 => {
                            if r.end_of_file.is_none() {
                                self.stats.field_errors += 1;
                            }
                            r.end_of_file
                        }
                        Ok(_) => None,
                        Err(_) => {
                            // Flags taken as 0: no attributes.
                            self.stats.field_errors += 1;
                            None
                        }
                    }
                } else {
                    None
                };
                let mut tx =
                    self.close_response_tx(cmd::SMB2_CLOSE, h.status, p_session, p_tree, key);
                if close_size.is_some() {
                    tx.size = close_size;
                }
                out.push(tx);
            }
            SMB2_READ => {
                if !(ok || h.status == STATUS_BUFFER_OVERFLOW) {
                    return;
                }
                let Ok((_, r)) = rec::read_response(body) else {
                    self.stats.malformed += 1;
                    return;
                };
                let room = wire_len.saturating_sub(r.data_offset as usize) as u64;
                let n = (r.data_length as u64).min(room);
                self.stats.bytes_read += n;
                if let Some(Req::Read { key, offset }) = req {
                    if let Some(k) = self.smb2_resolve(key) {
                        if r.data_offset as usize >= SMB2_HDR {
                            let at = self.cmd_at.saturating_add(r.data_offset as usize);
                            self.queue_data(k, true, offset, at, n);
                        } else if n > 0 {
                            self.stats.field_errors += 1;
                        }
                        self.add_read(k, p_session, p_tree, n, out);
                    }
                }
            }
            SMB2_WRITE => {
                if let (Some(Req::ChainWrite(n)), Some(fid)) = (req, self.chain_fid) {
                    self.add_written(FileKey::V2(fid), p_session, p_tree, n, out);
                }
            }
            _ => {}
        }
    }

    // -----------------------------------------------------------------------------------------
    // SMB1
    // -----------------------------------------------------------------------------------------

    fn smb1_message(&mut self, msg: &[u8], len: usize, out: &mut Vec<SmbTx>) {
        let Ok((_, hb)) = rec::smb1_header(msg) else {
            self.stats.malformed += 1;
            return;
        };
        let h = H1::new(&hb);
        let mut command = hb.command;
        let mut p = SMB1_HDR;
        for _ in 0..MAX_ANDX {
            let Some(block) = msg.get(p..) else {
                break;
            };
            let Ok((_, wc)) = rec::smb1_word_count(block) else {
                break;
            };
            let words_end = p + 1 + 2 * wc as usize;
            let Ok((after_words, words)) = rec::smb1_words(block) else {
                // Truncated read (large message) or malformed: stop the chain here.
                if words_end > len {
                    self.stats.malformed += 1;
                }
                break;
            };
            let bytes_start = words_end + 2;
            let bytes = match rec::smb1_bytes(after_words) {
                Ok((_, b)) => b,
                Err(_) => {
                    // ByteCount taken as 0.
                    self.stats.field_errors += 1;
                    &[]
                }
            };
            self.smb1_command(&h, command, words, bytes, bytes_start, len, out);
            let is_andx = matches!(
                command,
                SMB1_SESSION_SETUP_ANDX
                    | SMB1_TREE_CONNECT_ANDX
                    | SMB1_NT_CREATE_ANDX
                    | SMB1_WRITE_ANDX
                    | SMB1_READ_ANDX
                    | SMB1_LOGOFF_ANDX
                    | SMB1_LOCKING_ANDX
                    | SMB1_OPEN_ANDX
            );
            if !is_andx {
                break;
            }
            let Ok((_, next)) = rec::andx(words) else {
                break;
            };
            if next.command == 0xff {
                break;
            }
            let next_at = next.offset as usize;
            if next_at <= p {
                self.stats.malformed += 1;
                break;
            }
            command = next.command;
            p = next_at;
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the fields of one parsed SMB1 message, passed apart to avoid a struct per call"
    )]
    fn smb1_command(
        &mut self,
        h: &H1,
        command: u8,
        words: &[u8],
        bytes: &[u8],
        bytes_at: usize,
        wire_len: usize,
        out: &mut Vec<SmbTx>,
    ) {
        if h.reply {
            self.smb1_response(h, command, words, bytes, wire_len, out);
        } else {
            self.smb1_request(h, command, words, bytes, bytes_at, wire_len, out);
        }
    }

    /// An SMB1 string at `bytes[at..]` (`at` before alignment); Unicode strings are aligned to an
    /// even offset from the SMB header.
    fn smb1_string(
        &self,
        h: &H1,
        bytes: &[u8],
        bytes_at: usize,
        at: usize,
        len: Option<usize>,
    ) -> Option<String> {
        let max = self.limits.max_name;
        let mut at = at;
        if h.unicode && (bytes_at + at) % 2 == 1 {
            at += 1;
        }
        let s = bytes.get(at..)?;
        let s = match len {
            Some(l) => s.get(..l.min(s.len()))?,
            None => s,
        };
        Some(if h.unicode {
            utf16_name(s, max)
        } else {
            oem_name(s, max)
        })
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the fields of one parsed SMB1 message, passed apart to avoid a struct per call"
    )]
    fn smb1_request(
        &mut self,
        h: &H1,
        command: u8,
        words: &[u8],
        bytes: &[u8],
        bytes_at: usize,
        wire_len: usize,
        out: &mut Vec<SmbTx>,
    ) {
        let session_id = h.uid as u64;
        let tree_id = h.tid as u32;
        let req = match command {
            SMB1_NEGOTIATE => {
                let mut ids = [SMB1_DIALECT_UNKNOWN; SMB1_MAX_DIALECTS];
                let mut n = 0usize;
                for name in rec::smb1_dialects(bytes) {
                    if n >= SMB1_MAX_DIALECTS {
                        break;
                    }
                    ids[n] = SMB1_DIALECTS
                        .iter()
                        .position(|k| k.as_bytes() == name)
                        .map(|i| i as u8)
                        .unwrap_or(SMB1_DIALECT_UNKNOWN);
                    n += 1;
                }
                Req::Negotiate1 { ids, n: n as u8 }
            }
            SMB1_SESSION_SETUP_ANDX => {
                let ntlm = if words.len() == 24 {
                    let blen = match rec::smb1_session_setup_request(words) {
                        Ok((_, r)) => r.security_blob_length as usize,
                        Err(_) => {
                            self.stats.field_errors += 1;
                            0
                        }
                    };
                    let blob = bytes.get(..blen.min(bytes.len())).unwrap_or(&[]);
                    ntlm_auth(blob, self.limits.max_name, &mut self.stats.field_errors)
                } else {
                    None
                };
                Req::SessionSetup(ntlm)
            }
            SMB1_TREE_CONNECT_ANDX => {
                let pw = match rec::smb1_tree_connect_request(words) {
                    Ok((_, r)) => r.password_length as usize,
                    Err(_) => {
                        self.stats.field_errors += 1;
                        0
                    }
                };
                Req::TreeConnect(self.smb1_string(h, bytes, bytes_at, pw, None))
            }
            SMB1_NT_CREATE_ANDX => {
                let (nlen, disposition) = match rec::smb1_nt_create_request(words) {
                    Ok((_, r)) => (
                        r.name_length as usize,
                        r.create_disposition.and_then(disposition_name),
                    ),
                    Err(_) => {
                        self.stats.field_errors += 1;
                        (0, None)
                    }
                };
                let name = if nlen == 0 {
                    Some(String::new())
                } else {
                    self.smb1_string(h, bytes, bytes_at, 0, Some(nlen))
                };
                Req::Create {
                    name,
                    disposition,
                    chained: false,
                }
            }
            SMB1_WRITE_ANDX => {
                let Ok((_, w)) = rec::smb1_write_request(words) else {
                    self.stats.malformed += 1;
                    return;
                };
                let room = wire_len.saturating_sub(w.data_offset as usize) as u64;
                let n = w.data_length.min(room);
                self.stats.bytes_written += n;
                // DataOffset counts from the SMB1 header, where the message starts.
                if w.data_offset as usize >= SMB1_HDR {
                    self.queue_data(
                        FileKey::V1(w.fid),
                        false,
                        w.offset,
                        w.data_offset as usize,
                        n,
                    );
                } else if n > 0 {
                    self.stats.field_errors += 1;
                }
                self.add_written(FileKey::V1(w.fid), session_id, tree_id, n, out);
                return;
            }
            SMB1_READ_ANDX => match rec::smb1_read_request(words) {
                Ok((_, r)) => Req::Read {
                    key: FileKey::V1(r.fid),
                    offset: r.offset.unwrap_or_else(|| {
                        self.stats.field_errors += 1;
                        0
                    }),
                },
                Err(_) => {
                    self.stats.malformed += 1;
                    return;
                }
            },
            SMB1_CLOSE => match rec::smb1_close_request(words) {
                Ok((_, fid)) => Req::File(FileKey::V1(fid)),
                Err(_) => {
                    self.stats.malformed += 1;
                    return;
                }
            },
            _ => return,
        };
        self.add_pending(Pending {
            v1: true,
            key: h.key,
            cmd: command as u16,
            session_id,
            tree_id,
            req,
        });
    }

    fn smb1_response(
        &mut self,
        h: &H1,
        command: u8,
        words: &[u8],
        _bytes: &[u8],
        wire_len: usize,
        out: &mut Vec<SmbTx>,
    ) {
        let ok = h.status == STATUS_SUCCESS;
        let pending = self.take_pending(true, h.key, command as u16);
        let session_id = h.uid as u64;
        let tree_id = h.tid as u32;
        let (p_session, p_tree) = pending
            .as_ref()
            .map(|p| (p.session_id, p.tree_id))
            .unwrap_or((session_id, tree_id));
        let req = pending.map(|p| p.req);
        match command {
            SMB1_NEGOTIATE => {
                if ok {
                    let idx = rec::smb1_negotiate_response(words).map(|(_, i)| i);
                    if idx.is_err() {
                        self.stats.field_errors += 1;
                    }
                    if let (Ok(idx), Some(Req::Negotiate1 { ids, n })) = (idx, &req) {
                        let idx = idx as usize;
                        if idx < *n as usize {
                            let id = ids.get(idx).copied().unwrap_or(SMB1_DIALECT_UNKNOWN);
                            self.dialect =
                                Some(SMB1_DIALECTS.get(id as usize).copied().unwrap_or("UNKNOWN"));
                        }
                    }
                }
                out.push(self.tx(cmd::SMB1_NEGOTIATE, Some(h.status), session_id, tree_id));
            }
            SMB1_SESSION_SETUP_ANDX => {
                out.extend(self.session_setup_tx(
                    cmd::SMB1_SESSION_SETUP,
                    h.status,
                    session_id,
                    tree_id,
                    req,
                ));
            }
            SMB1_TREE_CONNECT_ANDX => {
                let tx = self.tree_connect_tx(
                    cmd::SMB1_TREE_CONNECT,
                    h.status,
                    session_id,
                    tree_id,
                    req,
                );
                out.push(tx);
            }
            SMB1_NT_CREATE_ANDX => {
                let mut tx = self.create_tx(cmd::SMB1_NT_CREATE, h.status, p_session, p_tree, req);
                if ok {
                    match rec::smb1_nt_create_response(words) {
                        Ok((_, r)) => {
                            self.file_opened(FileKey::V1(r.fid), r.end_of_file, &mut tx, out);
                        }
                        Err(_) => self.stats.malformed += 1,
                    }
                }
                out.push(tx);
            }
            SMB1_READ_ANDX => {
                if !(ok || h.status == STATUS_BUFFER_OVERFLOW) {
                    return;
                }
                let Ok((_, r)) = rec::smb1_read_response(words) else {
                    self.stats.malformed += 1;
                    return;
                };
                let room = wire_len.saturating_sub(r.data_offset as usize) as u64;
                let n = r.data_length.min(room);
                self.stats.bytes_read += n;
                if let Some(Req::Read { key, offset }) = req {
                    if r.data_offset as usize >= SMB1_HDR {
                        self.queue_data(key, true, offset, r.data_offset as usize, n);
                    } else if n > 0 {
                        self.stats.field_errors += 1;
                    }
                    self.add_read(key, p_session, p_tree, n, out);
                }
            }
            SMB1_CLOSE => {
                let key = match req {
                    Some(Req::File(k)) => Some(k),
                    _ => None,
                };
                let tx = self.close_response_tx(cmd::SMB1_CLOSE, h.status, p_session, p_tree, key);
                out.push(tx);
            }
            _ => {}
        }
    }
}
