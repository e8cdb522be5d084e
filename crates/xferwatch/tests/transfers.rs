//! Whole transfers and their alerts on the bundled captures of real software (pcaps/, described in
//! pcaps/README.md, with pcaps/expected.json written by the same script): sessions, parent links,
//! file names and exact byte totals per protocol, and every expected alert once — nothing else.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Says that a check was skipped for want of `../shared`. Written to stderr directly, past the test
/// harness's output capture, so that it shows in `cargo test`'s output and in the summary of
/// skipped checks at the end of `make test`.
fn report_skip(what: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP: {what}");
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn replay(pcap: &Path, extra: &[&str]) -> Vec<Value> {
    let dir = root().join("target/test-transfers");
    std::fs::create_dir_all(&dir).unwrap();
    // Tests run in parallel: every run gets its own file.
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let eve = dir.join(format!(
        "{}-{}-{}.json",
        pcap.file_name().unwrap().to_string_lossy(),
        std::process::id(),
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut c = Command::new(env!("CARGO_BIN_EXE_xferwatch"));
    c.arg("replay")
        .arg("-q")
        .arg("-c")
        .arg(root().join("pcaps/demo.toml"))
        .args(["--workers", "2", "--force", "--eve"])
        .arg(&eve)
        .args(extra)
        .arg(pcap);
    for (k, _) in std::env::vars() {
        if k.starts_with("XFERWATCH__") {
            c.env_remove(k);
        }
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&eve)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("pcaps/expected.json")).unwrap())
        .unwrap()
}

/// The threshold pcaps/demo.toml sets.
const THRESHOLD: u64 = 100 * 1024;

fn of_type<'a>(ev: &'a [Value], t: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["event_type"] == t).collect()
}

/// Every alert expected.json lists fires exactly once, with the right hosts; 1173001 at the packet
/// where the session crossed the threshold. Negative controls (downloads, internal SMB, HTTP uploads)
/// raise nothing.
#[test]
fn expected_alerts_fire_once_and_nothing_else() {
    for (name, exp) in expected().as_object().unwrap() {
        let ev = replay(&root().join("pcaps").join(name), &[]);
        let mut got: Vec<u64> = of_type(&ev, "alert")
            .iter()
            .map(|a| a["alert"]["signature_id"].as_u64().unwrap())
            .collect();
        got.sort();
        let mut want: Vec<u64> = exp["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        want.sort();
        assert_eq!(got, want, "{name}: alerts");
        let internal_client = exp["flows"][0]["client_ip"].as_str().unwrap();
        for a in of_type(&ev, "alert") {
            let al = &a["alert"];
            assert_eq!(al["action"], "allowed");
            assert_eq!(al["gid"], 1);
            assert_eq!(al["metadata"]["mitre_analytic"][0], "AN1173");
            assert!(al["signature"].as_str().unwrap().starts_with("XFERWATCH"));
            let x = &a["xfer"];
            assert_eq!(x["internal_host"], internal_client, "{name}: internal host");
            assert!(x["external_host"].is_string(), "{name}");
            // As the flow records say: the volume's direction, or the mismatched flow's.
            let flow_direction = of_type(&ev, "flow")
                .into_iter()
                .find(|f| f["flow_id"] == a["flow_id"])
                .map(|f| f["xfer"]["direction"].clone())
                .expect("the alerted flow's record");
            match al["signature_id"].as_u64().unwrap() {
                1_173_002 | 1_173_003 => {
                    assert_eq!(x["direction"], flow_direction, "{name}");
                    assert_eq!(x["mismatch_flows"], 1, "{name}");
                }
                _ => assert_eq!(x["direction"], "outbound", "{name}"),
            }
            assert!(
                a["flow_id"].is_u64() && a["app_proto"].is_string(),
                "{name}"
            );
            match al["signature_id"].as_u64().unwrap() {
                1_173_001 => {
                    // Raised at the crossing packet: the total is past the threshold by less than
                    // one packet's payload.
                    let total = x["outbound_payload_bytes"].as_u64().unwrap();
                    assert_eq!(x["threshold_bytes"], THRESHOLD, "{name}");
                    assert!(
                        (THRESHOLD..THRESHOLD + 65_536).contains(&total),
                        "{name}: crossed at {total}"
                    );
                    let sid = x["session_id"].as_u64().expect("session_id");
                    // The alert comes before the session's flows end, and they say so.
                    for f in of_type(&ev, "flow") {
                        if f["xfer"]["session_id"] == sid && f["flow_id"] == a["flow_id"] {
                            assert!(
                                f["flow"]["end"].as_str().unwrap()
                                    >= a["timestamp"].as_str().unwrap(),
                                "{name}: alert after the flow ended"
                            );
                            assert_eq!(f["flow"]["alerted"], true, "{name}");
                        }
                    }
                }
                1_173_002 | 1_173_003 => {
                    assert_eq!(x["port_mismatch"], true, "{name}");
                }
                other => panic!("{name}: unexpected signature {other}"),
            }
        }
    }
}

/// Sessions: every flow of an FTP session (control + data), a TFTP request and its transfer carry one
/// session id; the session total is the sum of its flows' outbound payload.
#[test]
fn sessions_tie_flows_together_and_sum_them() {
    for (name, _) in expected().as_object().unwrap() {
        let ev = replay(&root().join("pcaps").join(name), &[]);
        let flows = of_type(&ev, "flow");
        let by_id: HashMap<u64, &Value> = flows
            .iter()
            .map(|f| (f["flow_id"].as_u64().unwrap(), *f))
            .collect();
        let mut sessions: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for f in &flows {
            let proto = f["app_proto"].as_str().unwrap_or("");
            let x = &f["xfer"];
            if ["ftp", "ftp-data", "tftp", "smb"].contains(&proto) {
                let sid = x["session_id"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{name}: {proto} flow without session"));
                let e = sessions.entry(sid).or_default();
                e.0 += x["outbound_payload_bytes"].as_u64().unwrap();
                e.1 =
                    e.1.max(x["session_outbound_payload_bytes"].as_u64().unwrap());
                // The session is named after the flow that started it.
                assert!(
                    by_id.contains_key(&sid),
                    "{name}: session {sid} has no flow"
                );
            }
            if let Some(parent) = x["parent_flow_id"].as_u64() {
                let p = by_id[&parent];
                assert_eq!(
                    p["xfer"]["session_id"], x["session_id"],
                    "{name}: a child shares its parent's session"
                );
                match proto {
                    "ftp-data" => assert_eq!(p["app_proto"], "ftp", "{name}"),
                    "tftp" => {
                        // The transfer's client is the requester, whoever sent first.
                        assert_eq!(p["src_ip"], f["src_ip"], "{name}");
                        assert_eq!(p["src_port"], f["src_port"], "{name}");
                    }
                    other => panic!("{name}: {other} flow with a parent"),
                }
            }
        }
        for (sid, (sum, last)) in sessions {
            assert_eq!(sum, last, "{name}: session {sid} total");
        }
        if name.starts_with("ftp-") {
            assert!(
                flows.iter().any(|f| f["app_proto"] == "ftp-data"),
                "{name}: data channels linked"
            );
        }
        if name.starts_with("tftp-") {
            assert!(
                flows.iter().any(|f| f["xfer"]["parent_flow_id"].is_u64()),
                "{name}: transfer linked to its request"
            );
        }
    }
}

/// Every file moved is reported with its name, its exact size and its direction; an upload
/// session's outbound total is the file size plus the protocol overhead documented in
/// docs/events.md.
#[test]
fn files_are_named_and_counted_exactly() {
    for (name, exp) in expected().as_object().unwrap() {
        let ev = replay(&root().join("pcaps").join(name), &[]);
        let mut uploaded: HashMap<&str, u64> = HashMap::new();
        for file in exp["files"].as_array().unwrap() {
            let fname = file["name"].as_str().unwrap();
            let bytes = file["bytes"].as_u64().unwrap();
            let upload = file["direction"] == "upload";
            let proto = file["protocol"].as_str().unwrap();
            if upload {
                *uploaded.entry(proto).or_default() += bytes;
            }
            let found = match proto {
                "ftp" => of_type(&ev, "ftp_data").iter().any(|e| {
                    e["ftp_data"]["filename"] == fname
                        && e["xfer"]["bytes"] == bytes
                        && e["xfer"]["direction"] == file["direction"]
                        && e["ftp_data"]["command"] == if upload { "STOR" } else { "RETR" }
                }),
                "tftp" => of_type(&ev, "tftp").iter().any(|e| {
                    e["tftp"]["file"] == fname
                        && e["tftp"]["packet"] == if upload { "write" } else { "read" }
                        && e["xfer"]["tftp"]["file_bytes"] == bytes
                        && e["xfer"]["tftp"]["complete"] == true
                }),
                "smb" if name.starts_with("smb3-encrypted") => {
                    // Nothing readable: the encrypted volume still measures the upload.
                    of_type(&ev, "smb").iter().any(|e| {
                        e["smb"]["command"] == "SMB3_ENCRYPTED"
                            && e["xfer"]["encrypted_bytes_toserver"].as_u64().unwrap() > bytes
                    })
                }
                "smb" => of_type(&ev, "smb").iter().any(|e| {
                    e["smb"]["filename"]
                        .as_str()
                        .is_some_and(|f| f.trim_start_matches('\\') == fname)
                        && e["xfer"][if upload {
                            "bytes_written"
                        } else {
                            "bytes_read"
                        }] == bytes
                }),
                other => panic!("{name}: protocol {other}"),
            };
            assert!(found, "{name}: {fname} ({bytes} B, {proto}) not reported");
        }
        // Outbound totals: file bytes plus overhead.
        for (proto, file_bytes) in uploaded {
            if name == "smb-internal.pcap" {
                continue; // internal to internal: nothing is outbound
            }
            let total: u64 = of_type(&ev, "flow")
                .iter()
                .filter(|f| {
                    let p = f["app_proto"].as_str().unwrap_or("");
                    p == proto || (proto == "ftp" && p == "ftp-data")
                })
                .map(|f| f["xfer"]["outbound_payload_bytes"].as_u64().unwrap())
                .sum();
            let blocks = file_bytes / 512 + 1;
            let overhead = match proto {
                "ftp" => 1024,               // the client's control commands
                "tftp" => 4 * blocks + 1024, // 4 B per DATA block, the requests, ACKs of reads
                _ => 8192,                   // SMB headers, session setup, create/close
            };
            assert!(
                (file_bytes..=file_bytes + overhead).contains(&total),
                "{name}: {proto} outbound {total} for {file_bytes} B of files"
            );
        }
    }
}

/// FTP transactions as Suricata writes them, passwords hidden unless anonymous, the data mode named.
#[test]
fn ftp_transactions() {
    let ev = replay(&root().join("pcaps/ftp-eprt-ipv6.pcap"), &[]);
    let ftp = of_type(&ev, "ftp");
    let eprt = ftp
        .iter()
        .find(|e| e["ftp"]["command"] == "EPRT")
        .expect("EPRT");
    assert_eq!(eprt["ftp"]["mode"], "active");
    assert!(eprt["ftp"]["dynamic_port"].is_u64());
    assert_eq!(eprt["ftp"]["reply_received"], "yes");
    let stor = ftp.iter().find(|e| e["ftp"]["command"] == "STOR").unwrap();
    assert_eq!(stor["ftp"]["command_data"], "site-plan.bin");
    assert!(stor["xfer"]["session_id"].is_u64());
    let ev = replay(&root().join("pcaps/ftp-epsv-upload.pcap"), &[]);
    let epsv = of_type(&ev, "ftp")
        .into_iter()
        .find(|e| e["ftp"]["command"] == "EPSV")
        .expect("EPSV");
    assert_eq!(epsv["ftp"]["completion_code"][0], "229");
    assert_eq!(epsv["ftp"]["mode"], "passive");
}

/// One Ethernet/IPv4/TCP frame (checksums left zero: the sensor does not verify them).
#[allow(
    clippy::too_many_arguments,
    reason = "test packet builder: one argument per header field"
)]
fn tcp_frame(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 20 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// FTPS: after AUTH TLS the announcements are unreadable; a later connection between the two hosts
/// to a high port is linked to the session as ftp-data by the heuristic, a connection to a low port
/// is not. Built on the public AUTH TLS capture (skipped when ../shared is absent) with two
/// connections appended.
#[test]
fn ftps_data_channels_are_linked_by_heuristic() {
    let src = root().join("../shared/corpus/public/pcaps/ndpi__ftp-start-tls.pcap");
    let Ok(mut pcap) = std::fs::read(&src) else {
        report_skip("FTPS data-channel heuristic test: ../shared/corpus/public is absent");
        return;
    };
    assert_eq!(
        &pcap[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian classic pcap"
    );
    let (client, server) = ([10, 238, 26, 36], [10, 220, 50, 76]);
    let t0: u32 = 1_383_123_630; // just after the capture's last packet
    let data = vec![0x17u8; 1000]; // TLS application data
    let mut frames = Vec::new();
    for (sport, dport) in [(50001u16, 40000u16), (50002, 443)] {
        frames.push(tcp_frame(client, sport, server, dport, 100, 0, 0x02, &[]));
        frames.push(tcp_frame(server, dport, client, sport, 500, 101, 0x12, &[]));
        frames.push(tcp_frame(client, sport, server, dport, 101, 501, 0x10, &[]));
        frames.push(tcp_frame(
            client, sport, server, dport, 101, 501, 0x18, &data,
        ));
    }
    for (i, f) in frames.iter().enumerate() {
        pcap.extend_from_slice(&t0.to_le_bytes());
        pcap.extend_from_slice(&(i as u32 * 1000).to_le_bytes());
        pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(f.len() as u32).to_le_bytes());
        pcap.extend_from_slice(f);
    }
    let dir = root().join("target/test-transfers");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("ftps-{}.pcap", std::process::id()));
    std::fs::write(&file, &pcap).unwrap();
    let ev = replay(&file, &[]);
    let control = of_type(&ev, "flow")
        .into_iter()
        .find(|f| f["dest_port"] == 21)
        .expect("control flow");
    assert_eq!(control["xfer"]["tls_upgraded"], true);
    let session = control["xfer"]["session_id"].as_u64().expect("session");
    let high = of_type(&ev, "flow")
        .into_iter()
        .find(|f| f["dest_port"] == 40000)
        .expect("high-port flow");
    assert_eq!(high["app_proto"], "ftp-data");
    assert_eq!(high["xfer"]["session_id"], session);
    assert_eq!(high["xfer"]["parent_flow_id"], control["flow_id"]);
    assert_eq!(high["xfer"]["payload_bytes_toserver"], 1000);
    let data_ev = of_type(&ev, "ftp_data")
        .into_iter()
        .find(|e| e["dest_port"] == 40000)
        .expect("ftp_data event");
    assert_eq!(data_ev["xfer"]["linked_by_heuristic"], true);
    let low = of_type(&ev, "flow")
        .into_iter()
        .find(|f| f["dest_port"] == 443)
        .expect("port 443 flow");
    assert_ne!(
        low["app_proto"], "ftp-data",
        "a low port is not a data channel"
    );
    assert!(low["xfer"]["parent_flow_id"].is_null());
}

/// `smb` events name SMB1 files as SMB2 ones (no leading backslash, as `fileinfo` does), and a
/// CLOSE whose response carries no end-of-file reports the bytes written.
#[test]
fn smb_file_events_name_and_size() {
    for (pcap, file, written) in [
        ("smb1-port139.pcap", "ledger.bin", 307_200u64),
        ("smb-upload.pcap", "payroll.bin", 512_000),
    ] {
        let ev = replay(&root().join("pcaps").join(pcap), &[]);
        let smb = of_type(&ev, "smb");
        for e in &smb {
            if let Some(n) = e["smb"]["filename"].as_str() {
                assert!(!n.starts_with('\\'), "{pcap}: {e}");
            }
        }
        let closes: Vec<_> = smb
            .iter()
            .filter(|e| {
                e["smb"]["filename"] == file
                    && e["smb"]["command"].as_str().unwrap().ends_with("CLOSE")
            })
            .collect();
        assert!(!closes.is_empty(), "{pcap}: no CLOSE of {file}");
        for c in &closes {
            assert_eq!(c["smb"]["size"], written, "{pcap}: {c}");
        }
        let upload = closes
            .iter()
            .find(|c| c["xfer"]["bytes_written"].as_u64().unwrap_or(0) > 0)
            .expect("the upload's CLOSE");
        assert_eq!(upload["xfer"]["bytes_written"], written, "{pcap}");
        // fileinfo names the file the same way.
        assert!(of_type(&ev, "fileinfo")
            .iter()
            .any(|f| f["fileinfo"]["filename"] == file && f["fileinfo"]["size"] == written));
    }
}
