//! A long upload shows in the outbound-bytes totals while it runs, not only when its flow ends:
//! the live engine is fed the first 80 % of a real SMB upload (no FIN yet) and its published
//! counters already hold most of the outbound payload under `smb`.

use std::path::{Path, PathBuf};
use std::time::Duration;
use xferwatch_capture::Mode;
use xferwatch_engine::{Engine, EngineConfig};
use xferwatch_wire::LinkType;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

#[test]
fn outbound_bytes_are_counted_while_the_flow_runs() {
    let mut engine = Engine::start(&EngineConfig::default(), &Vec::new(), true).unwrap();
    let events = engine.take_events().unwrap();
    let drain = std::thread::spawn(move || events.iter().count());
    let mut ingest = engine.ingest(Mode::Live);
    let mut cap = pcap::Capture::from_file(repo("pcaps/smb-upload.pcap")).unwrap();
    let link = LinkType::from_dlt(cap.get_datalink().0);
    let mut frames = Vec::new();
    while let Ok(p) = cap.next_packet() {
        let ts = p.header.ts.tv_sec * 1_000_000 + p.header.ts.tv_usec;
        frames.push((ts, p.data.to_vec(), p.header.len));
    }
    let cut = frames.len() * 8 / 10;
    for (ts, data, len) in &frames[..cut] {
        ingest.frame(link, *ts, data, *len);
    }
    let smb = |e: &Engine| -> u64 {
        e.snapshot()
            .iter()
            .map(|t| t.outbound_by_app_proto.get("smb").copied().unwrap_or(0))
            .sum()
    };
    // The worker publishes at most every 250 ms, when a batch arrives.
    let mut seen = 0;
    for _ in 0..40 {
        ingest.dispatcher.flush();
        std::thread::sleep(Duration::from_millis(300));
        let now = smb(&engine);
        if now > 0 && now == seen {
            break;
        }
        seen = now;
    }
    assert!(
        seen >= 300_000,
        "only {seen} outbound smb bytes counted before the flow ended"
    );
    ingest.finish();
    drop(ingest);
    let lost = engine.join();
    assert_eq!(lost, 0);
    assert!(drain.join().unwrap() > 0);
}
