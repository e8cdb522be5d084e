//! `xferwatch-gen`: writes a synthetic capture and, optionally, what xferwatch should report.

#![forbid(unsafe_code)]

use clap::Parser;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use xferwatch_gen::{generate, parse_size, Config, Profile, DEFAULT_THRESHOLD};

#[derive(Parser)]
#[command(
    name = "xferwatch-gen",
    version,
    about = "Deterministic synthetic traffic (classic pcap) for xferwatch, with the alerts it should raise"
)]
struct Cli {
    /// Traffic profile: bulk (a few large transfers), many-flows (tens of thousands of
    /// concurrent short flows) or mixed (every kind of transfer and mismatch among background
    /// traffic).
    #[arg(long, default_value = "mixed", value_parser = parse_profile)]
    profile: Profile,
    /// Approximate size of the capture file, e.g. 1GiB, 200MB, 20000000.
    #[arg(long, default_value = "20MB", value_parser = parse_size)]
    bytes: u64,
    /// Seed: the same seed and arguments give a byte-identical file.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Internal hosts (10.x.y.z); default 8 (bulk), 200 (mixed), 5000 (many-flows).
    #[arg(long)]
    hosts: Option<u32>,
    /// Number of sessions to generate (an FTP or TFTP session has two or more flows); default:
    /// as many as --bytes allows (bulk: the number of large transfers, default 8).
    #[arg(long)]
    flows: Option<u64>,
    /// Sessions running at once; default 4 (bulk), 64 (mixed), 60000 (many-flows).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Large-outbound threshold the expectation is computed for (the sensor's
    /// detect.large_outbound.threshold_bytes).
    #[arg(long, value_parser = parse_size, default_value_t = DEFAULT_THRESHOLD)]
    threshold: u64,
    /// Output capture file.
    #[arg(short = 'o', long = "output", value_name = "OUT.pcap")]
    output: PathBuf,
    /// Also write what the sensor should report (JSON).
    #[arg(long, value_name = "OUT.json")]
    expect: Option<PathBuf>,
    /// Print nothing on standard error.
    #[arg(short, long)]
    quiet: bool,
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::parse(s).ok_or_else(|| format!("unknown profile {s:?} (bulk, many-flows, mixed)"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = Config {
        profile: cli.profile,
        bytes: cli.bytes,
        seed: cli.seed,
        hosts: cli.hosts,
        flows: cli.flows,
        concurrency: cli.concurrency,
        threshold: cli.threshold,
    };
    let started = Instant::now();
    let file = match File::create(&cli.output) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("xferwatch-gen: {}: {e}", cli.output.display());
            return ExitCode::from(1);
        }
    };
    let outcome = match generate(&cfg, file) {
        Ok((_, o)) => o,
        Err(e) => {
            eprintln!("xferwatch-gen: writing {}: {e}", cli.output.display());
            return ExitCode::from(1);
        }
    };
    if let Some(path) = &cli.expect {
        let doc = outcome.json(&cfg);
        let res = File::create(path).and_then(|f| {
            let mut w = BufWriter::new(f);
            serde_json::to_writer_pretty(&mut w, &doc)?;
            std::io::Write::write_all(&mut w, b"\n")?;
            std::io::Write::flush(&mut w)
        });
        if let Err(e) = res {
            eprintln!("xferwatch-gen: {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    if !cli.quiet {
        let x = &outcome.expect;
        let count = |sid| x.alerts.iter().filter(|a| a.sid == sid).count();
        eprintln!(
            "xferwatch-gen: {} profile, seed {}: {} packets, {} frame bytes ({} in the file), {} flows in {} sessions ({} transfer sessions, at most {} at once), {:.1} s of packet time; expected alerts: {} x 1173001, {} x 1173002, {} x 1173003; written in {:.2} s",
            cfg.profile.name(),
            cfg.seed,
            outcome.packets,
            outcome.frame_bytes,
            outcome.file_bytes,
            x.flows,
            outcome.sessions,
            x.sessions.len(),
            outcome.max_active,
            (outcome.last_us - outcome.first_us) as f64 / 1e6,
            count(xferwatch_gen::expect::SID_LARGE),
            count(xferwatch_gen::expect::SID_FT_PORT),
            count(xferwatch_gen::expect::SID_PORT_PROTO),
            started.elapsed().as_secs_f64(),
        );
    }
    ExitCode::SUCCESS
}
