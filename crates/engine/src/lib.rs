//! xferwatch's engine: the path from a batch of packets to EVE events. Sharding onto workers, the
//! worker loop, per-flow application state, transfer sessions, the calls into detection, rendering
//! and the writer. It knows nothing of the command line, TOML or signals: build an
//! [`EngineConfig`], start an [`Engine`], feed it through [`Engine::ingest`] (or replay files with
//! [`replay::replay`]), and events leave through an [`EventSink`].
//!
//! ```no_run
//! # fn demo(config: &xferwatch_engine::EngineConfig) -> anyhow::Result<()> {
//! use std::sync::atomic::AtomicBool;
//! use xferwatch_engine::{replay::replay, BaselineFile, WriteSink};
//! let sink = Box::new(WriteSink(std::io::stdout()));
//! let files = ["capture.pcap".into()];
//! let r = replay(config, &BaselineFile::load(None, 86_400), &files, sink, &AtomicBool::new(false))?;
//! eprintln!("{} events", r.events);
//! # Ok(()) }
//! ```
//!
//! Modules, lowest first: [`counters`] and [`health`] (what is counted), [`config`] (what the
//! workers share), [`app`] and [`session`] (per-flow and per-transfer state), [`render`] (EVE
//! records from those facts), [`worker`], [`writer`], [`pipeline`] (the [`Engine`]), [`replay`],
//! [`stats`]. See `docs/architecture.md`.

pub mod app;
pub mod baseline_state;
pub mod config;
pub mod counters;
pub mod evidence;
pub mod fleet;
pub mod health;
pub mod inprocess;
pub mod pcaps;
pub mod pipeline;
pub mod render;
pub mod replay;
pub mod session;
pub mod stats;
pub mod worker;
pub mod writer;

pub use config::AppConfig;
pub use counters::WorkerTotals;
pub use pipeline::{detect_per_worker, shard_fn, worker_count, BaselineFile, Engine, EngineConfig};
pub use writer::{ChannelSink, EveSink, EventSink, LazySink, WriteSink};

#[cfg(test)]
mod contain_tests;
