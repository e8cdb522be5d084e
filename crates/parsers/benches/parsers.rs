//! Transaction parser costs: FTP control lines, an SMB2 upload stream (WRITE data skipped by
//! length), and TFTP DATA blocks. Run with `cargo bench -p xferwatch-parsers`.

use divan::{black_box, Bencher};
use xferwatch_parsers::ftp::{FtpConn, FtpLimits};
use xferwatch_parsers::smb::{SmbConn, SmbLimits};
use xferwatch_parsers::tftp::Transfer;

fn main() {
    divan::main();
}

#[divan::bench]
fn ftp_command_and_reply(b: Bencher) {
    let mut c = FtpConn::new(FtpLimits::default());
    let mut out = Vec::new();
    c.line(false, b"220 ready\r", &mut out);
    b.bench_local(|| {
        out.clear();
        c.line(true, b"STOR quarterly-report-2026.xlsx\r", &mut out);
        c.line(false, b"150 Ok to send data.\r", &mut out);
        c.line(false, b"226 Transfer complete.\r", &mut out);
        black_box(out.len());
    });
}

/// NBSS + SMB2 WRITE request header for `len` bytes of data (the data itself follows).
fn smb2_write(len: u32, msg_id: u64) -> Vec<u8> {
    let mut h = vec![0u8; 4 + 64 + 48];
    let nbss = 64 + 48 + len;
    h[1..4].copy_from_slice(&nbss.to_be_bytes()[1..]);
    h[4..8].copy_from_slice(b"\xfeSMB");
    h[8..10].copy_from_slice(&64u16.to_le_bytes());
    h[16..18].copy_from_slice(&9u16.to_le_bytes()); // WRITE
    h[28..36].copy_from_slice(&msg_id.to_le_bytes());
    let w = 4 + 64;
    h[w..w + 2].copy_from_slice(&49u16.to_le_bytes());
    h[w + 2..w + 4].copy_from_slice(&112u16.to_le_bytes()); // data offset
    h[w + 4..w + 8].copy_from_slice(&len.to_le_bytes());
    h
}

#[divan::bench(args = [65536, 1048576])]
fn smb2_write_stream_1448_byte_segments(b: Bencher, write_len: u32) {
    let mut stream = Vec::new();
    for i in 0..4u64 {
        stream.extend(smb2_write(write_len, i));
        stream.extend(std::iter::repeat_n(0x5au8, write_len as usize));
    }
    b.bench_local(|| {
        let mut c = SmbConn::new(SmbLimits::default());
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        for seg in stream.chunks(1448) {
            // What the worker does: skip what the parser does not need, feed the rest.
            let mut seg = seg;
            let skip = c.skippable(true).min(seg.len() as u64) as usize;
            if skip > 0 && buf.is_empty() {
                c.skipped(true, skip as u64);
                seg = &seg[skip..];
            }
            buf.extend_from_slice(seg);
            let used = c.feed(true, &buf, &mut out);
            buf.drain(..used);
        }
        black_box(c.stats().bytes_written)
    });
}

#[divan::bench]
fn tftp_data_block(b: Bencher) {
    let mut t = Transfer::new(true);
    let mut d = vec![0u8, 3, 0, 0];
    d.extend(std::iter::repeat_n(0x42u8, 512));
    let mut block: u16 = 0;
    b.bench_local(|| {
        block = block.wrapping_add(1);
        d[2..4].copy_from_slice(&block.to_be_bytes());
        t.datagram(true, black_box(&d));
    });
}
