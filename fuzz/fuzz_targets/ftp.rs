//! The FTP control-channel parser fed both sides of a conversation as a worker feeds it: bytes of
//! each direction buffered, cut into lines at `\n`, a line longer than any FTP line dropped. Every
//! line's text also goes through the address parsers (PORT/PASV numbers, EPRT, EPSV). Checked: the
//! queue of commands awaiting a reply stays within its limit.
//! Input: a record stream (bit 0 = client to server; bit 1 of the first record = log credentials).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xferwatch_parsers::ftp::{eprt, epsv, six_numbers, FtpConn, FtpLimits};

/// The longest line a worker buffers.
const LINE_MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let limits = FtpLimits {
        log_credentials: data.first().is_some_and(|f| f & 2 == 2),
        ..FtpLimits::default()
    };
    let mut conn = FtpConn::new(limits);
    let mut out = Vec::new();
    let mut bufs = [Vec::new(), Vec::new()];
    for r in xferwatch_fuzz::records(data) {
        let from_client = r.to_server();
        let buf = &mut bufs[from_client as usize];
        buf.extend_from_slice(r.data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + nl];
            conn.line(from_client, line, &mut out);
            let text = String::from_utf8_lossy(line);
            let _ = six_numbers(&text);
            let _ = eprt(&text);
            let _ = epsv(&text);
            start += nl + 1;
        }
        buf.drain(..start);
        if buf.len() >= LINE_MAX {
            buf.clear();
        }
        // The queue, plus the multi-line reply being read.
        assert!(conn.pending() <= limits.max_pending + 1);
        out.clear();
    }
    conn.finish(&mut out);
    let _ = conn.user();
});
