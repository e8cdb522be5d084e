//! Heartbeats: every sensor of a fleet writes its [`SensorStatus`] as one field (its name) of the
//! hash `<prefix>:sensors`, at most every [`HEARTBEAT_INTERVAL`]; `xferwatch fleet status` reads
//! them all ([`list`]). The hash is one key, so in a cluster it lives in one slot.
//!
//! A sensor calls a [`Heartbeat`]: it connects lazily, writes at most every
//! [`HEARTBEAT_INTERVAL`] of wall time, and when Redis is down costs one timeout per interval,
//! never more, and says so by returning `false`.

use crate::{Conn, FleetConfig};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A sensor writes its heartbeat this often (wall time).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// A sensor whose last heartbeat is older than this is stale (3 × [`HEARTBEAT_INTERVAL`]).
pub const STALE_AFTER: Duration = Duration::from_secs(3 * HEARTBEAT_INTERVAL.as_secs());

/// The hash holding every sensor's heartbeat: `<prefix>:sensors`.
pub fn sensors_key(prefix: &str) -> String {
    format!("{prefix}:sensors")
}

/// What a sensor is doing, as of its last heartbeat (JSON in Redis).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorStatus {
    /// The sensor's name (`[sensor] name`), also the hash field.
    pub name: String,
    /// The sensor's version.
    pub version: String,
    /// When the sensor started (seconds since 1970, UTC).
    pub started_unix: i64,
    /// When this heartbeat was written (seconds since 1970, UTC).
    pub heartbeat_unix: i64,
    /// Packets read so far.
    pub packets: u64,
    /// Alerts raised so far.
    pub alerts: u64,
    /// Events written so far.
    pub events: u64,
    /// Does the sensor share its detection state with the fleet right now?
    pub fleet_up: bool,
    /// "replay" or "run".
    pub mode: String,
}

impl SensorStatus {
    /// Seconds since the last heartbeat at `now_unix` (0 for a heartbeat from the future, as a
    /// skewed clock may write).
    pub fn age_secs(&self, now_unix: i64) -> u64 {
        u64::try_from(now_unix.saturating_sub(self.heartbeat_unix)).unwrap_or(0)
    }

    /// Is the last heartbeat older than [`STALE_AFTER`] at `now_unix`?
    pub fn is_stale(&self, now_unix: i64) -> bool {
        self.age_secs(now_unix) > STALE_AFTER.as_secs()
    }
}

/// What a sensor runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `xferwatch replay`.
    Replay,
    /// `xferwatch run`.
    Run,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Replay => "replay",
            Mode::Run => "run",
        }
    }
}

/// Writes `status` as field `status.name` of `<prefix>:sensors` (HSET).
pub fn beat(conn: &mut Conn, prefix: &str, status: &SensorStatus) -> Result<()> {
    let json = serde_json::to_string(status)?;
    let _: i64 = redis::cmd("HSET")
        .arg(sensors_key(prefix))
        .arg(&status.name)
        .arg(json)
        .query(conn.link())
        .context("HSET heartbeat")?;
    Ok(())
}

/// Every heartbeat of the fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The sensors, sorted by name.
    pub sensors: Vec<SensorStatus>,
    /// Entries of the hash that are no heartbeat (not JSON, or not a [`SensorStatus`]); skipped.
    pub unreadable: usize,
}

/// Reads every heartbeat of `<prefix>:sensors` (HGETALL). Entries that do not parse are skipped
/// and counted; a sensor's name is its field's, whatever its JSON says.
pub fn list(conn: &mut Conn, prefix: &str) -> Result<Listing> {
    let raw: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL")
        .arg(sensors_key(prefix))
        .query(conn.link())
        .with_context(|| format!("HGETALL {}", sensors_key(prefix)))?;
    Ok(parse_entries(raw))
}

fn parse_entries(raw: Vec<(Vec<u8>, Vec<u8>)>) -> Listing {
    let mut out = Listing::default();
    for (field, value) in raw {
        let Ok(name) = String::from_utf8(field) else {
            out.unreadable += 1;
            continue;
        };
        match serde_json::from_slice::<SensorStatus>(&value) {
            Ok(mut s) => {
                s.name = name;
                out.sensors.push(s);
            }
            Err(_) => out.unreadable += 1,
        }
    }
    out.sensors.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Seconds since 1970 now (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A sensor's heartbeat: call [`Heartbeat::beat`] as often as convenient (every packet batch,
/// every stats tick); it writes at most every [`HEARTBEAT_INTERVAL`] of wall time. It opens its
/// connection on the first write and again after any failure. A write that fails returns
/// `false` and is retried one interval later, so a Redis that is down costs the caller one
/// connect timeout (plus one reply timeout) per interval at most, never a hang.
pub struct Heartbeat {
    cfg: FleetConfig,
    conn: Option<Conn>,
    status: SensorStatus,
    interval: Duration,
    /// When the last write was tried, and whether Redis took it.
    last: Option<(Instant, bool)>,
}

impl Heartbeat {
    /// A heartbeat for the sensor `cfg.sensor`, started now; nothing is sent yet.
    pub fn new(cfg: FleetConfig, mode: Mode) -> Heartbeat {
        let now = unix_now();
        let status = SensorStatus {
            name: cfg.sensor.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_unix: now,
            heartbeat_unix: now,
            packets: 0,
            alerts: 0,
            events: 0,
            fleet_up: true,
            mode: mode.as_str().to_string(),
        };
        Heartbeat {
            cfg,
            conn: None,
            status,
            interval: HEARTBEAT_INTERVAL,
            last: None,
        }
    }

    /// The version to report (default: this crate's, which is the workspace's).
    pub fn with_version(mut self, version: &str) -> Heartbeat {
        self.status.version = version.to_string();
        self
    }

    /// Writes at most this often (default [`HEARTBEAT_INTERVAL`]; tests shorten it).
    pub fn with_interval(mut self, interval: Duration) -> Heartbeat {
        self.interval = interval;
        self
    }

    /// What the next heartbeats say about the sensor's shared detection state (default true).
    pub fn set_fleet_up(&mut self, up: bool) {
        self.status.fleet_up = up;
    }

    /// The status last written or tried.
    pub fn status(&self) -> &SensorStatus {
        &self.status
    }

    /// Writes a heartbeat with these totals if the last attempt was at least one interval ago.
    /// Returns whether Redis took the last heartbeat tried (this one, or the earlier one when
    /// none was due).
    pub fn beat(&mut self, packets: u64, alerts: u64, events: u64) -> bool {
        if let Some((at, ok)) = self.last {
            if at.elapsed() < self.interval {
                return ok;
            }
        }
        self.send(packets, alerts, events)
    }

    /// Writes a heartbeat now, whenever the last one was: at the end of a replay or at a stop.
    pub fn final_beat(&mut self, packets: u64, alerts: u64, events: u64) -> bool {
        self.send(packets, alerts, events)
    }

    fn send(&mut self, packets: u64, alerts: u64, events: u64) -> bool {
        self.status.packets = packets;
        self.status.alerts = alerts;
        self.status.events = events;
        self.status.heartbeat_unix = unix_now();
        let ok = self.try_send().is_ok();
        if !ok {
            // The connection may be half dead: open a new one next time.
            self.conn = None;
        }
        self.last = Some((Instant::now(), ok));
        ok
    }

    fn try_send(&mut self) -> Result<()> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self
                .conn
                .insert(Conn::open(&self.cfg.target, self.cfg.timeout)?),
        };
        beat(conn, &self.cfg.key_prefix, &self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use crate::Target;

    fn status(name: &str, packets: u64) -> SensorStatus {
        SensorStatus {
            name: name.into(),
            version: "0.1.0".into(),
            started_unix: 1_700_000_000,
            heartbeat_unix: 1_700_000_100,
            packets,
            alerts: 2,
            events: 30,
            fleet_up: true,
            mode: "run".into(),
        }
    }

    fn cfg(target: Target, sensor: &str) -> FleetConfig {
        FleetConfig {
            target,
            key_prefix: "xwtest".into(),
            sensor: sensor.into(),
            timeout: Duration::from_millis(500),
            sync_interval_us: 1_000_000,
        }
    }

    #[test]
    fn staleness_and_age() {
        let s = status("a", 1);
        assert_eq!(s.age_secs(1_700_000_112), 12);
        assert_eq!(s.age_secs(1_700_000_000), 0, "a heartbeat from the future");
        assert!(!s.is_stale(1_700_000_115));
        assert!(s.is_stale(1_700_000_116));
        assert!(!s.is_stale(i64::MIN));
    }

    #[test]
    fn bad_entries_are_counted_not_fatal() {
        let good = serde_json::to_vec(&status("b", 7)).unwrap();
        let listing = parse_entries(vec![
            (b"zeta".to_vec(), good.clone()),
            (b"alpha".to_vec(), good.clone()),
            (b"junk".to_vec(), b"not json".to_vec()),
            (b"half".to_vec(), br#"{"name":"half"}"#.to_vec()),
            (vec![0xff, 0xfe], good),
            (b"neg".to_vec(), br#"{"packets":-1}"#.to_vec()),
        ]);
        let names: Vec<_> = listing.sensors.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["alpha", "zeta"], "sorted, named by their fields");
        assert_eq!(listing.unreadable, 4);
    }

    #[test]
    fn beats_and_lists_on_a_real_server() {
        if let Err(why) = testing::available() {
            eprintln!("SKIP beats_and_lists_on_a_real_server: {why}");
            return;
        }
        let srv = testing::RedisServer::start().unwrap();
        let mut c = Conn::open(&Target::Single(srv.url()), Duration::from_secs(2)).unwrap();
        beat(&mut c, "xwtest", &status("s2", 5)).unwrap();
        beat(&mut c, "xwtest", &status("s1", 9)).unwrap();
        beat(&mut c, "xwtest", &status("s2", 6)).unwrap();
        srv.cli(&["HSET", "xwtest:sensors", "broken", "{"]).unwrap();
        let l = list(&mut c, "xwtest").unwrap();
        assert_eq!(l.unreadable, 1);
        assert_eq!(l.sensors.len(), 2);
        assert_eq!(l.sensors[0], status("s1", 9));
        assert_eq!(
            l.sensors[1].packets, 6,
            "the later heartbeat replaces the earlier"
        );
        // Another prefix is another fleet.
        assert_eq!(list(&mut c, "other").unwrap(), Listing::default());
        // A key of the wrong type is an error, not a panic.
        srv.cli(&["SET", "bad:sensors", "x"]).unwrap();
        assert!(list(&mut c, "bad").is_err());
    }

    #[test]
    fn heartbeat_rate_limits_fails_fast_and_recovers() {
        if let Err(why) = testing::available() {
            eprintln!("SKIP heartbeat_rate_limits_fails_fast_and_recovers: {why}");
            return;
        }
        let mut srv = testing::RedisServer::start().unwrap();
        let target = Target::Single(srv.url());
        let mut hb = Heartbeat::new(cfg(target.clone(), "hb1"), Mode::Replay)
            .with_version("9.9.9")
            .with_interval(Duration::from_millis(300));
        assert!(hb.beat(10, 1, 3));
        // Not due: nothing written, the earlier result stands.
        assert!(hb.beat(20, 1, 3));
        let mut c = Conn::open(&target, Duration::from_secs(2)).unwrap();
        let l = list(&mut c, "xwtest").unwrap();
        assert_eq!(l.sensors.len(), 1);
        let s = &l.sensors[0];
        assert_eq!(
            (s.name.as_str(), s.version.as_str(), s.mode.as_str()),
            ("hb1", "9.9.9", "replay")
        );
        assert_eq!((s.packets, s.alerts, s.events), (10, 1, 3));
        assert!(s.fleet_up);
        assert!((s.heartbeat_unix - unix_now()).abs() <= 2);

        // Redis goes away: the beat fails within the timeout, and is not retried at once.
        srv.kill();
        std::thread::sleep(Duration::from_millis(350));
        let t0 = Instant::now();
        assert!(!hb.beat(30, 2, 4));
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        let t0 = Instant::now();
        assert!(!hb.beat(31, 2, 4));
        assert!(
            t0.elapsed() < Duration::from_millis(50),
            "not due: no attempt"
        );

        // Redis is back: the next due beat reconnects.
        srv.restart().unwrap();
        std::thread::sleep(Duration::from_millis(350));
        hb.set_fleet_up(false);
        assert!(hb.beat(40, 2, 5));
        assert!(hb.final_beat(50, 3, 6), "final beats are never held back");
        let mut c = Conn::open(&target, Duration::from_secs(2)).unwrap();
        let s = list(&mut c, "xwtest").unwrap().sensors.remove(0);
        assert_eq!(
            (s.packets, s.alerts, s.events, s.fleet_up),
            (50, 3, 6, false)
        );
    }

    #[test]
    fn heartbeat_to_a_cluster() {
        if let Err(why) = testing::available() {
            eprintln!("SKIP heartbeat_to_a_cluster: {why}");
            return;
        }
        let cl = testing::RedisCluster::start(3).unwrap();
        let target = Target::Cluster(cl.urls());
        for name in ["c1", "c2"] {
            let mut hb = Heartbeat::new(cfg(target.clone(), name), Mode::Run);
            assert!(hb.final_beat(1, 0, 1));
        }
        let mut c = Conn::open(&target, Duration::from_secs(2)).unwrap();
        let l = list(&mut c, "xwtest").unwrap();
        let names: Vec<_> = l.sensors.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["c1", "c2"]);
    }
}
