//! A fleet: several sensors that behave as one. Their per-host detection state (baselines, host
//! and host-pair roll-ups), their heartbeats and, if asked, their events live in Redis — one
//! server (`redis://`, `rediss://` with TLS) or a Redis Cluster.
//!
//! Every key starts with the fleet's `key_prefix`. The keys of one internal host carry the hash
//! tag `{<prefix>:h:<addr>}`, so that in a cluster they share a slot and one Lua script can update
//! all of them atomically.

#![forbid(unsafe_code)]

pub mod conn;
pub mod sink;
pub mod spool;
pub mod state;
pub mod status;
pub mod testing;

pub use conn::{Conn, Target};
/// The Redis client the fleet uses, for callers (and tests) that query Redis themselves.
pub use redis;
pub use sink::{RedisSink, RedisStats, RedisStatus, Undelivered};
pub use status::{Heartbeat, Listing, Mode, SensorStatus};

use std::path::PathBuf;
use std::time::Duration;

/// The fleet a sensor belongs to (`[fleet]`, `[sensor] name`).
#[derive(Clone, Debug)]
pub struct FleetConfig {
    pub target: Target,
    /// Start of every key (`key_prefix`).
    pub key_prefix: String,
    /// This sensor's name (`[sensor] name`).
    pub sensor: String,
    /// Connect and reply timeout.
    pub timeout: Duration,
    /// A host's pending volume is sent at least this often (packet time, µs).
    pub sync_interval_us: i64,
}

/// How events are handed to Redis (`[output.redis] mode`), as Suricata's `redis` output does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// `XADD key MAXLEN ~ n * event <json>`.
    Stream,
    /// `RPUSH key <json>`.
    List,
    /// `PUBLISH key <json>`.
    Channel,
}

impl OutputMode {
    pub fn parse(s: &str) -> Option<OutputMode> {
        match s {
            "stream" => Some(OutputMode::Stream),
            "list" => Some(OutputMode::List),
            "channel" => Some(OutputMode::Channel),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            OutputMode::Stream => "stream",
            OutputMode::List => "list",
            OutputMode::Channel => "channel",
        }
    }
}

/// EVE events to Redis (`[output.redis]`).
#[derive(Clone, Debug)]
pub struct OutputConfig {
    pub target: Target,
    pub mode: OutputMode,
    /// The stream, list or channel.
    pub key: String,
    /// Streams: XADD's approximate MAXLEN (0: unbounded).
    pub maxlen: u64,
    /// Events sent per pipelined round trip at most.
    pub batch: usize,
    /// Events wait here, in order, while Redis cannot take them.
    pub spool_dir: PathBuf,
    /// Bytes the spool holds at most; events beyond are dropped (counted).
    pub spool_max: u64,
    /// Connect and reply timeout.
    pub timeout: Duration,
}
