//! `[output.redis]`: every EVE line to Redis too, for `replay` and `run`. The sending, the spool
//! and the counters are [`xferwatch_fleet::RedisSink`]'s; this wires it to the two commands.

use crate::settings::Settings;
use anyhow::{anyhow, Result};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use xferwatch_engine::writer::{EveSink, EventSink};
use xferwatch_fleet::{OutputConfig, RedisSink};

fn open(cfg: &OutputConfig) -> Result<RedisSink> {
    RedisSink::new(cfg.clone()).map_err(|e| {
        anyhow!("output.redis.spool_dir: {e}; create the directory or choose another spool_dir")
    })
}

/// `run`: the daemon's EVE sink sends every line to Redis too, when enabled.
pub fn attach_live(s: &Settings, sink: &mut EveSink) -> Result<()> {
    if let Some(cfg) = s.redis_output() {
        sink.attach_redis(open(&cfg)?);
        tracing::info!(
            "EVE events to Redis too: {} {} {:?}",
            cfg.target.describe(),
            cfg.mode.as_str(),
            cfg.key
        );
    }
    Ok(())
}

/// `replay`: the Redis output of one replay, finished with [`ReplayRedis::finish`].
pub struct ReplayRedis {
    sink: Arc<Mutex<RedisSink>>,
    cfg: OutputConfig,
}

/// `replay`: `sink` with every line sent to Redis too, when enabled.
pub fn tee_replay(
    s: &Settings,
    sink: Box<dyn EventSink>,
) -> Result<(Box<dyn EventSink>, Option<ReplayRedis>)> {
    let Some(cfg) = s.redis_output() else {
        return Ok((sink, None));
    };
    let redis = Arc::new(Mutex::new(open(&cfg)?));
    let tee = RedisTee {
        inner: sink,
        redis: redis.clone(),
    };
    Ok((Box::new(tee), Some(ReplayRedis { sink: redis, cfg })))
}

impl ReplayRedis {
    /// Waits for delivery up to the timeout; what is left stays in the spool (said on standard
    /// error: it is not lost, the next run sends it first).
    pub fn finish(&self) {
        let mut r = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let left = r.finish(self.cfg.timeout.max(Duration::from_secs(1)));
        let st = r.stats();
        if left.events > 0 {
            eprintln!(
                "xferwatch replay: {} event(s) ({} bytes) not delivered to Redis {}; they wait in \
                 the spool {} and are sent first by the next run",
                left.events,
                left.bytes,
                self.cfg.target.describe(),
                self.cfg.spool_dir.display()
            );
        }
        if st.dropped > 0 {
            eprintln!(
                "xferwatch replay: {} event(s) not sent to Redis: the spool was full \
                 (output.redis.spool_max = {} bytes)",
                st.dropped, self.cfg.spool_max
            );
        }
    }
}

/// Every record to `inner`, then to Redis.
struct RedisTee {
    inner: Box<dyn EventSink>,
    redis: Arc<Mutex<RedisSink>>,
}

impl EventSink for RedisTee {
    fn event(&mut self, line: &str) -> std::io::Result<()> {
        self.inner.event(line)?;
        if let Ok(mut r) = self.redis.lock() {
            r.push(line);
        }
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        if let Ok(mut redis) = self.redis.lock() {
            redis.flush();
        }
        r
    }
}
