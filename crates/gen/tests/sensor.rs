//! End to end: the sensor (a release build of the `xferwatch` binary of this workspace) replays
//! generated captures and must report what the generator expects: the same alerts 1173001,
//! 1173002 and 1173003, every FTP data connection, TFTP transfer and SMB connection recognised
//! and counted in its session, and the same packet, byte and flow counts.
//!
//! Skipped, with a message, when `target/release/xferwatch` has not been built.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

mod common;
use common::sensor;

type AlertKey = (u64, String, String, u64, String);

fn alert_key(sid: u64, internal: &Value, external: &Value, port: &Value, app: &Value) -> AlertKey {
    (
        sid,
        internal.as_str().unwrap_or_default().to_string(),
        external.as_str().unwrap_or_default().to_string(),
        port.as_u64().unwrap_or_default(),
        app.as_str().unwrap_or_default().to_string(),
    )
}

fn multiset(v: impl IntoIterator<Item = AlertKey>) -> BTreeMap<AlertKey, usize> {
    let mut m = BTreeMap::new();
    for k in v {
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

fn check(case: &str, gen_args: &[&str], threshold: u64) {
    let Some(sensor) = sensor() else {
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("gen-sensor-{case}"));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("traffic.pcap");
    let expect = dir.join("expect.json");
    let cfg = dir.join("sensor.toml");
    let eve = dir.join("eve.json");
    let st = Command::new(env!("CARGO_BIN_EXE_xferwatch-gen"))
        .args(gen_args)
        .args(["-q", "--threshold", &threshold.to_string(), "-o"])
        .arg(&pcap)
        .arg("--expect")
        .arg(&expect)
        .status()
        .expect("run xferwatch-gen");
    assert!(st.success(), "xferwatch-gen failed");
    std::fs::write(
        &cfg,
        format!("[detect.large_outbound]\nthreshold_bytes = {threshold}\n"),
    )
    .unwrap();
    let out = Command::new(&sensor)
        .args(["replay", "-q", "--force", "-c"])
        .arg(&cfg)
        .arg("--eve")
        .arg(&eve)
        .arg(&pcap)
        .output()
        .expect("run the sensor");
    assert!(
        out.status.success(),
        "sensor failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let x: Value = serde_json::from_slice(&std::fs::read(&expect).unwrap()).unwrap();
    let events: Vec<Value> = std::fs::read_to_string(&eve)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("EVE line is JSON"))
        .collect();
    assert_eq!(x["threshold_bytes"].as_u64(), Some(threshold));
    assert_eq!(
        x["pair_reuse"].as_u64(),
        Some(0),
        "{case}: host pairs reused"
    );

    // Alerts.
    let expected = multiset(x["alerts"].as_array().unwrap().iter().map(|a| {
        alert_key(
            a["signature_id"].as_u64().unwrap(),
            &a["internal_host"],
            &a["external_host"],
            &a["server_port"],
            &a["app_proto"],
        )
    }));
    let got = multiset(
        events
            .iter()
            .filter(|e| e["event_type"] == "alert")
            .map(|e| {
                alert_key(
                    e["alert"]["signature_id"].as_u64().unwrap(),
                    &e["xfer"]["internal_host"],
                    &e["xfer"]["external_host"],
                    &e["dest_port"],
                    &e["app_proto"],
                )
            }),
    );
    let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{case}: alerts differ\n  expected, not raised: {missing:?}\n  raised, not expected: {extra:?}"
    );
    assert_eq!(expected, got, "{case}: alert counts differ");
    assert!(
        expected.keys().any(|k| k.0 == 1_173_001),
        "{case}: no 1173001 to check"
    );
    assert!(
        expected.keys().any(|k| k.0 == 1_173_002),
        "{case}: no 1173002 to check"
    );

    // Totals.
    let stats = events.last().unwrap();
    assert_eq!(stats["event_type"], "stats");
    assert_eq!(
        stats["stats"]["decoder"]["pkts"], x["packets"],
        "{case}: packets"
    );
    assert_eq!(
        stats["stats"]["decoder"]["bytes"], x["bytes"],
        "{case}: bytes"
    );
    assert_eq!(
        stats["stats"]["decoder"]["invalid"], 0,
        "{case}: invalid frames"
    );
    assert_eq!(stats["stats"]["flow"]["total"], x["flows"], "{case}: flows");
    assert_eq!(
        stats["xfer"]["flows_by_app_proto"], x["flows_by_app_proto"],
        "{case}: flows by app_proto"
    );
    assert_eq!(stats["xfer"]["expectations_refused"], 0);

    // Sessions: every flow recognised, in one session, with the expected outbound total.
    let mut flows: HashMap<(String, String, u64, String, u64), &Value> = HashMap::new();
    for e in events.iter().filter(|e| e["event_type"] == "flow") {
        let k = (
            e["proto"].as_str().unwrap().to_string(),
            e["src_ip"].as_str().unwrap().to_string(),
            e["src_port"].as_u64().unwrap(),
            e["dest_ip"].as_str().unwrap().to_string(),
            e["dest_port"].as_u64().unwrap(),
        );
        flows.insert(k, e);
    }
    let sessions = x["sessions"].as_array().unwrap();
    assert!(!sessions.is_empty());
    for s in sessions {
        let what = format!(
            "{case}: {} session {} -> {}:{}",
            s["protocol"], s["internal_host"], s["external_host"], s["server_port"]
        );
        let mut ids = Vec::new();
        let mut total = 0;
        for f in s["flows"].as_array().unwrap() {
            let k = (
                f["proto"].as_str().unwrap().to_string(),
                f["src_ip"].as_str().unwrap().to_string(),
                f["src_port"].as_u64().unwrap(),
                f["dest_ip"].as_str().unwrap().to_string(),
                f["dest_port"].as_u64().unwrap(),
            );
            let e = flows
                .get(&k)
                .unwrap_or_else(|| panic!("{what}: no flow record for {k:?}"));
            assert_eq!(e["app_proto"], f["app_proto"], "{what}: app_proto of {k:?}");
            ids.push(e["xfer"]["session_id"].as_u64());
            total = total.max(
                e["xfer"]["session_outbound_payload_bytes"]
                    .as_u64()
                    .unwrap_or(0),
            );
        }
        assert!(
            ids[0].is_some() && ids.iter().all(|i| *i == ids[0]),
            "{what}: flows in different sessions {ids:?}"
        );
        assert_eq!(
            Some(total),
            s["outbound_payload_bytes"].as_u64(),
            "{what}: outbound total"
        );
    }
}

#[test]
fn sensor_agrees_on_mixed() {
    check(
        "mixed",
        &["--profile", "mixed", "--bytes", "20MB", "--seed", "7"],
        1 << 20,
    );
}

#[test]
fn sensor_agrees_on_many_flows() {
    check(
        "many-flows",
        &[
            "--profile",
            "many-flows",
            "--bytes",
            "16MB",
            "--seed",
            "3",
            "--hosts",
            "400",
            "--concurrency",
            "1000",
        ],
        32 << 10,
    );
}

#[test]
fn sensor_agrees_on_bulk() {
    check(
        "bulk",
        &["--profile", "bulk", "--bytes", "48MB", "--seed", "5"],
        4 << 20,
    );
}
