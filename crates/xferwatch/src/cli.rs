//! The command line, as a clap definition: [`Cli`]. The binary (`src/main.rs`) parses it; keeping
//! it in the library lets other code (documentation generators, tests) use the same definition.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// `xferwatch`: the top-level command.
#[derive(Parser)]
#[command(
    name = "xferwatch",
    version,
    about = "Passive sensor for large outbound FTP/TFTP/SMB transfers and application/port mismatches"
)]
pub struct Cli {
    // The command to run (a plain comment: clap takes doc comments as help text).
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The commands. Every field is documented by its help text.
#[derive(Subcommand)]
#[allow(
    rustdoc::broken_intra_doc_links,
    reason = "the doc comments are clap's help text, where [engine] and [capture] name sections of \
              the configuration file, not items"
)]
pub enum Cmd {
    /// Replay capture files (pcap or pcapng) as one timeline and write EVE JSON.
    Replay {
        /// Configuration file (TOML). Environment variables XFERWATCH__SECTION__KEY override it.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Where to write EVE JSON lines ("-" for standard output).
        #[arg(long, default_value = "eve.json")]
        eve: String,
        /// Worker threads (default: [engine] workers, 0 = one per core).
        #[arg(short, long)]
        workers: Option<usize>,
        /// Do not print the summary on standard error.
        #[arg(short, long)]
        quiet: bool,
        /// Capture files, read in this order.
        #[arg(required = true)]
        pcaps: Vec<PathBuf>,
    },
    /// Run the live sensor: capture on [capture] interfaces until SIGTERM/SIGINT (SIGHUP reopens the
    /// EVE file and reloads the allowlist and thresholds).
    Run {
        /// Configuration file (TOML). Environment variables XFERWATCH__SECTION__KEY override it.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a configuration file and print the effective configuration (exit 0 valid, 1 invalid).
    CheckConfig {
        /// The configuration file.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        // No doc comment: it would become help text, and `-c FILE` is the same as `FILE` here.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}
