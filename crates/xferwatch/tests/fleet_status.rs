//! `xferwatch fleet status` against a real `redis-server`: heartbeats written with the fleet
//! crate, listed as a table and as JSON, a stale sensor marked; and the errors for a
//! configuration without a fleet and for a Redis that cannot be reached.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use xferwatch_fleet::status::{self, SensorStatus};
use xferwatch_fleet::{testing, Conn, Target};

fn skip(what: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP {what}: {why}");
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xferwatch-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(dir: &Path, fleet: &str) -> PathBuf {
    let p = dir.join("cfg.toml");
    std::fs::write(
        &p,
        format!("[network]\ninternal = [\"10.0.0.0/8\"]\n\n[sensor]\nname = \"cli\"\n\n{fleet}\n"),
    )
    .unwrap();
    p
}

fn status_cmd(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xferwatch"));
    c.args(["fleet", "status"]).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("XFERWATCH__") {
            c.env_remove(k);
        }
    }
    c.output().unwrap()
}

fn heartbeat(name: &str, age: i64, packets: u64, alerts: u64) -> SensorStatus {
    let now = status::unix_now();
    SensorStatus {
        name: name.into(),
        version: "0.1.0".into(),
        started_unix: now - 3600,
        heartbeat_unix: now - age,
        packets,
        alerts,
        events: packets / 10,
        fleet_up: true,
        mode: "run".into(),
    }
}

#[test]
fn lists_the_fleet_as_a_table_and_as_json() {
    if let Err(why) = testing::available() {
        skip("lists_the_fleet_as_a_table_and_as_json", &why);
        return;
    }
    let srv = testing::RedisServer::start().unwrap();
    let mut c = Conn::open(&Target::Single(srv.url()), Duration::from_secs(2)).unwrap();
    status::beat(&mut c, "fl", &heartbeat("sensor-b", 2, 123_456, 7)).unwrap();
    status::beat(&mut c, "fl", &heartbeat("sensor-a", 60, 42, 0)).unwrap();
    srv.cli(&["HSET", "fl:sensors", "garbage", "not json"])
        .unwrap();
    let dir = tmpdir("fleet-status");
    let cfg = config(
        &dir,
        &format!("[fleet]\nredis = \"{}\"\nkey_prefix = \"fl\"\n", srv.url()),
    );

    let out = status_cmd(&["-c", cfg.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for col in [
        "NAME",
        "VERSION",
        "MODE",
        "LAST HEARTBEAT",
        "PACKETS",
        "ALERTS",
    ] {
        assert!(lines[0].contains(col), "{col}: {stdout}");
    }
    // Sorted by name; sensor-a is 60 s silent, over 3 heartbeat intervals.
    assert!(lines[1].starts_with("sensor-a "), "{stdout}");
    assert!(
        lines[1].contains(" 42 ") && lines[1].ends_with("stale"),
        "{stdout}"
    );
    assert!(lines[1].contains("UTC (6"), "{stdout}");
    assert!(lines[2].starts_with("sensor-b "), "{stdout}");
    assert!(
        lines[2].contains(" 123456 ") && lines[2].ends_with("ok"),
        "{stdout}"
    );
    assert!(lines[2].contains(" s ago)"), "{stdout}");
    assert!(
        stderr.contains("1 entry of fl:sensors is not a heartbeat"),
        "{stderr}"
    );

    let out = status_cmd(&["-c", cfg.to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[0]["name"], "sensor-a");
    assert_eq!(arr[0]["stale"], true);
    assert_eq!(arr[0]["packets"], 42);
    assert_eq!(arr[1]["name"], "sensor-b");
    assert_eq!(arr[1]["stale"], false);
    assert_eq!(arr[1]["packets"], 123_456);
    assert_eq!(arr[1]["alerts"], 7);
    assert_eq!(arr[1]["mode"], "run");

    // Another prefix: an empty fleet is no error.
    let cfg2 = config(
        &dir,
        &format!(
            "[fleet]\nredis = \"{}\"\nkey_prefix = \"none\"\n",
            srv.url()
        ),
    );
    let out = status_cmd(&["-c", cfg2.to_str().unwrap(), "--json"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreachable_redis_is_exit_2_without_the_password() {
    let dir = tmpdir("fleet-status-down");
    // Port 1 on loopback: nobody listens, the connection is refused at once.
    let cfg = config(
        &dir,
        "[fleet]\nredis = \"redis://:hunter2@127.0.0.1:1/0\"\ntimeout = \"1s\"\n",
    );
    let out = status_cmd(&["-c", cfg.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("redis://:***@127.0.0.1:1/0"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(out.stdout.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_configuration_without_a_fleet_names_the_keys() {
    let dir = tmpdir("fleet-status-none");
    let cfg = config(&dir, "");
    let out = status_cmd(&["-c", cfg.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("fleet.redis") && stderr.contains("fleet.redis_cluster"),
        "{stderr}"
    );
    assert!(stderr.contains("cfg.toml"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
