//! A panic inside a worker (issue 12: one FTP reply killed a worker and every flow of its shard)
//! is contained: the flow being handled is dropped and counted, the worker finishes its input.

use crate::counters::{Out, WorkerTotals};
use crate::pipeline::EngineConfig;
use crate::worker::Worker;
use crate::writer::WriteSink;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use xferwatch_capture::{read_files, Dispatcher, Ingest, Mode};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// Replays `pcaps` through one worker that panics on packet `panic_at`; the EVE lines and the
/// worker's final counters.
fn replay_with_panic(pcaps: &[&str], panic_at: Option<u64>) -> (String, WorkerTotals) {
    // pcaps/demo.toml: the default configuration, the threshold lowered to 100 KiB.
    let mut c = EngineConfig::default();
    c.detect.threshold_bytes = 100 << 10;
    let shared = Arc::new(crate::pipeline::shared(&c, 1, None, None));
    let (tx, rx) = crossbeam_channel::bounded(8);
    let (recycle_tx, recycle_rx) = crossbeam_channel::bounded(16);
    let (out_tx, out_rx) = crossbeam_channel::bounded::<Out>(64);
    let mut w = Worker::new(0, shared.clone());
    w.panic_at_packet = panic_at;
    let worker = std::thread::spawn(move || w.run(rx, recycle_tx, out_tx));
    let writer = std::thread::spawn(move || {
        let mut buf = WriteSink(Vec::new());
        let merged = crate::writer::run(out_rx, 1, &mut buf).expect("write to memory");
        (String::from_utf8(buf.0).expect("utf-8"), merged)
    });
    let d = Dispatcher::new(Mode::Replay, shared.shard.clone(), vec![tx], recycle_rx);
    let mut ingest = Ingest::new(d, c.defrag);
    let outcome = read_files(
        &pcaps.iter().map(|p| repo(p)).collect::<Vec<_>>(),
        &mut ingest,
        &AtomicBool::new(false),
        |_| {},
    );
    assert_eq!(outcome.files_read, pcaps.len());
    ingest.finish();
    // The worker thread itself must not die.
    worker.join().expect("the worker thread survived the panic");
    let (eve, mut merged) = writer.join().expect("writer");
    assert_eq!(merged.finished, 1, "the worker sent its final counters");
    (eve, merged.totals.remove(0))
}

fn count(eve: &str, needle: &str) -> usize {
    eve.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_panic_costs_one_flow_not_the_worker() {
    // Three large uploads; the panic hits a packet of the first (an FTP session).
    let pcaps = [
        "pcaps/ftp-passive-upload.pcap",
        "pcaps/smb-upload.pcap",
        "pcaps/tftp-rrq-wrq.pcap",
    ];
    let (clean, t0) = replay_with_panic(&pcaps, None);
    assert_eq!(t0.health.panics, 0);
    let alerts = count(&clean, "\"signature_id\":1173001");
    assert!(alerts >= 3, "every file has a large upload: {alerts}");
    let (eve, t) = replay_with_panic(&pcaps, Some(300));
    assert_eq!(t.health.panics, 1, "one panic, caught and counted");
    assert_eq!(
        t.health.panic_lost_flows, 1,
        "the flow being handled is dropped"
    );
    // Everything else still went through: the other sessions' flows and alerts.
    let flows_clean = count(&clean, "\"event_type\":\"flow\"");
    let flows = count(&eve, "\"event_type\":\"flow\"");
    assert!(
        flows + 1 >= flows_clean,
        "at most the one flow is missing: {flows} of {flows_clean}"
    );
    let after = count(&eve, "\"signature_id\":1173001");
    assert!(
        after + 1 >= alerts,
        "only the alert of the transfer hit can be missing: {after} of {alerts}"
    );
    assert!(eve.contains("\"app_proto\":\"smb\"") && eve.contains("\"app_proto\":\"tftp\""));
}
