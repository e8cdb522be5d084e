//! The `xferwatch` binary: glue only. The command line is defined in the library
//! ([`xferwatch::cli`]; the manual page and completions are rendered from it); the pipeline is the
//! `xferwatch` library (src/lib.rs), decoding, flows, identification, policy and output live in
//! the workspace's crates.

use clap::CommandFactory;
use xferwatch::cli::{self, Cli, Cmd, FleetCmd, Generate, Invocation};
use xferwatch::{fleet_status, replay, run, settings};
use xferwatch_logging::init_logging;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Invocation::Cli(cli) => cli,
        Invocation::Generate(what) => return generate(what),
    };
    let Cli { cmd } = cli;
    match cmd {
        Cmd::Replay {
            config,
            eve,
            force,
            workers,
            quiet,
            evidence,
            fleet_optional,
            pcaps,
        } => {
            let settings = match settings::Settings::load(config.as_deref()) {
                Ok(mut s) => {
                    if let Some(d) = evidence {
                        s.evidence.dir = d.to_string_lossy().into_owned();
                    }
                    s
                }
                Err(e) => {
                    eprintln!("xferwatch: configuration error: {e:#}");
                    return ExitCode::from(1);
                }
            };
            init_logging(&settings.log.level, settings.log.format == "json");
            match replay::run(
                &settings,
                &eve,
                force,
                workers,
                quiet,
                fleet_optional,
                &pcaps,
            ) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("xferwatch: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::Run { file, config } => {
            // clap requires exactly one of them.
            let Some(config) = file.or(config) else {
                eprintln!("xferwatch run: give the configuration file");
                return ExitCode::from(2);
            };
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
        Cmd::Fleet {
            cmd: FleetCmd::Status { config, json },
        } => ExitCode::from(fleet_status::run(config.as_deref(), json)),
        Cmd::CheckConfig { file, config } => {
            let Some(path) = file.or(config) else {
                eprintln!("xferwatch check-config: give the configuration file to check");
                return ExitCode::from(2);
            };
            // `run` compiles [capture] bpf when it opens the interfaces: check it now, as it will.
            let loaded = settings::Settings::load(Some(&path)).and_then(|s| {
                xferwatch_capture::live::check_bpf(&s.capture.bpf)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                Ok(s)
            });
            match loaded {
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

/// `xferwatch generate`: the manual page or a completion script, for the package build.
fn generate(what: Generate) -> ExitCode {
    let written = match what {
        Generate::Man { dir } => xferwatch_manual::write_man(&Cli::command(), &dir).map(Some),
        Generate::Completions { shell, dir } => {
            xferwatch_manual::write_completions(&Cli::command(), shell, dir.as_deref())
        }
    };
    match written {
        Ok(Some(path)) => {
            println!("{}", path.display());
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xferwatch generate: {e}");
            ExitCode::from(1)
        }
    }
}
