//! The whole sensor fed raw capture bytes: file reader (classic pcap mapped, pcapng through
//! libpcap), decode, defragmentation, dispatch to two worker threads, flow tables, reassembly,
//! fingerprints, parsers, detection and the EVE writer, as `xferwatch replay` runs them. A panic on
//! any thread aborts the run (libFuzzer's panic hook). Checked: every EVE line is a JSON object
//! with an `event_type`, and the last one is the `stats` record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use xferwatch::settings::{Bytes, Settings};

fn settings() -> &'static Settings {
    static S: OnceLock<Settings> = OnceLock::new();
    S.get_or_init(|| {
        let mut s = Settings::default();
        // Seeds are captures cut to their first packets: a low threshold keeps the alert paths
        // within reach. The default internal networks (RFC 1918, ULA) cover the bundled captures.
        s.detect.large_outbound.threshold_bytes = Bytes(8 * 1024);
        s.output.log_credentials = true;
        s
    })
}

fuzz_target!(|data: &[u8]| {
    let r = xferwatch_engine::inprocess::replay_capture(&settings().engine_config(2), data)
        .expect("replay ran");
    let mut last = None;
    for line in r.eve.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("EVE line is JSON");
        let t = v
            .get("event_type")
            .and_then(|t| t.as_str())
            .expect("event_type");
        last = Some(t.to_owned());
    }
    // Bytes that are no capture at all give no output (exit 2); anything read ends with stats.
    if r.exit_code == 2 && r.eve.is_empty() {
        return;
    }
    assert_eq!(
        last.as_deref(),
        Some("stats"),
        "the stats record ends the output"
    );
});
