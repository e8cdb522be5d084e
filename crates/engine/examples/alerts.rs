//! Replays a capture file through the engine and prints its alerts, one line each.
//!
//!     cargo run --release -p xferwatch-engine --example alerts -- pcaps/ftp-passive-upload.pcap [THRESHOLD_BYTES]
use std::sync::atomic::AtomicBool;
use xferwatch_engine::replay::replay;
use xferwatch_engine::{BaselineFile, ChannelSink, EngineConfig};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let pcap = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: alerts FILE.pcap [THRESHOLD_BYTES]"))?;
    // The sensor's defaults, two workers; the large-outbound threshold from the command line.
    let mut config = EngineConfig {
        workers: 2,
        ..EngineConfig::default()
    };
    if let Some(t) = args.next() {
        config.detect.threshold_bytes = t.parse()?;
    }
    // Events arrive on a channel; a thread of ours prints the alerts among them.
    let (tx, rx) = crossbeam_channel::unbounded::<String>();
    let printer = std::thread::spawn(move || {
        let mut alerts = 0;
        for line in rx {
            let e: serde_json::Value = serde_json::from_str(&line).expect("EVE record");
            if e["event_type"] == "alert" {
                alerts += 1;
                println!(
                    "{} {} {} {}:{} -> {}:{} {}",
                    e["timestamp"].as_str().unwrap_or(""),
                    e["alert"]["signature_id"],
                    e["alert"]["signature"].as_str().unwrap_or(""),
                    e["src_ip"].as_str().unwrap_or(""),
                    e["src_port"],
                    e["dest_ip"].as_str().unwrap_or(""),
                    e["dest_port"],
                    e["app_proto"].as_str().unwrap_or(""),
                );
            }
        }
        alerts
    });
    let r = replay(
        &config,
        &BaselineFile::load(None, 3600),
        &[pcap.into()],
        Box::new(ChannelSink(tx)),
        &AtomicBool::new(false),
    )?;
    let alerts = printer.join().expect("printer thread");
    eprintln!(
        "{} packets, {} flows, {} events, {alerts} alerts",
        r.ingest.frames, r.stats.flows_total, r.events
    );
    Ok(())
}
