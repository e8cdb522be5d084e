//! The progress bar of `xferwatch replay`: bytes read of the input files' total, packets per second
//! and the time left (at the rate so far), on standard error when it is a terminal (never with `-q`). A thread of its own
//! looks at the reading thread's counters ([`ReadProgress`], stored every few thousand packets) ten
//! times a second; the bar appears only once a replay has run for [`SHOW_AFTER`], so a short one
//! prints nothing more than before, and it is cleared before the summary.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xferwatch_capture::ReadProgress;

/// A replay shorter than this shows no bar.
pub const SHOW_AFTER: Duration = Duration::from_secs(1);
/// Time between two updates of the bar.
pub const TICK: Duration = Duration::from_millis(100);

/// Whether to show a bar: not when asked to be quiet, nor when standard error is not a terminal.
pub fn wanted(quiet: bool, stderr_is_terminal: bool) -> bool {
    !quiet && stderr_is_terminal
}

/// The bytes to read: the sizes of the regular files among `paths` (a FIFO counts 0).
pub fn total_bytes(paths: &[PathBuf]) -> u64 {
    paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// "12345 pkt/s" from packets read in `elapsed`.
pub fn rate(packets: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return "- pkt/s".into();
    }
    format!("{:.0} pkt/s", packets as f64 / secs)
}

/// The time left at the rate so far: `total - done` bytes at `done / elapsed` bytes a second.
/// None before anything was read.
pub fn eta(done: u64, total: u64, elapsed: Duration) -> Option<Duration> {
    if done == 0 || elapsed.is_zero() {
        return None;
    }
    let left = total.saturating_sub(done) as f64;
    Some(Duration::from_secs_f64(
        left * elapsed.as_secs_f64() / done as f64,
    ))
}

/// "12345 pkt/s  ETA 1m 05s" for the bar's message.
pub fn message(packets: u64, done: u64, total: u64, elapsed: Duration) -> String {
    let eta = match eta(done, total, elapsed) {
        Some(d) if d.as_secs() >= 60 => format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60),
        Some(d) => format!("{}s", d.as_secs()),
        None => "-".into(),
    };
    format!("{}  ETA {eta}", rate(packets, elapsed))
}

/// A running progress display; dropping it stops and clears it.
pub struct Bar {
    done: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bar {
    /// Starts the display when `show`; otherwise does nothing (no thread).
    pub fn start(show: bool, paths: &[PathBuf], progress: Arc<ReadProgress>) -> Bar {
        if !show {
            return Bar {
                done: None,
                thread: None,
            };
        }
        let total = total_bytes(paths);
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("xw-progress".into())
            .spawn(move || run(total, &progress, &rx))
            .ok();
        Bar {
            done: Some(tx),
            thread,
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(total: u64, progress: &ReadProgress, done: &mpsc::Receiver<()>) {
    let started = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    // Until the sender is dropped (the replay ended), every TICK.
    while let Err(mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(TICK) {
        if bar.is_none() && started.elapsed() < SHOW_AFTER {
            continue;
        }
        let bytes = progress.bytes.load(Ordering::Relaxed).min(total);
        let packets = progress.packets.load(Ordering::Relaxed);
        let msg = message(packets, bytes, total, started.elapsed());
        match &bar {
            Some(b) => {
                b.set_position(bytes);
                b.set_message(msg);
            }
            None => {
                let style = ProgressStyle::with_template(
                    "{elapsed:>4} [{wide_bar}] {bytes}/{total_bytes}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                // Built whole before its first drawing; its clock is the replay's.
                let b = ProgressBar::with_draw_target(
                    Some(total),
                    ProgressDrawTarget::stderr_with_hz(10),
                )
                .with_style(style)
                .with_elapsed(started.elapsed())
                .with_position(bytes)
                .with_message(msg);
                b.tick();
                bar = Some(b);
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_only_on_a_terminal_and_not_quiet() {
        assert!(wanted(false, true));
        assert!(!wanted(true, true));
        assert!(!wanted(false, false));
        assert!(!wanted(true, false));
    }

    #[test]
    fn rate_and_total() {
        assert_eq!(rate(5000, Duration::from_secs(2)), "2500 pkt/s");
        assert_eq!(rate(5, Duration::ZERO), "- pkt/s");
        assert_eq!(eta(0, 100, Duration::from_secs(1)), None);
        assert_eq!(
            eta(25, 100, Duration::from_secs(2)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(eta(200, 100, Duration::from_secs(2)), Some(Duration::ZERO));
        assert_eq!(
            message(3000, 10, 1000, Duration::from_secs(3)),
            "1000 pkt/s  ETA 4m 57s"
        );
        let d = std::env::temp_dir().join(format!("xw-progress-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (a, b) = (d.join("a"), d.join("b"));
        std::fs::write(&a, [0u8; 100]).unwrap();
        std::fs::write(&b, [0u8; 23]).unwrap();
        assert_eq!(total_bytes(&[a, b, d.join("missing"), d.clone()]), 123);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_hidden_bar_starts_no_thread() {
        let b = Bar::start(false, &[], Arc::new(ReadProgress::default()));
        assert!(b.thread.is_none());
    }
}
