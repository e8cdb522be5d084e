//! The `xferwatch` command: a thin shell over [`xferwatch_engine`]. It turns the command line and
//! the TOML configuration into the engine's typed configuration ([`settings`]), runs the `replay`
//! command and its summary ([`replay`]), and the live daemon's lifecycle — capture threads,
//! signals, privilege drop, readiness and watchdog ([`run`], [`notify`]) — with its Prometheus
//! endpoint ([`metrics`]). The command line is defined in [`cli`], and the manual page and shell
//! completions are rendered from that definition (the `xferwatch-manual` crate). The binary (`src/main.rs`) parses
//! arguments and calls these.

pub mod cli;
pub mod fleet_status;
pub mod metrics;
pub mod notify;
pub mod progress;
pub mod redis_out;
pub mod replay;
pub mod run;
pub mod settings;
pub mod talkers;
