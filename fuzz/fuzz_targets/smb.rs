//! The SMB1/SMB2/SMB3 parser fed both directions of a connection under the contract a worker keeps:
//! unconsumed bytes are kept and fed again with more appended (never more than `MAX_NEED`), bytes
//! the parser says it does not need are skipped, lost bytes are reported as gaps (record bit 1), and
//! the connection ends. Checked: the parser never claims more bytes than it was given, and what it
//! leaves to keep is never more than `MAX_NEED` (its documented promise). File data is passed
//! through `feed_files` (not skipped) when the parser says some is ahead, as a worker that hashes
//! files does; each piece handed over is non-empty, travels the way its command does (writes to
//! the server, reads to the client), and only compound files are re-keyed.
//! Input: a record stream (bit 0 = client to server, bit 1 = a gap before this record).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xferwatch_parsers::smb::{FileKey, FileOp, SmbConn, SmbLimits};

fuzz_target!(|data: &[u8]| {
    let mut conn = SmbConn::new(SmbLimits {
        max_files: 16,
        max_pending: 16,
        ..SmbLimits::default()
    });
    let mut out = Vec::new();
    let mut bufs = [Vec::new(), Vec::new()];
    for r in xferwatch_fuzz::records(data) {
        let to_server = r.to_server();
        let buf = &mut bufs[to_server as usize];
        if r.flags & 2 == 2 {
            buf.clear();
            conn.gap(to_server);
        }
        let mut bytes = r.data;
        // Bytes the parser said it can do without are skipped before buffering, as the
        // reassembler skips them.
        let skip = conn.skippable(to_server);
        if skip > 0 && buf.is_empty() && !conn.file_data_ahead(to_server) {
            let n = skip.min(bytes.len() as u64);
            conn.skipped(to_server, n);
            bytes = &bytes[n as usize..];
        }
        buf.extend_from_slice(bytes);
        let used = conn.feed_files(to_server, buf, &mut out, &mut |op| match op {
            FileOp::Bytes(b) => {
                assert!(!b.data.is_empty(), "empty file bytes");
                assert_eq!(b.read, !to_server, "file bytes the wrong way");
            }
            FileOp::Rekey { from, .. } => {
                assert!(matches!(from, FileKey::Compound(_)), "re-keyed {from:?}");
            }
        });
        assert!(used <= buf.len(), "consumed {used} of {}", buf.len());
        buf.drain(..used);
        assert!(
            buf.len() <= SmbConn::MAX_NEED,
            "{} bytes left to keep",
            buf.len()
        );
        if used == 0 && buf.len() >= SmbConn::MAX_NEED {
            buf.clear();
            conn.gap(to_server);
        }
        out.clear();
    }
    conn.finish(&mut out);
    let _ = conn.stats();
});
