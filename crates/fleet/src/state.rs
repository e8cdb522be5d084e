//! The fleet's detection state: per internal host, the host roll-up (1173006), the host-pair
//! roll-ups (1173005) and the baselines (1173004), kept in Redis and updated by one Lua script
//! per host and call (`lua/host.lua`), so that sensors updating the same host at once never lose
//! an update and each alert is raised once fleet-wide: by the sensor whose update crosses.
//!
//! A sensor batches its updates: ops for many hosts go in one pipelined round trip.

use crate::conn::{Conn, Target};
use crate::FleetConfig;
use anyhow::{anyhow, Result};
use std::fmt::Write as _;
use xferwatch_wire::Addr;

/// The script every update runs.
pub const SCRIPT: &str = include_str!("lua/host.lua");
/// Baseline windows a host's key holds (the script's RING).
pub const RING_WINDOWS: usize = 256;

/// Flag of an op: the alert it could raise was already raised locally (while Redis was down);
/// the script records it and reports nothing.
pub const MUTE: u8 = 1;
/// Flag of a pair op: the session crossed the threshold on its own (1173001 is its alert).
pub const ALONE: u8 = 2;

/// What an op updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// The host roll-up (every protocol, every external host).
    Host,
    /// The host's baseline of one protocol (0 ftp, 1 tftp, 2 smb, 3 other).
    Baseline(u8),
    /// The roll-up of the host and one external host, for one protocol.
    Pair(Addr, u8),
}

/// One update: `delta` outbound bytes at packet time `now_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    pub kind: OpKind,
    pub now_us: i64,
    pub delta: u64,
    /// The threshold to test against (host and pair roll-ups).
    pub threshold: u64,
    pub flags: u8,
}

/// The detection settings every op of a call is evaluated with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    pub baseline_window_us: i64,
    pub learning_windows: u32,
    pub k: f64,
    pub floor_bytes: u64,
    pub host_window_us: i64,
    pub rollup_window_us: i64,
}

impl Params {
    fn arg(&self) -> String {
        format!(
            "{} {} {} {} {} {}",
            self.baseline_window_us.max(1),
            self.learning_windows,
            self.k,
            self.floor_bytes,
            self.host_window_us.max(1),
            self.rollup_window_us.max(1)
        )
    }
}

/// The script's answer to one op.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// This op crossed: raise the alert.
    pub alert: bool,
    /// The volume now (window sum, or the baseline window's volume).
    pub total: u64,
    /// The threshold, or the baseline's limit.
    pub limit: u64,
    /// Baselines: the learnt per-window volume.
    pub mean: Option<f64>,
}

/// Protocol keys as key names.
fn proto_name(p: u8) -> &'static str {
    ["ftp", "tftp", "smb", "other"][p.min(3) as usize]
}

/// The hash tag of a host's keys: `{<prefix>:h:<addr>%<vlan>}`.
pub fn host_tag(prefix: &str, host: Addr, vlan: u16) -> String {
    format!("{{{prefix}:h:{host}%{vlan}}}")
}

/// The key an op updates.
pub fn op_key(prefix: &str, host: Addr, vlan: u16, kind: OpKind) -> String {
    let tag = host_tag(prefix, host, vlan);
    match kind {
        OpKind::Host => format!("{tag}:hr"),
        OpKind::Baseline(p) => format!("{tag}:bl:{}", proto_name(p)),
        OpKind::Pair(ext, p) => format!("{tag}:pr:{ext}%{}", proto_name(p)),
    }
}

/// A connection to the fleet's state.
pub struct State {
    conn: Conn,
    prefix: String,
    script: redis::Script,
    /// Round trips and ops sent, for the metrics.
    pub round_trips: u64,
    pub ops: u64,
}

impl State {
    /// Connects and checks that the server answers.
    pub fn connect(cfg: &FleetConfig) -> Result<State> {
        let mut conn = Conn::open(&cfg.target, cfg.timeout)?;
        conn.ping()
            .map_err(|e| anyhow!("{}: {e}", cfg.target.describe()))?;
        Ok(State {
            conn,
            prefix: cfg.key_prefix.clone(),
            script: redis::Script::new(SCRIPT),
            round_trips: 0,
            ops: 0,
        })
    }

    /// Sends the ops of every host in one pipelined round trip (one script call per host) and
    /// returns the replies, host by host and op by op.
    pub fn sync(
        &mut self,
        params: &Params,
        hosts: &[((Addr, u16), Vec<Op>)],
    ) -> Result<Vec<Vec<Reply>>> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        let pa = params.arg();
        let (prefix, sha) = (&self.prefix, self.script.get_hash().to_string());
        let cmd = |host: Addr, vlan: u16, ops: &[Op], by_sha: bool| {
            let mut c = redis::cmd(if by_sha { "EVALSHA" } else { "EVAL" });
            if by_sha {
                c.arg(&sha);
            } else {
                c.arg(SCRIPT);
            }
            c.arg(ops.len());
            for op in ops {
                c.arg(op_key(prefix, host, vlan, op.kind));
            }
            c.arg(&pa);
            let mut s = String::with_capacity(48);
            for op in ops {
                s.clear();
                let kind = match op.kind {
                    OpKind::Host => 'H',
                    OpKind::Baseline(_) => 'B',
                    OpKind::Pair(..) => 'P',
                };
                let _ = write!(
                    s,
                    "{kind} {} {} {} {}",
                    op.now_us, op.delta, op.threshold, op.flags
                );
                c.arg(s.as_str());
            }
            c
        };
        let no_script = |e: &redis::RedisError| {
            e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
        };
        self.ops += hosts.iter().map(|h| h.1.len() as u64).sum::<u64>();
        let mut raw: Vec<Vec<(i64, i64, i64, String)>> = Vec::with_capacity(hosts.len());
        if self.conn.is_cluster() {
            // A cluster routes each host's call to the master of its slot, one call at a time
            // (the client pipelines only on one server); a master that lacks the script gets it
            // with EVAL, that call alone.
            for ((host, vlan), ops) in hosts {
                self.round_trips += 1;
                let r = match cmd(*host, *vlan, ops, true).query(self.conn.link()) {
                    Ok(v) => v,
                    Err(e) if no_script(&e) => {
                        self.round_trips += 1;
                        cmd(*host, *vlan, ops, false).query(self.conn.link())?
                    }
                    Err(e) => return Err(e.into()),
                };
                raw.push(r);
            }
        } else {
            let pipe = |by_sha: bool| {
                let mut p = redis::pipe();
                for ((host, vlan), ops) in hosts {
                    p.add_command(cmd(*host, *vlan, ops, by_sha));
                }
                p
            };
            self.round_trips += 1;
            raw = match pipe(true).query(self.conn.link()) {
                Ok(v) => v,
                // The server forgot the script (restarted, flushed): every call of the pipeline
                // failed alike, and EVAL caches it again.
                Err(e) if no_script(&e) => {
                    self.round_trips += 1;
                    pipe(false).query(self.conn.link())?
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(raw
            .into_iter()
            .map(|ops| {
                ops.into_iter()
                    .map(|(alert, total, limit, mean)| Reply {
                        alert: alert == 1,
                        total: total.max(0) as u64,
                        limit: limit.max(0) as u64,
                        mean: mean.parse().ok(),
                    })
                    .collect()
            })
            .collect())
    }

    /// The connection, for heartbeats and tests.
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

/// Connects to `target` and says whether it answers (for `replay`'s start-up check).
pub fn probe(target: &Target, timeout: std::time::Duration) -> Result<()> {
    Conn::open(target, timeout)?.ping()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{available, RedisServer};
    use std::time::Duration;

    const H: i64 = 3_600_000_000;

    fn params() -> Params {
        Params {
            baseline_window_us: H,
            learning_windows: 3,
            k: 3.0,
            floor_bytes: 100,
            host_window_us: H,
            rollup_window_us: H,
        }
    }

    fn cfg(url: String) -> FleetConfig {
        FleetConfig {
            target: Target::Single(url),
            key_prefix: "t".into(),
            sensor: "s".into(),
            timeout: Duration::from_secs(2),
            sync_interval_us: 1_000_000,
        }
    }

    fn op(kind: OpKind, now_us: i64, delta: u64, threshold: u64, flags: u8) -> Op {
        Op {
            kind,
            now_us,
            delta,
            threshold,
            flags,
        }
    }

    fn host() -> (Addr, u16) {
        (Addr::v4([10, 0, 0, 1]), 0)
    }

    #[test]
    fn host_rollup_alerts_once_fleet_wide() {
        if let Err(why) = available() {
            eprintln!("SKIP host_rollup_alerts_once_fleet_wide: {why}");
            return;
        }
        let srv = RedisServer::start().unwrap();
        // Four sensors adding 300 bytes each, 10 times, in turn: the update that takes the sum
        // to 5000 alerts, and no other.
        let mut sensors: Vec<State> = (0..4)
            .map(|_| State::connect(&cfg(srv.url())).unwrap())
            .collect();
        let mut alerts = Vec::new();
        for i in 0..40i64 {
            let s = &mut sensors[i as usize % 4];
            let r = s
                .sync(
                    &params(),
                    &[(host(), vec![op(OpKind::Host, i * 1000, 300, 5000, 0)])],
                )
                .unwrap();
            if r[0][0].alert {
                alerts.push((i, r[0][0].total));
            }
        }
        assert_eq!(alerts, vec![(16, 5100)]);
        // A window later, again once.
        let r = sensors[0]
            .sync(
                &params(),
                &[(host(), vec![op(OpKind::Host, 2 * H, 6000, 5000, 0)])],
            )
            .unwrap();
        assert!(r[0][0].alert);
        assert_eq!(r[0][0].total, 6000, "the old window slid out");
    }

    #[test]
    fn concurrent_sensors_never_lose_an_update() {
        if let Err(why) = available() {
            eprintln!("SKIP concurrent_sensors_never_lose_an_update: {why}");
            return;
        }
        let srv = RedisServer::start().unwrap();
        let url = srv.url();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let mut s = State::connect(&cfg(url)).unwrap();
                    let mut alerts = 0;
                    for i in 0..250i64 {
                        let ops = vec![
                            op(OpKind::Host, i, 10, 9_000, 0),
                            op(OpKind::Pair(Addr::v4([203, 0, 113, 9]), 0), i, 10, 9_500, 0),
                        ];
                        let r = s.sync(&params(), &[(host(), ops)]).unwrap();
                        alerts += r[0].iter().filter(|r| r.alert).count();
                    }
                    alerts
                })
            })
            .collect();
        let alerts: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(alerts, 2, "one host and one pair alert in all");
        let mut s = State::connect(&cfg(url)).unwrap();
        let r = s
            .sync(
                &params(),
                &[(host(), vec![op(OpKind::Host, 300, 0, 9_000, 0)])],
            )
            .unwrap();
        assert_eq!(r[0][0].total, 10_000, "4 x 250 x 10 bytes");
    }

    #[test]
    fn baseline_learns_then_alerts_and_muted_alerts_are_not_repeated() {
        if let Err(why) = available() {
            eprintln!("SKIP baseline_learns_then_alerts: {why}");
            return;
        }
        let srv = RedisServer::start().unwrap();
        let mut s = State::connect(&cfg(srv.url())).unwrap();
        let mut go = |now: i64, delta: u64, flags: u8| {
            s.sync(
                &params(),
                &[(host(), vec![op(OpKind::Baseline(2), now, delta, 0, flags)])],
            )
            .unwrap()
            .remove(0)
            .remove(0)
        };
        // The detector's own unit test: five hours of 200 bytes, then 400 + 300 in one hour.
        for h in 0..5 {
            assert!(!go(h * H + 10, 200, 0).alert);
        }
        assert!(!go(5 * H + 10, 400, 0).alert);
        let r = go(5 * H + 20, 300, 0);
        assert!(r.alert, "{r:?}");
        assert_eq!((r.total, r.limit), (700, 600));
        assert_eq!(r.mean, Some(200.0));
        assert!(!go(5 * H + 30, 300, 0).alert, "once per window");
        // An alert raised locally while Redis was down is recorded, not raised again.
        assert!(!go(6 * H + 10, 5000, MUTE).alert);
        assert!(!go(6 * H + 20, 5000, 0).alert);
        // A window far older than the ring holds is dropped.
        assert_eq!(go(-300 * H, 5, 0).total, 0);
    }

    #[test]
    fn the_learnt_mean_is_kept_and_a_late_update_refreshes_it() {
        if let Err(why) = available() {
            eprintln!("SKIP the_learnt_mean_is_kept: {why}");
            return;
        }
        let srv = RedisServer::start().unwrap();
        let mut s = State::connect(&cfg(srv.url())).unwrap();
        let mut go = |now: i64, delta: u64| {
            s.sync(
                &params(),
                &[(host(), vec![op(OpKind::Baseline(0), now, delta, 0, 0)])],
            )
            .unwrap()
            .remove(0)
            .remove(0)
        };
        // 40 hours of growing volume: the mean is folded in hour by hour.
        let mut mean = 0.0f64;
        for h in 0..40i64 {
            let v = 100 + 10 * h as u64;
            let r = go(h * H + 5, v);
            if h >= 3 {
                assert_eq!(r.mean, Some(mean), "hour {h}");
            }
            mean = if h == 0 {
                v as f64
            } else {
                mean + 0.1 * (v as f64 - mean)
            };
        }
        // A late sensor adds to hour 20: the next mean is computed again, with it.
        go(20 * H + 9, 1000);
        let r = go(40 * H + 5, 1);
        let mut m = 100.0f64;
        for h in 1..40i64 {
            let v = 100.0 + 10.0 * h as f64 + if h == 20 { 1000.0 } else { 0.0 };
            m += 0.1 * (v - m);
        }
        assert_eq!(r.mean, Some(m));
        let keys: Vec<String> = redis::cmd("HKEYS")
            .arg(op_key("t", host().0, 0, OpKind::Baseline(0)))
            .query(s.conn().link())
            .unwrap();
        assert!(keys.len() <= 3 * RING_WINDOWS + 5, "{}", keys.len());
    }

    #[test]
    fn pair_rollup_and_a_session_alone() {
        if let Err(why) = available() {
            eprintln!("SKIP pair_rollup_and_a_session_alone: {why}");
            return;
        }
        let srv = RedisServer::start().unwrap();
        let mut s = State::connect(&cfg(srv.url())).unwrap();
        let ext = Addr::v4([203, 0, 113, 9]);
        let mut go = |now: i64, delta: u64, flags: u8| {
            s.sync(
                &params(),
                &[(
                    host(),
                    vec![op(OpKind::Pair(ext, 0), now, delta, 1000, flags)],
                )],
            )
            .unwrap()
            .remove(0)
            .remove(0)
        };
        // As the detector's rollup_many_small_sessions.
        let fired: Vec<bool> = (0..5).map(|i| go(i * 60_000_000, 300, 0).alert).collect();
        assert_eq!(fired, [false, false, false, true, false]);
        assert!(!go(3 * H, 300, 0).alert);
        assert!(!go(3 * H + 1, 5000, ALONE).alert);
        assert!(
            !go(3 * H + 2, 300, 0).alert,
            "the session alone holds the window"
        );
    }
}
