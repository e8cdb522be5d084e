//! Floods: junk that tries to fill the sensor's tables (flows, IP fragments, TCP segments,
//! expectations) while a real upload runs in the middle of it. Each case generates its capture
//! here, replays it with the default configuration (the large-outbound threshold lowered to
//! 100 KiB, as `pcaps/demo.toml` does) and checks: a clean exit, the peak resident memory of the
//! sensor under the documented bound, the counters that say what was refused or evicted, and the
//! upload's large-outbound alert (1173001, internal host to external).
//!
//! The cases run one at a time (they share two cores with everything else and measure memory).

use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Says that a check was skipped for want of `../shared`. Written to stderr directly, past the test
/// harness's output capture, so that it shows in `cargo test`'s output and in the summary of
/// skipped checks at the end of `make test`.
fn report_skip(what: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP: {what}");
}

const LARGE_OUTBOUND: u64 = 1_173_001;
/// What `docs/operations.md` promises for the default configuration under any flood.
const RSS_BOUND_KIB: i64 = 512 * 1024;

const SEC: i64 = 1_000_000;
/// 2026-01-01T00:00:00Z.
const BASE: i64 = 1_767_225_600 * SEC;

/// The uploading internal host and its external server.
const HOST: [u8; 4] = [10, 0, 0, 5];
const SERVER: [u8; 4] = [203, 0, 113, 7];
/// Size of the real upload: twice the threshold.
const UPLOAD: usize = 200 * 1024;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------------------------------
// A streaming classic pcap writer: Ethernet, IPv4, TCP, UDP and IP fragments.

struct Pcap {
    w: BufWriter<File>,
    frame: Vec<u8>,
    ip_id: u16,
    last_us: i64,
    pub packets: u64,
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

impl Pcap {
    fn create(path: &Path) -> Pcap {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
        let mut h = Vec::new();
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&65_535u32.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        w.write_all(&h).unwrap();
        Pcap {
            w,
            frame: Vec::with_capacity(2048),
            ip_id: 1,
            last_us: i64::MIN,
            packets: 0,
        }
    }

    /// An IPv4 packet; `frag` is the flags and fragment offset field (in 8-byte units).
    #[allow(
        clippy::too_many_arguments,
        reason = "test packet builder: one argument per header field"
    )]
    fn ipv4(
        &mut self,
        ts_us: i64,
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        id: u16,
        frag: u16,
        l4: &[&[u8]],
    ) {
        assert!(ts_us >= self.last_us, "packets must be in time order");
        self.last_us = ts_us;
        let l4_len: usize = l4.iter().map(|p| p.len()).sum();
        let f = &mut self.frame;
        f.clear();
        f.extend_from_slice(&[
            0x02, 0, 0, 0, 0, dst[3], 0x02, 0, 0, 0, 0, src[3], 0x08, 0x00,
        ]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        ip[6..8].copy_from_slice(&frag.to_be_bytes());
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        let mut sum: u32 = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        f.extend_from_slice(&ip);
        for p in l4 {
            f.extend_from_slice(p);
        }
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&(ts_us.div_euclid(SEC) as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&(ts_us.rem_euclid(SEC) as u32).to_le_bytes());
        rec[8..12].copy_from_slice(&(f.len() as u32).to_le_bytes());
        rec[12..16].copy_from_slice(&(f.len() as u32).to_le_bytes());
        self.w.write_all(&rec).unwrap();
        self.w.write_all(f).unwrap();
        self.packets += 1;
    }

    fn next_id(&mut self) -> u16 {
        self.ip_id = self.ip_id.wrapping_add(1);
        self.ip_id
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "test packet builder: one argument per header field"
    )]
    fn tcp(
        &mut self,
        ts_us: i64,
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) {
        let mut h = [0u8; 20];
        h[0..2].copy_from_slice(&src.1.to_be_bytes());
        h[2..4].copy_from_slice(&dst.1.to_be_bytes());
        h[4..8].copy_from_slice(&seq.to_be_bytes());
        h[8..12].copy_from_slice(&ack.to_be_bytes());
        h[12] = 5 << 4;
        h[13] = flags;
        h[14..16].copy_from_slice(&65_535u16.to_be_bytes());
        let id = self.next_id();
        self.ipv4(ts_us, src.0, dst.0, 6, id, 0x4000, &[&h, payload]);
    }

    /// A UDP datagram (header and payload) as IP would carry it.
    fn udp_bytes(src: u16, dst: u16, payload: &[u8]) -> Vec<u8> {
        let mut d = Vec::with_capacity(8 + payload.len());
        d.extend_from_slice(&src.to_be_bytes());
        d.extend_from_slice(&dst.to_be_bytes());
        d.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(payload);
        d
    }

    fn udp(&mut self, ts_us: i64, src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) {
        let d = Self::udp_bytes(src.1, dst.1, payload);
        let id = self.next_id();
        self.ipv4(ts_us, src.0, dst.0, 17, id, 0x4000, &[&d]);
    }

    /// One IPv4 fragment: `offset` in bytes (a multiple of 8).
    #[allow(
        clippy::too_many_arguments,
        reason = "test packet builder: one argument per header field"
    )]
    fn fragment(
        &mut self,
        ts_us: i64,
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        id: u16,
        offset: usize,
        more: bool,
        data: &[u8],
    ) {
        let field = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
        self.ipv4(ts_us, src, dst, proto, id, field, &[data]);
    }

    fn finish(mut self) {
        self.w.flush().unwrap();
    }
}

/// One TCP connection's sequence state, for writing its packets.
struct Tcp {
    client: ([u8; 4], u16),
    server: ([u8; 4], u16),
    seq: [u32; 2],
}

impl Tcp {
    /// The three-way handshake at `t`.
    fn open(p: &mut Pcap, t: i64, client: ([u8; 4], u16), server: ([u8; 4], u16)) -> Tcp {
        let mut c = Tcp {
            client,
            server,
            seq: [1_000, 500_000],
        };
        p.tcp(t, client, server, c.seq[0], 0, TCP_SYN, b"");
        p.tcp(
            t + 100,
            server,
            client,
            c.seq[1],
            c.seq[0] + 1,
            TCP_SYN | TCP_ACK,
            b"",
        );
        c.seq = [c.seq[0] + 1, c.seq[1] + 1];
        p.tcp(t + 200, client, server, c.seq[0], c.seq[1], TCP_ACK, b"");
        c
    }

    /// `data` from the client (side 0) or the server (side 1).
    fn send(&mut self, p: &mut Pcap, t: i64, side: usize, data: &[u8]) {
        let (src, dst) = if side == 0 {
            (self.client, self.server)
        } else {
            (self.server, self.client)
        };
        p.tcp(
            t,
            src,
            dst,
            self.seq[side],
            self.seq[1 - side],
            TCP_ACK | TCP_PSH,
            data,
        );
        self.seq[side] = self.seq[side].wrapping_add(data.len() as u32);
    }

    fn close(&mut self, p: &mut Pcap, t: i64) {
        let (c, s) = (self.client, self.server);
        p.tcp(t, c, s, self.seq[0], self.seq[1], TCP_FIN | TCP_ACK, b"");
        p.tcp(
            t + 100,
            s,
            c,
            self.seq[1],
            self.seq[0] + 1,
            TCP_FIN | TCP_ACK,
            b"",
        );
        p.tcp(
            t + 200,
            c,
            s,
            self.seq[0] + 1,
            self.seq[1] + 1,
            TCP_ACK,
            b"",
        );
    }
}

/// A passive-mode FTP upload from HOST to SERVER, written a step at a time so junk can be put
/// between its packets: the control dialogue up to STOR/150 is [`FtpUpload::start`], each
/// [`FtpUpload::step`] sends one data segment, [`FtpUpload::finish`] closes both connections.
struct FtpUpload {
    ctrl: Tcp,
    data: Option<Tcp>,
    sent: usize,
    data_port: u16,
}

const SEGMENT: usize = 1448;

impl FtpUpload {
    /// The control connection, logged in; the PASV reply and the data connection come with
    /// [`FtpUpload::announce`].
    fn login(p: &mut Pcap, t: i64) -> FtpUpload {
        let mut ctrl = Tcp::open(p, t, (HOST, 40_001), (SERVER, 21));
        let dialogue: [(usize, &[u8]); 6] = [
            (1, b"220 (vsFTPd 3.0.3)\r\n"),
            (0, b"USER backup\r\n"),
            (1, b"331 Please specify the password.\r\n"),
            (0, b"PASS secret\r\n"),
            (1, b"230 Login successful.\r\n"),
            (0, b"TYPE I\r\n"),
        ];
        let mut at = t + 1_000;
        for (side, line) in dialogue {
            ctrl.send(p, at, side, line);
            at += 1_000;
        }
        ctrl.send(p, at, 1, b"200 Switching to Binary mode.\r\n");
        FtpUpload {
            ctrl,
            data: None,
            sent: 0,
            data_port: 50_000,
        }
    }

    /// One PASV exchange announcing `port` on the server.
    fn pasv(&mut self, p: &mut Pcap, t: i64, port: u16) {
        self.ctrl.send(p, t, 0, b"PASV\r\n");
        let reply = format!(
            "227 Entering Passive Mode ({},{},{},{},{},{}).\r\n",
            SERVER[0],
            SERVER[1],
            SERVER[2],
            SERVER[3],
            port >> 8,
            port & 0xff
        );
        self.ctrl.send(p, t + 100, 1, reply.as_bytes());
    }

    /// The real announcement, STOR, and the data connection opened.
    fn start(&mut self, p: &mut Pcap, t: i64) {
        self.pasv(p, t, self.data_port);
        self.data = Some(Tcp::open(
            p,
            t + 1_000,
            (HOST, 40_002),
            (SERVER, self.data_port),
        ));
        self.ctrl.send(p, t + 2_000, 0, b"STOR secret.tar\r\n");
        self.ctrl.send(p, t + 2_100, 1, b"150 Ok to send data.\r\n");
    }

    /// Sends the next data segment; false when the file is all sent.
    fn step(&mut self, p: &mut Pcap, t: i64) -> bool {
        if self.sent >= UPLOAD {
            return false;
        }
        let n = SEGMENT.min(UPLOAD - self.sent);
        let seg: Vec<u8> = (0..n).map(|i| ((self.sent + i) * 31 % 251) as u8).collect();
        if let Some(d) = self.data.as_mut() {
            d.send(p, t, 0, &seg);
        }
        self.sent += n;
        true
    }

    fn finish(mut self, p: &mut Pcap, t: i64) {
        while self.step(p, t) {}
        if let Some(d) = self.data.as_mut() {
            d.close(p, t + 1_000);
        }
        self.ctrl
            .send(p, t + 2_000, 1, b"226 Transfer complete.\r\n");
        self.ctrl.send(p, t + 3_000, 0, b"QUIT\r\n");
        self.ctrl.send(p, t + 3_100, 1, b"221 Goodbye.\r\n");
        self.ctrl.close(p, t + 4_000);
    }
}

/// A TFTP write request from HOST:`cport` to SERVER:69.
fn wrq(name: &str) -> Vec<u8> {
    let mut v = vec![0, 2];
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(b"\0octet\0");
    v
}

fn tftp_data(block: u16, len: usize) -> Vec<u8> {
    let b = block.to_be_bytes();
    let mut v = vec![0, 3, b[0], b[1]];
    v.extend((0..len).map(|i| (i * 7 + block as usize) as u8));
    v
}

// ---------------------------------------------------------------------------------------------
// Running the sensor.

fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("xferwatch-floods-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What one replay left: its alerts and stats records (every record is checked as JSON and
/// counted by type; a sample is checked against the schema), the peak resident memory and the
/// exit status.
struct Run {
    events: Vec<Value>,
    by_type: std::collections::BTreeMap<String, u64>,
    maxrss_kib: i64,
    code: i32,
    stderr: String,
}

impl Run {
    fn stats(&self) -> &Value {
        let last = self.events.last().expect("no EVE records");
        assert_eq!(last["event_type"], "stats", "stats record last: {last}");
        &last["xfer"]
    }

    fn counter(&self, name: &str) -> u64 {
        self.stats()[name]
            .as_u64()
            .unwrap_or_else(|| panic!("stats xfer.{name} missing: {}", self.stats()))
    }

    fn large_outbound(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| {
                e["event_type"] == "alert"
                    && e["alert"]["signature_id"] == LARGE_OUTBOUND
                    && e["src_ip"] == "10.0.0.5"
                    && e["dest_ip"] == "203.0.113.7"
            })
            .collect()
    }

    fn check(&self, what: &str) {
        assert_eq!(self.code, 0, "{what}: replay failed: {}", self.stderr);
        eprintln!(
            "{what}: peak resident {} MiB, records {:?}, stats {}",
            self.maxrss_kib / 1024,
            self.by_type,
            self.stats()
        );
        assert!(
            self.maxrss_kib < RSS_BOUND_KIB,
            "{what}: peak resident memory {} KiB, bound {RSS_BOUND_KIB} KiB",
            self.maxrss_kib
        );
        assert_eq!(
            self.large_outbound().len(),
            1,
            "{what}: the upload's large-outbound alert: {:?}",
            self.events
                .iter()
                .filter(|e| e["event_type"] == "alert")
                .collect::<Vec<_>>()
        );
    }
}

/// The default configuration, the large-outbound threshold lowered as `pcaps/demo.toml` does.
fn config(dir: &Path) -> PathBuf {
    let p = dir.join("sensor.toml");
    std::fs::write(
        &p,
        "[detect.large_outbound]\nthreshold_bytes = \"100KiB\"\n",
    )
    .unwrap();
    p
}

/// Replays `pcap` with two workers, reading the EVE output as it comes (a flood writes a flow
/// record per junk flow: they are counted, and a sample is checked, not kept). The child is
/// reaped by [`wait_with_rusage`] (wait4), which clippy cannot see.
#[allow(
    clippy::zombie_processes,
    reason = "the child is reaped by wait_with_rusage (wait4), which clippy cannot see"
)]
fn replay(dir: &Path, pcap: &Path) -> Run {
    // The child's peak resident set counts this process's peak too (it is spawned from our
    // address space): it must be small for the figure to be the sensor's.
    let own = own_peak_kib();
    assert!(
        own < 64 * 1024,
        "the test process itself peaked at {own} KiB"
    );
    let mut c = Command::new(env!("CARGO_BIN_EXE_xferwatch"));
    for (k, _) in std::env::vars() {
        if k.starts_with("XFERWATCH__") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    let mut child = c
        .arg("replay")
        .arg("-q")
        .arg("-c")
        .arg(config(dir))
        .args(["--workers", "2", "--eve", "-"])
        .arg(pcap)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    let sample = dir.join("eve-sample.json");
    let mut kept = BufWriter::new(File::create(&sample).unwrap());
    let mut events = Vec::new();
    let mut by_type = std::collections::BTreeMap::<String, u64>::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // The type without parsing every line: a flood's million flow records would make this
        // reader the bottleneck, and the sensor's output backlog would grow behind it.
        let kind = line
            .split_once("\"event_type\":\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or("?", |(k, _)| k);
        let n = by_type.entry(kind.to_string()).or_default();
        *n += 1;
        if *n <= 1_000 || kind == "alert" || kind == "stats" || kind == "?" {
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON line {line}: {e}"));
            writeln!(kept, "{line}").unwrap();
            if kind == "alert" || kind == "stats" {
                events.push(v);
            }
        }
    }
    kept.flush().unwrap();
    let (code, maxrss_kib) = wait_with_rusage(child.id() as libc::pid_t);
    let run = Run {
        events,
        by_type,
        maxrss_kib,
        code,
        stderr: err.join().unwrap(),
    };
    eve_check(&sample);
    run
}

/// This process's peak resident set (KiB).
fn own_peak_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Waits for the child and returns its exit code and its own peak resident set (KiB).
#[allow(
    unsafe_code,
    reason = "wait4(2) with the child's rusage has no safe wrapper in std"
)]
fn wait_with_rusage(pid: libc::pid_t) -> (i32, i64) {
    let mut status = 0;
    // SAFETY: rusage is a plain C struct of integers, for which all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: plain wait4 on our own child, with valid pointers to locals.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, ru.ru_maxrss)
}

/// The records (all but most flow records) against Suricata's schema, when the checker is at hand.
fn eve_check(file: &Path) {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/eve_check.py");
    let has_schema = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !tool.exists() || !has_schema {
        report_skip("EVE schema check of the flood tests: ../shared/tools/eve_check.py or python3 jsonschema missing");
        return;
    }
    let out = Command::new("python3")
        .arg(&tool)
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "EVE schema check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An external source address for junk number `i` (11.0.0.0/8 holds 16 M of them).
fn junk_addr(i: u32) -> [u8; 4] {
    (0x0b00_0000 + (i & 0x00ff_ffff)).to_be_bytes()
}

/// One case: writes its capture with `write`, replays it and checks what every case must hold.
fn flood_case(name: &str, what: &str, write: impl FnOnce(&mut Pcap)) -> Run {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tmpdir(name);
    let pcap = dir.join(format!("{name}.pcap"));
    let mut p = Pcap::create(&pcap);
    write(&mut p);
    p.finish();
    let run = replay(&dir, &pcap);
    run.check(what);
    let _ = std::fs::remove_dir_all(&dir);
    run
}

/// The internal host SYN number `i` goes to: every other one to the uploading host.
fn victim(i: u32) -> [u8; 4] {
    if i.is_multiple_of(2) {
        HOST
    } else {
        [10, 2, (i >> 9) as u8, (i >> 1) as u8]
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.

/// 1 M SYNs from distinct sources, half of them to the uploading host (the worker that holds its
/// upload), half to other internal hosts (so every worker's share of the table fills), during an
/// FTP upload: half-open junk is evicted (or timed out in emergency mode) before the upload's flows.
#[test]
fn syn_flood_from_a_million_sources() {
    let run = flood_case("syn", "SYN flood", |p| {
        const SYNS: u32 = 1_000_000;
        let mut ftp = FtpUpload::login(p, BASE);
        ftp.start(p, BASE + 20_000);
        // 1 M SYNs over 20 s of packet time, a data segment every 8,000 of them.
        let mut t = BASE + 30_000;
        for i in 0..SYNS {
            p.tcp(
                t,
                (junk_addr(i), 1024 + (i % 60_000) as u16),
                (victim(i), 80),
                i.wrapping_mul(2_654_435_761),
                0,
                TCP_SYN,
                b"",
            );
            if i.is_multiple_of(8_000) {
                ftp.step(p, t);
            }
            t += 20;
        }
        ftp.finish(p, t + 1_000);
    });
    assert!(
        run.counter("flows_emergency_entered") >= 1,
        "emergency mode entered"
    );
    let junk_ended =
        run.counter("flows_evicted_half_open") + run.counter("flows_emergency_timeouts");
    assert!(junk_ended > 0, "junk evicted or timed out early");
    assert_eq!(
        run.counter("flows_evicted_protected"),
        0,
        "no transfer flow evicted"
    );
    assert_eq!(
        run.stats()["flows_by_app_proto"]["ftp-data"],
        1,
        "the upload's data connection was never cut in two"
    );
}

/// 200 k first fragments that never complete — half from one source, half from distinct
/// sources — around a TFTP upload whose every DATA datagram is fragmented.
#[test]
fn fragments_that_never_complete() {
    let run = flood_case("frag", "fragment flood", |p| {
        const JUNK: u32 = 200_000;
        let junk_chunk = vec![0x41u8; 512];
        let mut junk = 0u32;
        let mut t = BASE;
        let mut flood = |p: &mut Pcap, t: &mut i64, n: u32| {
            for _ in 0..n {
                if junk >= JUNK {
                    return;
                }
                let src = if junk.is_multiple_of(2) {
                    [198, 51, 100, 66]
                } else {
                    junk_addr(junk)
                };
                let id = (junk / 2) as u16;
                p.fragment(*t, src, HOST, 17, id, 0, true, &junk_chunk);
                junk += 1;
                *t += 50;
            }
        };
        flood(p, &mut t, 20_000);
        let (cport, sport) = (50_001, 40_001);
        p.udp(t, (HOST, cport), (SERVER, 69), &wrq("secret.tar"));
        t += 500;
        p.udp(t, (SERVER, sport), (HOST, cport), &[0, 4, 0, 0]);
        let blocks = UPLOAD / 512 + 1;
        for b in 1..=blocks {
            let len = if b < blocks { 512 } else { UPLOAD % 512 };
            let d = Pcap::udp_bytes(cport, sport, &tftp_data(b as u16, len));
            let id = p.next_id();
            // Two fragments: 264 bytes (UDP header and 256 of data), then the rest.
            let cut = 264.min(d.len() - d.len() % 8);
            t += 100;
            p.fragment(t, HOST, SERVER, 17, id, 0, true, &d[..cut]);
            flood(p, &mut t, 200);
            p.fragment(t, HOST, SERVER, 17, id, cut, false, &d[cut..]);
            t += 100;
            let bn = (b as u16).to_be_bytes();
            p.udp(t, (SERVER, sport), (HOST, cport), &[0, 4, bn[0], bn[1]]);
        }
        flood(p, &mut t, JUNK);
    });
    assert!(run.counter("defrag_evicted") > 0, "old datagrams evicted");
    assert!(
        run.counter("defrag_source_refused") > 0,
        "the single source held to its share"
    );
    assert!(run.counter("ip_reassembled") >= (UPLOAD / 512 + 1) as u64);
}

/// 500 k overlapping and out-of-window segments in one established flow, beside an FTP upload.
#[test]
fn overlapping_and_out_of_window_segments() {
    let run = flood_case("segments", "segment flood", |p| {
        const SEGMENTS: u32 = 500_000;
        let mut ftp = FtpUpload::login(p, BASE);
        ftp.start(p, BASE + 20_000);
        let attacker = ([198, 51, 100, 99], 33_333);
        let mut junk = Tcp::open(p, BASE + 25_000, attacker, (HOST, 80));
        junk.send(p, BASE + 26_000, 0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let base_seq = junk.seq[0];
        let chunk = vec![0x5au8; 700];
        let mut t = BASE + 30_000;
        for i in 0..SEGMENTS {
            // Even: overlaps the bytes already sent; odd: far outside any window, ahead or behind.
            let seq = if i.is_multiple_of(2) {
                base_seq.wrapping_sub(20 + (i % 13))
            } else {
                base_seq.wrapping_add(0x4000_0000u32.wrapping_mul(1 + i % 3) + i)
            };
            p.tcp(
                t,
                attacker,
                (HOST, 80),
                seq,
                junk.seq[1],
                TCP_ACK,
                &chunk[..100 + (i % 600) as usize],
            );
            if i.is_multiple_of(4_000) {
                ftp.step(p, t);
            }
            t += 10;
        }
        ftp.finish(p, t + 1_000);
    });
    assert!(
        run.counter("reassembly_overlaps") + run.counter("reassembly_gaps") > 0,
        "the junk was seen as overlaps or gaps"
    );
}

/// One FTP control connection announces 100 k data channels, then the real one: the oldest
/// announcements make room, the real data channel is linked and its upload raises the alert.
#[test]
fn one_control_connection_announcing_100k_channels() {
    let run = flood_case("announce", "announcement flood", |p| {
        const ANNOUNCEMENTS: u32 = 100_000;
        let mut ftp = FtpUpload::login(p, BASE);
        let mut t = BASE + 20_000;
        for i in 0..ANNOUNCEMENTS {
            ftp.pasv(p, t, 1024 + (i % 60_000) as u16);
            t += 200;
        }
        ftp.data_port = 65_000;
        ftp.start(p, t);
        ftp.finish(p, t + 10_000);
    });
    assert!(
        run.counter("expectations_evicted") > 0,
        "old announcements evicted"
    );
}

/// 100 k TFTP write requests from distinct ports, half of them from the uploading host to its
/// server (one host pair: its oldest announcements must make room for the real one), half from
/// other internal hosts, around the host's real upload.
#[test]
fn tftp_requests_to_distinct_ports() {
    let run = flood_case("tftp", "TFTP request flood", |p| {
        const REQUESTS: u32 = 100_000;
        let mut t = BASE;
        let mut sent = 0u32;
        let mut flood = |p: &mut Pcap, t: &mut i64, n: u32| {
            for _ in 0..n.min(REQUESTS - sent) {
                let port = 1024 + ((sent / 2) % 50_000) as u16;
                // The host's junk goes to the real upload's server: one host pair, whose
                // oldest announcements must make room for the real one.
                let (client, server) = if sent.is_multiple_of(2) {
                    (HOST, SERVER)
                } else {
                    (victim(sent), [203, 0, 113, 50 + (sent / 48_000) as u8])
                };
                p.udp(*t, (client, port), (server, 69), &wrq("junk.bin"));
                sent += 1;
                *t += 100;
            }
        };
        flood(p, &mut t, 40_000);
        let (cport, sport) = (60_001, 40_001);
        p.udp(t, (HOST, cport), (SERVER, 69), &wrq("secret.tar"));
        t += 500;
        flood(p, &mut t, 20);
        p.udp(t, (SERVER, sport), (HOST, cport), &[0, 4, 0, 0]);
        let blocks = UPLOAD / 512 + 1;
        for b in 1..=blocks {
            let len = if b < blocks { 512 } else { UPLOAD % 512 };
            t += 100;
            p.udp(t, (HOST, cport), (SERVER, sport), &tftp_data(b as u16, len));
            flood(p, &mut t, 50);
            let bn = (b as u16).to_be_bytes();
            p.udp(t, (SERVER, sport), (HOST, cport), &[0, 4, bn[0], bn[1]]);
        }
        flood(p, &mut t, REQUESTS);
    });
    assert!(run.counter("expectations_created") > 100_000);
    assert!(
        run.counter("expectations_evicted") > 0,
        "the host pair's oldest requests made room"
    );
}
