//! Capture files through libpcap, in the order given, as one timeline. A damaged file keeps what was
//! read; a file that cannot be opened is reported and the others are still read.

use crate::ingest::Ingest;
use std::path::{Path, PathBuf};
use xferwatch_wire::LinkType;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileProblem {
    /// Not a capture, or unreadable: nothing was read from it.
    Open { path: PathBuf, message: String },
    /// Truncated or corrupt after `packet` good packets: those were kept.
    Damaged {
        path: PathBuf,
        packet: u64,
        message: String,
    },
    /// A link type the decoder does not know: the file was skipped.
    LinkType { path: PathBuf, dlt: i32 },
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProblem::Open { path, message } => write!(f, "{}: cannot read capture: {message}", path.display()),
            FileProblem::Damaged { path, packet, message } => write!(
                f,
                "{}: damaged after packet {packet} ({message}); the {packet} packets before it were used",
                path.display()
            ),
            FileProblem::LinkType { path, dlt } => {
                write!(f, "{}: unsupported link type {dlt}; file skipped", path.display())
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub problems: Vec<FileProblem>,
    pub files_read: usize,
}

impl ReadOutcome {
    /// True when some file could not be read at all (exit status 2).
    pub fn any_unreadable(&self) -> bool {
        self.problems
            .iter()
            .any(|p| matches!(p, FileProblem::Open { .. } | FileProblem::LinkType { .. }))
    }
}

/// Reads every file into `ingest`, calling `on_problem` as soon as a problem is found.
/// `stop` is polled between packets (a signal handler may set it).
pub fn read_files(
    paths: &[impl AsRef<Path>],
    ingest: &mut Ingest,
    stop: &std::sync::atomic::AtomicBool,
    mut on_problem: impl FnMut(&FileProblem),
) -> ReadOutcome {
    let mut out = ReadOutcome::default();
    for path in paths {
        let path = path.as_ref();
        let mut cap = match pcap::Capture::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                let p = FileProblem::Open {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                };
                on_problem(&p);
                out.problems.push(p);
                continue;
            }
        };
        let dlt = cap.get_datalink().0;
        let link = LinkType::from_dlt(dlt);
        if let LinkType::Unsupported(_) = link {
            let p = FileProblem::LinkType {
                path: path.to_path_buf(),
                dlt,
            };
            on_problem(&p);
            out.problems.push(p);
            continue;
        }
        out.files_read += 1;
        let mut n: u64 = 0;
        loop {
            if n.is_multiple_of(4096) && stop.load(std::sync::atomic::Ordering::Relaxed) {
                return out;
            }
            match cap.next_packet() {
                Ok(pkt) => {
                    n += 1;
                    // timeval fields are 32-bit on some platforms.
                    #[allow(clippy::unnecessary_cast)]
                    let ts = pkt.header.ts.tv_sec as i64 * 1_000_000 + pkt.header.ts.tv_usec as i64;
                    ingest.frame(link, ts, pkt.data, pkt.header.len);
                }
                Err(pcap::Error::NoMorePackets) => break,
                Err(e) => {
                    let p = FileProblem::Damaged {
                        path: path.to_path_buf(),
                        packet: n,
                        message: e.to_string(),
                    };
                    on_problem(&p);
                    out.problems.push(p);
                    break;
                }
            }
        }
    }
    out
}
