//! The whole sensor on capture bytes held in memory, in this process: the real file reader (the
//! mapped classic-pcap path, libpcap for pcapng), decode, defragmentation, dispatch to worker
//! threads, the workers and the EVE writer, exactly as `xferwatch replay` runs them (through
//! [`crate::replay::replay`]). For fuzzing
//! and tests that start from bytes rather than a file on disk.
//!
//! The bytes go through a private scratch directory (created fresh with mode 0700 for each call and
//! removed after) because the reader's contract is a path: the code under test is then the code
//! that runs, with no in-memory stand-in for the file reader.

use crate::pipeline::{BaselineFile, EngineConfig};
use crate::replay::NothingRead;
use crate::writer::{EventSink, LazySink, WriteSink};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What one in-process replay produced.
#[derive(Debug)]
pub struct Replayed {
    /// The exit status `xferwatch replay` would have returned (0, or 2 when the capture was not
    /// readable at all: then there is no output).
    pub exit_code: u8,
    /// The EVE output, one JSON record per line, the `stats` record last; empty when the capture
    /// could not be read at all.
    pub eve: String,
}

/// A directory of this process's own, removed (with what it holds) when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xferwatch-inprocess-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut b = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        // `create` fails when the name exists (even as a symlink): nothing planted is followed.
        b.create(&dir)
            .with_context(|| format!("{}: cannot create a scratch directory", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replays `capture` (the bytes of a pcap or pcapng file) through an engine built from `config`.
pub fn replay_capture(config: &EngineConfig, capture: &[u8]) -> Result<Replayed> {
    let scratch = Scratch::new()?;
    let input = scratch.0.join("input.pcap");
    let eve = scratch.0.join("eve.json");
    std::fs::write(&input, capture)
        .with_context(|| format!("{}: cannot write the capture", input.display()))?;
    let path = eve.clone();
    let sink = Box::new(LazySink::new(move || {
        let file = std::fs::File::create(&path)?;
        Ok(Box::new(WriteSink(std::io::BufWriter::new(file))) as Box<dyn EventSink>)
    }));
    let r = match crate::replay::replay(
        config,
        &BaselineFile::load(None, 3600),
        &[input],
        sink,
        &AtomicBool::new(false),
    ) {
        Ok(r) => r,
        // Not a capture at all: no output, exit status 2, as `xferwatch replay` does.
        Err(e) if e.is::<NothingRead>() => {
            return Ok(Replayed {
                exit_code: 2,
                eve: String::new(),
            })
        }
        Err(e) => return Err(e),
    };
    let exit_code = if r.health.panics > 0 || r.dead_workers > 0 {
        3
    } else if r.outcome.any_unreadable() {
        2
    } else {
        0
    };
    let eve = std::fs::read_to_string(&eve)
        .with_context(|| format!("{}: cannot read the EVE output", eve.display()))?;
    Ok(Replayed { exit_code, eve })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_capture_bytes_like_the_command() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../pcaps/tftp-rrq-wrq.pcap");
        let bytes = std::fs::read(path).expect("bundled capture");
        let c = EngineConfig {
            workers: 2,
            ..EngineConfig::default()
        };
        let r = replay_capture(&c, &bytes).expect("replay");
        assert_eq!(r.exit_code, 0);
        let lines: Vec<&str> = r.eve.lines().collect();
        assert!(lines.iter().any(|l| l.contains("\"app_proto\":\"tftp\"")));
        assert!(lines.last().unwrap().contains("\"event_type\":\"stats\""));
    }

    #[test]
    fn bytes_that_are_no_capture_exit_2_without_output() {
        let r = replay_capture(&EngineConfig::default(), b"not a capture").expect("replay");
        assert_eq!(r.exit_code, 2);
        assert_eq!(r.eve, "", "no record, not even stats");
    }
}
