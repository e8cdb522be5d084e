//! SMB parser tests on real bytes.
//!
//! The fixtures under `tests/fixtures/smb/` are the TCP payloads of the SMB connection of the
//! repository's captures (`pcaps/smb-upload.pcap`, `smb-port443.pcap`, `smb3-encrypted.pcap`,
//! `smb1-port139.pcap`), in capture order, taken with
//! `tshark -r X -T fields -e tcp.srcport -e tcp.dstport -e tcp.payload tcp.len>0`.
//! To keep them small, the data of each large WRITE request, READ response or SMB3 transform is
//! left out after the message's first 128 bytes and written as `skip N`; the tests either skip
//! those bytes through `skippable()`/`skipped()` (as a caller that does not deliver unneeded
//! bytes would) or feed N filler bytes in their place (file content the parser never reads).
//!
//! Expected figures come from tshark on the same captures:
//! * smb-upload: `smb2.write_length` = 512000, `smb2.filename` payroll.bin, dialect 0x0311,
//!   `ntlmssp.auth.username` root / WORKGROUP / XWCLI.
//! * smb-port443 (`-d tcp.port==443,nbss`): `smb2.write_length` = 307200, design.bin.
//! * smb3-encrypted: sum of `smb2.header.transform.msg_size` = 308062 client→server (8 PDUs) and
//!   798 server→client (9 PDUs).
//! * smb1-port139: `smb.data_len_low + 65536 * smb.data_len_high` of the WRITE_ANDX requests =
//!   307200, of the READ_ANDX responses = 307200; dialect "NT LANMAN 1.0" (selected index 0).

use xferwatch_parsers::smb::{cmd, FileKey, FileOp, SmbConn, SmbLimits, SmbStats, SmbTx};

// ---------------------------------------------------------------------------------------------
// Fixtures and drivers
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Seg {
    Data(bool, Vec<u8>),
    Skip(bool, u64),
}

struct Fixture {
    segs: Vec<Seg>,
    totals: [u64; 2],
}

fn unhex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0, "odd hex line");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn load(name: &str) -> Fixture {
    let path = format!("{}/tests/fixtures/smb/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    let mut segs: Vec<Seg> = Vec::new();
    let mut totals = [0u64; 2];
    let mut counted = [0u64; 2];
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# to_server_bytes ") {
            totals[0] = rest.trim().parse().expect("total");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# to_client_bytes ") {
            totals[1] = rest.trim().parse().expect("total");
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let to_server = match line.as_bytes()[0] {
            b'>' => true,
            b'<' => false,
            _ => panic!("bad fixture line {line}"),
        };
        let body = line[1..].trim();
        let d = if to_server { 0 } else { 1 };
        if let Some(n) = body.strip_prefix("skip ") {
            let n: u64 = n.parse().expect("skip count");
            counted[d] += n;
            segs.push(Seg::Skip(to_server, n));
        } else {
            let bytes = unhex(body);
            counted[d] += bytes.len() as u64;
            match segs.last_mut() {
                Some(Seg::Data(dir, v)) if *dir == to_server => v.extend_from_slice(&bytes),
                _ => segs.push(Seg::Data(to_server, bytes)),
            }
        }
    }
    assert_eq!(
        counted, totals,
        "{name}: fixture does not add up to the stream lengths"
    );
    Fixture { segs, totals }
}

/// Tiny deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A caller: keeps each direction's unconsumed bytes and appends new ones, and collects the file
/// operations handed over.
struct Caller {
    conn: SmbConn,
    buf: [Vec<u8>; 2],
    out: Vec<SmbTx>,
    files: Vec<Got>,
}

/// A [`FileOp`], owned.
#[derive(Clone, Debug, PartialEq)]
enum Got {
    Bytes {
        key: FileKey,
        read: bool,
        offset: u64,
        data: Vec<u8>,
    },
    Rekey {
        from: FileKey,
        to: Option<FileKey>,
    },
}

#[derive(Debug)]
struct Run {
    txs: Vec<SmbTx>,
    stats: SmbStats,
    files: Vec<Got>,
}

/// Transactions and counters; the file bytes depend on how the input was cut and skipped (see
/// [`coalesced`]).
impl PartialEq for Run {
    fn eq(&self, o: &Run) -> bool {
        self.txs == o.txs && self.stats == o.stats
    }
}

/// File operations with adjacent pieces of one file joined: the same for any chunking.
fn coalesced(files: &[Got]) -> Vec<Got> {
    let mut v: Vec<Got> = Vec::new();
    for g in files {
        if let (
            Some(Got::Bytes {
                key: k0,
                read: r0,
                offset: o0,
                data: d0,
            }),
            Got::Bytes {
                key,
                read,
                offset,
                data,
            },
        ) = (v.last_mut(), g)
        {
            if k0 == key && r0 == read && *o0 + d0.len() as u64 == *offset {
                d0.extend_from_slice(data);
                continue;
            }
        }
        v.push(g.clone());
    }
    v
}

/// The file ranges covered by the bytes of one direction (`read`), merged.
fn coverage(files: &[Got], want_read: bool) -> Vec<(u64, u64)> {
    let mut r: Vec<(u64, u64)> = files
        .iter()
        .filter_map(|g| match g {
            Got::Bytes {
                read, offset, data, ..
            } if *read == want_read => Some((*offset, *offset + data.len() as u64)),
            _ => None,
        })
        .collect();
    r.sort();
    let mut m: Vec<(u64, u64)> = Vec::new();
    for (a, b) in r {
        match m.last_mut() {
            Some(l) if a <= l.1 => l.1 = l.1.max(b),
            _ => m.push((a, b)),
        }
    }
    m
}

impl Caller {
    fn new(limits: SmbLimits) -> Self {
        Caller {
            conn: SmbConn::new(limits),
            buf: [Vec::new(), Vec::new()],
            out: Vec::new(),
            files: Vec::new(),
        }
    }

    fn push(&mut self, to_server: bool, bytes: &[u8]) {
        let d = if to_server { 0 } else { 1 };
        self.buf[d].extend_from_slice(bytes);
        let files = &mut self.files;
        let n = self
            .conn
            .feed_files(to_server, &self.buf[d], &mut self.out, &mut |op| match op {
                FileOp::Bytes(b) => {
                    assert!(!b.data.is_empty(), "empty file bytes handed over");
                    assert!(b.data.len() <= 16 << 20);
                    // Writes travel to the server, reads to the client.
                    assert_eq!(b.read, !to_server);
                    files.push(Got::Bytes {
                        key: b.key,
                        read: b.read,
                        offset: b.offset,
                        data: b.data.to_vec(),
                    });
                }
                FileOp::Rekey { from, to } => {
                    assert!(matches!(from, FileKey::Compound(_)));
                    files.push(Got::Rekey { from, to });
                }
            });
        assert!(n <= self.buf[d].len());
        self.buf[d].drain(..n);
        assert!(
            self.buf[d].len() <= SmbConn::MAX_NEED,
            "parser left {} bytes unconsumed",
            self.buf[d].len()
        );
    }

    fn skip(&mut self, to_server: bool, n: u64) {
        let d = if to_server { 0 } else { 1 };
        assert!(
            self.buf[d].is_empty(),
            "bytes pending before a skippable region"
        );
        assert!(self.conn.skippable(to_server) >= n, "region not skippable");
        self.conn.skipped(to_server, n);
    }

    fn gap(&mut self, to_server: bool) {
        let d = if to_server { 0 } else { 1 };
        self.buf[d].clear();
        self.conn.gap(to_server);
    }

    fn finish(mut self) -> Run {
        self.conn.finish(&mut self.out);
        Run {
            txs: self.out,
            stats: self.conn.stats().clone(),
            files: self.files,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Elided {
    /// Skip left-out bytes through skippable()/skipped().
    Skip,
    /// Feed filler bytes in their place.
    Fill,
}

/// Bytes lost in one direction: `len` bytes from stream offset `at`.
#[derive(Clone, Copy)]
struct Loss {
    to_server: bool,
    at: u64,
    len: u64,
}

fn drive(
    fx: &Fixture,
    mode: Elided,
    mut chunks: Option<&mut Rng>,
    loss: Option<Loss>,
    limits: SmbLimits,
) -> Run {
    let mut c = Caller::new(limits);
    let mut filler = Rng::new(0xf111);
    let mut off = [0u64; 2];
    let mut gapped = false;
    for seg in &fx.segs {
        let (to_server, bytes) = match seg {
            Seg::Data(dir, v) => (*dir, v.clone()),
            Seg::Skip(dir, n) => {
                if mode == Elided::Skip && loss.is_none() {
                    c.skip(*dir, *n);
                    off[if *dir { 0 } else { 1 }] += n;
                    continue;
                }
                (*dir, filler.bytes(*n as usize))
            }
        };
        let d = if to_server { 0 } else { 1 };
        let start = off[d];
        off[d] += bytes.len() as u64;
        // Split around the lost range.
        let mut pieces: Vec<(&[u8], bool)> = Vec::new(); // (bytes, gap before)
        match loss {
            Some(l) if l.to_server == to_server && l.at < off[d] && l.at + l.len > start => {
                let a = l.at.saturating_sub(start) as usize;
                let z = ((l.at + l.len).min(off[d]) - start) as usize;
                pieces.push((&bytes[..a], false));
                let first = !gapped;
                gapped = true;
                pieces.push((&bytes[z..], first));
            }
            _ => pieces.push((&bytes[..], false)),
        }
        for (piece, gap_before) in pieces {
            if gap_before {
                c.gap(to_server);
            }
            match chunks.as_deref_mut() {
                None => c.push(to_server, piece),
                Some(rng) => {
                    let mut p = 0;
                    while p < piece.len() {
                        let n = rng.range(1, 3000).min(piece.len() - p);
                        c.push(to_server, &piece[p..p + n]);
                        p += n;
                    }
                }
            }
        }
    }
    c.finish()
}

fn one_feed(name: &str) -> Run {
    drive(&load(name), Elided::Skip, None, None, SmbLimits::default())
}

fn by_cmd<'a>(run: &'a Run, command: &str) -> Vec<&'a SmbTx> {
    run.txs.iter().filter(|t| t.command == command).collect()
}

fn the_file<'a>(run: &'a Run, command: &str, name: &str) -> &'a SmbTx {
    let v: Vec<&SmbTx> = run
        .txs
        .iter()
        .filter(|t| t.command == command && t.filename.as_deref() == Some(name))
        .collect();
    assert_eq!(v.len(), 1, "{command} {name}: {:#?}", run.txs);
    v[0]
}

// ---------------------------------------------------------------------------------------------
// Real captures
// ---------------------------------------------------------------------------------------------

#[test]
fn upload_smb2_transactions() {
    let fx = load("smb-upload.hex");
    assert_eq!(fx.totals, [514561, 2548]); // pcaps/expected.json payload c2s / s2c
    let run = one_feed("smb-upload.hex");
    let s = &run.stats;
    assert_eq!(s.dialect, Some(0x0311));
    assert_eq!(s.bytes_written, 512000);
    assert_eq!(s.bytes_read, 0);
    assert_eq!(s.messages, 36); // 18 requests, 18 responses
    assert_eq!((s.malformed, s.resyncs, s.limit_hits), (0, 0, 0));
    assert_eq!(s.encrypted_bytes, [0, 0]);

    let neg = by_cmd(&run, cmd::SMB2_NEGOTIATE);
    assert_eq!(neg.len(), 1);
    assert_eq!(neg[0].dialect, Some("3.1.1"));
    assert_eq!(neg[0].status, Some("STATUS_SUCCESS"));

    // The first SESSION_SETUP response (MORE_PROCESSING_REQUIRED) is not a tx.
    let ss = by_cmd(&run, cmd::SMB2_SESSION_SETUP);
    assert_eq!(ss.len(), 1);
    assert_eq!(ss[0].status, Some("STATUS_SUCCESS"));
    assert_eq!(ss[0].status_code, Some(0));
    assert_eq!(ss[0].session_id, 0x6eb3_87c4);
    let ntlm = ss[0].ntlmssp.as_ref().expect("ntlmssp");
    assert_eq!(
        (ntlm.user.as_str(), ntlm.domain.as_str(), ntlm.host.as_str()),
        ("root", "WORKGROUP", "XWCLI")
    );

    let tc: Vec<Option<&str>> = by_cmd(&run, cmd::SMB2_TREE_CONNECT)
        .iter()
        .map(|t| t.share.as_deref())
        .collect();
    assert_eq!(
        tc,
        [Some(r"\\198.51.100.10\IPC$"), Some(r"\\198.51.100.10\xfer")]
    );

    let create = the_file(&run, cmd::SMB2_CREATE, "payroll.bin");
    assert_eq!(create.status, Some("STATUS_SUCCESS"));
    assert_eq!(create.share.as_deref(), Some(r"\\198.51.100.10\xfer"));
    assert_eq!(create.disposition, Some("FILE_OVERWRITE_IF"));
    assert_eq!(create.size, Some(0));
    assert_eq!(create.dialect, Some("3.1.1"));
    assert_eq!(create.session_id, 0x6eb3_87c4);
    // tshark: 73ddb622-0000-0000-0f09-6d8b00000000; Suricata's byte order differs in the tail.
    assert_eq!(
        create.fuid.as_deref(),
        Some("73ddb622-0000-0000-090f-8b6d00000000")
    );

    let close = the_file(&run, cmd::SMB2_CLOSE, "payroll.bin");
    assert_eq!(close.status, Some("STATUS_SUCCESS"));
    assert_eq!(close.bytes_written, 512000);
    assert_eq!(close.bytes_read, 0);
    assert_eq!(close.fuid, create.fuid);
    assert_eq!(close.share, create.share);
    assert_eq!(close.tree_id, create.tree_id);

    // `ls`: two opens of the share root, closed without data.
    let roots: Vec<&SmbTx> = by_cmd(&run, cmd::SMB2_CLOSE)
        .into_iter()
        .filter(|t| t.filename.as_deref() == Some(""))
        .collect();
    assert_eq!(roots.len(), 2);
    assert!(roots
        .iter()
        .all(|t| t.bytes_written == 0 && t.bytes_read == 0));
    assert_eq!(run.txs.len(), 1 + 1 + 2 + 3 + 3);
}

#[test]
fn port443_smb2_transactions() {
    let fx = load("smb-port443.hex");
    assert_eq!(fx.totals, [309010, 1377]);
    let run = one_feed("smb-port443.hex");
    assert_eq!(run.stats.dialect, Some(0x0311));
    assert_eq!(run.stats.bytes_written, 307200);
    assert_eq!((run.stats.malformed, run.stats.resyncs), (0, 0));
    let create = the_file(&run, cmd::SMB2_CREATE, "design.bin");
    assert_eq!(create.share.as_deref(), Some(r"\\198.51.100.10\xfer"));
    let close = the_file(&run, cmd::SMB2_CLOSE, "design.bin");
    assert_eq!(close.bytes_written, 307200);
    assert_eq!(close.status, Some("STATUS_SUCCESS"));
    assert_eq!(close.fuid, create.fuid);
}

#[test]
fn encrypted_volume_per_session() {
    let fx = load("smb3-encrypted.hex");
    assert_eq!(fx.totals, [309426, 1922]);
    let run = one_feed("smb3-encrypted.hex");
    let s = &run.stats;
    assert_eq!(s.encrypted_bytes, [308062, 798]);
    assert_eq!(s.messages, 6 + 17);
    assert_eq!(s.bytes_written, 0, "the WRITE is encrypted");
    assert_eq!((s.malformed, s.resyncs, s.limit_hits), (0, 0, 0));
    assert_eq!(by_cmd(&run, cmd::SMB2_NEGOTIATE)[0].dialect, Some("3.1.1"));
    let ss = by_cmd(&run, cmd::SMB2_SESSION_SETUP);
    assert_eq!(ss.len(), 1);
    assert_eq!(
        ss[0].ntlmssp.as_ref().map(|n| n.user.as_str()),
        Some("root")
    );
    assert!(by_cmd(&run, cmd::SMB2_CREATE).is_empty());
    let enc = by_cmd(&run, cmd::SMB3_ENCRYPTED);
    assert_eq!(enc.len(), 1);
    assert_eq!(enc[0].session_id, 0x1859_76f4);
    assert_eq!(enc[0].encrypted_bytes, [308062, 798]);
    assert_eq!(enc[0].status, None);
}

#[test]
fn smb1_port139_transactions() {
    let fx = load("smb1-port139.hex");
    assert_eq!(fx.totals, [309301, 308951]);
    let run = one_feed("smb1-port139.hex");
    let s = &run.stats;
    assert_eq!(s.bytes_written, 307200);
    assert_eq!(s.bytes_read, 307200);
    assert_eq!(s.dialect, None);
    assert_eq!((s.malformed, s.resyncs, s.limit_hits), (0, 0, 0));

    let neg = by_cmd(&run, cmd::SMB1_NEGOTIATE);
    assert_eq!(neg.len(), 1);
    assert_eq!(neg[0].dialect, Some("NT LANMAN 1.0"));

    let ss = by_cmd(&run, cmd::SMB1_SESSION_SETUP);
    assert_eq!(ss.len(), 1);
    assert_eq!(ss[0].session_id, 62520);
    let ntlm = ss[0].ntlmssp.as_ref().expect("ntlmssp");
    assert_eq!(
        (ntlm.user.as_str(), ntlm.domain.as_str(), ntlm.host.as_str()),
        ("root", "WORKGROUP", "XWCLI")
    );

    let tc: Vec<Option<&str>> = by_cmd(&run, cmd::SMB1_TREE_CONNECT)
        .iter()
        .map(|t| t.share.as_deref())
        .collect();
    assert_eq!(
        tc,
        [Some(r"\\198.51.100.10\IPC$"), Some(r"\\198.51.100.10\XFER")]
    );

    let creates: Vec<&SmbTx> = by_cmd(&run, cmd::SMB1_NT_CREATE);
    assert_eq!(creates.len(), 2);
    assert_eq!(creates[0].filename.as_deref(), Some(r"\ledger.bin"));
    assert_eq!(creates[0].disposition, Some("FILE_OVERWRITE_IF"));
    assert_eq!(creates[0].fuid.as_deref(), Some("1cbd"));
    assert_eq!(creates[0].size, Some(0));
    assert_eq!(creates[1].disposition, Some("FILE_OPEN"));
    assert_eq!(creates[1].fuid.as_deref(), Some("e35b"));
    assert_eq!(creates[1].size, Some(307200));
    assert_eq!(creates[1].share.as_deref(), Some(r"\\198.51.100.10\XFER"));
    assert_eq!(creates[1].tree_id, 55695);

    let closes = by_cmd(&run, cmd::SMB1_CLOSE);
    assert_eq!(closes.len(), 2);
    assert_eq!(closes[0].fuid.as_deref(), Some("1cbd"));
    assert_eq!((closes[0].bytes_written, closes[0].bytes_read), (307200, 0));
    assert_eq!(closes[1].fuid.as_deref(), Some("e35b"));
    assert_eq!((closes[1].bytes_written, closes[1].bytes_read), (0, 307200));
    assert_eq!(closes[1].filename.as_deref(), Some(r"\ledger.bin"));
    assert_eq!(closes[1].status, Some("STATUS_SUCCESS"));
}

/// The data of every WRITE request and READ response of the captures is handed over, at the
/// right offsets, exactly once: the files are covered from 0 to their size (tshark's sums above).
#[test]
fn capture_file_data_is_handed_over_by_offset() {
    for (name, written, read) in [
        ("smb-upload.hex", 512_000u64, 0u64),
        ("smb-port443.hex", 307_200, 0),
        ("smb1-port139.hex", 307_200, 307_200),
        ("smb3-encrypted.hex", 0, 0),
    ] {
        let run = drive(&load(name), Elided::Fill, None, None, SmbLimits::default());
        let total = |want_read: bool| -> u64 {
            run.files
                .iter()
                .map(|g| match g {
                    Got::Bytes { read, data, .. } if *read == want_read => data.len() as u64,
                    _ => 0,
                })
                .sum()
        };
        assert_eq!((total(false), total(true)), (written, read), "{name}");
        let span = |n: u64| if n == 0 { vec![] } else { vec![(0, n)] };
        assert_eq!(coverage(&run.files, false), span(written), "{name}");
        assert_eq!(coverage(&run.files, true), span(read), "{name}");
        // SMB1 files are named by FID, SMB2 files by FileId; no compound keys here.
        for g in &run.files {
            match g {
                Got::Bytes { key, .. } => assert_eq!(
                    matches!(key, FileKey::V1(_)),
                    name.starts_with("smb1"),
                    "{name}"
                ),
                Got::Rekey { .. } => panic!("{name}: no compound CREATE in the capture"),
            }
        }
        // The bytes of the files the CLOSEs report.
        let moved: (u64, u64) = run
            .txs
            .iter()
            .map(|t| (t.bytes_written, t.bytes_read))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert_eq!(moved, (written, read), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Chunking, skipping, gaps
// ---------------------------------------------------------------------------------------------

const FIXTURES: [&str; 4] = [
    "smb-upload.hex",
    "smb-port443.hex",
    "smb3-encrypted.hex",
    "smb1-port139.hex",
];

#[test]
fn random_chunks_match_one_feed() {
    for name in FIXTURES {
        let fx = load(name);
        let base = drive(&fx, Elided::Skip, None, None, SmbLimits::default());
        assert!(!base.txs.is_empty());
        let filled = drive(&fx, Elided::Fill, None, None, SmbLimits::default());
        assert_eq!(filled, base, "{name}: filler fed in one piece");
        let filled_files = coalesced(&filled.files);
        for seed in 1..=12u64 {
            let mut rng = Rng::new(seed);
            let run = drive(
                &fx,
                Elided::Fill,
                Some(&mut rng),
                None,
                SmbLimits::default(),
            );
            assert_eq!(run, base, "{name}: filler in random chunks, seed {seed}");
            assert!(
                coalesced(&run.files) == filled_files,
                "{name}: file bytes in random chunks, seed {seed}"
            );
            let mut rng = Rng::new(seed + 1000);
            let run = drive(
                &fx,
                Elided::Skip,
                Some(&mut rng),
                None,
                SmbLimits::default(),
            );
            assert_eq!(run, base, "{name}: skipped, random chunks, seed {seed}");
        }
    }
}

/// Start offsets and lengths of the NBSS messages of one direction of a fixture.
fn messages(fx: &Fixture, to_server: bool) -> Vec<(u64, u64)> {
    let mut stream = Vec::new();
    for seg in &fx.segs {
        match seg {
            Seg::Data(d, v) if *d == to_server => stream.extend_from_slice(v),
            Seg::Skip(d, n) if *d == to_server => stream.resize(stream.len() + *n as usize, 0),
            _ => {}
        }
    }
    let mut v = Vec::new();
    let mut p = 0usize;
    while p + 4 <= stream.len() {
        let len = ((stream[p + 1] as usize) << 16)
            | ((stream[p + 2] as usize) << 8)
            | stream[p + 3] as usize;
        v.push((p as u64, 4 + len as u64));
        p += 4 + len;
    }
    v
}

#[test]
fn gap_inside_a_request_resyncs() {
    let fx = load("smb-upload.hex");
    let msgs = messages(&fx, true);
    // c2s: NEGOTIATE, SESSION_SETUP x2, TREE_CONNECT IPC$, IOCTL, TREE_DISCONNECT, ...
    let (ioctl, _) = msgs[4];
    let loss = Loss {
        to_server: true,
        at: ioctl + 10,
        len: 40,
    };
    for seed in [None, Some(7u64)] {
        let mut rng = seed.map(Rng::new);
        let run = drive(
            &fx,
            Elided::Fill,
            rng.as_mut(),
            Some(loss),
            SmbLimits::default(),
        );
        assert_eq!(run.stats.resyncs, 1);
        assert_eq!(run.stats.bytes_written, 512000);
        let close = the_file(&run, cmd::SMB2_CLOSE, "payroll.bin");
        assert_eq!(close.bytes_written, 512000);
        assert_eq!(by_cmd(&run, cmd::SMB2_TREE_CONNECT).len(), 2);
    }
}

#[test]
fn gap_inside_write_data_keeps_the_volume() {
    let fx = load("smb-upload.hex");
    let msgs = messages(&fx, true);
    let (write, len) = msgs[8];
    assert!(len > 500_000, "message 8 is the WRITE");
    let loss = Loss {
        to_server: true,
        at: write + 200_000,
        len: 5000,
    };
    let run = drive(&fx, Elided::Fill, None, Some(loss), SmbLimits::default());
    assert_eq!(run.stats.resyncs, 1);
    // The length comes from the WRITE header, read before the loss.
    let close = the_file(&run, cmd::SMB2_CLOSE, "payroll.bin");
    assert_eq!(close.bytes_written, 512000);
    assert_eq!(by_cmd(&run, cmd::SMB2_CLOSE).len(), 3);
}

#[test]
fn gap_in_create_response_still_counts_the_file() {
    let fx = load("smb-upload.hex");
    let msgs = messages(&fx, false);
    // s2c: NEGOTIATE, SESSION_SETUP x2, TREE_CONNECT, IOCTL, TREE_DISCONNECT, TREE_CONNECT, CREATE
    let (create, _) = msgs[7];
    let loss = Loss {
        to_server: false,
        at: create + 20,
        len: 30,
    };
    let run = drive(&fx, Elided::Fill, None, Some(loss), SmbLimits::default());
    assert_eq!(run.stats.resyncs, 1);
    assert!(by_cmd(&run, cmd::SMB2_CREATE)
        .iter()
        .all(|t| t.filename.as_deref() != Some("payroll.bin")));
    // The WRITE went to a FileId whose open was lost: reported without a name at its CLOSE.
    let close: Vec<&SmbTx> = by_cmd(&run, cmd::SMB2_CLOSE)
        .into_iter()
        .filter(|t| t.bytes_written > 0)
        .collect();
    assert_eq!(close.len(), 1);
    assert_eq!(close[0].bytes_written, 512000);
    assert_eq!(close[0].filename, None);
    assert_eq!(close[0].share.as_deref(), Some(r"\\198.51.100.10\xfer"));
}

#[test]
fn truncated_streams_push_open_files_at_finish() {
    let fx = load("smb1-port139.hex");
    // Stop right after the first WRITE_ANDX request header: the file is open with data.
    let msgs = messages(&fx, true);
    let cut = msgs
        .iter()
        .find(|(_, len)| *len > 100_000)
        .expect("a WRITE_ANDX")
        .0
        + 200;
    let mut c = Caller::new(SmbLimits::default());
    let mut off = [0u64; 2];
    let mut filler = Rng::new(3);
    'outer: for seg in &fx.segs {
        let (to_server, bytes) = match seg {
            Seg::Data(d, v) => (*d, v.clone()),
            Seg::Skip(d, n) => (*d, filler.bytes(*n as usize)),
        };
        let d = if to_server { 0 } else { 1 };
        if to_server && off[0] + bytes.len() as u64 >= cut {
            c.push(true, &bytes[..(cut - off[0]) as usize]);
            break 'outer;
        }
        off[d] += bytes.len() as u64;
        c.push(to_server, &bytes);
    }
    let run = c.finish();
    let open: Vec<&SmbTx> = by_cmd(&run, cmd::SMB1_CLOSE);
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].status, None, "pushed by finish()");
    assert_eq!(open[0].filename.as_deref(), Some(r"\ledger.bin"));
    assert_eq!(open[0].bytes_written, 130048); // 64512 + 65536 * 1
}

// ---------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------

#[test]
fn names_are_cut_to_max_name() {
    let limits = SmbLimits {
        max_name: 8,
        ..SmbLimits::default()
    };
    let run = drive(&load("smb-upload.hex"), Elided::Skip, None, None, limits);
    let close = the_file(&run, cmd::SMB2_CLOSE, "payroll.");
    assert_eq!(close.bytes_written, 512000);
    assert_eq!(close.share.as_deref(), Some(r"\\198.51"));
    assert_eq!(run.stats.limit_hits, 0);
}

// Hand-built SMB2 messages for the synthetic tests.

fn nbss(body: &[u8]) -> Vec<u8> {
    let n = body.len();
    let mut v = vec![0, (n >> 16) as u8, (n >> 8) as u8, n as u8];
    v.extend_from_slice(body);
    v
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

struct H {
    cmd: u16,
    response: bool,
    msg_id: u64,
    session: u64,
    tree: u32,
    status: u32,
    related: bool,
}

fn smb2(h: &H, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xfe, b'S', b'M', b'B', 64, 0, 1, 0];
    v.extend_from_slice(&h.status.to_le_bytes());
    v.extend_from_slice(&h.cmd.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    let flags = (h.response as u32) | if h.related { 4 } else { 0 };
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes()); // NextCommand, set by chain()
    v.extend_from_slice(&h.msg_id.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&h.tree.to_le_bytes());
    v.extend_from_slice(&h.session.to_le_bytes());
    v.extend_from_slice(&[0u8; 16]);
    v.extend_from_slice(body);
    v
}

/// Compound: pad each command to 8 bytes and set NextCommand.
fn chain(cmds: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, c) in cmds.iter().enumerate() {
        let mut c = c.clone();
        if i + 1 < cmds.len() {
            while c.len() % 8 != 0 {
                c.push(0);
            }
            let next = c.len() as u32;
            c[20..24].copy_from_slice(&next.to_le_bytes());
        }
        v.extend_from_slice(&c);
    }
    v
}

fn req(cmd: u16, msg_id: u64) -> H {
    H {
        cmd,
        response: false,
        msg_id,
        session: 0x77,
        tree: 5,
        status: 0,
        related: false,
    }
}

fn rsp(cmd: u16, msg_id: u64) -> H {
    H {
        response: true,
        ..req(cmd, msg_id)
    }
}

fn create_req(h: &H, name: &str, disposition: u32) -> Vec<u8> {
    let name = utf16(name);
    let mut b = vec![0u8; 56];
    b[0] = 57;
    b[36..40].copy_from_slice(&disposition.to_le_bytes());
    b[44..46].copy_from_slice(&120u16.to_le_bytes());
    b[46..48].copy_from_slice(&(name.len() as u16).to_le_bytes());
    b.extend_from_slice(&name);
    smb2(h, &b)
}

fn create_rsp(h: &H, fid: [u8; 16], eof: u64) -> Vec<u8> {
    let mut b = vec![0u8; 88];
    b[0] = 89;
    b[48..56].copy_from_slice(&eof.to_le_bytes());
    b[64..80].copy_from_slice(&fid);
    smb2(h, &b)
}

fn write_req(h: &H, fid: [u8; 16], len: usize) -> Vec<u8> {
    let mut b = vec![0u8; 48];
    b[0] = 49;
    b[2..4].copy_from_slice(&112u16.to_le_bytes());
    b[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    b[16..32].copy_from_slice(&fid);
    b.resize(48 + len, 0xab);
    smb2(h, &b)
}

fn write_rsp(h: &H, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[0] = 17;
    b[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    smb2(h, &b)
}

fn read_req(h: &H, fid: [u8; 16], len: usize) -> Vec<u8> {
    let mut b = vec![0u8; 49];
    b[0] = 49;
    b[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    b[16..32].copy_from_slice(&fid);
    smb2(h, &b)
}

fn read_rsp(h: &H, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[0] = 17;
    b[2] = 80;
    b[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    b.resize(16 + len, 0xcd);
    smb2(h, &b)
}

fn close_req(h: &H, fid: [u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; 24];
    b[0] = 24;
    b[8..24].copy_from_slice(&fid);
    smb2(h, &b)
}

fn close_rsp(h: &H, eof: Option<u64>) -> Vec<u8> {
    let mut b = vec![0u8; 60];
    b[0] = 60;
    if let Some(eof) = eof {
        b[2] = 1; // SMB2_CLOSE_FLAG_POSTQUERY_ATTRIB
        b[48..56].copy_from_slice(&eof.to_le_bytes());
    }
    smb2(h, &b)
}

fn tree_req(h: &H, path: &str) -> Vec<u8> {
    let p = utf16(path);
    let mut b = vec![0u8; 8];
    b[0] = 9;
    b[4..6].copy_from_slice(&72u16.to_le_bytes());
    b[6..8].copy_from_slice(&(p.len() as u16).to_le_bytes());
    b.extend_from_slice(&p);
    smb2(h, &b)
}

fn tree_rsp(h: &H) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[0] = 16;
    b[2] = 1;
    smb2(h, &b)
}

/// A related compound command (FLAGS_RELATED_OPERATIONS): request and response.
fn related_req(cmd: u16, msg_id: u64) -> H {
    H {
        related: true,
        ..req(cmd, msg_id)
    }
}

fn related_rsp(cmd: u16, msg_id: u64) -> H {
    H {
        related: true,
        ..rsp(cmd, msg_id)
    }
}

fn fid(n: u8) -> [u8; 16] {
    let mut f = [0u8; 16];
    f[0] = n;
    f[8] = 0x42;
    f
}

fn feed_all(c: &mut Caller, to_server: bool, msgs: &[Vec<u8>]) {
    for m in msgs {
        c.push(to_server, &nbss(m));
    }
}

#[test]
fn compound_create_write_read_close() {
    let mut c = Caller::new(SmbLimits::default());
    feed_all(&mut c, true, &[tree_req(&req(3, 1), r"\\srv\data")]);
    feed_all(&mut c, false, &[tree_rsp(&rsp(3, 1))]);
    let all = [0xffu8; 16];
    let request = chain(&[
        create_req(&req(5, 2), r"dir\c.txt", 2),
        write_req(&related_req(9, 3), all, 100),
        read_req(&related_req(8, 4), all, 40),
        close_req(&related_req(6, 5), all),
    ]);
    let response = chain(&[
        create_rsp(&rsp(5, 2), fid(9), 0),
        write_rsp(&related_rsp(9, 3), 100),
        read_rsp(&related_rsp(8, 4), 40),
        close_rsp(&related_rsp(6, 5), Some(100)),
    ]);
    c.push(true, &nbss(&request));
    c.push(false, &nbss(&response));
    let run = c.finish();
    assert_eq!(run.stats.messages, 4);
    assert_eq!(run.stats.malformed, 0);
    let create = the_file(&run, cmd::SMB2_CREATE, r"dir\c.txt");
    assert_eq!(create.share.as_deref(), Some(r"\\srv\data"));
    assert_eq!(create.disposition, Some("FILE_CREATE"));
    let close = the_file(&run, cmd::SMB2_CLOSE, r"dir\c.txt");
    assert_eq!((close.bytes_written, close.bytes_read), (100, 40));
    assert_eq!(
        close.size,
        Some(100),
        "CLOSE with POSTQUERY_ATTRIB gives the size"
    );
    assert_eq!(close.fuid, create.fuid);
    assert_eq!((run.stats.bytes_written, run.stats.bytes_read), (100, 40));
}

/// Request bodies cut short: the fields read with a default are counted in `field_errors`, the
/// message is still used (not `malformed`), and the transactions are the ones the defaults give.
#[test]
fn cut_request_fields_are_counted_not_malformed() {
    let mut c = Caller::new(SmbLimits::default());
    // TREE_CONNECT with PathOffset but no PathLength: an empty path at that offset, which lies
    // past the message: no share.
    feed_all(&mut c, true, &[smb2(&req(3, 1), &[9, 0, 0, 0, 72, 0])]);
    feed_all(&mut c, false, &[tree_rsp(&rsp(3, 1))]);
    // CREATE cut after CreateDisposition: the share root, disposition kept.
    let full = create_req(&req(5, 2), "x", 2);
    feed_all(&mut c, true, &[full[..64 + 42].to_vec()]);
    feed_all(&mut c, false, &[create_rsp(&rsp(5, 2), fid(1), 0)]);
    // SESSION_SETUP with an empty body: no NTLMSSP names.
    feed_all(&mut c, true, &[smb2(&req(1, 3), &[])]);
    feed_all(
        &mut c,
        false,
        &[smb2(&rsp(1, 3), &[9, 0, 0, 0, 0, 0, 0, 0, 0])],
    );
    let run = c.finish();
    assert_eq!(run.stats.field_errors, 3);
    assert_eq!(run.stats.malformed, 0);
    let tree = by_cmd(&run, cmd::SMB2_TREE_CONNECT);
    assert_eq!(tree[0].share, None);
    let create = by_cmd(&run, cmd::SMB2_CREATE);
    assert_eq!(create[0].filename.as_deref(), Some(""));
    assert_eq!(create[0].disposition, Some("FILE_CREATE"));
    assert_eq!(by_cmd(&run, cmd::SMB2_SESSION_SETUP)[0].ntlmssp, None);
}

/// File content for the synthetic tests: a pattern that differs at every offset of a piece.
fn content(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn read_req_at(h: &H, fid: [u8; 16], len: usize, offset: u64) -> Vec<u8> {
    let mut m = read_req(h, fid, len);
    m[64 + 8..64 + 16].copy_from_slice(&offset.to_le_bytes());
    m
}

fn read_rsp_data(h: &H, data: &[u8]) -> Vec<u8> {
    let mut m = read_rsp(h, data.len());
    m[80..].copy_from_slice(data);
    m
}

fn write_req_data(h: &H, fid: [u8; 16], data: &[u8], offset: u64) -> Vec<u8> {
    let mut m = write_req(h, fid, data.len());
    m[64 + 8..64 + 16].copy_from_slice(&offset.to_le_bytes());
    m[112..].copy_from_slice(data);
    m
}

/// The bytes of one file and direction, put together by offset (offsets small in these tests).
fn assemble(files: &[Got], want: FileKey, want_read: bool) -> Vec<u8> {
    let mut v = Vec::new();
    for g in files {
        if let Got::Bytes {
            key,
            read,
            offset,
            data,
        } = g
        {
            if *key == want && *read == want_read {
                let o = *offset as usize;
                if v.len() < o + data.len() {
                    v.resize(o + data.len(), 0);
                }
                v[o..o + data.len()].copy_from_slice(data);
            }
        }
    }
    v
}

fn push_in_chunks(c: &mut Caller, to_server: bool, bytes: &[u8], chunk: usize) {
    for piece in bytes.chunks(chunk) {
        c.push(to_server, piece);
    }
}

/// Pipelined credits: three READs outstanding at once, answered out of order; each response's
/// data lands at its own request's offset (the response carries only the MessageId).
#[test]
fn pipelined_reads_answered_out_of_order() {
    let file = content(120_000, 7);
    let mut c = Caller::new(SmbLimits::default());
    feed_all(&mut c, true, &[create_req(&req(5, 1), "big.bin", 1)]);
    feed_all(&mut c, false, &[create_rsp(&rsp(5, 1), fid(3), 120_000)]);
    let mut reqs = Vec::new();
    for (id, off) in [(10u64, 0usize), (11, 40_000), (12, 80_000)] {
        reqs.extend_from_slice(&nbss(&read_req_at(&req(8, id), fid(3), 40_000, off as u64)));
    }
    c.push(true, &reqs);
    let mut rsps = Vec::new();
    for (id, off) in [(12u64, 80_000usize), (10, 0), (11, 40_000)] {
        rsps.extend_from_slice(&nbss(&read_rsp_data(&rsp(8, id), &file[off..off + 40_000])));
    }
    // Larger than the part of a READ response the parser reads: the data passes in pieces.
    push_in_chunks(&mut c, false, &rsps, 1_337);
    feed_all(&mut c, true, &[close_req(&req(6, 13), fid(3))]);
    feed_all(&mut c, false, &[close_rsp(&rsp(6, 13), None)]);
    let run = c.finish();
    let pieces: Vec<(u64, usize)> = coalesced(&run.files)
        .iter()
        .map(|g| match g {
            Got::Bytes {
                key,
                read,
                offset,
                data,
            } => {
                assert_eq!((*key, *read), (FileKey::V2(fid(3)), true));
                (*offset, data.len())
            }
            Got::Rekey { .. } => panic!("no compound here"),
        })
        .collect();
    // Answered 12, 10, 11: the last two are adjacent and join.
    assert_eq!(pieces, [(80_000, 40_000), (0, 80_000)]);
    assert!(assemble(&run.files, FileKey::V2(fid(3)), true) == file);
    let close = the_file(&run, cmd::SMB2_CLOSE, "big.bin");
    assert_eq!((close.bytes_read, close.bytes_written), (120_000, 0));
    assert_eq!((run.stats.limit_hits, run.stats.malformed), (0, 0));
}

/// Outstanding READs are bounded by `max_pending`: the oldest is forgotten (counted), its
/// response's data is not handed over (its file gets a gap), the others still land right.
#[test]
fn outstanding_reads_are_bounded() {
    let limits = SmbLimits {
        max_pending: 2,
        ..SmbLimits::default()
    };
    let mut c = Caller::new(limits);
    let reqs: Vec<_> = (0..3u64)
        .map(|i| read_req_at(&req(8, 20 + i), fid(4), 100, i * 100))
        .collect();
    feed_all(&mut c, true, &reqs);
    assert_eq!(c.conn.stats().limit_hits, 1);
    let rsps: Vec<_> = (0..3u64)
        .map(|i| read_rsp_data(&rsp(8, 20 + i), &content(100, i as u8)))
        .collect();
    feed_all(&mut c, false, &rsps);
    let run = c.finish();
    assert_eq!(coverage(&run.files, true), [(100, 300)]);
    assert_eq!(run.stats.bytes_read, 300, "all responses are still counted");
    assert_eq!(run.stats.limit_hits, 1);
}

/// A compound CREATE+WRITE+WRITE+CLOSE: the related WRITEs (FileId all ones) hand their data over
/// before the FileId is known, as the compound's file, then the CREATE response names it.
#[test]
fn compound_create_write_close_hands_data_over() {
    let all = [0xffu8; 16];
    let (a, b) = (content(300, 1), content(200, 2));
    let request = chain(&[
        create_req(&req(5, 2), "c.bin", 2),
        write_req_data(&related_req(9, 3), all, &a, 0),
        write_req_data(&related_req(9, 4), all, &b, 300),
        close_req(&related_req(6, 5), all),
    ]);
    for failed in [false, true] {
        let mut c = Caller::new(SmbLimits::default());
        c.push(true, &nbss(&request));
        let status = if failed { 0xc000_0022 } else { 0 };
        let create = H {
            status,
            ..rsp(5, 2)
        };
        let response = chain(&[
            create_rsp(&create, fid(9), 0),
            write_rsp(&related_rsp(9, 3), 300),
            write_rsp(&related_rsp(9, 4), 200),
            close_rsp(&related_rsp(6, 5), Some(500)),
        ]);
        c.push(false, &nbss(&response));
        let run = c.finish();
        let pending = FileKey::Compound(2);
        let to = (!failed).then_some(FileKey::V2(fid(9)));
        assert_eq!(
            run.files,
            [
                Got::Bytes {
                    key: pending,
                    read: false,
                    offset: 0,
                    data: a.clone()
                },
                Got::Bytes {
                    key: pending,
                    read: false,
                    offset: 300,
                    data: b.clone()
                },
                Got::Rekey { from: pending, to },
            ],
            "failed open: {failed}"
        );
        assert_eq!(run.stats.bytes_written, 500);
        if !failed {
            let close = the_file(&run, cmd::SMB2_CLOSE, "c.bin");
            assert_eq!((close.bytes_written, close.size), (500, Some(500)));
            assert_eq!(
                close.fuid.as_deref(),
                Some(xferwatch_parsers::smb::fuid_of(&FileKey::V2(fid(9))).as_str())
            );
        }
    }
}

/// An SMB1 message by hand: header (PID 0x1234, TID 1, UID 0x64), words, ByteCount and bytes.
fn smb1(command: u8, reply: bool, mid: u16, words: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![0xff, b'S', b'M', b'B', command, 0, 0, 0, 0];
    v.push(if reply { 0x98 } else { 0x18 });
    v.extend_from_slice(&0xc801u16.to_le_bytes());
    v.extend_from_slice(&[0; 10]); // PIDHigh, SecurityFeatures
    v.extend_from_slice(&0u16.to_le_bytes()); // Reserved
    for x in [1u16, 0x1234, 0x64, mid] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    assert_eq!(v.len(), 32);
    v.push((words.len() / 2) as u8);
    v.extend_from_slice(words);
    v.extend_from_slice(&(bytes.len().min(0xffff) as u16).to_le_bytes());
    v.extend_from_slice(bytes);
    v
}

fn le(fields: &[&[u8]]) -> Vec<u8> {
    fields.concat()
}

/// WRITE_ANDX request: WordCount 14 with OffsetHigh, or 12 without; one pad byte before the data.
fn write_andx(mid: u16, fid: u16, offset: u64, data: &[u8], wc14: bool) -> Vec<u8> {
    let n = data.len();
    let data_offset: u16 = if wc14 { 64 } else { 60 };
    let mut w = le(&[
        &[0xff, 0, 0, 0],
        &fid.to_le_bytes(),
        &(offset as u32).to_le_bytes(),
        &[0; 8], // Timeout, WriteMode, Remaining
        &((n >> 16) as u16).to_le_bytes(),
        &(n as u16).to_le_bytes(),
        &data_offset.to_le_bytes(),
    ]);
    if wc14 {
        w.extend_from_slice(&((offset >> 32) as u32).to_le_bytes());
    }
    let mut b = vec![0u8];
    b.extend_from_slice(data);
    smb1(0x2f, false, mid, &w, &b)
}

/// SMB1: WRITE_ANDX with the offset's high 32 bits, a WRITE_ANDX over 64 KiB (DataLengthHigh,
/// data starting inside the part the parser reads), and READ_ANDX paired by PID/MID with the
/// request's high offset.
#[test]
fn smb1_write_andx_high_offset_and_read_andx() {
    let mut c = Caller::new(SmbLimits::default());
    let small = content(5_000, 3);
    let big = content(70_000, 4);
    feed_all(
        &mut c,
        true,
        &[write_andx(1, 0x4000, 0x1_0000_0007, &small, true)],
    );
    push_in_chunks(
        &mut c,
        true,
        &nbss(&write_andx(2, 0x4000, 0, &big, false)),
        999,
    );
    // READ_ANDX request (WordCount 12): offset 0x2_0000_0010, then its response.
    let w = le(&[
        &[0xff, 0, 0, 0],
        &0x4000u16.to_le_bytes(),
        &0x10u32.to_le_bytes(),
        &[0; 10],
        &2u32.to_le_bytes(),
    ]);
    feed_all(&mut c, true, &[smb1(0x2e, false, 3, &w, &[])]);
    let got = content(3_000, 5);
    let w = le(&[
        &[0xff, 0, 0, 0],
        &[0; 6],
        &3_000u16.to_le_bytes(),
        &60u16.to_le_bytes(),
        &[0; 10],
    ]);
    let mut b = vec![0u8];
    b.extend_from_slice(&got);
    feed_all(&mut c, false, &[smb1(0x2e, true, 3, &w, &b)]);
    let run = c.finish();
    let f = coalesced(&run.files);
    let key = FileKey::V1(0x4000);
    assert_eq!(
        f,
        [
            Got::Bytes {
                key,
                read: false,
                offset: 0x1_0000_0007,
                data: small
            },
            Got::Bytes {
                key,
                read: false,
                offset: 0,
                data: big
            },
            Got::Bytes {
                key,
                read: true,
                offset: 0x2_0000_0010,
                data: got
            },
        ]
    );
    assert_eq!(
        (run.stats.bytes_written, run.stats.bytes_read),
        (75_000, 3_000)
    );
    assert_eq!((run.stats.malformed, run.stats.field_errors), (0, 0));
}

/// A WRITE at an offset near the end of the u64 range: the offsets of later pieces saturate.
#[test]
fn write_offsets_near_the_limit_saturate() {
    let mut c = Caller::new(SmbLimits::default());
    let data = content(100_000, 6);
    let m = nbss(&write_req_data(&req(9, 1), fid(2), &data, u64::MAX - 10));
    push_in_chunks(&mut c, true, &m, 4_096);
    let run = c.finish();
    let offsets: Vec<u64> = run
        .files
        .iter()
        .map(|g| match g {
            Got::Bytes { offset, .. } => *offset,
            Got::Rekey { .. } => panic!(),
        })
        .collect();
    assert!(offsets.len() > 1);
    assert_eq!(offsets[0], u64::MAX - 10);
    assert!(offsets[1..].iter().all(|&o| o == u64::MAX));
}

#[test]
fn failed_open_and_unanswered_requests() {
    let mut c = Caller::new(SmbLimits::default());
    let mut h = rsp(5, 1);
    h.status = 0xc000_0034;
    feed_all(&mut c, true, &[create_req(&req(5, 1), "missing.txt", 1)]);
    feed_all(&mut c, false, &[smb2(&h, &[9, 0, 0, 0, 0, 0, 0, 0, 0])]);
    // Async interim response, then the final one.
    feed_all(&mut c, true, &[create_req(&req(5, 2), "slow.txt", 3)]);
    let mut interim = rsp(5, 2);
    interim.status = 0x103;
    let mut m = smb2(&interim, &[9, 0, 0, 0, 0, 0, 0, 0, 0]);
    m[16] |= 2; // SMB2_FLAGS_ASYNC_COMMAND
    c.push(false, &nbss(&m));
    feed_all(&mut c, false, &[create_rsp(&rsp(5, 2), fid(1), 7)]);
    let run = c.finish();
    let failed = the_file(&run, cmd::SMB2_CREATE, "missing.txt");
    assert_eq!(failed.status, Some("STATUS_OBJECT_NAME_NOT_FOUND"));
    assert_eq!(failed.status_code, Some(0xc000_0034));
    assert_eq!(failed.fuid, None);
    let slow = the_file(&run, cmd::SMB2_CREATE, "slow.txt");
    assert_eq!(slow.size, Some(7));
    assert_eq!(slow.disposition, Some("FILE_OPEN_IF"));
    // Opened without data and never closed: nothing at finish().
    assert!(by_cmd(&run, cmd::SMB2_CLOSE).is_empty());
}

#[test]
fn tables_are_capped_and_no_volume_is_lost() {
    let limits = SmbLimits {
        max_files: 4,
        max_pending: 4,
        max_name: 512,
    };
    let mut c = Caller::new(limits);
    // 10 CREATE requests before any response: only the last 4 stay pending.
    for i in 0..10u8 {
        feed_all(
            &mut c,
            true,
            &[create_req(&req(5, 100 + i as u64), &format!("f{i}"), 5)],
        );
    }
    for i in 0..10u8 {
        feed_all(
            &mut c,
            false,
            &[create_rsp(&rsp(5, 100 + i as u64), fid(i), 0)],
        );
    }
    // A write to each of the 10 files: the table holds 4 at a time.
    for i in 0..10u8 {
        feed_all(
            &mut c,
            true,
            &[write_req(
                &req(9, 200 + i as u64),
                fid(i),
                1000 + i as usize,
            )],
        );
    }
    let run = c.finish();
    assert!(
        run.stats.limit_hits >= 6 + 6,
        "pending and file caps: {}",
        run.stats.limit_hits
    );
    let creates = by_cmd(&run, cmd::SMB2_CREATE);
    assert_eq!(creates.len(), 10);
    assert_eq!(creates.iter().filter(|t| t.filename.is_some()).count(), 4);
    let closes = by_cmd(&run, cmd::SMB2_CLOSE);
    assert_eq!(closes.len(), 10, "every file with data is reported once");
    let total: u64 = closes.iter().map(|t| t.bytes_written).sum();
    assert_eq!(total, (0..10).map(|i| 1000 + i).sum::<u64>());
    assert_eq!(run.stats.bytes_written, total);
}

#[test]
fn encrypted_sessions_table_is_capped() {
    let limits = SmbLimits {
        max_files: 2,
        ..SmbLimits::default()
    };
    let mut c = Caller::new(limits);
    for s in 0..5u64 {
        let mut t = vec![0xfd, b'S', b'M', b'B'];
        t.extend_from_slice(&[0u8; 32]);
        t.extend_from_slice(&100u32.to_le_bytes());
        t.extend_from_slice(&[0, 0, 1, 0]);
        t.extend_from_slice(&(s + 1).to_le_bytes());
        t.extend_from_slice(&[0x5a; 100]);
        c.push(s % 2 == 0, &nbss(&t));
    }
    let run = c.finish();
    let enc = by_cmd(&run, cmd::SMB3_ENCRYPTED);
    assert_eq!(enc.len(), 5);
    assert_eq!(
        enc.iter()
            .map(|t| t.encrypted_bytes[0] + t.encrypted_bytes[1])
            .sum::<u64>(),
        500
    );
    assert_eq!(run.stats.encrypted_bytes, [300, 200]);
    assert_eq!(run.stats.limit_hits, 3);
}

// ---------------------------------------------------------------------------------------------
// Framing edge cases and robustness
// ---------------------------------------------------------------------------------------------

#[test]
fn large_bodies_are_skippable_without_buffering() {
    let mut conn = SmbConn::new(SmbLimits::default());
    let mut out = Vec::new();
    // A WRITE request header announcing 16 MiB - 1 bytes on the wire.
    let w = write_req(&req(9, 1), fid(1), 0);
    let mut m = vec![0, 0xff, 0xff, 0xff];
    m.extend_from_slice(&w[..112]);
    m[4 + 64 + 4..4 + 64 + 8].copy_from_slice(&0x00ff_0000u32.to_le_bytes());
    assert_eq!(conn.feed(true, &m, &mut out), m.len());
    assert_eq!(conn.skippable(true), 0xff_ffff - 112);
    conn.skipped(true, 1000);
    assert_eq!(conn.skippable(true), 0xff_ffff - 112 - 1000);
    assert_eq!(conn.feed(true, &[0u8; 5000], &mut out), 5000);
    assert_eq!(conn.skippable(true), 0xff_ffff - 112 - 6000);
    assert_eq!(conn.stats().bytes_written, 0x00ff_0000);
    // A compression transform is skipped whole, without a malformed count.
    let mut conn = SmbConn::new(SmbLimits::default());
    let mut cm = vec![0xfc, b'S', b'M', b'B'];
    cm.extend_from_slice(&[0u8; 60]);
    let framed = nbss(&cm);
    assert_eq!(conn.feed(true, &framed[..10], &mut out), 10);
    assert_eq!(conn.skippable(true), 58);
    assert_eq!(conn.stats().malformed, 0);
    assert_eq!(conn.stats().messages, 1);
    // An NBSS keep-alive and a session request are skipped by their length.
    let mut conn = SmbConn::new(SmbLimits::default());
    let mut m = vec![0x85, 0, 0, 0, 0x81, 0, 0, 4, 1, 2, 3, 4];
    m.extend_from_slice(&nbss(&tree_req(&req(3, 1), r"\\a\b")));
    assert_eq!(conn.feed(true, &m, &mut out), m.len());
    assert_eq!((conn.stats().messages, conn.stats().malformed), (1, 0));
}

#[test]
fn garbage_is_malformed_and_resyncs() {
    let mut c = Caller::new(SmbLimits::default());
    c.push(true, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(c.conn.stats().malformed >= 1);
    // A real message after the garbage is found again.
    feed_all(&mut c, true, &[tree_req(&req(3, 1), r"\\x\y")]);
    feed_all(&mut c, false, &[tree_rsp(&rsp(3, 1))]);
    // Too short for an SMB2 header: malformed framing.
    c.push(false, &[0, 0, 0, 8, 0xfe, b'S', b'M', b'B', 64, 0, 0, 0]);
    let run = c.finish();
    assert_eq!(run.stats.resyncs, 1);
    assert_eq!(
        by_cmd(&run, cmd::SMB2_TREE_CONNECT)[0].share.as_deref(),
        Some(r"\\x\y")
    );
    assert!(run.stats.malformed >= 2);
}

/// Random input, fed in random chunks with random gaps, skips and limits: never a panic, never
/// more than MAX_NEED left unconsumed (checked in `Caller::push`).
#[test]
fn random_and_mutated_input_never_panics() {
    let streams: Vec<[Vec<u8>; 2]> = FIXTURES
        .iter()
        .map(|name| {
            let fx = load(name);
            let mut s = [Vec::new(), Vec::new()];
            for seg in &fx.segs {
                match seg {
                    Seg::Data(d, v) => s[if *d { 0 } else { 1 }].extend_from_slice(v),
                    Seg::Skip(d, n) => {
                        let v = &mut s[if *d { 0 } else { 1 }];
                        v.resize(v.len() + (*n as usize).min(3000), 0x33)
                    }
                }
            }
            s
        })
        .collect();
    let mut rng = Rng::new(42);
    for round in 0..3000u64 {
        let limits = SmbLimits {
            max_files: rng.range(0, 4),
            max_pending: rng.range(0, 4),
            max_name: rng.range(0, 40),
        };
        let mut c = Caller::new(limits);
        let mut input: [Vec<u8>; 2] = match round % 3 {
            // Pure noise, with NBSS-looking prefixes now and then.
            0 => {
                let (a, b) = (rng.range(0, 3000), rng.range(0, 3000));
                let mut v = [rng.bytes(a), rng.bytes(b)];
                for s in v.iter_mut() {
                    if s.len() > 8 && rng.next().is_multiple_of(2) {
                        let magic = [0xfe, 0xfd, 0xff, 0xfc][rng.range(0, 3)];
                        s[..8].copy_from_slice(&[
                            0,
                            0,
                            rng.next() as u8,
                            rng.next() as u8,
                            magic,
                            b'S',
                            b'M',
                            b'B',
                        ]);
                    }
                }
                v
            }
            // A real stream with bytes flipped.
            1 => {
                let mut v = streams[rng.range(0, streams.len() - 1)].clone();
                for s in v.iter_mut() {
                    for _ in 0..rng.range(1, 20) {
                        if !s.is_empty() {
                            let i = rng.range(0, s.len() - 1);
                            s[i] = rng.next() as u8;
                        }
                    }
                }
                v
            }
            // A real stream cut short, with absurd lengths written into message headers.
            _ => {
                let mut v = streams[rng.range(0, streams.len() - 1)].clone();
                for s in v.iter_mut() {
                    let keep = rng.range(0, s.len());
                    s.truncate(keep);
                    let mut p = 0usize;
                    while p + 8 < s.len() && !rng.next().is_multiple_of(4) {
                        let len = ((s[p + 1] as usize) << 16)
                            | ((s[p + 2] as usize) << 8)
                            | s[p + 3] as usize;
                        if rng.next().is_multiple_of(3) {
                            s[p + 1] = 0xff;
                        }
                        p += 4 + len;
                    }
                }
                v
            }
        };
        let mut pos = [0usize; 2];
        while pos[0] < input[0].len() || pos[1] < input[1].len() {
            let to_server = rng.next().is_multiple_of(2);
            let d = if to_server { 0 } else { 1 };
            if pos[d] >= input[d].len() {
                continue;
            }
            match rng.next() % 40 {
                0 => c.gap(to_server),
                1 => {
                    let n = c.conn.skippable(to_server).min(rng.range(0, 500) as u64);
                    if c.buf[d].is_empty() {
                        c.conn.skipped(to_server, n);
                        pos[d] = (pos[d] + n as usize).min(input[d].len());
                        continue;
                    }
                }
                _ => {}
            }
            let n = rng.range(1, 3000).min(input[d].len() - pos[d]);
            let chunk = std::mem::take(&mut input[d]);
            c.push(to_server, &chunk[pos[d]..pos[d] + n]);
            input[d] = chunk;
            pos[d] += n;
        }
        let run = c.finish();
        assert!(run
            .txs
            .iter()
            .all(|t| t.filename.as_ref().map_or(0, |s| s.len()) <= 40));
    }
}
