//! File names are packet data: a TFTP upload whose name holds control characters, slashes and
//! `..`, and one whose name is 60,000 bytes of junk, are reported with the name escaped as JSON
//! and cut to 1 KiB, and nothing is created from them: session pcaps and stored files are named by
//! time, signature, session and hash only, inside the evidence directory.
//!
//! Skipped, with a message, when `target/release/xferwatch` has not been built.

use std::path::{Path, PathBuf};
use std::process::Command;
use xferwatch_gen::net::{external_ep, internal_ep, Conn};
use xferwatch_gen::pcap::PcapWriter;
use xferwatch_gen::proto::tftp_request;

mod common;
use common::sensor;

/// One TFTP upload of `data` under `name` (request to port 69, transfer from a new server port).
fn upload(w: &mut PcapWriter<std::fs::File>, i: u32, t0: u64, name: &str, data: &[u8]) {
    let client = internal_ep(i, false, 40_000 + i as u16);
    let mut req = Conn::new(true, client, external_ep(i, false, 69), "tftp", i as u64);
    req.udp(w, t0, 0, &tftp_request(true, name, "octet", &[]), &[])
        .unwrap();
    let mut xfer = Conn::new(
        true,
        client,
        external_ep(i, false, 50_000 + i as u16),
        "tftp",
        i as u64 + 100,
    );
    xfer.udp(w, t0 + 1_000, 1, &[0, 4, 0, 0], &[]).unwrap();
    let mut at = 0;
    let mut block: u16 = 1;
    let mut t = t0 + 2_000;
    loop {
        let chunk = &data[at..(at + 512).min(data.len())];
        xfer.udp(w, t, 0, &[0, 3, (block >> 8) as u8, block as u8], chunk)
            .unwrap();
        xfer.udp(w, t + 100, 1, &[0, 4, (block >> 8) as u8, block as u8], &[])
            .unwrap();
        at += chunk.len();
        block += 1;
        t += 1_000;
        if chunk.len() < 512 {
            break;
        }
    }
}

#[test]
fn hostile_file_names_are_escaped_bounded_and_never_paths() {
    let Some(sensor) = sensor() else { return };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp/bad-names");
    let _ = std::fs::remove_dir_all(&dir);
    let evidence = dir.join("evidence");
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("names.pcap");
    let evil = format!(
        "../../{}\u{1}\u{1b}[31mred\n\r\t\"quoted\"\\back/slash/..{}",
        "x/".repeat(20),
        "A".repeat(300)
    );
    let junk: String = (0..60_000u32)
        .map(|i| char::from(b"/.\\\x7f\x01abc"[(i % 8) as usize]))
        .collect();
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 31) as u8).collect();
    {
        let mut w = PcapWriter::new(std::fs::File::create(&pcap).unwrap()).unwrap();
        upload(&mut w, 1, 1_700_000_000_000_000, &evil, &data);
        upload(&mut w, 2, 1_700_000_010_000_000, &junk, &data[..700]);
        w.finish().unwrap();
    }
    let cfg = dir.join("sensor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[detect.large_outbound]\nthreshold_bytes = 1000\n[evidence]\ndir = {:?}\nstore_files = true\n",
            evidence.to_str().unwrap()
        ),
    )
    .unwrap();
    let eve = dir.join("eve.json");
    let out = Command::new(&sensor)
        .args(["replay", "-q", "--force", "-c"])
        .arg(&cfg)
        .arg("--eve")
        .arg(&eve)
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&eve).unwrap();
    let mut names = Vec::new();
    for line in text.lines() {
        // One JSON object per line: a name's newline or quote never breaks a line.
        let e: serde_json::Value = serde_json::from_str(line).expect("one event per line");
        if e["event_type"] == "fileinfo" {
            let n = e["fileinfo"]["filename"].as_str().unwrap().to_string();
            assert!(n.len() <= 1024, "name of {} bytes", n.len());
            assert!(e["fileinfo"]["stored"] == true, "{e}");
            names.push(n);
        }
    }
    // The junk request is no TFTP request (its name and mode do not fit the bytes a request is
    // read from: alert 1173003 on port 69 instead); the other's name is cut (at 256 bytes by the
    // TFTP parser, 1 KiB in any event).
    assert_eq!(names.len(), 1, "{text}");
    assert!(names[0].starts_with("../../x/x/"), "{:?}", names[0]);
    assert!(names[0].contains('\u{1b}') && names[0].contains('\n'));
    assert!(evil.starts_with(&names[0]) && names[0].len() < evil.len());
    assert!(
        text.contains("\\u001b[31mred\\n\\r\\t\\\"quoted\\\"\\\\back"),
        "escapes"
    );
    // Control characters leave the EVE file escaped only.
    assert!(!text.contains('\u{1b}') && !text.contains('\u{1}'));
    // Nothing was made outside the evidence directory, and nothing in it is named by the packets.
    let mut made: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    assert_eq!(made, ["eve.json", "evidence", "names.pcap", "sensor.toml"]);
    let mut found = Vec::new();
    walk(&evidence, &mut found);
    assert!(!found.is_empty());
    for f in &found {
        let rel = f
            .strip_prefix(&evidence)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let ok = (rel.ends_with(".pcap")
            && rel
                .split('-')
                .nth(1)
                .is_some_and(|s| s.starts_with("117300")))
            || (rel.starts_with("files/") && rel.len() == "files/aa/".len() + 64);
        assert!(ok, "unexpected evidence file {rel}");
    }
}

fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            walk(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}
