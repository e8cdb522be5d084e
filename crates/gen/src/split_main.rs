//! `xferwatch-split`: splits captures into N shares by IP pair (see `xferwatch_gen::split`).

#![forbid(unsafe_code)]

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use xferwatch_gen::split::{split, MAX_SHARES};

#[derive(Parser)]
#[command(
    name = "xferwatch-split",
    version,
    about = "Split classic pcap captures into N shares by IP pair, as a packet broker with \
             symmetric hashing feeds N sensors",
    long_about = "Split classic pcap captures into N shares by IP pair, as a packet broker with \
                  symmetric hashing feeds N sensors.\n\n\
                  Every packet goes to share hash(min(src,dst), max(src,dst)) % N, so both \
                  directions of an IP pair share a file; packets that are not IPv4 or IPv6 go to \
                  share 0. The inputs are merged in timestamp order (ties: the earlier input), \
                  each input's own order kept. They must have one link type, which the shares \
                  keep; pcapng is refused (editcap -F pcap converts it)."
)]
struct Cli {
    /// Number of shares (sensors), 1 to 4096.
    #[arg(long, value_name = "N")]
    shares: usize,
    /// Write PREFIX-0.pcap … PREFIX-(N-1).pcap.
    #[arg(short = 'o', long = "output", value_name = "PREFIX")]
    output: PathBuf,
    /// Print nothing on standard error but problems.
    #[arg(short, long)]
    quiet: bool,
    /// Input captures (classic pcap).
    #[arg(required = true, value_name = "IN.pcap")]
    inputs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.shares == 0 || cli.shares > MAX_SHARES {
        eprintln!("xferwatch-split: --shares: expected 1 to {MAX_SHARES}");
        return ExitCode::from(2);
    }
    match split(&cli.inputs, cli.shares, &cli.output) {
        Ok(s) => {
            if !cli.quiet {
                for (f, n) in s.files.iter().zip(&s.packets) {
                    eprintln!("{}: {n} packets", f.display());
                }
                if s.not_ip > 0 {
                    eprintln!("({} packets not IP, in share 0)", s.not_ip);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xferwatch-split: {e}");
            ExitCode::from(1)
        }
    }
}
