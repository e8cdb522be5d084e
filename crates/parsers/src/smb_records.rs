//! Wire records of NetBIOS session service, SMB1, SMB2 and SMB3, decoded with `nom`.
//!
//! Pure decoders: each takes the bytes that start at a record and returns the typed record and
//! the bytes after it, or an error when the input is too short or does not carry the record's
//! magic. They never allocate and never panic; records that carry bytes borrow them from the input.
//! The state machine that uses them (which message to read, what to pair, what to report) is in
//! [`crate::smb`].
//!
//! Only the fields the state machine reads are decoded. Body decoders take the body, i.e. the
//! bytes after the 64-byte SMB2 header or the parameter words of an SMB1 command; offsets inside
//! an SMB2 body (`SecurityBufferOffset`, `PathOffset`, `NameOffset`) count from the start of the
//! SMB2 header, as on the wire, and are resolved with [`buffer`].

use nom::bytes::complete::{tag, take, take_till, take_until};
use nom::combinator::opt;
use nom::number::complete::{be_u24, le_u16, le_u32, le_u64, u8 as byte};
use nom::sequence::preceded;
use nom::{IResult, Parser};

/// Result of a record decoder: the bytes after the record, and the record.
pub type Decoded<'a, T> = IResult<&'a [u8], T>;

pub const MAGIC_SMB1: [u8; 4] = [0xff, b'S', b'M', b'B'];
pub const MAGIC_SMB2: [u8; 4] = [0xfe, b'S', b'M', b'B'];
pub const MAGIC_TRANSFORM: [u8; 4] = [0xfd, b'S', b'M', b'B'];
pub const MAGIC_COMPRESSED: [u8; 4] = [0xfc, b'S', b'M', b'B'];

/// Size of the NetBIOS session service header.
pub const NBSS_HDR: usize = 4;
/// Size of the SMB1 header.
pub const SMB1_HDR: usize = 32;
/// Size of the SMB2 header (sync and async forms).
pub const SMB2_HDR: usize = 64;
/// Size of the SMB3 transform header.
pub const TRANSFORM_HDR: usize = 52;
/// Size of the SMB 3.1.1 compression transform header (unchained form).
pub const COMPRESSED_HDR: usize = 16;

// ---------------------------------------------------------------------------------------------
// NetBIOS session service
// ---------------------------------------------------------------------------------------------

/// NetBIOS session service header (RFC 1002 4.3.1; MS-SMB2 2.1 "Direct TCP").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NbssHeader {
    /// Message type: 0x00 session message, 0x81-0x85 session request/responses/keep-alive.
    pub kind: u8,
    /// The 24-bit length that follows the type byte (Direct TCP framing).
    pub length: u32,
}

impl NbssHeader {
    /// The RFC 1002 length of a non-session message: 17 bits (the low bit of the flags byte is
    /// the length extension).
    pub fn length17(&self) -> u32 {
        self.length & 0x1_ffff
    }
}

/// A NetBIOS session service header: a type byte and a 24-bit big-endian length.
pub fn nbss_header(i: &[u8]) -> Decoded<'_, NbssHeader> {
    let (i, kind) = byte(i)?;
    let (i, length) = be_u24(i)?;
    Ok((i, NbssHeader { kind, length }))
}

/// The protocol of an SMB message, from its first four bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Magic {
    /// `\xffSMB`
    Smb1,
    /// `\xfeSMB`
    Smb2,
    /// `\xfdSMB`: SMB3 transform (encrypted).
    Transform,
    /// `\xfcSMB`: SMB 3.1.1 compression transform.
    Compressed,
    /// Anything else.
    Other,
}

/// The four magic bytes of an SMB message (any value; [`Magic::Other`] when not an SMB magic).
pub fn magic(i: &[u8]) -> Decoded<'_, Magic> {
    let (i, m) = take(4usize)(i)?;
    let m = match m {
        _ if m == MAGIC_SMB1 => Magic::Smb1,
        _ if m == MAGIC_SMB2 => Magic::Smb2,
        _ if m == MAGIC_TRANSFORM => Magic::Transform,
        _ if m == MAGIC_COMPRESSED => Magic::Compressed,
        _ => Magic::Other,
    };
    Ok((i, m))
}

/// The start of a framed message, as a resynchronisation scan tests it: the NBSS header, the
/// magic, and the two bytes after it (the SMB2 StructureSize).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameStart {
    pub nbss: NbssHeader,
    pub magic: Magic,
    /// Little-endian u16 after the magic: StructureSize (64) for SMB2.
    pub structure_size: u16,
}

/// The first 10 bytes of a framed SMB message (see [`FrameStart`]).
pub fn frame_start(i: &[u8]) -> Decoded<'_, FrameStart> {
    let (i, nbss) = nbss_header(i)?;
    let (i, magic) = magic(i)?;
    let (i, structure_size) = le_u16(i)?;
    Ok((
        i,
        FrameStart {
            nbss,
            magic,
            structure_size,
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// SMB2 / SMB3 headers
// ---------------------------------------------------------------------------------------------

/// SMB2 packet header (MS-SMB2 2.2.1.1 sync, 2.2.1.2 async), 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Smb2Header<'a> {
    pub structure_size: u16,
    pub credit_charge: u16,
    /// NT status (responses); ChannelSequence/Reserved in requests.
    pub status: u32,
    pub command: u16,
    pub credits: u16,
    pub flags: u32,
    pub next_command: u32,
    pub message_id: u64,
    /// Bytes 32..36: Reserved (sync) or the low half of AsyncId.
    pub reserved: u32,
    /// Bytes 36..40: TreeId (sync) or the high half of AsyncId.
    pub tree_id: u32,
    pub session_id: u64,
    pub signature: &'a [u8],
}

impl Smb2Header<'_> {
    /// AsyncId of an async header (`SMB2_FLAGS_ASYNC_COMMAND`): bytes 32..40.
    pub fn async_id(&self) -> u64 {
        ((self.tree_id as u64) << 32) | self.reserved as u64
    }
}

/// An SMB2 header (with its `\xfeSMB` magic).
pub fn smb2_header(i: &[u8]) -> Decoded<'_, Smb2Header<'_>> {
    let (i, _) = tag(&MAGIC_SMB2[..])(i)?;
    let (i, structure_size) = le_u16(i)?;
    let (i, credit_charge) = le_u16(i)?;
    let (i, status) = le_u32(i)?;
    let (i, command) = le_u16(i)?;
    let (i, credits) = le_u16(i)?;
    let (i, flags) = le_u32(i)?;
    let (i, next_command) = le_u32(i)?;
    let (i, message_id) = le_u64(i)?;
    let (i, reserved) = le_u32(i)?;
    let (i, tree_id) = le_u32(i)?;
    let (i, session_id) = le_u64(i)?;
    let (i, signature) = take(16usize)(i)?;
    Ok((
        i,
        Smb2Header {
            structure_size,
            credit_charge,
            status,
            command,
            credits,
            flags,
            next_command,
            message_id,
            reserved,
            tree_id,
            session_id,
            signature,
        },
    ))
}

/// SMB3 TRANSFORM_HEADER (MS-SMB2 2.2.41), 52 bytes; the encrypted message follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransformHeader<'a> {
    pub signature: &'a [u8],
    pub nonce: &'a [u8],
    pub original_message_size: u32,
    /// Flags (3.1.1) or EncryptionAlgorithm (3.0).
    pub flags: u16,
    pub session_id: u64,
}

/// An SMB3 transform header (with its `\xfdSMB` magic).
pub fn transform_header(i: &[u8]) -> Decoded<'_, TransformHeader<'_>> {
    let (i, _) = tag(&MAGIC_TRANSFORM[..])(i)?;
    let (i, signature) = take(16usize)(i)?;
    let (i, nonce) = take(16usize)(i)?;
    let (i, original_message_size) = le_u32(i)?;
    let (i, _reserved) = le_u16(i)?;
    let (i, flags) = le_u16(i)?;
    let (i, session_id) = le_u64(i)?;
    Ok((
        i,
        TransformHeader {
            signature,
            nonce,
            original_message_size,
            flags,
            session_id,
        },
    ))
}

/// A buffer an SMB2 body points at: `offset` counts from the start of the SMB2 header `msg`.
/// `None` when it does not lie inside `msg`.
pub fn buffer(msg: &[u8], offset: u16, length: u16) -> Option<&[u8]> {
    bytes_at(msg, offset as usize, length as usize)
}

/// `length` bytes at `offset` of `m`, `None` when they do not lie inside it.
fn bytes_at(m: &[u8], offset: usize, length: usize) -> Option<&[u8]> {
    let (_, b) = preceded(take::<_, _, nom::error::Error<&[u8]>>(offset), take(length))
        .parse(m)
        .ok()?;
    Some(b)
}

// ---------------------------------------------------------------------------------------------
// SMB2 bodies
// ---------------------------------------------------------------------------------------------

/// NEGOTIATE response (MS-SMB2 2.2.4), up to DialectRevision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NegotiateResponse {
    pub security_mode: u16,
    pub dialect: u16,
}

/// The body of an SMB2 NEGOTIATE response, as far as the dialect.
pub fn negotiate_response(i: &[u8]) -> Decoded<'_, NegotiateResponse> {
    let (i, _structure_size) = le_u16(i)?;
    let (i, security_mode) = le_u16(i)?;
    let (i, dialect) = le_u16(i)?;
    Ok((
        i,
        NegotiateResponse {
            security_mode,
            dialect,
        },
    ))
}

/// SESSION_SETUP request (MS-SMB2 2.2.5), up to the security buffer fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSetupRequest {
    pub flags: u8,
    pub security_mode: u8,
    pub capabilities: u32,
    /// From the start of the SMB2 header.
    pub security_buffer_offset: u16,
    pub security_buffer_length: u16,
}

/// The body of an SMB2 SESSION_SETUP request, as far as the security buffer fields.
pub fn session_setup_request(i: &[u8]) -> Decoded<'_, SessionSetupRequest> {
    let (i, _structure_size) = le_u16(i)?;
    let (i, flags) = byte(i)?;
    let (i, security_mode) = byte(i)?;
    let (i, capabilities) = le_u32(i)?;
    let (i, _channel) = le_u32(i)?;
    let (i, security_buffer_offset) = le_u16(i)?;
    let (i, security_buffer_length) = le_u16(i)?;
    Ok((
        i,
        SessionSetupRequest {
            flags,
            security_mode,
            capabilities,
            security_buffer_offset,
            security_buffer_length,
        },
    ))
}

/// TREE_CONNECT request (MS-SMB2 2.2.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeConnectRequest {
    pub flags: u16,
    /// From the start of the SMB2 header.
    pub path_offset: u16,
    /// `None` when the body ends after PathOffset.
    pub path_length: Option<u16>,
}

/// The body of an SMB2 TREE_CONNECT request: the share path's offset and length.
pub fn tree_connect_request(i: &[u8]) -> Decoded<'_, TreeConnectRequest> {
    let (i, _structure_size) = le_u16(i)?;
    let (i, flags) = le_u16(i)?;
    let (i, path_offset) = le_u16(i)?;
    let (i, path_length) = opt(le_u16).parse(i)?;
    Ok((
        i,
        TreeConnectRequest {
            flags,
            path_offset,
            path_length,
        },
    ))
}

/// The name fields of an SMB2 CREATE request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameField {
    /// From the start of the SMB2 header.
    pub offset: u16,
    pub length: u16,
}

/// CREATE request (MS-SMB2 2.2.13), up to NameLength.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateRequest {
    pub desired_access: u32,
    pub create_disposition: u32,
    /// `None` when the body ends before NameOffset/NameLength.
    pub name: Option<NameField>,
}

/// The body of an SMB2 CREATE request: disposition and the name's offset and length.
pub fn create_request(i: &[u8]) -> Decoded<'_, CreateRequest> {
    // StructureSize, SecurityFlags, RequestedOplockLevel, ImpersonationLevel, SmbCreateFlags,
    // Reserved.
    let (i, _) = take(24usize)(i)?;
    let (i, desired_access) = le_u32(i)?;
    let (i, _file_attributes) = le_u32(i)?;
    let (i, _share_access) = le_u32(i)?;
    let (i, create_disposition) = le_u32(i)?;
    // CreateOptions, then the name fields.
    let (i, name) = opt(preceded(take(4usize), (le_u16, le_u16))).parse(i)?;
    Ok((
        i,
        CreateRequest {
            desired_access,
            create_disposition,
            name: name.map(|(offset, length)| NameField { offset, length }),
        },
    ))
}

/// CREATE response (MS-SMB2 2.2.14), up to FileId.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateResponse<'a> {
    pub create_action: u32,
    pub allocation_size: u64,
    pub end_of_file: u64,
    pub file_attributes: u32,
    pub file_id: &'a [u8; 16],
}

/// A 16-byte SMB2 FileId.
pub fn file_id(i: &[u8]) -> Decoded<'_, &[u8; 16]> {
    let (i, f) = take(16usize)(i)?;
    // `take(16)` returned exactly 16 bytes.
    let f = <&[u8; 16]>::try_from(f)
        .map_err(|_| nom::Err::Error(nom::error::Error::new(i, nom::error::ErrorKind::Eof)))?;
    Ok((i, f))
}

/// The body of an SMB2 CREATE response, as far as the FileId.
pub fn create_response(i: &[u8]) -> Decoded<'_, CreateResponse<'_>> {
    let (i, _structure_size) = le_u16(i)?;
    let (i, _oplock_and_flags) = le_u16(i)?;
    let (i, create_action) = le_u32(i)?;
    // CreationTime, LastAccessTime, LastWriteTime, ChangeTime.
    let (i, _) = take(32usize)(i)?;
    let (i, allocation_size) = le_u64(i)?;
    let (i, end_of_file) = le_u64(i)?;
    let (i, file_attributes) = le_u32(i)?;
    let (i, _reserved2) = le_u32(i)?;
    let (i, file_id) = file_id(i)?;
    Ok((
        i,
        CreateResponse {
            create_action,
            allocation_size,
            end_of_file,
            file_attributes,
            file_id,
        },
    ))
}

/// CLOSE request (MS-SMB2 2.2.15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseRequest<'a> {
    pub flags: u16,
    pub file_id: &'a [u8; 16],
}

/// The body of an SMB2 CLOSE request.
pub fn close_request(i: &[u8]) -> Decoded<'_, CloseRequest<'_>> {
    let (i, _structure_size) = le_u16(i)?;
    let (i, flags) = le_u16(i)?;
    let (i, _reserved) = le_u32(i)?;
    let (i, file_id) = file_id(i)?;
    Ok((i, CloseRequest { flags, file_id }))
}

/// `SMB2_CLOSE_FLAG_POSTQUERY_ATTRIB`: the CLOSE response carries the file's attributes.
pub const SMB2_CLOSE_FLAG_POSTQUERY_ATTRIB: u16 = 0x0001;

/// CLOSE response (MS-SMB2 2.2.16), up to EndofFile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseResponse {
    pub flags: u16,
    /// `None` when the body ends before EndofFile.
    pub end_of_file: Option<u64>,
}

/// The body of an SMB2 CLOSE response: its flags, and the end-of-file when present.
pub fn close_response(i: &[u8]) -> Decoded<'_, CloseResponse> {
    let (i, _structure_size) = le_u16(i)?;
    let (i, flags) = le_u16(i)?;
    // Reserved, four times, AllocationSize.
    let (i, end_of_file) = opt(preceded(take(44usize), le_u64)).parse(i)?;
    Ok((i, CloseResponse { flags, end_of_file }))
}

/// READ request (MS-SMB2 2.2.19), up to FileId.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadRequest<'a> {
    pub length: u32,
    pub offset: u64,
    pub file_id: &'a [u8; 16],
}

/// The fixed part READ and WRITE requests share: StructureSize, a 16-bit field (Padding and
/// Flags of a READ, DataOffset of a WRITE), Length, Offset, FileId.
type IoRequest<'a> = (u16, u32, u64, &'a [u8; 16]);

fn io_request(i: &[u8]) -> Decoded<'_, IoRequest<'_>> {
    let (i, _structure_size) = le_u16(i)?;
    (le_u16, le_u32, le_u64, file_id).parse(i)
}

/// The body of an SMB2 READ request, as far as the FileId.
pub fn read_request(i: &[u8]) -> Decoded<'_, ReadRequest<'_>> {
    let (i, (_padding_flags, length, offset, file_id)) = io_request(i)?;
    Ok((
        i,
        ReadRequest {
            length,
            offset,
            file_id,
        },
    ))
}

/// READ response (MS-SMB2 2.2.20), up to DataLength.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadResponse {
    /// From the start of the SMB2 header.
    pub data_offset: u8,
    pub data_length: u32,
}

/// The body of an SMB2 READ response, as far as DataLength.
pub fn read_response(i: &[u8]) -> Decoded<'_, ReadResponse> {
    let (i, _structure_size) = le_u16(i)?;
    let (i, data_offset) = byte(i)?;
    let (i, _reserved) = byte(i)?;
    let (i, data_length) = le_u32(i)?;
    Ok((
        i,
        ReadResponse {
            data_offset,
            data_length,
        },
    ))
}

/// WRITE request (MS-SMB2 2.2.21), up to FileId.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteRequest<'a> {
    /// From the start of the SMB2 header.
    pub data_offset: u16,
    pub length: u32,
    pub offset: u64,
    pub file_id: &'a [u8; 16],
}

/// The body of an SMB2 WRITE request, as far as the FileId.
pub fn write_request(i: &[u8]) -> Decoded<'_, WriteRequest<'_>> {
    let (i, (data_offset, length, offset, file_id)) = io_request(i)?;
    Ok((
        i,
        WriteRequest {
            data_offset,
            length,
            offset,
            file_id,
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// NTLMSSP
// ---------------------------------------------------------------------------------------------

/// The NTLMSSP signature.
pub const NTLMSSP_SIGNATURE: &[u8] = b"NTLMSSP\0";

/// The bytes of a security blob from the first NTLMSSP signature on (SPNEGO wraps the message).
pub fn find_ntlmssp(blob: &[u8]) -> Option<&[u8]> {
    let (m, _) = take_until::<_, _, nom::error::Error<&[u8]>>(NTLMSSP_SIGNATURE)(blob).ok()?;
    Some(m)
}

/// An NTLMSSP length/offset field: `Len`, `MaxLen`, `BufferOffset` (MS-NLMP 2.2.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecBuf {
    pub length: u16,
    /// From the start of the NTLMSSP message.
    pub offset: u32,
}

impl SecBuf {
    /// The bytes the field points at in the message `m`, `None` when outside it.
    pub fn bytes<'a>(&self, m: &'a [u8]) -> Option<&'a [u8]> {
        bytes_at(m, self.offset as usize, self.length as usize)
    }
}

fn sec_buf(i: &[u8]) -> Decoded<'_, SecBuf> {
    let (i, length) = le_u16(i)?;
    let (i, _max) = le_u16(i)?;
    let (i, offset) = le_u32(i)?;
    Ok((i, SecBuf { length, offset }))
}

/// NTLMSSP_NEGOTIATE_UNICODE.
pub const NTLMSSP_NEGOTIATE_UNICODE: u32 = 0x0000_0001;

/// NTLMSSP AUTHENTICATE message (MS-NLMP 2.2.1.3), up to NegotiateFlags. Fields past the end of
/// a cut message are `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NtlmAuthenticate {
    pub domain: Option<SecBuf>,
    pub user: Option<SecBuf>,
    pub workstation: Option<SecBuf>,
    pub negotiate_flags: Option<u32>,
}

/// An NTLMSSP message of type 3 (AUTHENTICATE) at the start of `m` (signature included); an
/// error for any other message type. A message cut short keeps the fields that are whole.
pub fn ntlmssp_authenticate(m: &[u8]) -> Decoded<'_, NtlmAuthenticate> {
    let (i, _) = tag(NTLMSSP_SIGNATURE)(m)?;
    let (i, _) = tag(&3u32.to_le_bytes()[..])(i)?;
    let mut r = NtlmAuthenticate {
        domain: None,
        user: None,
        workstation: None,
        negotiate_flags: None,
    };
    // LmChallengeResponseFields, NtChallengeResponseFields.
    let Ok((i, _)) = take::<_, _, nom::error::Error<&[u8]>>(16usize)(i) else {
        return Ok((i, r));
    };
    let mut fields = [None; 3];
    let mut i = i;
    for slot in &mut fields {
        let Ok((rest, f)) = sec_buf(i) else {
            break;
        };
        *slot = Some(f);
        i = rest;
    }
    [r.domain, r.user, r.workstation] = fields;
    if r.workstation.is_none() {
        return Ok((i, r));
    }
    // EncryptedRandomSessionKeyFields.
    let (i, negotiate_flags) = opt(preceded(take(8usize), le_u32)).parse(i)?;
    r.negotiate_flags = negotiate_flags;
    Ok((i, r))
}

// ---------------------------------------------------------------------------------------------
// SMB1
// ---------------------------------------------------------------------------------------------

/// SMB1 header (MS-CIFS 2.2.3.1), 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Smb1Header<'a> {
    pub command: u8,
    /// NT status (FLAGS2_NT_STATUS), else a DOS error class/code, raw.
    pub status: u32,
    pub flags: u8,
    pub flags2: u16,
    pub pid_high: u16,
    pub security_features: &'a [u8],
    pub tid: u16,
    pub pid_low: u16,
    pub uid: u16,
    pub mid: u16,
}

/// An SMB1 header (with its `\xffSMB` magic).
pub fn smb1_header(i: &[u8]) -> Decoded<'_, Smb1Header<'_>> {
    let (i, _) = tag(&MAGIC_SMB1[..])(i)?;
    let (i, command) = byte(i)?;
    let (i, status) = le_u32(i)?;
    let (i, flags) = byte(i)?;
    let (i, flags2) = le_u16(i)?;
    let (i, pid_high) = le_u16(i)?;
    let (i, security_features) = take(8usize)(i)?;
    let (i, _reserved) = le_u16(i)?;
    let (i, tid) = le_u16(i)?;
    let (i, pid_low) = le_u16(i)?;
    let (i, uid) = le_u16(i)?;
    let (i, mid) = le_u16(i)?;
    Ok((
        i,
        Smb1Header {
            command,
            status,
            flags,
            flags2,
            pid_high,
            security_features,
            tid,
            pid_low,
            uid,
            mid,
        },
    ))
}

/// The WordCount that starts an SMB1 command block.
pub fn smb1_word_count(i: &[u8]) -> Decoded<'_, u8> {
    byte(i)
}

/// The parameter words of an SMB1 command block: WordCount, then `2 * WordCount` bytes.
pub fn smb1_words(i: &[u8]) -> Decoded<'_, &[u8]> {
    let (i, wc) = smb1_word_count(i)?;
    take(2 * wc as usize)(i)
}

/// The data bytes of an SMB1 command block: ByteCount, then the bytes. A message read only in
/// part keeps what is there (ByteCount may point past the input).
pub fn smb1_bytes(i: &[u8]) -> Decoded<'_, &[u8]> {
    let (i, bc) = le_u16(i)?;
    take((bc as usize).min(i.len()))(i)
}

/// The AndX header that starts the words of an AndX command (MS-CIFS 2.2.3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AndX {
    /// 0xff: no further command.
    pub command: u8,
    /// From the start of the SMB1 header.
    pub offset: u16,
}

/// The AndX header at the start of the parameter words.
pub fn andx(words: &[u8]) -> Decoded<'_, AndX> {
    let (i, command) = byte(words)?;
    let (i, _reserved) = byte(i)?;
    let (i, offset) = le_u16(i)?;
    Ok((i, AndX { command, offset }))
}

/// NEGOTIATE request data (MS-CIFS 2.2.4.52.1): the offered dialect strings, in order.
pub fn smb1_dialects(bytes: &[u8]) -> Smb1Dialects<'_> {
    Smb1Dialects { rest: Some(bytes) }
}

/// Iterator over the dialect names of an SMB1 NEGOTIATE request (each is `0x02` and a
/// NUL-terminated string; entries without the `0x02` are skipped).
#[derive(Clone, Debug)]
pub struct Smb1Dialects<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for Smb1Dialects<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let i = self.rest?;
            let (after, entry) = take_till::<_, _, nom::error::Error<&[u8]>>(|b| b == 0)(i).ok()?;
            self.rest = match tag::<_, _, nom::error::Error<&[u8]>>(&b"\0"[..])(after) {
                Ok((r, _)) => Some(r),
                Err(_) => None,
            };
            if let Ok((name, _)) = tag::<_, _, nom::error::Error<&[u8]>>(&b"\x02"[..])(entry) {
                return Some(name);
            }
        }
    }
}

/// NEGOTIATE response words (MS-CIFS 2.2.4.52.2): the chosen dialect's index.
pub fn smb1_negotiate_response(words: &[u8]) -> Decoded<'_, u16> {
    le_u16(words)
}

/// SESSION_SETUP_ANDX request words, extended security form (MS-SMB 2.2.4.6.1, WordCount 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSetupAndxRequest {
    pub max_buffer_size: u16,
    pub security_blob_length: u16,
    pub capabilities: u32,
}

/// The words of an extended-security SESSION_SETUP_ANDX request (24 bytes).
pub fn smb1_session_setup_request(words: &[u8]) -> Decoded<'_, SessionSetupAndxRequest> {
    let (i, _andx) = andx(words)?;
    let (i, max_buffer_size) = le_u16(i)?;
    let (i, _max_mpx) = le_u16(i)?;
    let (i, _vc) = le_u16(i)?;
    let (i, _session_key) = le_u32(i)?;
    let (i, security_blob_length) = le_u16(i)?;
    let (i, _reserved) = le_u32(i)?;
    let (i, capabilities) = le_u32(i)?;
    Ok((
        i,
        SessionSetupAndxRequest {
            max_buffer_size,
            security_blob_length,
            capabilities,
        },
    ))
}

/// TREE_CONNECT_ANDX request words (MS-CIFS 2.2.4.55.1), up to PasswordLength.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeConnectAndxRequest {
    pub flags: u16,
    pub password_length: u16,
}

/// The words of a TREE_CONNECT_ANDX request, as far as PasswordLength.
pub fn smb1_tree_connect_request(words: &[u8]) -> Decoded<'_, TreeConnectAndxRequest> {
    let (i, _andx) = andx(words)?;
    let (i, flags) = le_u16(i)?;
    let (i, password_length) = le_u16(i)?;
    Ok((
        i,
        TreeConnectAndxRequest {
            flags,
            password_length,
        },
    ))
}

/// NT_CREATE_ANDX request words (MS-CIFS 2.2.4.64.1), up to CreateDisposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NtCreateAndxRequest {
    pub name_length: u16,
    /// `None` when the words end before CreateDisposition.
    pub create_disposition: Option<u32>,
}

/// The words of an NT_CREATE_ANDX request: NameLength and CreateDisposition.
pub fn smb1_nt_create_request(words: &[u8]) -> Decoded<'_, NtCreateAndxRequest> {
    let (i, _andx) = andx(words)?;
    let (i, _reserved) = byte(i)?;
    let (i, name_length) = le_u16(i)?;
    // Flags, RootDirectoryFID, DesiredAccess, AllocationSize, ExtFileAttributes, ShareAccess.
    let (i, create_disposition) = opt(preceded(take(28usize), le_u32)).parse(i)?;
    Ok((
        i,
        NtCreateAndxRequest {
            name_length,
            create_disposition,
        },
    ))
}

/// NT_CREATE_ANDX response words (MS-CIFS 2.2.4.64.2), up to EndOfFile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NtCreateAndxResponse {
    pub fid: u16,
    /// `None` when the words end before EndOfFile.
    pub end_of_file: Option<u64>,
}

/// The words of an NT_CREATE_ANDX response: the FID and the end-of-file.
pub fn smb1_nt_create_response(words: &[u8]) -> Decoded<'_, NtCreateAndxResponse> {
    let (i, _andx) = andx(words)?;
    let (i, _oplock) = byte(i)?;
    let (i, fid) = le_u16(i)?;
    // CreateDisposition, four times, ExtFileAttributes, AllocationSize.
    let (i, end_of_file) = opt(preceded(take(48usize), le_u64)).parse(i)?;
    Ok((i, NtCreateAndxResponse { fid, end_of_file }))
}

/// WRITE_ANDX request words (MS-CIFS 2.2.4.43.1, WordCount 12 or 14), up to OffsetHigh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteAndxRequest {
    pub fid: u16,
    /// Offset with OffsetHigh (WordCount 14; taken as 0 when the words end before it).
    pub offset: u64,
    /// DataLength with DataLengthHigh.
    pub data_length: u64,
    /// From the start of the SMB1 header.
    pub data_offset: u16,
}

/// A data length written as two 16-bit halves (WRITE_ANDX, READ_ANDX).
fn halves(high: u16, low: u16) -> u64 {
    ((high as u64) << 16) | low as u64
}

/// The words of a WRITE_ANDX request, as far as DataOffset.
pub fn smb1_write_request(words: &[u8]) -> Decoded<'_, WriteAndxRequest> {
    let (i, _andx) = andx(words)?;
    let (i, fid) = le_u16(i)?;
    let (i, offset) = le_u32(i)?;
    let (i, _timeout) = le_u32(i)?;
    let (i, _write_mode) = le_u16(i)?;
    let (i, _remaining) = le_u16(i)?;
    let (i, (high, low, data_offset)) = (le_u16, le_u16, le_u16).parse(i)?;
    let (i, offset_high) = opt(le_u32).parse(i)?;
    Ok((
        i,
        WriteAndxRequest {
            fid,
            offset: ((offset_high.unwrap_or(0) as u64) << 32) | offset as u64,
            data_length: halves(high, low),
            data_offset,
        },
    ))
}

/// READ_ANDX request words (MS-CIFS 2.2.4.42.1, WordCount 10 or 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadAndxRequest {
    pub fid: u16,
    /// Offset with OffsetHigh (WordCount 12); `None` when the words end before Offset.
    pub offset: Option<u64>,
}

/// The words of a READ_ANDX request: the FID and, when present, the file offset (its high 32
/// bits taken as 0 when the words end before OffsetHigh).
pub fn smb1_read_request(words: &[u8]) -> Decoded<'_, ReadAndxRequest> {
    let (i, _andx) = andx(words)?;
    let (i, fid) = le_u16(i)?;
    let (i, low) = opt(le_u32).parse(i)?;
    // MaxCountOfBytesToReturn, MinCountOfBytesToReturn, Timeout, Remaining, then OffsetHigh.
    let (i, high) = opt(preceded(take(10usize), le_u32)).parse(i)?;
    let offset = low.map(|l| ((high.unwrap_or(0) as u64) << 32) | l as u64);
    Ok((i, ReadAndxRequest { fid, offset }))
}

/// READ_ANDX response words (MS-CIFS 2.2.4.42.2), up to DataLengthHigh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadAndxResponse {
    pub available: u16,
    /// DataLength with DataLengthHigh.
    pub data_length: u64,
    /// From the start of the SMB1 header.
    pub data_offset: u16,
}

/// The words of a READ_ANDX response, as far as DataLengthHigh.
pub fn smb1_read_response(words: &[u8]) -> Decoded<'_, ReadAndxResponse> {
    let (i, _andx) = andx(words)?;
    let (i, available) = le_u16(i)?;
    let (i, _compaction) = le_u16(i)?;
    let (i, _reserved) = le_u16(i)?;
    let (i, (low, data_offset, high)) = (le_u16, le_u16, le_u16).parse(i)?;
    Ok((
        i,
        ReadAndxResponse {
            available,
            data_length: halves(high, low),
            data_offset,
        },
    ))
}

/// The words of a CLOSE request (MS-CIFS 2.2.4.5.1): the FID.
pub fn smb1_close_request(words: &[u8]) -> Decoded<'_, u16> {
    le_u16(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every decoder, on every prefix of `whole`: no panic, and an error below `min` bytes.
    fn cut_at_every_length(whole: &[u8], min: usize, decode: impl Fn(&[u8]) -> bool) {
        for n in 0..=whole.len() {
            let ok = decode(&whole[..n]);
            assert_eq!(ok, n >= min, "length {n} of {}", whole.len());
        }
    }

    fn smb2_hdr(cmd: u16, flags: u32, next: u32) -> Vec<u8> {
        let mut h = MAGIC_SMB2.to_vec();
        h.extend_from_slice(&64u16.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes()); // credit charge
        h.extend_from_slice(&0xc000_0022u32.to_le_bytes());
        h.extend_from_slice(&cmd.to_le_bytes());
        h.extend_from_slice(&31u16.to_le_bytes());
        h.extend_from_slice(&flags.to_le_bytes());
        h.extend_from_slice(&next.to_le_bytes());
        h.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        h.extend_from_slice(&0xaaaa_aaaau32.to_le_bytes());
        h.extend_from_slice(&0x0000_0007u32.to_le_bytes());
        h.extend_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        h.extend_from_slice(&[0x5a; 16]);
        h
    }

    #[test]
    fn nbss_and_magic() {
        let (r, h) = nbss_header(b"\x00\x01\x02\x03rest").unwrap();
        assert_eq!(
            h,
            NbssHeader {
                kind: 0,
                length: 0x010203
            }
        );
        assert_eq!(r, b"rest");
        assert_eq!(h.length17(), 0x10203);
        let (_, k) = nbss_header(b"\x85\xff\xff\xff").unwrap();
        assert_eq!((k.kind, k.length17()), (0x85, 0x1ffff));
        cut_at_every_length(b"\x00\x00\x00\x44", 4, |b| nbss_header(b).is_ok());
        assert_eq!(magic(b"\xfeSMBx").unwrap().1, Magic::Smb2);
        assert_eq!(magic(b"\xffSMB").unwrap().1, Magic::Smb1);
        assert_eq!(magic(b"\xfdSMB").unwrap().1, Magic::Transform);
        assert_eq!(magic(b"\xfcSMB").unwrap().1, Magic::Compressed);
        assert_eq!(magic(b"\xfbSMB").unwrap().1, Magic::Other);
        assert!(magic(b"\xfeSM").is_err());
        let mut f = b"\x00\x00\x00\x48".to_vec();
        f.extend_from_slice(&smb2_hdr(5, 0, 0));
        let (_, s) = frame_start(&f).unwrap();
        assert_eq!(
            (s.nbss.length, s.magic, s.structure_size),
            (0x48, Magic::Smb2, 64)
        );
        cut_at_every_length(&f[..10], 10, |b| frame_start(b).is_ok());
    }

    #[test]
    fn smb2_headers() {
        let h = smb2_hdr(0x0009, 0x0000_0003, 0x78);
        let (r, d) = smb2_header(&h).unwrap();
        assert!(r.is_empty());
        assert_eq!(d.structure_size, 64);
        assert_eq!(d.status, 0xc000_0022);
        assert_eq!(d.command, 9);
        assert_eq!(d.credits, 31);
        assert_eq!(d.flags, 3);
        assert_eq!(d.next_command, 0x78);
        assert_eq!(d.message_id, 0x0102_0304_0506_0708);
        assert_eq!(d.tree_id, 7);
        assert_eq!(d.async_id(), 0x0000_0007_aaaa_aaaa);
        assert_eq!(d.session_id, 0x1122_3344_5566_7788);
        assert_eq!(d.signature, &[0x5a; 16]);
        cut_at_every_length(&h, SMB2_HDR, |b| smb2_header(b).is_ok());
        let mut bad = h.clone();
        bad[0] = 0xff;
        assert!(smb2_header(&bad).is_err());
    }

    #[test]
    fn transform() {
        let mut t = MAGIC_TRANSFORM.to_vec();
        t.extend_from_slice(&[1; 16]);
        t.extend_from_slice(&[2; 16]);
        t.extend_from_slice(&4096u32.to_le_bytes());
        t.extend_from_slice(&0u16.to_le_bytes());
        t.extend_from_slice(&1u16.to_le_bytes());
        t.extend_from_slice(&0x99u64.to_le_bytes());
        t.extend_from_slice(b"ciphertext");
        let (r, d) = transform_header(&t).unwrap();
        assert_eq!(r, b"ciphertext");
        assert_eq!(
            (d.original_message_size, d.flags, d.session_id),
            (4096, 1, 0x99)
        );
        assert_eq!((d.signature, d.nonce), (&[1u8; 16][..], &[2u8; 16][..]));
        cut_at_every_length(&t[..TRANSFORM_HDR], TRANSFORM_HDR, |b| {
            transform_header(b).is_ok()
        });
        // An absurd OriginalMessageSize is a value, not an error.
        t[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            transform_header(&t).unwrap().1.original_message_size,
            u32::MAX
        );
    }

    #[test]
    fn smb2_bodies() {
        // NEGOTIATE response.
        let b = [65, 0, 1, 0, 0x11, 0x03, 0, 0];
        assert_eq!(negotiate_response(&b).unwrap().1.dialect, 0x0311);
        cut_at_every_length(&b[..6], 6, |b| negotiate_response(b).is_ok());

        // SESSION_SETUP request, and the buffer it points at.
        let mut msg = smb2_hdr(1, 0, 0);
        let mut body = vec![25, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&88u16.to_le_bytes());
        body.extend_from_slice(&4u16.to_le_bytes());
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(b"blob");
        msg.extend_from_slice(&body);
        let (_, r) = session_setup_request(&body).unwrap();
        assert_eq!(
            (r.security_buffer_offset, r.security_buffer_length),
            (88, 4)
        );
        assert_eq!(buffer(&msg, 88, 4), Some(&b"blob"[..]));
        assert_eq!(buffer(&msg, 88, 5), None);
        assert_eq!(buffer(&msg, u16::MAX, u16::MAX), None);
        assert_eq!(buffer(&msg, 0, 0), Some(&b""[..]));
        cut_at_every_length(&body[..16], 16, |b| session_setup_request(b).is_ok());

        // TREE_CONNECT request: PathLength may be cut off.
        let b = [9, 0, 0, 0, 72, 0, 10, 0];
        let (_, r) = tree_connect_request(&b).unwrap();
        assert_eq!((r.path_offset, r.path_length), (72, Some(10)));
        assert_eq!(tree_connect_request(&b[..7]).unwrap().1.path_length, None);
        cut_at_every_length(&b, 6, |b| tree_connect_request(b).is_ok());

        // CREATE request.
        let mut b = vec![57, 0, 0, 0];
        b.extend_from_slice(&[0; 20]);
        b.extend_from_slice(&0x0012_0089u32.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&120u16.to_le_bytes());
        b.extend_from_slice(&14u16.to_le_bytes());
        let (_, r) = create_request(&b).unwrap();
        assert_eq!(r.desired_access, 0x0012_0089);
        assert_eq!(r.create_disposition, 2);
        assert_eq!(
            r.name,
            Some(NameField {
                offset: 120,
                length: 14
            })
        );
        for n in 40..48 {
            assert_eq!(create_request(&b[..n]).unwrap().1.name, None);
        }
        cut_at_every_length(&b, 40, |b| create_request(b).is_ok());

        // CREATE response.
        let mut b = vec![89, 0, 0, 0, 1, 0, 0, 0];
        b.extend_from_slice(&[0; 32]);
        b.extend_from_slice(&4096u64.to_le_bytes());
        b.extend_from_slice(&1234u64.to_le_bytes());
        b.extend_from_slice(&0x20u32.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&[7; 16]);
        let (_, r) = create_response(&b).unwrap();
        assert_eq!(
            (r.create_action, r.allocation_size, r.end_of_file),
            (1, 4096, 1234)
        );
        assert_eq!((r.file_attributes, r.file_id), (0x20, &[7; 16]));
        cut_at_every_length(&b, 80, |b| create_response(b).is_ok());

        // CLOSE request and response.
        let mut b = vec![24, 0, 1, 0, 0, 0, 0, 0];
        b.extend_from_slice(&[9; 16]);
        assert_eq!(close_request(&b).unwrap().1.file_id, &[9; 16]);
        cut_at_every_length(&b, 24, |b| close_request(b).is_ok());
        let mut b = vec![60, 0, 1, 0];
        b.extend_from_slice(&[0; 44]);
        b.extend_from_slice(&777u64.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        let (_, r) = close_response(&b).unwrap();
        assert_eq!(
            (r.flags, r.end_of_file),
            (SMB2_CLOSE_FLAG_POSTQUERY_ATTRIB, Some(777))
        );
        assert_eq!(close_response(&b[..55]).unwrap().1.end_of_file, None);
        cut_at_every_length(&b, 4, |b| close_response(b).is_ok());

        // READ request and response.
        let mut b = vec![49, 0, 0, 0];
        b.extend_from_slice(&65536u32.to_le_bytes());
        b.extend_from_slice(&8192u64.to_le_bytes());
        b.extend_from_slice(&[3; 16]);
        let (_, r) = read_request(&b).unwrap();
        assert_eq!((r.length, r.offset, r.file_id), (65536, 8192, &[3; 16]));
        cut_at_every_length(&b, 32, |b| read_request(b).is_ok());
        let b = [17, 0, 80, 0, 0, 0, 1, 0];
        let (_, r) = read_response(&b).unwrap();
        assert_eq!((r.data_offset, r.data_length), (80, 65536));
        cut_at_every_length(&b, 8, |b| read_response(b).is_ok());

        // WRITE request.
        let mut b = vec![49, 0, 112, 0];
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&[4; 16]);
        let (_, r) = write_request(&b).unwrap();
        assert_eq!(
            (r.data_offset, r.length, r.file_id),
            (112, u32::MAX, &[4; 16])
        );
        cut_at_every_length(&b, 32, |b| write_request(b).is_ok());
    }

    fn ntlm_auth_msg() -> Vec<u8> {
        let mut m = NTLMSSP_SIGNATURE.to_vec();
        m.extend_from_slice(&3u32.to_le_bytes());
        m.extend_from_slice(&[0; 16]);
        for (len, off) in [(4u16, 64u32), (2, 68), (6, 70)] {
            m.extend_from_slice(&len.to_le_bytes());
            m.extend_from_slice(&len.to_le_bytes());
            m.extend_from_slice(&off.to_le_bytes());
        }
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&0x0000_0001u32.to_le_bytes());
        m.extend_from_slice(b"d\0o\0u\0h\0o\0s\0");
        m
    }

    #[test]
    fn ntlmssp() {
        let mut blob = b"\x60\x48spnego".to_vec();
        blob.extend_from_slice(&ntlm_auth_msg());
        let m = find_ntlmssp(&blob).unwrap();
        assert!(m.starts_with(NTLMSSP_SIGNATURE));
        assert!(find_ntlmssp(b"NTLMSSP").is_none());
        let (_, a) = ntlmssp_authenticate(m).unwrap();
        assert_eq!(a.negotiate_flags, Some(1));
        assert_eq!(a.domain.unwrap().bytes(m), Some(&b"d\0o\0"[..]));
        assert_eq!(a.user.unwrap().bytes(m), Some(&b"u\0"[..]));
        assert_eq!(a.workstation.unwrap().bytes(m), Some(&b"h\0o\0s\0"[..]));
        let absurd = SecBuf {
            length: u16::MAX,
            offset: u32::MAX,
        };
        assert_eq!(absurd.bytes(m), None);
        // Cut short: the whole fields before the cut, an error before the message type.
        for n in 0..=64 {
            let r = ntlmssp_authenticate(&m[..n]);
            assert_eq!(r.is_ok(), n >= 12, "{n}");
            if let Ok((_, a)) = r {
                assert_eq!(a.domain.is_some(), n >= 36);
                assert_eq!(a.user.is_some(), n >= 44);
                assert_eq!(a.workstation.is_some(), n >= 52);
                assert_eq!(a.negotiate_flags.is_some(), n >= 64);
            }
        }
        let mut negotiate = m.to_vec();
        negotiate[8] = 1;
        assert!(ntlmssp_authenticate(&negotiate).is_err());
    }

    fn smb1_hdr(cmd: u8, flags: u8) -> Vec<u8> {
        let mut h = MAGIC_SMB1.to_vec();
        h.push(cmd);
        h.extend_from_slice(&0u32.to_le_bytes());
        h.push(flags);
        h.extend_from_slice(&0xc801u16.to_le_bytes());
        h.extend_from_slice(&0x0001u16.to_le_bytes());
        h.extend_from_slice(&[0; 10]);
        for v in [0x0800u16, 0xfeff, 0x0064, 0x0042] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        h
    }

    #[test]
    fn smb1_header_and_blocks() {
        let h = smb1_hdr(0x2f, 0x18);
        let (_, d) = smb1_header(&h).unwrap();
        assert_eq!(
            (d.command, d.status, d.flags, d.flags2),
            (0x2f, 0, 0x18, 0xc801)
        );
        assert_eq!(
            (d.pid_high, d.tid, d.pid_low, d.uid, d.mid),
            (1, 0x0800, 0xfeff, 0x64, 0x42)
        );
        cut_at_every_length(&h, SMB1_HDR, |b| smb1_header(b).is_ok());

        let block = [2u8, 0x75, 0, 0x40, 0, 3, 0, b'a', b'b', b'c', b'x'];
        let (r, words) = smb1_words(&block).unwrap();
        assert_eq!(words, [0x75, 0, 0x40, 0]);
        let (_, bytes) = smb1_bytes(r).unwrap();
        assert_eq!(bytes, b"abc");
        cut_at_every_length(&block[..5], 5, |b| smb1_words(b).is_ok());
        // ByteCount past the end keeps what is there.
        assert_eq!(smb1_bytes(&[0xff, 0xff, 1, 2]).unwrap().1, [1, 2]);
        assert!(smb1_bytes(&[0xff]).is_err());
        assert_eq!(smb1_word_count(&[0xff]).unwrap().1, 0xff);
        assert!(smb1_words(&[0xff, 0, 0]).is_err());
        let (_, a) = andx(words).unwrap();
        assert_eq!((a.command, a.offset), (0x75, 0x40));
        cut_at_every_length(words, 4, |b| andx(b).is_ok());
    }

    #[test]
    fn smb1_dialect_strings() {
        let b = b"\x02NT LM 0.12\x00junk\x00\x02SMB 2.002\x00\x02";
        let names: Vec<&[u8]> = smb1_dialects(b).collect();
        assert_eq!(names, [&b"NT LM 0.12"[..], b"SMB 2.002", b""]);
        assert_eq!(smb1_dialects(b"").count(), 0);
        assert_eq!(smb1_dialects(b"\x00\x00\x00").count(), 0);
        assert_eq!(smb1_dialects(&[0x02; 100_000]).count(), 1);
        assert_eq!(smb1_dialects(&[0x02, 0].repeat(50_000)).count(), 50_000);
    }

    #[test]
    fn smb1_words_of_commands() {
        let andx_hdr = [0xffu8, 0, 0, 0];
        // NEGOTIATE response.
        assert_eq!(smb1_negotiate_response(&[5, 0]).unwrap().1, 5);
        assert!(smb1_negotiate_response(&[5]).is_err());
        // SESSION_SETUP_ANDX request (WordCount 12).
        let mut w = andx_hdr.to_vec();
        w.extend_from_slice(&[0x04, 0x11, 0x32, 0, 0, 0, 0, 0, 0, 0]);
        w.extend_from_slice(&74u16.to_le_bytes());
        w.extend_from_slice(&[0; 4]);
        w.extend_from_slice(&0x8000_0000u32.to_le_bytes());
        let (_, r) = smb1_session_setup_request(&w).unwrap();
        assert_eq!((r.security_blob_length, r.capabilities), (74, 0x8000_0000));
        cut_at_every_length(&w, 24, |b| smb1_session_setup_request(b).is_ok());
        // TREE_CONNECT_ANDX request.
        let mut w = andx_hdr.to_vec();
        w.extend_from_slice(&[8, 0, 1, 0]);
        assert_eq!(smb1_tree_connect_request(&w).unwrap().1.password_length, 1);
        cut_at_every_length(&w, 8, |b| smb1_tree_connect_request(b).is_ok());
        // NT_CREATE_ANDX request: CreateDisposition may be cut off.
        let mut w = andx_hdr.to_vec();
        w.push(0);
        w.extend_from_slice(&18u16.to_le_bytes());
        w.extend_from_slice(&[0; 28]);
        w.extend_from_slice(&5u32.to_le_bytes());
        w.extend_from_slice(&[0; 9]);
        let (_, r) = smb1_nt_create_request(&w).unwrap();
        assert_eq!((r.name_length, r.create_disposition), (18, Some(5)));
        assert_eq!(
            smb1_nt_create_request(&w[..38])
                .unwrap()
                .1
                .create_disposition,
            None
        );
        cut_at_every_length(&w, 7, |b| smb1_nt_create_request(b).is_ok());
        // NT_CREATE_ANDX response.
        let mut w = andx_hdr.to_vec();
        w.push(0);
        w.extend_from_slice(&0x4000u16.to_le_bytes());
        w.extend_from_slice(&[0; 48]);
        w.extend_from_slice(&307_200u64.to_le_bytes());
        let (_, r) = smb1_nt_create_response(&w).unwrap();
        assert_eq!((r.fid, r.end_of_file), (0x4000, Some(307_200)));
        assert_eq!(
            smb1_nt_create_response(&w[..62]).unwrap().1.end_of_file,
            None
        );
        cut_at_every_length(&w, 7, |b| smb1_nt_create_response(b).is_ok());
        // WRITE_ANDX request.
        let mut w = andx_hdr.to_vec();
        for v in [0x4000u16, 0, 0, 0, 0, 0, 0, 0x0001, 0x2c00, 64] {
            w.extend_from_slice(&v.to_le_bytes());
        }
        let (_, r) = smb1_write_request(&w).unwrap();
        assert_eq!(
            (r.fid, r.data_length, r.data_offset, r.offset),
            (0x4000, 0x1_2c00, 64, 0)
        );
        cut_at_every_length(&w, 24, |b| smb1_write_request(b).is_ok());
        // WordCount 14: Offset 0x1000 with OffsetHigh 2.
        w[6..10].copy_from_slice(&0x1000u32.to_le_bytes());
        w.extend_from_slice(&2u32.to_le_bytes());
        let (_, r) = smb1_write_request(&w).unwrap();
        assert_eq!(r.offset, 0x2_0000_1000);
        assert_eq!(smb1_write_request(&w[..27]).unwrap().1.offset, 0x1000);
        // READ_ANDX request (WordCount 10, then 12 with OffsetHigh) and response.
        let mut w = andx_hdr.to_vec();
        w.extend_from_slice(&0x4001u16.to_le_bytes());
        assert_eq!(
            smb1_read_request(&w).unwrap().1,
            ReadAndxRequest {
                fid: 0x4001,
                offset: None
            }
        );
        cut_at_every_length(&w, 6, |b| smb1_read_request(b).is_ok());
        w.extend_from_slice(&0xf000u32.to_le_bytes());
        w.extend_from_slice(&[0; 10]);
        assert_eq!(smb1_read_request(&w).unwrap().1.offset, Some(0xf000));
        w.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            smb1_read_request(&w).unwrap().1.offset,
            Some(0xffff_ffff_0000_f000)
        );
        let mut w = andx_hdr.to_vec();
        for v in [0xffffu16, 0, 0, 0xffff, 60, 0xffff] {
            w.extend_from_slice(&v.to_le_bytes());
        }
        let (_, r) = smb1_read_response(&w).unwrap();
        assert_eq!((r.data_length, r.data_offset), (0xffff_ffff, 60));
        cut_at_every_length(&w, 16, |b| smb1_read_response(b).is_ok());
        // CLOSE request.
        assert_eq!(
            smb1_close_request(&[1, 0x40, 0, 0, 0, 0]).unwrap().1,
            0x4001
        );
        cut_at_every_length(&[1, 0x40], 2, |b| smb1_close_request(b).is_ok());
    }

    #[test]
    fn absurd_lengths() {
        let junk = vec![0xffu8; 100_000];
        assert_eq!(nbss_header(&junk).unwrap().1.length, 0xff_ffff);
        assert!(smb2_header(&junk).is_err());
        assert!(smb1_header(&junk).is_err());
        assert!(transform_header(&junk).is_err());
        assert_eq!(smb1_words(&junk).unwrap().1.len(), 510);
        assert_eq!(smb1_bytes(&junk).unwrap().1.len(), 65535);
        assert_eq!(buffer(&junk, u16::MAX, u16::MAX), None);
        assert!(find_ntlmssp(&junk).is_none());
        // Bodies of any length decode (lengths and offsets are values, checked by the caller).
        let bodies: [fn(&[u8]) -> bool; 8] = [
            |b| negotiate_response(b).is_ok(),
            |b| session_setup_request(b).is_ok(),
            |b| tree_connect_request(b).is_ok(),
            |b| create_request(b).is_ok(),
            |b| create_response(b).is_ok(),
            |b| close_response(b).is_ok(),
            |b| read_response(b).is_ok(),
            |b| write_request(b).is_ok(),
        ];
        assert!(bodies.iter().all(|decode| decode(&junk)));
    }
}
