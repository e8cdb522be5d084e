//! Detection end to end: the real binary on captures generated here, packet by packet, so every
//! byte count and every packet time an alert should carry is known in advance. TFTP write transfers
//! (a request to port 69, the transfer on a new server port) make up sessions, single uploads,
//! strings of small uploads and multi-day timelines with and without a spike above a host's baseline.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

const LARGE_OUTBOUND: u64 = 1_173_001;
const OVER_BASELINE: u64 = 1_173_004;
const ROLLUP: u64 = 1_173_005;

const SERVER: [u8; 4] = [203, 0, 113, 7];
const HOST: [u8; 4] = [10, 0, 0, 5];
/// Background hosts of the timelines: steady uploads, never a spike.
const STEADY: [[u8; 4]; 2] = [[10, 0, 0, 6], [10, 0, 0, 7]];

const SEC: i64 = 1_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
/// 2026-01-01T00:00:00Z, on an hour boundary; uploads start a fraction of a second past the minute.
const BASE: i64 = 1_767_225_600 * SEC;
const FRACTION: i64 = 123_457;

const THRESHOLD: u64 = 102_400;
const FLOOR: u64 = 51_200;
const KIB: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Running the binary.

use synth::bin;

fn tmpdir(name: &str) -> PathBuf {
    synth::tmpdir("detection", name)
}

fn replay(cfg: &Path, workers: &str, pcaps: &[&Path], eve: &Path) -> Output {
    let mut c = bin();
    c.arg("replay")
        .arg("-q")
        .arg("-c")
        .arg(cfg)
        .arg("--workers")
        .arg(workers)
        .arg("--force")
        .arg("--eve")
        .arg(eve)
        .args(pcaps);
    c.output().unwrap()
}

/// Replays and insists on a clean exit; returns the EVE records.
fn run(cfg: &Path, pcaps: &[&Path], eve: &Path) -> Vec<Value> {
    let out = replay(cfg, "2", pcaps, eve);
    assert_eq!(
        out.status.code(),
        Some(0),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    events(eve)
}

fn events(eve: &Path) -> Vec<Value> {
    std::fs::read_to_string(eve)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

fn alerts(ev: &[Value], sid: u64) -> Vec<&Value> {
    ev.iter()
        .filter(|e| e["event_type"] == "alert" && e["alert"]["signature_id"] == sid)
        .collect()
}

fn alert_sids(ev: &[Value]) -> Vec<u64> {
    ev.iter()
        .filter(|e| e["event_type"] == "alert")
        .map(|e| e["alert"]["signature_id"].as_u64().unwrap())
        .collect()
}

/// The `xfer` counters of the closing stats record.
fn counters(ev: &[Value]) -> &Value {
    let last = ev.last().expect("an empty EVE file");
    assert_eq!(last["event_type"], "stats", "stats record last: {last}");
    &last["xfer"]
}

fn counter(ev: &[Value], name: &str) -> u64 {
    counters(ev)[name]
        .as_u64()
        .unwrap_or_else(|| panic!("stats xfer.{name} missing: {}", counters(ev)))
}

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Session threshold and roll-up threshold 100 KiB, roll-up window one hour.
fn volume_config(extra: &str) -> String {
    format!(
        "[network]\n\
         internal = [\"10.0.0.0/8\"]\n\
         [detect.large_outbound]\n\
         threshold_bytes = {THRESHOLD}\n\
         [detect.large_outbound.per_protocol]\n\
         tftp = {THRESHOLD}\n\
         [detect.rollup]\n\
         window = 3600\n\
         {extra}"
    )
}

/// Baselines of one-hour windows learnt over a day; the volume thresholds out of the way.
fn baseline_config(state_file: Option<&Path>) -> String {
    let state = state_file
        .map(|p| format!("state_file = '{}'\n", p.display()))
        .unwrap_or_default();
    format!(
        "[network]\n\
         internal = [\"10.0.0.0/8\"]\n\
         [detect.large_outbound]\n\
         threshold_bytes = \"1GiB\"\n\
         [detect.rollup]\n\
         window = \"1h\"\n\
         [detect.baseline]\n\
         enabled = true\n\
         window = \"1h\"\n\
         learning_windows = 24\n\
         k = 3.0\n\
         floor_bytes = {FLOOR}\n\
         {state}"
    )
}

// ---------------------------------------------------------------------------------------------
// Captures (tests/synth): a classic pcap writer, TFTP uploads.

mod synth;
use synth::{Pcap, Upload};

/// A TFTP upload from `client` to [`SERVER`].
fn tftp_upload(p: &mut Pcap, start_us: i64, client: [u8; 4], n: u16, size: usize) -> Upload {
    synth::tftp_upload_to(p, start_us, client, SERVER, n, size)
}

/// Suricata's timestamp format, UTC.
fn eve_ts(us: i64) -> String {
    let (secs, frac) = (us.div_euclid(SEC), us.rem_euclid(SEC));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}+0000",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// One upload of `size` bytes from the host, alone in its capture.
fn single_upload(dir: &Path, name: &str, size: usize) -> (PathBuf, Upload) {
    let mut p = Pcap::new();
    let u = tftp_upload(&mut p, BASE + 5 * MIN + FRACTION, HOST, 1, size);
    let path = dir.join(name);
    p.save(path.clone());
    (path, u)
}

/// A timeline over `hours`: every hour but the last (hour 31) the host uploads ~8 KiB and the
/// background hosts their own steady volumes; `spike` adds a 200 KiB upload from the host in that
/// hour. Returns the capture and the spike.
fn timeline(hours: std::ops::Range<i64>, spike: Option<i64>) -> (Pcap, Option<Upload>) {
    let mut p = Pcap::new();
    let mut spiked = None;
    for h in hours {
        let hour = BASE + h * HOUR + FRACTION;
        let n = (h * 8) as u16;
        if h < 30 {
            tftp_upload(&mut p, hour + 5 * MIN, HOST, n, 8_000);
            tftp_upload(&mut p, hour + 20 * MIN, STEADY[0], n + 1, 8_000);
        }
        if spike == Some(h) {
            spiked = Some(tftp_upload(&mut p, hour + 30 * MIN, HOST, n + 2, 200 * KIB));
        }
        if h < 30 {
            tftp_upload(
                &mut p,
                hour + 40 * MIN,
                STEADY[1],
                n + 3,
                12_000 + 100 * h as usize,
            );
        }
    }
    (p, spiked)
}

// ---------------------------------------------------------------------------------------------

/// A 150 KiB upload crosses the 100 KiB session threshold once: one 1173001, stamped with the DATA
/// datagram that made the session's total cross, carrying that total; the roll-up does not repeat
/// it. A 50 KiB upload raises nothing.
#[test]
fn session_crossing_fires_once_at_the_crossing_packet() {
    assert_eq!(eve_ts(BASE), "2026-01-01T00:00:00.000000+0000");
    assert_eq!(
        eve_ts(BASE + 59 * 86_400 * SEC + 3_723_000_042),
        "2026-03-01T01:02:03.000042+0000"
    );
    let dir = tmpdir("session");
    let cfg = write_config(&dir, "sensor.toml", &volume_config(""));

    let (pcap, up) = single_upload(&dir, "large.pcap", 150 * KIB);
    let (cross_ts, cross_total) = up.reaching(THRESHOLD);
    let ev = run(&cfg, &[&pcap], &dir.join("large.json"));
    assert_eq!(alert_sids(&ev), vec![LARGE_OUTBOUND], "one alert, 1173001");
    let a = alerts(&ev, LARGE_OUTBOUND)[0];
    assert_eq!(
        a["timestamp"],
        eve_ts(cross_ts),
        "stamped at the crossing DATA: {a}"
    );
    let x = &a["xfer"];
    assert_eq!(x["internal_host"], "10.0.0.5", "{a}");
    assert_eq!(x["external_host"], "203.0.113.7", "{a}");
    assert_eq!(x["threshold_bytes"], THRESHOLD, "{a}");
    let bytes = x["outbound_payload_bytes"]
        .as_u64()
        .expect("outbound_payload_bytes");
    assert!(
        (THRESHOLD..THRESHOLD + 600).contains(&bytes),
        "{bytes} bytes at the crossing: {a}"
    );
    assert_eq!(
        bytes, cross_total,
        "request + DATA payload up to the crossing datagram"
    );
    assert_eq!(counter(&ev, "alerts_1173001"), 1);
    assert_eq!(counter(&ev, "alerts_1173005"), 0);
    // The whole session's volume is on its flows: request + transfer.
    let tftp_out: u64 = ev
        .iter()
        .filter(|e| e["event_type"] == "flow" && e["app_proto"] == "tftp")
        .map(|e| e["xfer"]["payload_bytes_toserver"].as_u64().unwrap())
        .sum();
    assert_eq!(tftp_out, up.total(), "request and transfer flows");

    let (pcap, up) = single_upload(&dir, "small.pcap", 50 * KIB);
    assert!(up.total() < THRESHOLD);
    let ev = run(&cfg, &[&pcap], &dir.join("small.json"));
    assert_eq!(
        alert_sids(&ev),
        Vec::<u64>::new(),
        "50 KiB is below the threshold"
    );
    assert_eq!(counter(&ev, "alerts_1173001"), 0);
}

/// Five 30 KiB uploads to one external host, ten minutes apart (each ended by timeout before the
/// next): none crosses 100 KiB alone, four add up within the hour → one 1173005, raised as the
/// fourth session ends. The same five uploads 75 minutes apart never share a window → nothing.
#[test]
fn many_small_sessions_roll_up() {
    let dir = tmpdir("rollup");
    let cfg = write_config(&dir, "sensor.toml", &volume_config(""));
    for (name, spacing, expect) in [("close", 10 * MIN, 1usize), ("spread", 75 * MIN, 0)] {
        let mut p = Pcap::new();
        let ups: Vec<(i64, Upload)> = (0..5)
            .map(|i| {
                let start = BASE + 5 * MIN + FRACTION + i * spacing;
                (start, tftp_upload(&mut p, start, HOST, i as u16, 30 * KIB))
            })
            .collect();
        let session = ups[0].1.total();
        assert!(session < THRESHOLD && 4 * session >= THRESHOLD && 3 * session < THRESHOLD);
        let pcap = p.save(dir.join(format!("{name}.pcap")));
        let ev = run(&cfg, &[&pcap], &dir.join(format!("{name}.json")));
        assert!(
            alerts(&ev, LARGE_OUTBOUND).is_empty(),
            "{name}: no session crosses alone"
        );
        let r = alerts(&ev, ROLLUP);
        assert_eq!(r.len(), expect, "{name}: roll-up alerts {r:?}");
        assert_eq!(counter(&ev, "alerts_1173005"), expect as u64, "{name}");
        assert_eq!(counter(&ev, "alerts_1173001"), 0, "{name}");
        if let Some(a) = r.first() {
            let x = &a["xfer"];
            assert_eq!(x["internal_host"], "10.0.0.5", "{a}");
            assert_eq!(x["external_host"], "203.0.113.7", "{a}");
            assert_eq!(x["threshold_bytes"], THRESHOLD, "{a}");
            assert_eq!(
                x["outbound_payload_bytes"],
                4 * session,
                "the window's sum when the fourth session ended: {a}"
            );
            // Raised with the fourth session, before the fifth began.
            let ts = a["timestamp"].as_str().unwrap().to_string();
            assert!(
                ts >= eve_ts(ups[3].0) && ts < eve_ts(ups[4].0),
                "{name}: roll-up at {ts}, fourth upload at {}, fifth at {}",
                eve_ts(ups[3].0),
                eve_ts(ups[4].0)
            );
        }
    }
}

/// Thirty hours of ~8 KiB per hour from 10.0.0.5 (and two steady background hosts), then 200 KiB in
/// hour 31: one 1173004 for 10.0.0.5, at the datagram that took the hour above the floor (3 × the
/// learnt hourly volume is below it). Without the spike, nothing; with the spike in hour 10, still
/// learning, nothing.
#[test]
fn baseline_multi_day_timeline() {
    let dir = tmpdir("baseline");
    let cfg = write_config(&dir, "sensor.toml", &baseline_config(None));

    let (p, spike) = timeline(0..32, Some(31));
    let spike = spike.unwrap();
    let pcap = p.save(dir.join("spike31.pcap"));
    let ev = run(&cfg, &[&pcap], &dir.join("spike31.json"));
    assert_eq!(
        alert_sids(&ev),
        vec![OVER_BASELINE],
        "only the baseline alert"
    );
    let a = alerts(&ev, OVER_BASELINE)[0];
    let x = &a["xfer"];
    assert_eq!(x["internal_host"], "10.0.0.5", "{a}");
    assert_eq!(a["app_proto"], "tftp", "{a}");
    assert_eq!(
        x["threshold_bytes"], FLOOR,
        "the floor is above 3 × the baseline: {a}"
    );
    let learnt = x["baseline_bytes"].as_u64().expect("baseline_bytes");
    assert!(
        (5_000..=9_000).contains(&learnt),
        "learnt hourly volume {learnt}: {a}"
    );
    let (ts, total) = spike.above(FLOOR);
    assert_eq!(
        a["timestamp"],
        eve_ts(ts),
        "at the datagram above the floor: {a}"
    );
    assert_eq!(
        x["outbound_payload_bytes"], total,
        "the hour's volume then: {a}"
    );
    assert_eq!(counter(&ev, "alerts_1173004"), 1);

    let (p, _) = timeline(0..32, None);
    let pcap = p.save(dir.join("control.pcap"));
    let ev = run(&cfg, &[&pcap], &dir.join("control.json"));
    assert_eq!(
        alert_sids(&ev),
        Vec::<u64>::new(),
        "steady hosts raise nothing"
    );
    assert_eq!(counter(&ev, "alerts_1173004"), 0);

    let (p, _) = timeline(0..32, Some(10));
    let pcap = p.save(dir.join("spike10.pcap"));
    let ev = run(&cfg, &[&pcap], &dir.join("spike10.json"));
    assert_eq!(
        alert_sids(&ev),
        Vec::<u64>::new(),
        "hour 10 is still learning"
    );
    assert_eq!(counter(&ev, "alerts_1173004"), 0);
}

/// The timeline split in two captures (hours 0-19, 20-31) replayed one after the other with one
/// state file gives the continuous replay's 1173004; the second half alone has not learnt enough.
#[test]
fn baseline_state_survives_a_restart() {
    let dir = tmpdir("restart");
    let state = dir.join("baseline-state.json");
    let cfg = write_config(&dir, "sensor.toml", &baseline_config(Some(&state)));
    let plain = write_config(&dir, "stateless.toml", &baseline_config(None));

    let (whole, _) = timeline(0..32, Some(31));
    let whole = whole.save(dir.join("whole.pcap"));
    let ev = run(&plain, &[&whole], &dir.join("whole.json"));
    let continuous = alerts(&ev, OVER_BASELINE);
    assert_eq!(continuous.len(), 1, "continuous replay");
    let continuous = continuous[0].clone();

    let (first, _) = timeline(0..20, None);
    let first = first.save(dir.join("first.pcap"));
    let (second, _) = timeline(20..32, Some(31));
    let second = second.save(dir.join("second.pcap"));

    let ev = run(&cfg, &[&first], &dir.join("first.json"));
    assert_eq!(alert_sids(&ev), Vec::<u64>::new(), "learning");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap())
        .expect("state file is JSON after the first run");
    assert!(
        saved.to_string().contains("10.0.0.5"),
        "the host's baseline is saved: {saved}"
    );

    let ev = run(&cfg, &[&second], &dir.join("second.json"));
    assert_eq!(alert_sids(&ev), vec![OVER_BASELINE], "after the restart");
    let a = alerts(&ev, OVER_BASELINE)[0];
    assert_eq!(
        a["timestamp"], continuous["timestamp"],
        "{a} vs {continuous}"
    );
    for k in [
        "internal_host",
        "external_host",
        "outbound_payload_bytes",
        "threshold_bytes",
        "baseline_bytes",
    ] {
        assert_eq!(
            a["xfer"][k], continuous["xfer"][k],
            "{k}: {a} vs {continuous}"
        );
    }
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap())
        .expect("state file is JSON after the second run");
    assert!(saved.to_string().contains("10.0.0.5"), "{saved}");

    // The second half alone: eleven windows learnt, not 24.
    let ev = run(&plain, &[&second], &dir.join("alone.json"));
    assert_eq!(
        alert_sids(&ev),
        Vec::<u64>::new(),
        "no state, not enough learning"
    );
}

/// A state file that is not a state file: reported naming it, set aside as `.corrupt`, the replay
/// goes on (exit 0) and leaves a valid state behind.
#[test]
fn corrupt_state_file_is_set_aside() {
    let dir = tmpdir("corrupt");
    let state = dir.join("baseline-state.json");
    let garbage = "{\"version\": 1, \"hosts\": [trailing garbage\n";
    std::fs::write(&state, garbage).unwrap();
    let cfg = write_config(&dir, "sensor.toml", &baseline_config(Some(&state)));
    let (p, _) = timeline(0..3, None);
    let pcap = p.save(dir.join("short.pcap"));
    let eve = dir.join("eve.json");
    let out = replay(&cfg, "2", &[&pcap], &eve);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("baseline-state.json"),
        "stderr names the file: {err}"
    );
    let aside = state.with_extension("corrupt");
    assert_eq!(
        std::fs::read_to_string(&aside).expect("the corrupt file is set aside"),
        garbage
    );
    let ev = events(&eve);
    assert_eq!(ev.last().unwrap()["event_type"], "stats");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap())
        .expect("a fresh state file");
    assert!(saved.to_string().contains("10.0.0.5"), "{saved}");
}

/// An approved path: the 150 KiB upload raises no alert (the allowlist names 1173001, and the
/// session crossed on its own, so no roll-up either) and is counted as suppressed. An entry for
/// another external network does not apply.
#[test]
fn allowlist_suppresses_and_counts() {
    let dir = tmpdir("allow");
    let (pcap, _) = single_upload(&dir, "large.pcap", 150 * KIB);
    let entry = |net: &str| {
        format!(
            "[[allow]]\n\
             internal = \"10.0.0.5/32\"\n\
             external = \"{net}\"\n\
             app_proto = \"tftp\"\n\
             signatures = [1173001]\n\
             reason = \"backup path\"\n"
        )
    };

    let cfg = write_config(
        &dir,
        "allowed.toml",
        &volume_config(&entry("203.0.113.0/24")),
    );
    let ev = run(&cfg, &[&pcap], &dir.join("allowed.json"));
    assert!(alerts(&ev, LARGE_OUTBOUND).is_empty(), "suppressed");
    assert_eq!(counter(&ev, "alerts_suppressed"), 1);
    assert_eq!(counter(&ev, "alerts_1173001"), 0);
    assert_eq!(
        alert_sids(&ev),
        Vec::<u64>::new(),
        "an approved transfer that crossed alone is not re-raised by the roll-up"
    );

    let cfg = write_config(
        &dir,
        "other.toml",
        &volume_config(&entry("198.51.100.0/24")),
    );
    let ev = run(&cfg, &[&pcap], &dir.join("other.json"));
    assert_eq!(
        alert_sids(&ev),
        vec![LARGE_OUTBOUND],
        "another path is not approved"
    );
    assert_eq!(counter(&ev, "alerts_suppressed"), 0);
    assert_eq!(counter(&ev, "alerts_1173001"), 1);
}

/// The multi-day timeline gives byte-identical output with one worker and with two.
#[test]
fn same_timeline_same_alerts() {
    let dir = tmpdir("workers");
    let cfg = write_config(&dir, "sensor.toml", &baseline_config(None));
    let (p, _) = timeline(0..32, Some(31));
    let pcap = p.save(dir.join("timeline.pcap"));
    let mut outs = Vec::new();
    for w in ["1", "2"] {
        let eve = dir.join(format!("w{w}.json"));
        let out = replay(&cfg, w, &[&pcap], &eve);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            alerts(&events(&eve), OVER_BASELINE).len(),
            1,
            "{w} worker(s)"
        );
        outs.push(std::fs::read(&eve).unwrap());
    }
    assert_eq!(outs[0], outs[1], "1 vs 2 workers");
}

// ---------------------------------------------------------------------------------------------
// Mismatch alerts: aggregated per host pair, port and protocol.

const PORT_OTHER_PROTO: u64 = 1_173_003;
const RESOLVER: [u8; 4] = [10, 0, 0, 9];
const OUTSIDER: [u8; 4] = [198, 51, 100, 20];

/// One UDP flow to port 53 carrying 100 bytes nobody recognises (a port of the table carrying
/// something else: 1173003 once the flow ends), from `client`:(20000+n).
fn junk_to_53(p: &mut Pcap, ts_us: i64, client: [u8; 4], n: u16) {
    let data: Vec<u8> = (0..100u8).map(|i| b'Z' - (i % 7)).collect();
    p.udp(ts_us, client, 20_000 + n, RESOLVER, 53, &data);
}

/// 17 flows between two internal hosts within a quarter of an hour, an inbound one among them,
/// and one more of the pair two hours later.
fn mismatch_capture(dir: &Path) -> PathBuf {
    let mut p = Pcap::new();
    for n in 0..17 {
        junk_to_53(&mut p, BASE + n as i64 * MIN, HOST, n);
        if n == 8 {
            junk_to_53(&mut p, BASE + n as i64 * MIN + SEC, OUTSIDER, 100);
        }
    }
    junk_to_53(&mut p, BASE + 2 * HOUR, HOST, 17);
    p.save(dir.join("port53.pcap"))
}

fn mismatch_config(window: &str) -> String {
    volume_config(&format!("[detect.mismatch]\naggregate_window = {window}\n"))
}

/// Issue: 17 alerts for unidentified UDP on port 53 between two internal hosts. Aggregated: one
/// alert for the first flow, the next after the window counts the 17 flows since (16 held back and
/// itself); the inbound flow is its own key. Same bytes with 1 and 3 workers.
#[test]
fn mismatch_alerts_aggregate_per_pair_port_and_protocol() {
    let dir = tmpdir("mismatch-agg");
    let pcap = mismatch_capture(&dir);
    let cfg = write_config(&dir, "agg.toml", &mismatch_config("\"1h\""));
    let ev = run(&cfg, &[&pcap], &dir.join("agg.json"));
    let got = alerts(&ev, PORT_OTHER_PROTO);
    let summary: Vec<(String, String, u64)> = got
        .iter()
        .map(|a| {
            (
                a["src_ip"].as_str().unwrap().to_string(),
                a["xfer"]["direction"].as_str().unwrap().to_string(),
                a["xfer"]["mismatch_flows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("10.0.0.5".into(), "internal".into(), 1),
            ("198.51.100.20".into(), "inbound".into(), 1),
            ("10.0.0.5".into(), "internal".into(), 17),
        ],
        "{got:#?}"
    );
    assert_eq!(alert_sids(&ev).len(), 3, "no other alert");
    for a in &got {
        assert_eq!(a["dest_port"], 53);
        assert_eq!(a["app_proto"], "failed");
        assert_eq!(a["xfer"]["app_proto_expected"], "dns");
    }
    // Not crossing the boundary: no internal/external names; crossing: both.
    let internal = got[0]["xfer"].as_object().unwrap();
    assert!(
        !internal.contains_key("internal_host") && !internal.contains_key("external_host"),
        "{internal:?}"
    );
    assert_eq!(got[1]["xfer"]["internal_host"], "10.0.0.9");
    assert_eq!(got[1]["xfer"]["external_host"], "198.51.100.20");
    assert_eq!(counter(&ev, "alerts_aggregated"), 16);
    assert_eq!(counter(&ev, "alerts_1173003"), 3);
    assert_eq!(counter(&ev, "mismatch_aggregate_evictions"), 0);
    // Only the flows that raised an alert say so.
    let alerted = ev
        .iter()
        .filter(|e| e["event_type"] == "flow" && e["flow"]["alerted"] == true)
        .count();
    assert_eq!(alerted, 3);

    // Deterministic: the same bytes whatever the number of workers.
    let mut outs = Vec::new();
    for w in ["1", "3"] {
        let eve = dir.join(format!("agg-w{w}.json"));
        let out = replay(&cfg, w, &[&pcap], &eve);
        assert_eq!(out.status.code(), Some(0));
        outs.push(std::fs::read(&eve).unwrap());
    }
    assert_eq!(outs[0], outs[1], "1 vs 3 workers");
    assert_eq!(outs[0], std::fs::read(dir.join("agg.json")).unwrap());
}

/// `aggregate_window = 0`: an alert per flow, as before aggregation.
#[test]
fn mismatch_aggregation_off_alerts_every_flow() {
    let dir = tmpdir("mismatch-off");
    let pcap = mismatch_capture(&dir);
    let cfg = write_config(&dir, "off.toml", &mismatch_config("0"));
    let ev = run(&cfg, &[&pcap], &dir.join("off.json"));
    let got = alerts(&ev, PORT_OTHER_PROTO);
    assert_eq!(got.len(), 19);
    assert!(got.iter().all(|a| a["xfer"]["mismatch_flows"] == 1));
    assert_eq!(counter(&ev, "alerts_aggregated"), 0);
}
