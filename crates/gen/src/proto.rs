//! Application messages: FTP replies, TFTP packets, SMB2/SMB3 messages over NBSS, NTLMSSP,
//! HTTP, TLS handshakes, DNS and SSH. Each builder returns the exact bytes the sensor's
//! fingerprints and parsers read; bulk data (file contents, ciphertext) is not built here but
//! streamed from the generator's random content.

use crate::rng::Rng;

fn le16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn le32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn le64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn be16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_be_bytes());
}
fn rand_bytes(v: &mut Vec<u8>, r: &mut Rng, n: usize) {
    let at = v.len();
    v.resize(at + n, 0);
    r.fill(&mut v[at..]);
}

/// UTF-16LE encoding of an ASCII/Unicode string.
pub fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------
// TFTP
// ---------------------------------------------------------------------------------------------

/// A read (RRQ) or write (WRQ) request with options.
pub fn tftp_request(write: bool, file: &str, mode: &str, options: &[(&str, String)]) -> Vec<u8> {
    let mut v = vec![0, if write { 2 } else { 1 }];
    v.extend_from_slice(file.as_bytes());
    v.push(0);
    v.extend_from_slice(mode.as_bytes());
    v.push(0);
    for (k, val) in options {
        v.extend_from_slice(k.as_bytes());
        v.push(0);
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

/// An option acknowledgement (OACK).
pub fn tftp_oack(options: &[(&str, String)]) -> Vec<u8> {
    let mut v = vec![0, 6];
    for (k, val) in options {
        v.extend_from_slice(k.as_bytes());
        v.push(0);
        v.extend_from_slice(val.as_bytes());
        v.push(0);
    }
    v
}

// ---------------------------------------------------------------------------------------------
// SMB2 / SMB3
// ---------------------------------------------------------------------------------------------

/// SMB2 commands used here.
pub mod smb2 {
    /// NEGOTIATE.
    pub const NEGOTIATE: u16 = 0x00;
    /// SESSION_SETUP.
    pub const SESSION_SETUP: u16 = 0x01;
    /// LOGOFF.
    pub const LOGOFF: u16 = 0x02;
    /// TREE_CONNECT.
    pub const TREE_CONNECT: u16 = 0x03;
    /// TREE_DISCONNECT.
    pub const TREE_DISCONNECT: u16 = 0x04;
    /// CREATE.
    pub const CREATE: u16 = 0x05;
    /// CLOSE.
    pub const CLOSE: u16 = 0x06;
    /// READ.
    pub const READ: u16 = 0x08;
    /// WRITE.
    pub const WRITE: u16 = 0x09;
}

/// STATUS_MORE_PROCESSING_REQUIRED.
pub const STATUS_MORE_PROCESSING: u32 = 0xc000_0016;

/// SMB2 header fields of one message.
#[derive(Clone, Copy, Debug)]
pub struct Hdr {
    /// Command.
    pub cmd: u16,
    /// Response (SERVER_TO_REDIR).
    pub resp: bool,
    /// NT status (responses).
    pub status: u32,
    /// Credits charged.
    pub charge: u16,
    /// MessageId.
    pub msg_id: u64,
    /// TreeId.
    pub tree_id: u32,
    /// SessionId.
    pub session_id: u64,
    /// Signed (a random signature is written).
    pub signed: bool,
}

/// Writes the 64-byte SMB2 header.
pub fn smb2_header(v: &mut Vec<u8>, h: &Hdr, r: &mut Rng) {
    v.extend_from_slice(b"\xfeSMB");
    le16(v, 64);
    le16(v, h.charge);
    le32(v, h.status);
    le16(v, h.cmd);
    le16(v, if h.resp { 64 } else { 256 }.max(h.charge));
    le32(v, u32::from(h.resp) | if h.signed { 8 } else { 0 });
    le32(v, 0);
    le64(v, h.msg_id);
    le32(v, 0xfeff);
    le32(v, h.tree_id);
    le64(v, h.session_id);
    if h.signed {
        rand_bytes(v, r, 16);
    } else {
        v.extend_from_slice(&[0; 16]);
    }
}

/// SPNEGO negTokenInit the server offers in its NEGOTIATE response (NEGOEX, NTLMSSP).
const SPNEGO_INIT: &[u8] = b"\x60\x28\x06\x06\x2b\x06\x01\x05\x05\x02\xa0\x1e\x30\x1c\xa0\x1a\x30\x18\x06\x0a\x2b\x06\x01\x04\x01\x82\x37\x02\x02\x1e\x06\x0a\x2b\x06\x01\x04\x01\x82\x37\x02\x02\x0a";

/// NEGOTIATE request body.
pub fn negotiate_req(v: &mut Vec<u8>, dialects: &[u16], r: &mut Rng) {
    le16(v, 36);
    le16(v, dialects.len() as u16);
    le16(v, 1);
    le16(v, 0);
    le32(v, 0x7f);
    rand_bytes(v, r, 16);
    le64(v, 0);
    for &d in dialects {
        le16(v, d);
    }
}

/// NEGOTIATE response body.
pub fn negotiate_rsp(v: &mut Vec<u8>, dialect: u16, r: &mut Rng, now_filetime: u64) {
    le16(v, 65);
    le16(v, 1);
    le16(v, dialect);
    le16(v, 0);
    rand_bytes(v, r, 16);
    le32(v, 0x2f);
    le32(v, 8 << 20);
    le32(v, 8 << 20);
    le32(v, 8 << 20);
    le64(v, now_filetime);
    le64(v, 0);
    le16(v, 128);
    le16(v, SPNEGO_INIT.len() as u16);
    le32(v, 0);
    v.extend_from_slice(SPNEGO_INIT);
}

/// SESSION_SETUP request body carrying `blob`.
pub fn session_setup_req(v: &mut Vec<u8>, blob: &[u8]) {
    le16(v, 25);
    v.push(0);
    v.push(1);
    le32(v, 1);
    le32(v, 0);
    le16(v, 88);
    le16(v, blob.len() as u16);
    le64(v, 0);
    v.extend_from_slice(blob);
}

/// SESSION_SETUP response body carrying `blob`.
pub fn session_setup_rsp(v: &mut Vec<u8>, blob: &[u8]) {
    le16(v, 9);
    le16(v, 0);
    le16(v, 72);
    le16(v, blob.len() as u16);
    v.extend_from_slice(blob);
}

/// NTLMSSP NEGOTIATE (type 1).
pub fn ntlm_negotiate() -> Vec<u8> {
    let mut v = b"NTLMSSP\0".to_vec();
    le32(&mut v, 1);
    le32(&mut v, 0xe208_8297);
    v.extend_from_slice(&[0; 16]);
    v.extend_from_slice(&[0x0a, 0x00, 0x7c, 0x4f, 0x00, 0x00, 0x00, 0x0f]);
    v
}

/// NTLMSSP CHALLENGE (type 2) from server `name`.
pub fn ntlm_challenge(name: &str, r: &mut Rng) -> Vec<u8> {
    let tname = utf16(name);
    let mut info = Vec::new();
    for id in [2u16, 1] {
        le16(&mut info, id);
        le16(&mut info, tname.len() as u16);
        info.extend_from_slice(&tname);
    }
    info.extend_from_slice(&[0; 4]);
    let mut v = b"NTLMSSP\0".to_vec();
    le32(&mut v, 2);
    le16(&mut v, tname.len() as u16);
    le16(&mut v, tname.len() as u16);
    le32(&mut v, 56);
    le32(&mut v, 0xe28a_8215);
    rand_bytes(&mut v, r, 8);
    v.extend_from_slice(&[0; 8]);
    le16(&mut v, info.len() as u16);
    le16(&mut v, info.len() as u16);
    le32(&mut v, (56 + tname.len()) as u32);
    v.extend_from_slice(&[0x0a, 0x00, 0x63, 0x45, 0x00, 0x00, 0x00, 0x0f]);
    v.extend_from_slice(&tname);
    v.extend_from_slice(&info);
    v
}

/// NTLMSSP AUTHENTICATE (type 3) for `domain\user` from workstation `host`.
pub fn ntlm_authenticate(domain: &str, user: &str, host: &str, r: &mut Rng) -> Vec<u8> {
    let (d, u, h) = (utf16(domain), utf16(user), utf16(host));
    let lm = [0u8; 24];
    // NTLMv2 response: NTProofStr, then the client blob with its AV pairs.
    let mut nt = Vec::new();
    rand_bytes(&mut nt, r, 16);
    nt.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0]);
    let ts = 0x01dc_8600_0000_0000u64 + r.below(1 << 40);
    le64(&mut nt, ts);
    rand_bytes(&mut nt, r, 8);
    nt.extend_from_slice(&[0; 4]);
    for (id, val) in [(2u16, utf16(domain)), (1, utf16(host))] {
        le16(&mut nt, id);
        le16(&mut nt, val.len() as u16);
        nt.extend_from_slice(&val);
    }
    le16(&mut nt, 7);
    le16(&mut nt, 8);
    le64(&mut nt, ts);
    nt.extend_from_slice(&[0; 4]);
    nt.extend_from_slice(&[0; 4]);
    let mut key = Vec::new();
    rand_bytes(&mut key, r, 16);
    let mut off = 88u32;
    let mut payload = Vec::new();
    let mut secbufs = Vec::new();
    // Order of the security buffers in the header: Lm, Nt, Domain, User, Workstation, Key; the
    // payload is laid out Domain, User, Workstation, Lm, Nt, Key as Windows does.
    let mut place = |bytes: &[u8]| -> (u16, u32) {
        let at = off;
        payload.extend_from_slice(bytes);
        off += bytes.len() as u32;
        (bytes.len() as u16, at)
    };
    let dd = place(&d);
    let uu = place(&u);
    let hh = place(&h);
    let ll = place(&lm);
    let nn = place(&nt);
    let kk = place(&key);
    for (len, at) in [ll, nn, dd, uu, hh, kk] {
        le16(&mut secbufs, len);
        le16(&mut secbufs, len);
        le32(&mut secbufs, at);
    }
    let mut v = b"NTLMSSP\0".to_vec();
    le32(&mut v, 3);
    v.extend_from_slice(&secbufs);
    le32(&mut v, 0xe288_8215);
    v.extend_from_slice(&[0x0a, 0x00, 0x7c, 0x4f, 0x00, 0x00, 0x00, 0x0f]);
    rand_bytes(&mut v, r, 16);
    debug_assert_eq!(v.len(), 88);
    v.extend_from_slice(&payload);
    v
}

/// TREE_CONNECT request body for `path` (`\\server\share`).
pub fn tree_connect_req(v: &mut Vec<u8>, path: &str) {
    let p = utf16(path);
    le16(v, 9);
    le16(v, 0);
    le16(v, 72);
    le16(v, p.len() as u16);
    v.extend_from_slice(&p);
}

/// TREE_CONNECT response body (a disk share).
pub fn tree_connect_rsp(v: &mut Vec<u8>, encrypt: bool) {
    le16(v, 16);
    v.push(1);
    v.push(0);
    le32(v, if encrypt { 0x8000 } else { 0 });
    le32(v, 0);
    le32(v, 0x001f_01ff);
}

/// FILE_OPEN.
pub const FILE_OPEN: u32 = 1;
/// FILE_OVERWRITE_IF.
pub const FILE_OVERWRITE_IF: u32 = 5;

/// CREATE request body for `name` with a disposition.
pub fn create_req(v: &mut Vec<u8>, name: &str, disposition: u32) {
    let n = utf16(name);
    let write = disposition != FILE_OPEN;
    le16(v, 57);
    v.push(0);
    v.push(0);
    le32(v, 2);
    le64(v, 0);
    le64(v, 0);
    le32(v, if write { 0x0013_019f } else { 0x0012_0089 });
    le32(v, 0x80);
    le32(v, if write { 0 } else { 1 });
    le32(v, disposition);
    le32(v, 0x0000_0044);
    le16(v, 120);
    le16(v, n.len() as u16);
    le32(v, 0);
    le32(v, 0);
    v.extend_from_slice(&n);
}

/// CREATE response body.
pub fn create_rsp(v: &mut Vec<u8>, created: bool, filetime: u64, size: u64, fid: &[u8; 16]) {
    le16(v, 89);
    v.push(0);
    v.push(0);
    le32(v, if created { 2 } else { 1 });
    for _ in 0..4 {
        le64(v, filetime);
    }
    le64(v, size.next_multiple_of(4096));
    le64(v, size);
    le32(v, 0x80);
    le32(v, 0);
    v.extend_from_slice(fid);
    le32(v, 0);
    le32(v, 0);
}

/// WRITE request fixed part for `len` data bytes at `offset` (the data follows).
pub fn write_req(v: &mut Vec<u8>, len: u32, offset: u64, fid: &[u8; 16]) {
    le16(v, 49);
    le16(v, 112);
    le32(v, len);
    le64(v, offset);
    v.extend_from_slice(fid);
    le32(v, 0);
    le32(v, 0);
    le16(v, 0);
    le16(v, 0);
    le32(v, 0);
}

/// WRITE response body.
pub fn write_rsp(v: &mut Vec<u8>, count: u32) {
    le16(v, 17);
    le16(v, 0);
    le32(v, count);
    le32(v, 0);
    le16(v, 0);
    le16(v, 0);
}

/// READ request body.
pub fn read_req(v: &mut Vec<u8>, len: u32, offset: u64, fid: &[u8; 16]) {
    le16(v, 49);
    v.push(0x50);
    v.push(0);
    le32(v, len);
    le64(v, offset);
    v.extend_from_slice(fid);
    le32(v, 0);
    le32(v, 0);
    le32(v, 0);
    le16(v, 0);
    le16(v, 0);
    v.push(0);
}

/// READ response fixed part for `len` data bytes (the data follows).
pub fn read_rsp(v: &mut Vec<u8>, len: u32) {
    le16(v, 17);
    v.push(0x50);
    v.push(0);
    le32(v, len);
    le32(v, 0);
    le32(v, 0);
}

/// CLOSE request body (POSTQUERY_ATTRIB).
pub fn close_req(v: &mut Vec<u8>, fid: &[u8; 16]) {
    le16(v, 24);
    le16(v, 1);
    le32(v, 0);
    v.extend_from_slice(fid);
}

/// CLOSE response body with the file's attributes.
pub fn close_rsp(v: &mut Vec<u8>, filetime: u64, size: u64) {
    le16(v, 60);
    le16(v, 1);
    le32(v, 0);
    for _ in 0..4 {
        le64(v, filetime);
    }
    le64(v, size.next_multiple_of(4096));
    le64(v, size);
    le32(v, 0x80);
}

/// Body of TREE_DISCONNECT and LOGOFF requests and responses.
pub fn small_body(v: &mut Vec<u8>) {
    le16(v, 4);
    le16(v, 0);
}

/// The NBSS session message header for a message of `len` bytes (24-bit length).
pub fn nbss(len: usize) -> [u8; 4] {
    debug_assert!(len < 1 << 24);
    [0, (len >> 16) as u8, (len >> 8) as u8, len as u8]
}

/// The 52-byte SMB3 TRANSFORM header for an encrypted message of `orig` bytes.
pub fn transform_header(v: &mut Vec<u8>, orig: u32, session_id: u64, r: &mut Rng) {
    v.extend_from_slice(b"\xfdSMB");
    rand_bytes(v, r, 16);
    rand_bytes(v, r, 11);
    v.extend_from_slice(&[0; 5]);
    le32(v, orig);
    le16(v, 0);
    le16(v, 1);
    le64(v, session_id);
}

/// First-level encoded NetBIOS name (RFC 1001) with its length byte and terminator.
pub fn netbios_name(name: &str, suffix: u8) -> Vec<u8> {
    let mut raw = [b' '; 16];
    for (i, b) in name.bytes().take(15).enumerate() {
        raw[i] = b.to_ascii_uppercase();
    }
    raw[15] = suffix;
    let mut v = vec![0x20];
    for b in raw {
        v.push(b'A' + (b >> 4));
        v.push(b'A' + (b & 0xf));
    }
    v.push(0);
    v
}

/// NBSS SESSION REQUEST (port 139).
pub fn nbss_session_request(called: &str, calling: &str) -> Vec<u8> {
    let mut body = netbios_name(called, 0x20);
    body.extend_from_slice(&netbios_name(calling, 0x00));
    let mut v = vec![0x81, 0, 0, body.len() as u8];
    v.extend_from_slice(&body);
    v
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

fn ext(v: &mut Vec<u8>, ty: u16, data: &[u8]) {
    be16(v, ty);
    be16(v, data.len() as u16);
    v.extend_from_slice(data);
}

/// A TLS 1.3 ClientHello record for `sni`.
pub fn tls_client_hello(sni: &str, r: &mut Rng) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    rand_bytes(&mut body, r, 32);
    body.push(32);
    rand_bytes(&mut body, r, 32);
    let suites: [u16; 17] = [
        0x1301, 0x1303, 0x1302, 0xc02b, 0xc02f, 0xcca9, 0xcca8, 0xc02c, 0xc030, 0xc00a, 0xc009,
        0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
    ];
    be16(&mut body, (suites.len() * 2) as u16);
    for s in suites {
        be16(&mut body, s);
    }
    body.extend_from_slice(&[1, 0]);
    let mut exts = Vec::new();
    let mut sn = Vec::new();
    be16(&mut sn, (sni.len() + 3) as u16);
    sn.push(0);
    be16(&mut sn, sni.len() as u16);
    sn.extend_from_slice(sni.as_bytes());
    ext(&mut exts, 0x0000, &sn);
    ext(&mut exts, 0x0017, &[]);
    ext(&mut exts, 0xff01, &[0]);
    ext(
        &mut exts,
        0x000a,
        &[0, 8, 0, 0x1d, 0, 0x17, 0, 0x18, 0, 0x19],
    );
    ext(&mut exts, 0x000b, &[1, 0]);
    ext(&mut exts, 0x0023, &[]);
    ext(&mut exts, 0x0010, b"\x00\x0c\x02h2\x08http/1.1");
    ext(&mut exts, 0x0005, &[1, 0, 0, 0, 0]);
    let mut ks = vec![0, 0x24, 0, 0x1d, 0, 0x20];
    rand_bytes(&mut ks, r, 32);
    ext(&mut exts, 0x0033, &ks);
    ext(&mut exts, 0x002b, &[4, 0x03, 0x04, 0x03, 0x03]);
    ext(
        &mut exts,
        0x000d,
        &[
            0, 0x10, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04,
            0x01, 0x05, 0x01,
        ],
    );
    ext(&mut exts, 0x002d, &[1, 1]);
    be16(&mut body, exts.len() as u16);
    body.extend_from_slice(&exts);
    handshake_record(0x01, 0x01, &body)
}

fn handshake_record(record_minor: u8, ty: u8, body: &[u8]) -> Vec<u8> {
    let hs_len = body.len();
    let mut v = vec![0x16, 0x03, record_minor];
    be16(&mut v, (hs_len + 4) as u16);
    v.push(ty);
    v.extend_from_slice(&[(hs_len >> 16) as u8, (hs_len >> 8) as u8, hs_len as u8]);
    v.extend_from_slice(body);
    v
}

/// A TLS 1.3 ServerHello record followed by ChangeCipherSpec.
pub fn tls_server_hello(r: &mut Rng) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    rand_bytes(&mut body, r, 32);
    body.push(32);
    rand_bytes(&mut body, r, 32);
    be16(&mut body, 0x1301);
    body.push(0);
    let mut exts = Vec::new();
    ext(&mut exts, 0x002b, &[0x03, 0x04]);
    let mut ks = vec![0, 0x1d, 0, 0x20];
    rand_bytes(&mut ks, r, 32);
    ext(&mut exts, 0x0033, &ks);
    be16(&mut body, exts.len() as u16);
    body.extend_from_slice(&exts);
    let mut v = handshake_record(0x03, 0x02, &body);
    v.extend_from_slice(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
    v
}

/// Header of an application-data record of `len` bytes.
pub fn tls_app_header(len: usize) -> [u8; 5] {
    [0x17, 0x03, 0x03, (len >> 8) as u8, len as u8]
}

// ---------------------------------------------------------------------------------------------
// DNS
// ---------------------------------------------------------------------------------------------

fn dns_name(v: &mut Vec<u8>, name: &str) {
    for label in name.split('.') {
        v.push(label.len() as u8);
        v.extend_from_slice(label.as_bytes());
    }
    v.push(0);
}

/// A recursive query for `name` of type `qtype`.
pub fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    be16(&mut v, id);
    be16(&mut v, 0x0100);
    be16(&mut v, 1);
    be16(&mut v, 0);
    be16(&mut v, 0);
    be16(&mut v, 0);
    dns_name(&mut v, name);
    be16(&mut v, qtype);
    be16(&mut v, 1);
    v
}

/// The answer to [`dns_query`]: `answers` records of the query's type (A or AAAA).
pub fn dns_response(id: u16, name: &str, qtype: u16, answers: u16, r: &mut Rng) -> Vec<u8> {
    let mut v = Vec::with_capacity(128);
    be16(&mut v, id);
    be16(&mut v, 0x8180);
    be16(&mut v, 1);
    be16(&mut v, answers);
    be16(&mut v, 0);
    be16(&mut v, 0);
    dns_name(&mut v, name);
    be16(&mut v, qtype);
    be16(&mut v, 1);
    for _ in 0..answers {
        be16(&mut v, 0xc00c);
        be16(&mut v, qtype);
        be16(&mut v, 1);
        v.extend_from_slice(&(60 + r.below(3540) as u32).to_be_bytes());
        if qtype == 28 {
            be16(&mut v, 16);
            v.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            rand_bytes(&mut v, r, 12);
        } else {
            be16(&mut v, 4);
            v.extend_from_slice(&[203, 0, 113, 1 + r.below(254) as u8]);
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// SSH
// ---------------------------------------------------------------------------------------------

fn ssh_string(v: &mut Vec<u8>, s: &[u8]) {
    v.extend_from_slice(&(s.len() as u32).to_be_bytes());
    v.extend_from_slice(s);
}

/// An unencrypted SSH binary packet around `payload` (random padding to a multiple of 8).
pub fn ssh_packet(payload: &[u8], r: &mut Rng) -> Vec<u8> {
    let mut pad = 8 - (5 + payload.len()) % 8;
    if pad < 4 {
        pad += 8;
    }
    let mut v = ((1 + payload.len() + pad) as u32).to_be_bytes().to_vec();
    v.push(pad as u8);
    v.extend_from_slice(payload);
    rand_bytes(&mut v, r, pad);
    v
}

/// SSH_MSG_KEXINIT with the usual OpenSSH algorithm lists.
pub fn ssh_kexinit(server: bool, r: &mut Rng) -> Vec<u8> {
    let mut p = vec![20];
    rand_bytes(&mut p, r, 16);
    let kex: &[u8] = if server {
        b"curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group16-sha512,diffie-hellman-group14-sha256,kex-strict-s-v00@openssh.com"
    } else {
        b"sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,diffie-hellman-group16-sha512,diffie-hellman-group14-sha256,ext-info-c,kex-strict-c-v00@openssh.com"
    };
    let hostkey: &[u8] = b"ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256";
    let enc: &[u8] = b"chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com";
    let mac: &[u8] = b"umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com";
    let comp: &[u8] = b"none,zlib@openssh.com";
    for l in [kex, hostkey, enc, enc, mac, mac, comp, comp, b"", b""] {
        ssh_string(&mut p, l);
    }
    p.push(0);
    p.extend_from_slice(&[0; 4]);
    ssh_packet(&p, r)
}

/// SSH_MSG_KEX_ECDH_INIT (curve25519).
pub fn ssh_ecdh_init(r: &mut Rng) -> Vec<u8> {
    let mut q = vec![0u8; 32];
    r.fill(&mut q);
    let mut p = vec![30];
    ssh_string(&mut p, &q);
    ssh_packet(&p, r)
}

/// SSH_MSG_KEX_ECDH_REPLY (ed25519 host key) followed by SSH_MSG_NEWKEYS.
pub fn ssh_ecdh_reply(r: &mut Rng) -> Vec<u8> {
    let mut key = Vec::new();
    ssh_string(&mut key, b"ssh-ed25519");
    let mut k = vec![0u8; 32];
    r.fill(&mut k);
    ssh_string(&mut key, &k);
    let mut sig = Vec::new();
    ssh_string(&mut sig, b"ssh-ed25519");
    let mut s = vec![0u8; 64];
    r.fill(&mut s);
    ssh_string(&mut sig, &s);
    let mut q = vec![0u8; 32];
    r.fill(&mut q);
    let mut p = vec![31];
    ssh_string(&mut p, &key);
    ssh_string(&mut p, &q);
    ssh_string(&mut p, &sig);
    let mut v = ssh_packet(&p, r);
    v.extend_from_slice(&ssh_packet(&[21], r));
    v
}

/// SSH_MSG_NEWKEYS.
pub fn ssh_newkeys(r: &mut Rng) -> Vec<u8> {
    ssh_packet(&[21], r)
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

const WORDS: &[&str] = &[
    "report",
    "backup",
    "invoice",
    "payroll",
    "export",
    "archive",
    "dump",
    "scan",
    "build",
    "config",
    "ledger",
    "design",
    "photos",
    "customers",
    "inventory",
    "mail",
    "logs",
    "project",
];
const EXTS: &[&str] = &[
    "zip", "tar.gz", "bin", "pdf", "xlsx", "7z", "sql", "iso", "docx", "csv",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "example.net",
    "example.org",
    "cdn-example.net",
    "updates.example.com",
    "files.example.org",
    "api.example.net",
    "static.example.com",
];
const SUBS: &[&str] = &[
    "www",
    "api",
    "cdn",
    "static",
    "img",
    "login",
    "telemetry",
    "update",
    "assets",
    "media",
];

/// A plausible file name.
pub fn file_name(r: &mut Rng) -> String {
    format!(
        "{}-{}{:02}{:02}.{}",
        r.pick(WORDS),
        2024 + r.below(3),
        1 + r.below(12),
        1 + r.below(28),
        r.pick(EXTS)
    )
}

/// A plausible host name.
pub fn host_name(r: &mut Rng) -> String {
    format!("{}{}.{}", r.pick(SUBS), r.below(40), r.pick(DOMAINS))
}

/// A plausible user name.
pub fn user_name(r: &mut Rng) -> String {
    const U: &[&str] = &[
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "backup", "svc-sync",
    ];
    r.pick(U).to_string()
}

/// A plausible URL path.
pub fn url_path(r: &mut Rng) -> String {
    const P: &[&str] = &[
        "/",
        "/index.html",
        "/api/v1/items",
        "/static/app.js",
        "/images/logo.png",
        "/download",
        "/api/v2/sync",
        "/upload",
        "/assets/style.css",
        "/feed.xml",
    ];
    let p = r.pick(P);
    if r.chance(1, 3) {
        format!("{p}?id={}", r.below(100_000))
    } else {
        p.to_string()
    }
}

/// An HTTP/1.1 request head.
pub fn http_request(
    method: &str,
    path: &str,
    host: &str,
    body: Option<u64>,
    r: &mut Rng,
) -> Vec<u8> {
    const UA: &[&str] = &[
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
        "curl/8.5.0",
        "Wget/1.21.4",
        "python-requests/2.31.0",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ];
    let mut s = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {}\r\nAccept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n",
        r.pick(UA)
    );
    if let Some(n) = body {
        s.push_str(&format!(
            "Content-Type: application/octet-stream\r\nContent-Length: {n}\r\n"
        ));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// An HTTP/1.1 response head.
pub fn http_response(status: &str, len: u64, ctype: &str, r: &mut Rng) -> Vec<u8> {
    const SRV: &[&str] = &[
        "nginx/1.24.0",
        "Apache/2.4.58 (Ubuntu)",
        "cloudflare",
        "Microsoft-IIS/10.0",
    ];
    format!(
        "HTTP/1.1 {status}\r\nServer: {}\r\nDate: Thu, 15 Jan 2026 09:00:00 GMT\r\nContent-Type: {ctype}\r\nContent-Length: {len}\r\nConnection: keep-alive\r\nCache-Control: max-age=3600\r\n\r\n",
        r.pick(SRV)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sizes() {
        let mut r = Rng::new(1);
        let h = Hdr {
            cmd: smb2::WRITE,
            resp: false,
            status: 0,
            charge: 1,
            msg_id: 5,
            tree_id: 1,
            session_id: 2,
            signed: true,
        };
        let mut v = Vec::new();
        smb2_header(&mut v, &h, &mut r);
        assert_eq!(v.len(), 64);
        write_req(&mut v, 10, 0, &[1; 16]);
        assert_eq!(v.len(), 112);
        let mut c = Vec::new();
        create_req(&mut c, "a.bin", FILE_OVERWRITE_IF);
        assert_eq!(c.len(), 56 + 10);
        let mut c = Vec::new();
        create_rsp(&mut c, true, 0, 0, &[0; 16]);
        assert_eq!(c.len(), 88);
        let mut c = Vec::new();
        close_rsp(&mut c, 0, 0);
        assert_eq!(c.len(), 60);
        let mut c = Vec::new();
        negotiate_rsp(&mut c, 0x311, &mut r, 0);
        assert_eq!(c.len(), 64 + SPNEGO_INIT.len());
        let mut t = Vec::new();
        transform_header(&mut t, 100, 7, &mut r);
        assert_eq!(t.len(), 52);
        assert_eq!(nbss_session_request("FILESRV", "WS01").len(), 72);
        let a = ntlm_authenticate("CORP", "alice", "WS01", &mut r);
        assert_eq!(&a[..8], b"NTLMSSP\0");
    }
}
