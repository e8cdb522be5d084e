//! `xferwatch fleet status`: the heartbeats of every sensor of the configuration's fleet, as a
//! table or as one JSON array.

use crate::settings::Settings;
use std::fmt::Write as _;
use std::path::Path;
use xferwatch_fleet::status::{self, Listing, SensorStatus};
use xferwatch_fleet::Conn;

/// Runs the command; returns the exit status: 0 listed, 1 the configuration is not valid,
/// 2 it names no fleet or the fleet's Redis cannot be reached or read.
pub fn run(config: Option<&Path>, json: bool) -> u8 {
    let settings = match Settings::load(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xferwatch: configuration error: {e:#}");
            return 1;
        }
    };
    let source = config.map_or_else(
        || "the environment".to_string(),
        |p| p.display().to_string(),
    );
    let Some(fleet) = settings.fleet_config() else {
        eprintln!(
            "xferwatch fleet status: {source} has no fleet: set fleet.redis (one server) or \
             fleet.redis_cluster (a cluster) in its [fleet] section"
        );
        return 2;
    };
    let listing = Conn::open(&fleet.target, fleet.timeout)
        .and_then(|mut c| status::list(&mut c, &fleet.key_prefix));
    let listing = match listing {
        Ok(l) => l,
        Err(e) => {
            // The connection's errors already name the redacted URL; say it in any case, never
            // the password.
            eprintln!(
                "xferwatch fleet status: cannot read the fleet's Redis ({}): {}",
                fleet.target.describe(),
                redact_all(&format!("{e:#}"), &fleet.target)
            );
            return 2;
        }
    };
    let now = status::unix_now();
    if json {
        println!("{}", render_json(&listing, now));
    } else {
        print!("{}", render_table(&listing, now));
        if listing.sensors.is_empty() {
            eprintln!(
                "xferwatch fleet status: no heartbeat in {} at {}",
                status::sensors_key(&fleet.key_prefix),
                fleet.target.describe()
            );
        }
    }
    if listing.unreadable > 0 {
        eprintln!(
            "xferwatch fleet status: {} {} of {} {} not a heartbeat (skipped)",
            listing.unreadable,
            if listing.unreadable == 1 {
                "entry"
            } else {
                "entries"
            },
            status::sensors_key(&fleet.key_prefix),
            if listing.unreadable == 1 { "is" } else { "are" }
        );
    }
    0
}

/// `text` with every URL of `target` replaced by its redacted form, in case an error quotes one.
fn redact_all(text: &str, target: &xferwatch_fleet::Target) -> String {
    let urls: Vec<&String> = match target {
        xferwatch_fleet::Target::Single(u) => vec![u],
        xferwatch_fleet::Target::Cluster(v) => v.iter().collect(),
    };
    urls.into_iter().fold(text.to_string(), |t, u| {
        t.replace(u.as_str(), &xferwatch_fleet::conn::redact(u))
    })
}

/// Data from Redis on a terminal: control characters become `?`.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `2024-01-01 12:00:00 UTC`.
fn utc(unix: i64) -> String {
    let (y, m, d) = xferwatch_events::civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// `12 s ago`, `5 min ago`, `3 h ago`, `4 d ago`.
fn ago(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s ago"),
        120..7_200 => format!("{} min ago", secs / 60),
        7_200..172_800 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// `ok`, `stale` (no heartbeat for 3 intervals) or `fleet down` (the sensor cannot share its
/// detection state).
fn state(s: &SensorStatus, now: i64) -> &'static str {
    if s.is_stale(now) {
        "stale"
    } else if !s.fleet_up {
        "fleet down"
    } else {
        "ok"
    }
}

/// The table: a header line, then one line per sensor, sorted by name.
pub fn render_table(listing: &Listing, now: i64) -> String {
    let header = [
        "NAME",
        "VERSION",
        "MODE",
        "LAST HEARTBEAT",
        "PACKETS",
        "ALERTS",
        "STATE",
    ];
    let mut rows: Vec<[String; 7]> = vec![header.map(str::to_string)];
    for s in &listing.sensors {
        rows.push([
            printable(&s.name),
            printable(&s.version),
            printable(&s.mode),
            format!("{} ({})", utc(s.heartbeat_unix), ago(s.age_secs(now))),
            s.packets.to_string(),
            s.alerts.to_string(),
            state(s, now).to_string(),
        ]);
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            let w = widths[i];
            // Counts right-aligned, the rest left-aligned; two spaces between columns.
            let _ = if i == 4 || i == 5 {
                write!(line, "{cell:>w$}  ")
            } else {
                write!(line, "{cell:<w$}  ")
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One JSON array: every heartbeat's fields, with `age_secs` and `stale` at `now`.
pub fn render_json(listing: &Listing, now: i64) -> String {
    let items: Vec<serde_json::Value> = listing
        .sensors
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s).unwrap_or(serde_json::Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("age_secs".into(), s.age_secs(now).into());
                o.insert("stale".into(), s.is_stale(now).into());
            }
            v
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use xferwatch_fleet::status::STALE_AFTER;

    fn s(name: &str, hb: i64, up: bool) -> SensorStatus {
        SensorStatus {
            name: name.into(),
            version: "0.1.0".into(),
            started_unix: 0,
            heartbeat_unix: hb,
            packets: 1234,
            alerts: 5,
            events: 6,
            fleet_up: up,
            mode: "run".into(),
        }
    }

    #[test]
    fn table_marks_stale_sensors() {
        let now = 1_704_067_200 + 60;
        let l = Listing {
            sensors: vec![
                s("a", now - 12, true),
                s("b\u{1b}[31m", now - 16, true),
                s("c", now - 1, false),
            ],
            unreadable: 0,
        };
        let t = render_table(&l, now);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("NAME "), "{t}");
        assert!(
            lines[1].contains("2024-01-01 00:00:48 UTC (12 s ago)") && lines[1].ends_with("ok"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("b?[31m") && lines[2].ends_with("stale"),
            "{t}"
        );
        assert!(lines[3].ends_with("fleet down"), "{t}");
        assert!(lines[1].contains(" 1234 "), "{t}");
        let j: serde_json::Value = serde_json::from_str(&render_json(&l, now)).unwrap();
        assert_eq!(j[1]["stale"], true);
        assert_eq!(j[0]["age_secs"], 12);
        assert_eq!(j[0]["packets"], 1234);
        assert_eq!(STALE_AFTER.as_secs(), 15);
    }

    #[test]
    fn ages_and_times() {
        assert_eq!(ago(0), "0 s ago");
        assert_eq!(ago(119), "119 s ago");
        assert_eq!(ago(600), "10 min ago");
        assert_eq!(ago(10_800), "3 h ago");
        assert_eq!(ago(u64::MAX), format!("{} d ago", u64::MAX / 86_400));
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
        let _ = utc(i64::MIN);
        let _ = utc(i64::MAX);
    }

    #[test]
    fn passwords_are_redacted_in_errors() {
        let t = xferwatch_fleet::Target::Single("redis://:pw@h:1/0".into());
        assert_eq!(
            redact_all("failed redis://:pw@h:1/0 x", &t),
            "failed redis://:***@h:1/0 x"
        );
    }
}

/// The daemon's heartbeats: a thread of their own writes what the main loop last handed over,
/// so that a Redis that is away (a connect timeout per try) never holds the main loop up.
pub struct Beats {
    latest: std::sync::Arc<std::sync::Mutex<Totals>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<status::Heartbeat>>,
}

/// Packets, alerts, events, and whether every worker's fleet link is up.
#[derive(Clone, Copy, Default)]
struct Totals(u64, u64, u64, bool);

fn totals(
    w: &[xferwatch_engine::WorkerTotals],
    c: &[xferwatch_capture::live::CaptureReport],
) -> Totals {
    let mut fleet = xferwatch_engine::fleet::FleetStats::default();
    for t in w {
        fleet.merge(&t.fleet);
    }
    Totals(
        c.iter().map(|r| r.ingest.frames).sum(),
        w.iter().map(|t| t.detect.alerts.iter().sum::<u64>()).sum(),
        w.iter()
            .map(|t| t.events_by_type.values().sum::<u64>())
            .sum(),
        fleet.workers > 0 && fleet.up == fleet.workers,
    )
}

impl Beats {
    pub fn start(cfg: xferwatch_fleet::FleetConfig) -> Beats {
        use std::sync::atomic::Ordering;
        let latest = std::sync::Arc::new(std::sync::Mutex::new(Totals::default()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut hb = status::Heartbeat::new(cfg, status::Mode::Run);
        let (l, s) = (latest.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("xw-heartbeat".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    let t = *l.lock().unwrap_or_else(|e| e.into_inner());
                    hb.set_fleet_up(t.3);
                    hb.beat(t.0, t.1, t.2);
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                hb
            })
            .ok();
        Beats {
            latest,
            stop,
            thread,
        }
    }

    /// The totals the next heartbeat reports.
    pub fn update(
        &self,
        w: &[xferwatch_engine::WorkerTotals],
        c: &[xferwatch_capture::live::CaptureReport],
    ) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = totals(w, c);
    }

    /// The last heartbeat, at the stop.
    pub fn finish(
        mut self,
        w: &[xferwatch_engine::WorkerTotals],
        c: &[xferwatch_capture::live::CaptureReport],
    ) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(mut hb) = self.thread.take().and_then(|t| t.join().ok()) {
            let t = totals(w, c);
            hb.set_fleet_up(t.3);
            hb.final_beat(t.0, t.1, t.2);
        }
    }
}
