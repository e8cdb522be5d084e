//! A replay that is cut short must say so: SIGINT/SIGTERM stop reading, every flow read so far is
//! still written with the final `stats` event, and the exit status (130/143) lets a script tell
//! a truncated run from a complete one. The input is a FIFO fed with a bundled capture and then
//! held open, so the signal arrives while the replay is certainly still reading.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn interrupted_replay(sig: &str, expect: i32) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("xw-interrupt-{sig}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("input.pcap");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        println!("skipped: mkfifo is not available");
        return;
    }
    let eve = dir.join("eve.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xferwatch"))
        .args(["replay", "--force", "--eve"])
        .arg(&eve)
        .arg(&fifo)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start replay");
    // Opening the FIFO for writing waits for the replay to open it for reading.
    let mut w = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let capture = fs::read(repo("pcaps/ftp-passive-upload.pcap")).unwrap();
    w.write_all(&capture).unwrap();
    w.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "replay ended early");
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(200));
    drop(w); // end of input: the blocked read returns
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "replay hung after {sig}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(
        status.code(),
        Some(expect),
        "exit status after SIG{sig}; stderr:\n{err}"
    );
    assert!(
        err.contains(&format!("interrupted by SIG{sig} after 727 packets")),
        "stderr says how much was read:\n{err}"
    );
    let out = fs::read_to_string(&eve).unwrap();
    let flows = out
        .lines()
        .filter(|l| l.contains("\"event_type\":\"flow\""))
        .count();
    assert_eq!(flows, 3, "every flow read so far is written");
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.contains("\"event_type\":\"stats\"")),
        "the final stats event is written"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn replay_interrupted_by_sigint_exits_130() {
    interrupted_replay("INT", 130);
}

#[test]
fn replay_interrupted_by_sigterm_exits_143() {
    interrupted_replay("TERM", 143);
}

#[test]
fn complete_replay_exits_0_and_reports_no_panic() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("xw-complete");
    fs::create_dir_all(&dir).unwrap();
    let eve = dir.join("eve.json");
    let o = Command::new(env!("CARGO_BIN_EXE_xferwatch"))
        .args(["replay", "--force", "-c"])
        .arg(repo("pcaps/demo.toml"))
        .arg("--eve")
        .arg(&eve)
        .arg(repo("pcaps/ftp-passive-upload.pcap"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("interrupted") && !err.contains("internal error"),
        "{err}"
    );
    let out = fs::read_to_string(&eve).unwrap();
    let stats = out.lines().last().unwrap();
    assert!(stats.contains("\"worker_panics\":0"), "{stats}");
}
