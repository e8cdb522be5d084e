//! Every file the bundled captures moved by FTP, TFTP or SMB in the clear (SMB2 and SMB1, written
//! and read) is reported by a `fileinfo` event with the name, size and SHA-256 the capture script
//! recorded (`pcaps/expected.json`, computed from the files the real clients sent), whole
//! (`CLOSED`), in the right direction and by the right command. Encrypted SMB3 gives none.

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
fn every_listed_file_has_its_recorded_hash() {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo("pcaps/expected.json")).unwrap()).unwrap();
    let mut checked = 0;
    let (mut smb, mut smb_downloads, mut smb1) = (0, 0, 0);
    for (pcap, v) in expected.as_object().unwrap() {
        let files: Vec<_> = v["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| {
                f["protocol"] == "ftp"
                    || f["protocol"] == "tftp"
                    || (f["protocol"] == "smb" && !pcap.starts_with("smb3-encrypted"))
            })
            .collect();
        if files.is_empty() {
            continue;
        }
        let got = fileinfo_events(&repo(&format!("pcaps/{pcap}")));
        assert_eq!(got.len(), files.len(), "{pcap}: fileinfo events {got:?}");
        for f in files {
            let upload = f["direction"] == "upload";
            let way = if pcap.contains("internal") {
                "internal"
            } else if upload {
                "outbound"
            } else {
                "inbound"
            };
            // A file both written and read on one connection has two events: one per direction.
            let matching: Vec<_> = got
                .iter()
                .filter(|e| {
                    e["fileinfo"]["filename"] == f["name"]
                        && (pcap.contains("internal") || e["xfer"]["direction"] == way)
                })
                .collect();
            assert_eq!(
                matching.len(),
                1,
                "{pcap}: fileinfo for {} {}: {got:?}",
                f["name"],
                f["direction"]
            );
            let e = matching[0];
            let fi = &e["fileinfo"];
            assert_eq!(fi["size"], f["bytes"], "{pcap} {}", f["name"]);
            assert_eq!(fi["sha256"], f["sha256"], "{pcap} {}", f["name"]);
            assert_eq!(fi["state"], "CLOSED", "{pcap} {}", f["name"]);
            assert_eq!(fi["gaps"], false);
            assert!(e["community_id"].as_str().unwrap().starts_with("1:"));
            assert_eq!(e["xfer"]["direction"], way, "{pcap} {}", f["name"]);
            if f["protocol"] == "smb" {
                let command = if upload { "WRITE" } else { "READ" };
                assert_eq!(e["xfer"]["command"], command, "{pcap} {}", f["name"]);
                assert!(e["xfer"]["fuid"].is_string(), "{pcap} {}", f["name"]);
                smb += 1;
                smb_downloads += usize::from(!upload);
                smb1 += usize::from(pcap.starts_with("smb1"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} files checked");
    // Every SMB file in the clear listed: the SMB2 uploads, the SMB1 upload and download.
    assert!(
        smb >= 5 && smb_downloads >= 1 && smb1 >= 2,
        "SMB files checked: {smb} ({smb_downloads} downloads, {smb1} over SMB1)"
    );
}

#[test]
fn encrypted_smb3_has_no_file_and_smb1_moves_are_hashed_both_ways() {
    assert!(fileinfo_events(&repo("pcaps/smb3-encrypted.pcap")).is_empty());
    let smb1 = fileinfo_events(&repo("pcaps/smb1-port139.pcap"));
    assert_eq!(smb1.len(), 2, "{smb1:?}");
    let commands: Vec<_> = smb1.iter().map(|e| &e["xfer"]["command"]).collect();
    assert_eq!(
        commands,
        ["WRITE", "READ"],
        "the upload is closed before the download"
    );
    for e in &smb1 {
        // The SMB1 name's leading backslash is not part of the file name.
        assert_eq!(e["fileinfo"]["filename"], "ledger.bin");
        assert_eq!(e["fileinfo"]["size"], 307200);
        assert_eq!(
            e["fileinfo"]["sha256"],
            "70e746a36c9c1945ae89553ba823eadf8095bef6fd35e29c01c46c00629970f0"
        );
    }
}
