//! The `xferwatch` binary: the command line. Glue only — the pipeline is the `xferwatch` library
//! (src/lib.rs), decoding, flows, identification, policy and output live in the workspace's crates.

use xferwatch::{replay, run, settings};
use xferwatch_logging::init_logging;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "xferwatch",
    version,
    about = "Passive sensor for large outbound FTP/TFTP/SMB transfers and application/port mismatches"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Replay {
            config,
            eve,
            workers,
            quiet,
            pcaps,
        } => {
            let settings = match settings::Settings::load(config.as_deref()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("xferwatch: configuration error: {e:#}");
                    return ExitCode::from(1);
                }
            };
            init_logging(&settings.log.level, settings.log.format == "json");
            match replay::run(&settings, &eve, workers, quiet, &pcaps) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("xferwatch: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Run { config } => {
            let settings = match settings::Settings::load(Some(&config)) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("xferwatch: configuration error: {e:#}");
                    return ExitCode::from(1);
                }
            };
            init_logging(&settings.log.level, settings.log.format == "json");
            match run::run(&settings, &config) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("xferwatch: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::CheckConfig { file, config } => {
            let Some(path) = file.or(config) else {
                eprintln!("xferwatch check-config: give the configuration file to check");
                return ExitCode::from(2);
            };
            match settings::Settings::load(Some(&path)) {
                Ok(s) => {
                    println!(
                        "# {}: valid; effective configuration with defaults resolved:",
                        path.display()
                    );
                    print!("{}", s.to_toml());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("xferwatch: configuration error: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
