//! Issue 12, items 2 and 4: a real transfer must be seen whatever one hostile byte, a capture that
//! starts in the middle, or a short snap length does to it. Every input is a bundled capture of real
//! software (pcaps/, see pcaps/README.md: the client 10.77.0.2 is internal, the server
//! 198.51.100.10 external) rewritten here: a byte of a banner or a USER line replaced (same length,
//! so the TCP stream stays whole), packets cut off the front (the capture started late), every
//! packet cut to a snap length, or crafted SMB2 records spliced into the stream (later sequence and
//! acknowledgement numbers shifted). Each case: exit 0, the transfer identified and linked to its
//! session, and its large-outbound alert (1173001) raised.

use serde_json::Value;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Says that a check was skipped for want of `../shared`. Written to stderr directly, past the test
/// harness's output capture, so that it shows in `cargo test`'s output and in the summary of
/// skipped checks at the end of `make test`.
fn report_skip(what: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP: {what}");
}

const LARGE_OUTBOUND: u64 = 1173001;
const OFF_PORT: u64 = 1173002;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Classic pcap files (little-endian, microseconds, Ethernet + IPv4 + TCP: what the bundled captures
// are).

struct Pcap {
    header: Vec<u8>,
    packets: Vec<Packet>,
}

#[derive(Clone)]
struct Packet {
    ts: [u8; 8],
    orig_len: u32,
    data: Vec<u8>,
}

impl Packet {
    fn ip(&self) -> usize {
        14
    }
    fn tcp(&self) -> usize {
        self.ip() + usize::from(self.data[self.ip()] & 0x0f) * 4
    }
    fn payload_at(&self) -> usize {
        self.tcp() + usize::from(self.data[self.tcp() + 12] >> 4) * 4
    }
    fn payload(&self) -> &[u8] {
        &self.data[self.payload_at()..]
    }
    fn src_port(&self) -> u16 {
        u16::from_be_bytes([self.data[self.tcp()], self.data[self.tcp() + 1]])
    }
    fn field32(&self, off: usize) -> u32 {
        let at = self.tcp() + off;
        u32::from_be_bytes(self.data[at..at + 4].try_into().unwrap())
    }
    fn set_field32(&mut self, off: usize, v: u32) {
        let at = self.tcp() + off;
        self.data[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    fn flags(&self) -> u8 {
        self.data[self.tcp() + 13]
    }
}

impl Pcap {
    fn read(name: &str) -> Pcap {
        let b = std::fs::read(root().join("pcaps").join(name)).unwrap();
        assert_eq!(
            &b[..4],
            &[0xd4, 0xc3, 0xb2, 0xa1],
            "{name}: little-endian pcap"
        );
        let mut packets = Vec::new();
        let mut at = 24;
        while at + 16 <= b.len() {
            let incl = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
            let orig_len = u32::from_le_bytes(b[at + 12..at + 16].try_into().unwrap());
            packets.push(Packet {
                ts: b[at..at + 8].try_into().unwrap(),
                orig_len,
                data: b[at + 16..at + 16 + incl].to_vec(),
            });
            at += 16 + incl;
        }
        Pcap {
            header: b[..24].to_vec(),
            packets,
        }
    }

    /// The capture started `n` packets late.
    fn skip(mut self, n: usize) -> Pcap {
        self.packets.drain(..n);
        self
    }

    /// Every packet cut to `snap` bytes, as `tcpdump -s snap` records it.
    fn snaplen(mut self, snap: u32) -> Pcap {
        self.header[16..20].copy_from_slice(&snap.to_le_bytes());
        for p in &mut self.packets {
            p.data.truncate(snap as usize);
        }
        self
    }

    /// The first payload holding `old` gets `new` instead (same length: the stream stays whole).
    fn replace(mut self, old: &[u8], new: &[u8]) -> Pcap {
        assert_eq!(old.len(), new.len());
        let p = self
            .packets
            .iter_mut()
            .find(|p| p.payload().windows(old.len()).any(|w| w == old))
            .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(old)));
        let at = p.payload_at()
            + p.payload()
                .windows(old.len())
                .position(|w| w == old)
                .unwrap();
        p.data[at..at + old.len()].copy_from_slice(new);
        self
    }

    /// A segment from the client (`client_port`) carrying `payload` spliced in after packet
    /// `after`: its sequence number follows the client's last segment, and every later client
    /// sequence number and server acknowledgement moves up by its length.
    fn splice(mut self, after: usize, client_port: u16, payload: &[u8]) -> Pcap {
        let last = self.packets[..=after]
            .iter()
            .rposition(|p| p.src_port() == client_port && !p.payload().is_empty())
            .expect("a client segment before the splice point");
        let template = self.packets[last].clone();
        let seq = template
            .field32(4)
            .wrapping_add(template.payload().len() as u32);
        let mut seg = template.clone();
        seg.data.truncate(seg.payload_at());
        seg.data.extend_from_slice(payload);
        let ip = seg.ip();
        let ip_len = (seg.data.len() - ip) as u16;
        seg.data[ip + 2..ip + 4].copy_from_slice(&ip_len.to_be_bytes());
        seg.set_field32(4, seq);
        seg.orig_len = seg.data.len() as u32;
        seg.ts = self.packets[after].ts;
        let shift = payload.len() as u32;
        for p in &mut self.packets[after + 1..] {
            if p.src_port() == client_port {
                let s = p.field32(4).wrapping_add(shift);
                p.set_field32(4, s);
            } else if p.flags() & 0x10 != 0 && p.data.len() >= p.tcp() + 12 {
                let a = p.field32(8).wrapping_add(shift);
                p.set_field32(8, a);
            }
        }
        self.packets.insert(after + 1, seg);
        self
    }

    fn write(&self, path: &Path) {
        let mut out = self.header.clone();
        for p in &self.packets {
            out.extend_from_slice(&p.ts);
            out.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&p.orig_len.to_le_bytes());
            out.extend_from_slice(&p.data);
        }
        std::fs::write(path, out).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Replaying.

fn tmpdir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("xferwatch-blinding-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Replays the capture with pcaps/demo.toml (100 KiB threshold) on two workers; insists on exit 0
/// and EVE records the shared schema check accepts (when the checker is there).
fn replay(name: &str, pcap: &Pcap) -> Vec<Value> {
    let dir = tmpdir();
    let input = dir.join(format!("{name}.pcap"));
    let eve = dir.join(format!("{name}.json"));
    pcap.write(&input);
    let mut c = Command::new(env!("CARGO_BIN_EXE_xferwatch"));
    for (k, _) in std::env::vars() {
        if k.starts_with("XFERWATCH__") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    let out = c
        .arg("replay")
        .arg("-q")
        .arg("-c")
        .arg(root().join("pcaps/demo.toml"))
        .args(["--workers", "2", "--force", "--eve"])
        .arg(&eve)
        .arg(&input)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checker = root().join("../shared/tools/eve_check.py");
    if checker.exists() {
        let check = Command::new("python3").arg(&checker).arg(&eve).output();
        if let Ok(check) = check {
            assert!(
                check.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&check.stdout)
            );
        }
    } else {
        report_skip(
            "EVE schema check of the blinding tests: ../shared/tools/eve_check.py is absent",
        );
    }
    std::fs::read_to_string(&eve)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn flows(ev: &[Value], port: u64) -> Vec<&Value> {
    ev.iter()
        .filter(|e| e["event_type"] == "flow" && e["dest_port"] == port)
        .collect()
}

fn the_flow(ev: &[Value], port: u64) -> &Value {
    let f = flows(ev, port);
    assert_eq!(f.len(), 1, "one flow to port {port}");
    f[0]
}

fn alert_sids(ev: &[Value]) -> Vec<u64> {
    let mut v: Vec<u64> = ev
        .iter()
        .filter(|e| e["event_type"] == "alert")
        .map(|e| e["alert"]["signature_id"].as_u64().unwrap())
        .collect();
    v.sort();
    v
}

fn stat(ev: &[Value], name: &str) -> u64 {
    let s = ev.iter().rfind(|e| e["event_type"] == "stats").unwrap();
    s["xfer"][name].as_u64().unwrap_or(0)
}

/// The upload's data connection is `ftp-data` of the control connection's session, and the session
/// crossed the threshold.
fn assert_ftp_upload_seen(name: &str, ev: &[Value], control_port: u64, data_port: u64) {
    let control = the_flow(ev, control_port);
    let data = the_flow(ev, data_port);
    assert_eq!(control["app_proto"], "ftp", "{name}: control {control}");
    assert_eq!(data["app_proto"], "ftp-data", "{name}: data {data}");
    assert_eq!(
        data["xfer"]["parent_flow_id"], control["flow_id"],
        "{name}: linked"
    );
    assert_eq!(data["xfer"]["session_id"], control["xfer"]["session_id"]);
    assert!(data["xfer"]["payload_bytes_toserver"].as_u64().unwrap() >= 400_000);
    assert!(
        alert_sids(ev).contains(&LARGE_OUTBOUND),
        "{name}: {:?}",
        alert_sids(ev)
    );
}

// ---------------------------------------------------------------------------------------------
// One byte.

/// ftp-port80.pcap: vsftpd on port 80, a 409,600-byte STOR to the passive port 40007. Before the
/// fix an ESC in the banner or the USER line made both flows `failed`: no mismatch, no volume alert.
#[test]
fn one_stray_byte_in_banner_or_user_line_blinds_nothing() {
    let cases: &[(&str, &[u8], &[u8])] = &[
        ("esc-banner", b"(vsFTPd 3.0.3)", b"(vsFTPd\x1b3.0.3)"),
        ("tab-banner", b"(vsFTPd 3.0.3)", b"(vsFTPd\t3.0.3)"),
        ("ff-banner", b"(vsFTPd 3.0.3)", b"(vsFTPd\xff3.0.3)"),
        ("nul-banner", b"(vsFTPd 3.0.3)", b"(vsFTPd\x003.0.3)"),
        (
            "bad-utf8-banner",
            b"(vsFTPd 3.0.3)",
            b"(vsFTPd\xc3\x28.0.3)",
        ),
        ("esc-user", b"USER anonymous", b"USER anon\x1bmous"),
        ("esc-before-verb", b"USER anonymous", b"\x1bUSER anonymou"),
        ("ff-user", b"USER anonymous", b"USER anon\xfe\xffous"),
    ];
    for (name, old, new) in cases {
        let ev = replay(name, &Pcap::read("ftp-port80.pcap").replace(old, new));
        assert_ftp_upload_seen(name, &ev, 80, 40007);
        assert_eq!(alert_sids(&ev), vec![LARGE_OUTBOUND, OFF_PORT], "{name}");
    }
}

/// A CJK banner and `331少` (the reply whose text starts straight after its code, which once
/// panicked the parser); the banner text is kept, escaped by the writer, not cut.
#[test]
fn cjk_banner_and_reply() {
    let banner = "(欢迎光临)".as_bytes();
    let pcap = Pcap::read("ftp-port80.pcap")
        .replace(b"(vsFTPd 3.0.3)", banner)
        .replace(b"331 Ple", "331少P".as_bytes());
    let ev = replay("cjk", &pcap);
    assert_ftp_upload_seen("cjk", &ev, 80, 40007);
    let greeting = ev
        .iter()
        .find(|e| e["event_type"] == "ftp" && e["ftp"]["completion_code"][0] == "220")
        .unwrap();
    assert_eq!(greeting["ftp"]["reply"][0], "(欢迎光临)");
}

// ---------------------------------------------------------------------------------------------
// Mid-stream and truncated captures.

/// smb-upload.pcap picked up in the middle of its 512,000-byte WRITE: the flow starts with file
/// bytes. SMB resynchronises on the next message, and what came before counts.
#[test]
fn smb2_picked_up_mid_write() {
    for skip in [22, 23, 200] {
        let name = format!("smb-mid-{skip}");
        let ev = replay(&name, &Pcap::read("smb-upload.pcap").skip(skip));
        let f = the_flow(&ev, 445);
        assert_eq!(f["app_proto"], "smb", "{name}: {f}");
        assert_eq!(f["src_ip"], "10.77.0.2", "{name}: oriented");
        assert_eq!(f["xfer"]["anomalies"][0], "smb_midstream_pickup");
        let out = f["xfer"]["payload_bytes_toserver"].as_u64().unwrap();
        assert!(out > 100 * 1024, "{name}: {out}");
        assert_eq!(f["xfer"]["session_outbound_payload_bytes"], out, "{name}");
        assert_eq!(alert_sids(&ev), vec![LARGE_OUTBOUND], "{name}");
        assert_eq!(stat(&ev, "midstream_smb"), 1, "{name}");
    }
    // Off its port, mid-stream: still SMB, so still off its port.
    let ev = replay("smb443-mid", &Pcap::read("smb-port443.pcap").skip(22));
    assert_eq!(the_flow(&ev, 443)["app_proto"], "smb");
    assert_eq!(alert_sids(&ev), vec![LARGE_OUTBOUND, OFF_PORT]);
}

/// ftp-passive-upload.pcap started after PASV, 227, STOR and 150: the data connection was never
/// announced in the capture. The 226 that ends it ties it to its control connection.
#[test]
fn ftp_upload_whose_announcement_came_before_the_capture() {
    let ev = replay("ftp-late", &Pcap::read("ftp-passive-upload.pcap").skip(23));
    assert_ftp_upload_seen("ftp-late", &ev, 21, 40000);
    assert_eq!(the_flow(&ev, 40000)["xfer"]["linked_by_inference"], true);
    // The later LIST was announced in the capture: linked the ordinary way, with its command.
    let list = the_flow(&ev, 40001);
    assert_eq!(list["app_proto"], "ftp-data");
    assert!(list["xfer"].get("linked_by_inference").is_none());
    assert_eq!(alert_sids(&ev), vec![LARGE_OUTBOUND]);
    assert!(stat(&ev, "ftp_data_inferred") >= 1);
}

/// The same upload captured with a 96-byte snap length: the 227 replies are cut before their
/// address. The data connections are inferred, the STOR keeps its file name, and the bytes count
/// from the on-wire lengths.
#[test]
fn ftp_upload_at_snaplen_96() {
    for (name, skip) in [("ftp-snap96", 0), ("ftp-late-snap96", 23)] {
        let ev = replay(
            name,
            &Pcap::read("ftp-passive-upload.pcap").skip(skip).snaplen(96),
        );
        assert_ftp_upload_seen(name, &ev, 21, 40000);
        let data = the_flow(&ev, 40000);
        assert_eq!(data["xfer"]["linked_by_inference"], true, "{name}");
        assert_eq!(data["xfer"]["snaplen_cut"], true, "{name}");
        assert_eq!(data["xfer"]["payload_bytes_toserver"], 614_400, "{name}");
        assert_eq!(the_flow(&ev, 40001)["app_proto"], "ftp-data", "{name}");
        assert_eq!(alert_sids(&ev), vec![LARGE_OUTBOUND], "{name}");
    }
    let ev = replay(
        "ftp-snap96-stor",
        &Pcap::read("ftp-passive-upload.pcap").snaplen(96),
    );
    let stor = ev
        .iter()
        .find(|e| e["event_type"] == "ftp_data" && e["dest_port"] == 40000)
        .unwrap();
    assert_eq!(stor["ftp_data"]["command"], "STOR");
    assert_eq!(stor["ftp_data"]["filename"], "report-q3.bin");
}

// ---------------------------------------------------------------------------------------------
// Absurd SMB2 lengths.

/// An SMB2 header (64 bytes) for `command`, request, with `next` as NextCommand.
fn smb2_header(command: u16, next: u32) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\xfeSMB");
    h[4..6].copy_from_slice(&64u16.to_le_bytes());
    h[12..14].copy_from_slice(&command.to_le_bytes());
    h[20..24].copy_from_slice(&next.to_le_bytes());
    h[24..32].copy_from_slice(&0x7777u64.to_le_bytes());
    h
}

fn nbss(len: u32, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    v.extend_from_slice(body);
    v
}

/// Records whose length fields lie: a WRITE whose data length and offset point far past its
/// record, a record shorter than any header, a compound whose NextCommand points out of the
/// record.
fn lying_records() -> Vec<u8> {
    let mut write = smb2_header(0x0009, 0);
    let mut body = vec![0u8; 48];
    body[..2].copy_from_slice(&49u16.to_le_bytes());
    body[2..4].copy_from_slice(&0xffffu16.to_le_bytes()); // DataOffset
    body[4..8].copy_from_slice(&0xffff_ffffu32.to_le_bytes()); // Length
    body[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // Offset
    write.extend_from_slice(&body);
    let mut v = nbss(write.len() as u32, &write);
    v.extend(nbss(3, b"\xfeSM"));
    v.extend(nbss(64, &smb2_header(0x0005, 0xffff_fff0)));
    v
}

/// smb-upload.pcap with crafted records spliced into the connection before its real WRITE: lying
/// lengths (the parser resynchronises on the real messages after them), and an NBSS length of
/// 0xffffff that swallows the rest of the stream. Either way the connection stays SMB, the upload
/// counts, and nothing panics.
#[test]
fn smb2_records_with_absurd_lengths_around_a_real_upload() {
    // Packet 20 is the server's CREATE response; the client's WRITE starts at 21.
    let base = Pcap::read("smb-upload.pcap");
    let client_port = base.packets[0].src_port();
    // A READ whose record claims 1 MiB, then the largest NBSS length there is.
    let mut swallow = lying_records();
    swallow.extend(nbss(1 << 20, &smb2_header(0x0008, 0)));
    swallow.extend(nbss(0xff_ffff, &smb2_header(0x0009, 0)));
    for (name, records) in [("smb-lying", lying_records()), ("smb-nbss-max", swallow)] {
        let pcap = Pcap::read("smb-upload.pcap").splice(20, client_port, &records);
        let ev = replay(name, &pcap);
        let f = the_flow(&ev, 445);
        assert_eq!(f["app_proto"], "smb", "{name}: {f}");
        let out = f["xfer"]["payload_bytes_toserver"].as_u64().unwrap();
        assert_eq!(out, 514_561 + records.len() as u64, "{name}");
        assert_eq!(f["xfer"]["session_outbound_payload_bytes"], out, "{name}");
        assert_eq!(alert_sids(&ev), vec![LARGE_OUTBOUND], "{name}");
        assert!(stat(&ev, "smb_malformed") > 0, "{name}");
        let written = ev
            .iter()
            .filter(|e| e["event_type"] == "smb" && e["smb"]["filename"] == "payroll.bin")
            .filter_map(|e| e["xfer"]["bytes_written"].as_u64())
            .max();
        if name == "smb-lying" {
            // The parser found its way back to the real WRITE after the lies.
            assert_eq!(written, Some(512_000), "{name}");
        }
    }
}
