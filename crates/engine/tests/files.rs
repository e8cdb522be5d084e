//! Every file the bundled captures moved by FTP or TFTP, and every file written over SMB2, is
//! reported by a `fileinfo` event with the name, size and SHA-256 the capture script recorded
//! (`pcaps/expected.json`, computed from the files the real clients sent), whole (`CLOSED`) and in
//! the right direction. Encrypted SMB3 gives none; SMB1 writes are reported by size, unhashed.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use xferwatch_engine::replay::replay;
use xferwatch_engine::{BaselineFile, ChannelSink, EngineConfig};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn fileinfo_events(pcap: &Path) -> Vec<serde_json::Value> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let config = EngineConfig {
        workers: 2,
        ..EngineConfig::default()
    };
    replay(
        &config,
        &BaselineFile::load(None, 3600),
        &[pcap.to_path_buf()],
        Box::new(ChannelSink(tx)),
        &AtomicBool::new(false),
    )
    .expect("replay");
    rx.try_iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(&l).expect("EVE JSON"))
        .filter(|e| e["event_type"] == "fileinfo")
        .collect()
}

#[test]
fn ftp_and_tftp_files_have_their_recorded_hashes() {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo("pcaps/expected.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (pcap, v) in expected.as_object().unwrap() {
        let files: Vec<_> = v["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| {
                f["protocol"] == "ftp"
                    || f["protocol"] == "tftp"
                    || (f["protocol"] == "smb" && f["direction"] == "upload" && hashed_smb(pcap))
            })
            .collect();
        if files.is_empty() {
            continue;
        }
        let got = fileinfo_events(&repo(&format!("pcaps/{pcap}")));
        assert_eq!(got.len(), files.len(), "{pcap}: fileinfo events {got:?}");
        for f in files {
            let e = got
                .iter()
                .find(|e| e["fileinfo"]["filename"] == f["name"])
                .unwrap_or_else(|| panic!("{pcap}: no fileinfo for {}: {got:?}", f["name"]));
            let fi = &e["fileinfo"];
            assert_eq!(fi["size"], f["bytes"], "{pcap} {}", f["name"]);
            assert_eq!(fi["sha256"], f["sha256"], "{pcap} {}", f["name"]);
            assert_eq!(fi["state"], "CLOSED", "{pcap} {}", f["name"]);
            assert_eq!(fi["gaps"], false);
            assert!(e["community_id"].as_str().unwrap().starts_with("1:"));
            let way = if pcap.contains("internal") {
                "internal"
            } else if f["direction"] == "upload" {
                "outbound"
            } else {
                "inbound"
            };
            assert_eq!(e["xfer"]["direction"], way, "{pcap} {}", f["name"]);
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} files checked");
}

/// SMB2 connections in the clear: their writes are hashed.
fn hashed_smb(pcap: &str) -> bool {
    pcap.starts_with("smb") && !pcap.starts_with("smb1") && !pcap.starts_with("smb3-encrypted")
}

#[test]
fn encrypted_smb3_has_no_file_and_smb1_writes_have_a_size() {
    assert!(fileinfo_events(&repo("pcaps/smb3-encrypted.pcap")).is_empty());
    let smb1 = fileinfo_events(&repo("pcaps/smb1-port139.pcap"));
    assert_eq!(smb1.len(), 1, "{smb1:?}");
    assert_eq!(smb1[0]["fileinfo"]["filename"], "ledger.bin");
    assert_eq!(smb1[0]["fileinfo"]["size"], 307200);
    assert!(smb1[0]["fileinfo"].get("sha256").is_none());
}
