//! `[output] flow_interim`: running flows get interim `flow` records (reason "interim",
//! `xfer.interim`) before their final one, in the same order whatever the worker count, and the
//! final records and counters are those of a run without them.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use xferwatch_engine::replay::replay;
use xferwatch_engine::{BaselineFile, ChannelSink, EngineConfig};

fn bundled() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pcaps");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    v.sort();
    v
}

fn run(workers: usize, interim: u64) -> Vec<String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let config = EngineConfig {
        workers,
        flow_interim_secs: interim,
        ..EngineConfig::default()
    };
    replay(
        &config,
        &BaselineFile::load(None, 3600),
        &bundled(),
        Box::new(ChannelSink(tx)),
        &AtomicBool::new(false),
    )
    .expect("replay");
    rx.try_iter().collect()
}

#[test]
fn interim_flow_records_come_before_the_final_one_and_change_nothing_else() {
    let plain = run(1, 0);
    let one = run(1, 1);
    let two = run(2, 1);
    assert_eq!(one, two, "interim records depend on the worker count");
    let interim: Vec<serde_json::Value> = one
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["xfer"]["interim"] == true)
        .collect();
    assert!(interim.len() >= 5, "{} interim records", interim.len());
    for e in &interim {
        assert_eq!(e["event_type"], "flow");
        assert_eq!(e["flow"]["reason"], "interim");
        // Its final record comes later.
        let id = e["flow_id"].as_u64().unwrap();
        let at = one
            .iter()
            .position(|l| {
                l.contains(&format!("\"flow_id\":{id},")) && l.contains("\"interim\":true")
            })
            .unwrap();
        assert!(one[at..].iter().any(|l| {
            l.contains(&format!("\"flow_id\":{id},"))
                && l.contains("\"event_type\":\"flow\"")
                && !l.contains("\"interim\":true")
        }));
    }
    // Without the interim records, the same events (the stats record counts no interim record).
    let rest: Vec<&String> = one
        .iter()
        .filter(|l| !l.contains("\"interim\":true"))
        .collect();
    assert_eq!(rest, plain.iter().collect::<Vec<_>>());
}
