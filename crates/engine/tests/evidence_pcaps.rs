//! Session pcaps: every alert of the bundled captures names a pcap file that libpcap reads, holding
//! packets of every flow of the alerted session and of no other (as the EVE flow records list
//! them), among them the packet that raised the alert.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use xferwatch_engine::pcaps::PcapConfig;
use xferwatch_engine::replay::replay;
use xferwatch_engine::{BaselineFile, ChannelSink, EngineConfig};
use xferwatch_wire::{decode, Decoded, LinkType};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

type Tuple = (String, u16, String, u16);

fn events(pcap: &Path, dir: &Path, cfg: impl FnOnce(&mut PcapConfig)) -> Vec<serde_json::Value> {
    events_at(pcap, dir, 100 << 10, cfg)
}

fn events_at(
    pcap: &Path,
    dir: &Path,
    threshold: u64,
    cfg: impl FnOnce(&mut PcapConfig),
) -> Vec<serde_json::Value> {
    let mut p = PcapConfig::new(dir.to_path_buf());
    cfg(&mut p);
    let mut config = EngineConfig {
        workers: 2,
        pcaps: Some(p),
        ..EngineConfig::default()
    };
    config.detect.threshold_bytes = threshold;
    run(config, &[pcap.to_path_buf()])
}

fn run(mut config: EngineConfig, pcaps: &[PathBuf]) -> Vec<serde_json::Value> {
    let (tx, rx) = crossbeam_channel::unbounded();
    if config.detect.threshold_bytes == EngineConfig::default().detect.threshold_bytes {
        // The demo's threshold (pcaps/demo.toml): the bundled transfers are 100 KiB to 600 KiB.
        config.detect.threshold_bytes = 100 << 10;
    }
    replay(
        &config,
        &BaselineFile::load(None, 3600),
        pcaps,
        Box::new(ChannelSink(tx)),
        &AtomicBool::new(false),
    )
    .expect("replay");
    rx.try_iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(&l).expect("EVE JSON"))
        .collect()
}

fn tuple(e: &serde_json::Value) -> Tuple {
    let a = (
        e["src_ip"].as_str().unwrap().to_string(),
        e["src_port"].as_u64().unwrap_or(0) as u16,
    );
    let b = (
        e["dest_ip"].as_str().unwrap().to_string(),
        e["dest_port"].as_u64().unwrap_or(0) as u16,
    );
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    (x.0, x.1, y.0, y.1)
}

/// (microsecond time, unordered endpoints) of every packet of a pcap, read with libpcap.
fn packets(path: &str) -> Vec<(i64, Tuple)> {
    let mut cap = pcap::Capture::from_file(path).expect("libpcap opens the session pcap");
    let link = LinkType::from_dlt(cap.get_datalink().0);
    let mut out = Vec::new();
    while let Ok(p) = cap.next_packet() {
        let ts = p.header.ts.tv_sec * 1_000_000 + p.header.ts.tv_usec;
        match decode(link, p.data, false) {
            Ok(Decoded::Packet(d)) => {
                let a = (d.src.addr.to_string(), d.src.port);
                let b = (d.dst.addr.to_string(), d.dst.port);
                let (x, y) = if a <= b { (a, b) } else { (b, a) };
                out.push((ts, (x.0, x.1, y.0, y.1)));
            }
            other => panic!("{path}: a packet that is no flow packet: {other:?}"),
        }
    }
    out
}

fn ts_us(e: &serde_json::Value) -> i64 {
    // "2026-11-29T19:23:40.394661+0000": the microseconds of the day are enough to match within
    // one capture (the tests replay one file at a time, hours apart at most).
    let t = e["timestamp"].as_str().unwrap();
    let hms = &t[11..26];
    let h: i64 = hms[0..2].parse().unwrap();
    let m: i64 = hms[3..5].parse().unwrap();
    let s: i64 = hms[6..8].parse().unwrap();
    let us: i64 = hms[9..15].parse().unwrap();
    ((h * 60 + m) * 60 + s) * 1_000_000 + us
}

#[test]
fn every_alert_has_a_pcap_of_its_session_with_the_alerting_packet() {
    let mut alerts = 0;
    let mut files = HashSet::new();
    for entry in std::fs::read_dir(repo("pcaps")).unwrap() {
        let pcap = entry.unwrap().path();
        if pcap.extension().is_none_or(|x| x != "pcap") {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let evs = events(&pcap, dir.path(), |_| {});
        let flows: Vec<&serde_json::Value> =
            evs.iter().filter(|e| e["event_type"] == "flow").collect();
        for a in evs.iter().filter(|e| e["event_type"] == "alert") {
            alerts += 1;
            let file = a["xfer"]["evidence_pcap"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: alert without evidence_pcap: {a}", pcap.display()));
            assert!(file.starts_with(dir.path().to_str().unwrap()), "{file}");
            files.insert(file.to_string());
            // The session's flows: those with its session id, or the alerted flow alone.
            let session: HashSet<Tuple> = match a["xfer"]["session_id"].as_u64() {
                Some(s) => flows
                    .iter()
                    .filter(|f| f["xfer"]["session_id"].as_u64() == Some(s))
                    .map(|f| tuple(f))
                    .collect(),
                None => flows
                    .iter()
                    .filter(|f| f["flow_id"] == a["flow_id"])
                    .map(|f| tuple(f))
                    .collect(),
            };
            assert!(session.contains(&tuple(a)), "{}: {a}", pcap.display());
            let pkts = packets(file);
            assert!(!pkts.is_empty(), "{file} is empty");
            for (_, t) in &pkts {
                assert!(
                    session.contains(t),
                    "{}: {file} holds {t:?}, not of the session {session:?}",
                    pcap.display()
                );
            }
            // Every flow of the session is in it: those that ended before the alert (an FTP
            // session's earlier data connections), those live at the alert and those after.
            let held: HashSet<Tuple> = pkts.iter().map(|(_, t)| t.clone()).collect();
            assert_eq!(
                held,
                session,
                "{}: {file} lacks flows of its session",
                pcap.display()
            );
            let at = ts_us(a);
            assert!(
                pkts.iter()
                    .any(|(ts, t)| *t == tuple(a) && ts.rem_euclid(86_400_000_000) == at),
                "{}: {file} lacks the alerting packet ({at}, {:?})",
                pcap.display(),
                tuple(a)
            );
        }
    }
    assert!(alerts >= 16, "alerts {alerts}");
    assert!(files.len() >= 10, "files {}", files.len());
}

#[test]
fn a_session_pcap_stops_at_its_cap_and_the_directory_at_its_total() {
    let dir = tempfile::tempdir().unwrap();
    let evs = events(&repo("pcaps/ftp-multi-stor.pcap"), dir.path(), |p| {
        p.max_bytes_per_session = 64 << 10;
    });
    let a: Vec<_> = evs.iter().filter(|e| e["event_type"] == "alert").collect();
    assert!(!a.is_empty());
    for a in &a {
        let f = a["xfer"]["evidence_pcap"].as_str().unwrap();
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 64 << 10, "{f}: {len} bytes");
        assert!(len > 32 << 10, "{f}: {len} bytes");
        // Still a valid capture, cut on a record boundary.
        assert!(!packets(f).is_empty());
    }
    // A directory cap smaller than two sessions' files: the oldest go, the newest stays.
    let dir = tempfile::tempdir().unwrap();
    let evs = events(&repo("pcaps/ftp-multi-stor.pcap"), dir.path(), |p| {
        p.max_bytes_per_session = 64 << 10;
        p.max_total = 100 << 10;
    });
    let total: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(total <= 100 << 10, "{total}");
    let last = evs.iter().rfind(|e| e["event_type"] == "alert").unwrap()["xfer"]["evidence_pcap"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(Path::new(&last).exists());
}

fn bundled() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo("pcaps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    v.sort();
    v
}

#[test]
fn whole_files_are_stored_by_their_sha256_and_the_store_is_capped() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        workers: 2,
        file_store: Some((dir.path().to_path_buf(), 1 << 30)),
        ..EngineConfig::default()
    };
    let evs = run(config, &bundled());
    let files: Vec<_> = evs
        .iter()
        .filter(|e| e["event_type"] == "fileinfo")
        .collect();
    let mut stored = 0;
    for f in &files {
        let fi = &f["fileinfo"];
        let whole = fi["state"] == "CLOSED" && fi["sha256"].is_string();
        assert_eq!(fi["stored"].as_bool(), Some(whole), "{f}");
        if whole {
            stored += 1;
            let sha = fi["sha256"].as_str().unwrap();
            let path = dir.path().join("files").join(&sha[..2]).join(sha);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(bytes.len() as u64, fi["size"].as_u64().unwrap());
            let got: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(got, sha);
        }
    }
    assert!(stored >= 17, "stored {stored} of {}", files.len());
    // Nothing is left half-written.
    assert_eq!(
        std::fs::read_dir(dir.path().join("files/.partial"))
            .unwrap()
            .count(),
        0
    );
    // A store too small for any of the files: none stored, none claimed, nothing left behind.
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        workers: 2,
        file_store: Some((dir.path().to_path_buf(), 10 << 10)),
        ..EngineConfig::default()
    };
    let evs = run(config, &[repo("pcaps/ftp-multi-stor.pcap")]);
    assert!(evs.iter().any(|e| e["event_type"] == "fileinfo"));
    assert!(evs
        .iter()
        .filter(|e| e["event_type"] == "fileinfo")
        .all(|e| e["fileinfo"]["stored"] == false));
    let left: u64 = walk(&dir.path().join("files"));
    assert_eq!(left, 0);
}

fn walk(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

#[test]
fn every_connection_of_a_multi_upload_session_is_in_its_pcap() {
    // An FTP session with several uploads, its threshold just below its total: the alert comes
    // on the last data connection, after the earlier ones ended. (The capture lasts 10 ms, so
    // they are still in the flow table; `pcaps::tests` covers connections that left it.)
    let file = repo("pcaps/ftp-multi-stor.pcap");
    let dir = tempfile::tempdir().unwrap();
    let first = events(&file, dir.path(), |_| {});
    let total = first
        .iter()
        .filter(|e| e["event_type"] == "flow")
        .filter_map(|e| e["xfer"]["session_outbound_payload_bytes"].as_u64())
        .max()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = PcapConfig::new(dir.path().to_path_buf());
    let mut config = EngineConfig {
        workers: 1,
        pcaps: Some(p),
        ..EngineConfig::default()
    };
    config.detect.threshold_bytes = total - 1000;
    let evs = run(config, &[file]);
    let a = evs
        .iter()
        .find(|e| e["event_type"] == "alert")
        .expect("an alert near the session's end");
    let s = a["xfer"]["session_id"].as_u64().unwrap();
    let session: Vec<&serde_json::Value> = evs
        .iter()
        .filter(|e| e["event_type"] == "flow" && e["xfer"]["session_id"].as_u64() == Some(s))
        .collect();
    let alert_ts = a["timestamp"].as_str().unwrap();
    let ended_before = session
        .iter()
        .filter(|f| f["flow"]["end"].as_str().unwrap() < alert_ts)
        .count();
    assert!(
        ended_before >= 2,
        "{ended_before} flows ended before the alert"
    );
    let held: HashSet<Tuple> = packets(a["xfer"]["evidence_pcap"].as_str().unwrap())
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let want: HashSet<Tuple> = session.iter().map(|f| tuple(f)).collect();
    assert_eq!(held, want);
}
