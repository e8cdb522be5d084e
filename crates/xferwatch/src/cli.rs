//! The command line, as a clap definition. The binary (`src/main.rs`) parses it with [`parse`];
//! the manual page and the shell completions (the `xferwatch-manual` crate) are rendered from the same
//! definition, [`Cli`], so they cannot drift from what the binary accepts.
//!
//! [`Cli`] is the operator's command line. The binary also accepts `xferwatch generate`
//! ([`Generate`]), which writes the manual page and the completions for the package build; it is
//! added by [`command`] only, hidden, so it appears in neither `--help`, the manual page nor the
//! completions.

use clap::{Command, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

/// `xferwatch`: the top-level command.
#[derive(Parser)]
#[command(
    name = "xferwatch",
    version = env!("XFERWATCH_VERSION"),
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
        /// Only as -c FILE here: the positional arguments are the capture files.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Where to write EVE JSON lines ("-" for standard output). An existing file is not
        /// overwritten: the replay refuses unless --force is given.
        #[arg(long, default_value = "eve.json")]
        eve: String,
        /// Replace the --eve file when it exists (it is truncated, then written).
        #[arg(long)]
        force: bool,
        /// Worker threads (default: [engine] workers, 0 = one per core).
        #[arg(short, long)]
        workers: Option<usize>,
        /// Print nothing on standard error but problems: no summary, no progress bar. (The bar,
        /// bytes read of the files' total, packets/s and the time left, shows only when standard
        /// error is a terminal and the replay lasts over a second.)
        #[arg(short, long)]
        quiet: bool,
        /// Write a pcap of every alerted session into DIR (overrides [evidence] dir); each alert
        /// names its file in xfer.evidence_pcap.
        #[arg(long, value_name = "DIR")]
        evidence: Option<PathBuf>,
        /// With a [fleet] whose Redis cannot be reached, replay with this sensor's own detection
        /// state (and keep trying to reach it) instead of failing at once.
        #[arg(long)]
        fleet_optional: bool,
        /// Capture files, read as one timeline in the order of their first packet's time (files
        /// whose first packets have the same time, in the order given; pipes, which cannot be
        /// looked at beforehand, and unreadable files first), whatever their names. A
        /// packet older than the newest time already seen (files that overlap in time) is taken
        /// as happening at that newest time; the summary and the stats record (time_clamped)
        /// count them. To keep every packet's own time, merge the files first (mergecap).
        #[arg(required = true)]
        pcaps: Vec<PathBuf>,
    },
    /// Run the live sensor: capture on [capture] interfaces until SIGTERM/SIGINT (SIGHUP reopens the
    /// EVE file and reloads the allowlist and thresholds).
    Run {
        /// Configuration file (TOML), as FILE or -c FILE. Environment variables
        /// XFERWATCH__SECTION__KEY override it.
        #[arg(
            value_name = "FILE",
            conflicts_with = "config",
            required_unless_present = "config"
        )]
        file: Option<PathBuf>,
        // No doc comment: it would become help text, and `-c FILE` is the same as `FILE` here.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and print the effective configuration (exit 0 valid, 1 invalid).
    CheckConfig {
        /// The configuration file, as FILE or -c FILE.
        #[arg(value_name = "FILE", conflicts_with = "config")]
        file: Option<PathBuf>,
        // No doc comment: it would become help text, and `-c FILE` is the same as `FILE` here.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// The sensors of a fleet: sensors that share their detection state in Redis ([fleet]).
    #[command(subcommand_required = true, disable_help_subcommand = true)]
    Fleet {
        // The fleet command to run (a plain comment: clap takes doc comments as help text).
        #[command(subcommand)]
        cmd: FleetCmd,
    },
}

/// `xferwatch fleet …`.
#[derive(Subcommand)]
#[allow(
    rustdoc::broken_intra_doc_links,
    reason = "the doc comments are clap's help text, where [fleet] names a section of the \
              configuration file, not an item"
)]
pub enum FleetCmd {
    /// List the fleet's sensors from their heartbeats (written every 5 s), sorted by name: name,
    /// version, mode, last heartbeat (UTC, and its age), packets and alerts; "stale" marks a
    /// sensor silent for over 15 s. Exit 0 listed; 1 the configuration is not valid; 2 it has no
    /// [fleet] or the fleet's Redis cannot be reached.
    Status {
        /// Configuration file (TOML) naming the fleet ([fleet] redis or redis_cluster,
        /// key_prefix, timeout). Environment variables XFERWATCH__SECTION__KEY override it.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print one JSON array instead of the table: every heartbeat's fields, with age_secs
        /// and stale.
        #[arg(long)]
        json: bool,
    },
}

/// `xferwatch generate` (hidden): what the package build writes.
#[derive(Subcommand)]
pub enum Generate {
    /// Write the manual page, DIR/xferwatch.1.
    Man {
        /// The directory to write it in.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Write the completion script for SHELL (xferwatch.bash, _xferwatch, xferwatch.fish…) in DIR,
    /// or on standard output without DIR.
    Completions {
        /// The shell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
        /// The directory to write it in.
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// What the binary was asked to do.
pub enum Invocation {
    /// One of the operator's commands.
    Cli(Cli),
    /// `xferwatch generate …`.
    Generate(Generate),
}

/// The command line the binary parses: [`Cli`] with the hidden `generate` command added.
pub fn command() -> Command {
    Cli::command().subcommand(Generate::augment_subcommands(
        Command::new("generate")
            .about("Write the manual page or the shell completions (for packaging)")
            .hide(true)
            .subcommand_required(true),
    ))
}

/// Parses the process's arguments; on an error or `--help`/`--version`, prints and exits as clap
/// does (status 2 for a usage error).
pub fn parse() -> Invocation {
    let matches = command().get_matches();
    let parsed = match matches.subcommand() {
        Some(("generate", sub)) => Generate::from_arg_matches(sub).map(Invocation::Generate),
        _ => Cli::from_arg_matches(&matches).map(Invocation::Cli),
    };
    parsed.unwrap_or_else(|e| e.format(&mut command()).exit())
}
