//! A fleet end to end: real `redis-server` processes (one alone, and a 3-master cluster), the real
//! binary, and a capture written here of 30 hours of TFTP uploads from six internal hosts to 40
//! external ones. Split over three sensors as a packet broker would (by IP pair), the sensors of a
//! fleet must raise exactly the alerts one sensor raises on everything — the volume spread over
//! many destinations (1173006), the baselines (1173004) and the roll-ups (1173005) included —
//! where three sensors on their own miss them. Redis killed in the middle of a replay loses no
//! alert and no event.

mod synth;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use synth::{tftp_upload_to, Pcap, SEC};
use xferwatch_fleet::testing::{available, RedisCluster, RedisServer};

const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
/// 2026-01-01T00:00:00Z.
const BASE: i64 = 1_767_225_600 * SEC;
const KIB: usize = 1024;
const SHARES: usize = 3;

use synth::bin;

fn tmpdir(name: &str) -> PathBuf {
    synth::tmpdir("fleet", name)
}

fn skip(test: &str) -> bool {
    match available() {
        Ok(()) => false,
        Err(why) => {
            eprintln!("SKIP {test}: {why}");
            true
        }
    }
}

fn host(n: u8) -> [u8; 4] {
    [10, 0, 0, n]
}

fn ext(n: u8) -> [u8; 4] {
    [203, 0, 113, n]
}

/// The sensor of the three that the broker gives an IP pair (the same both ways).
fn share(client: [u8; 4], server: [u8; 4]) -> usize {
    let (a, b) = (client.min(server), client.max(server));
    let h = u32::from_be_bytes(a).wrapping_mul(0x9e37_79b1)
        ^ u32::from_be_bytes(b).wrapping_mul(0x85eb_ca77);
    (h.rotate_left(13) % SHARES as u32) as usize
}

/// The capture, whole and as the broker splits it, and where hour 20 starts in the whole one.
struct Captures {
    whole: Pcap,
    shares: Vec<Pcap>,
    hour20: usize,
}

/// 30 hours of steady uploads (8000 bytes an hour per host, each hour to another external host),
/// then at hour 28-29:
/// - host 1: 5 × 40 KiB to 5 external hosts (above its baseline: 1173004);
/// - host 2: 12 × 60 KiB to 12 external hosts: none above 100 KiB, no pair twice, together above
///   the 512 KiB host roll-up (1173006, and 1173004);
/// - host 3: 3 × 50 KiB to one external host (the pair roll-up, 1173005, and 1173004);
/// - host 4: one 150 KiB upload (1173001, and 1173004).
fn captures() -> Captures {
    let mut c = Captures {
        whole: Pcap::new(),
        shares: (0..SHARES).map(|_| Pcap::new()).collect(),
        hour20: 0,
    };
    let mut n = 0u16;
    let mut up = |c: &mut Captures, at: i64, h: u8, e: u8, size: usize| {
        n += 1;
        tftp_upload_to(&mut c.whole, at, host(h), ext(e), n, size);
        tftp_upload_to(
            &mut c.shares[share(host(h), ext(e))],
            at,
            host(h),
            ext(e),
            n,
            size,
        );
    };
    for hour in 0..30i64 {
        if hour == 20 {
            c.hour20 = c.whole.bytes().len();
        }
        let t = BASE + hour * HOUR + 123_457;
        for h in 1..=6u8 {
            let e = ((u64::from(h) * 7 + hour as u64) % 40 + 1) as u8;
            up(&mut c, t + i64::from(h) * 5 * MIN, h, e, 8000);
        }
        if hour == 28 {
            for i in 0..5 {
                up(&mut c, t + (31 + i) * MIN, 1, 11 + i as u8, 40 * KIB);
            }
        }
        if hour == 29 {
            for i in 0..12 {
                up(&mut c, t + (31 + i) * MIN, 2, 21 + i as u8, 60 * KIB);
            }
            for i in 0..3 {
                up(&mut c, t + (45 + i) * MIN, 3, 7, 50 * KIB);
            }
            up(&mut c, t + 50 * MIN, 4, 9, 150 * KIB);
        }
    }
    c
}

fn config(dir: &Path, name: &str, fleet: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            "[network]\n\
             internal = [\"10.0.0.0/8\"]\n\
             [sensor]\n\
             name = \"{name}\"\n\
             [detect.large_outbound]\n\
             threshold_bytes = 102400\n\
             [detect.rollup]\n\
             window = \"1h\"\n\
             [detect.baseline]\n\
             enabled = true\n\
             window = \"1h\"\n\
             learning_windows = 24\n\
             k = 3.0\n\
             floor_bytes = 51200\n\
             [detect.host_rollup]\n\
             threshold_bytes = \"512KiB\"\n\
             window = \"1h\"\n\
             {fleet}"
        ),
    )
    .unwrap();
    p
}

fn fleet_single(url: &str, prefix: &str) -> String {
    format!("[fleet]\nredis = \"{url}\"\nkey_prefix = \"{prefix}\"\n")
}

fn replay_cmd(cfg: &Path, pcap: &Path, eve: &Path) -> Command {
    let mut c = bin();
    c.arg("replay")
        .arg("-q")
        .arg("--force")
        .arg("-c")
        .arg(cfg)
        .arg("--eve")
        .arg(eve)
        .arg(pcap);
    c
}

fn events(eve: &Path) -> Vec<Value> {
    std::fs::read_to_string(eve)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What an alert is about, as the same alert would be on any sensor: its signature and internal
/// host, with the external host for the per-session and per-pair signatures.
fn key(e: &Value) -> (u64, String, String) {
    let sid = e["alert"]["signature_id"].as_u64().unwrap();
    let x = &e["xfer"];
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    match sid {
        1_173_001 | 1_173_005 => (sid, s(&x["internal_host"]), s(&x["external_host"])),
        1_173_004 | 1_173_006 => (sid, s(&x["internal_host"]), "-".into()),
        _ => (sid, s(&e["src_ip"]), s(&e["dest_ip"])),
    }
}

/// The alerts of some EVE files, counted by key.
fn alerts(eves: &[&Path]) -> BTreeMap<(u64, String, String), usize> {
    let mut m = BTreeMap::new();
    for eve in eves {
        for e in events(eve) {
            if e["event_type"] == "alert" {
                *m.entry(key(&e)).or_insert(0) += 1;
            }
        }
    }
    m
}

fn stats(eve: &Path) -> Value {
    events(eve)
        .into_iter()
        .rev()
        .find(|e| e["event_type"] == "stats")
        .expect("a stats record")["xfer"]
        .clone()
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: exit {:?}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn has(m: &BTreeMap<(u64, String, String), usize>, sid: u64, host: &str) -> bool {
    m.keys().any(|k| k.0 == sid && k.1 == host)
}

/// One sensor on the whole capture, without a fleet: the reference. It raises what the
/// scenario was written for.
fn reference(dir: &Path, c: &Captures) -> BTreeMap<(u64, String, String), usize> {
    let whole = c.whole.save(dir.join("whole.pcap"));
    let eve = dir.join("one.json");
    let o = replay_cmd(&config(dir, "one", ""), &whole, &eve)
        .output()
        .unwrap();
    ok(&o, "one sensor");
    let one = alerts(&[&eve]);
    assert!(has(&one, 1_173_006, "10.0.0.2"), "{one:?}");
    assert!(has(&one, 1_173_005, "10.0.0.3"), "{one:?}");
    assert!(has(&one, 1_173_001, "10.0.0.4"), "{one:?}");
    for h in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"] {
        assert!(has(&one, 1_173_004, h), "{h}: {one:?}");
    }
    assert!(
        !has(&one, 1_173_004, "10.0.0.5"),
        "steady hosts stay quiet: {one:?}"
    );
    one
}

/// Three sensors at once, each on its share, with `fleet` (a `[fleet]` section, the sensor's
/// name substituted for `{name}`); returns their EVE files.
fn three_sensors(dir: &Path, c: &Captures, tag: &str, fleet: &str) -> Vec<PathBuf> {
    let mut children: Vec<(Child, PathBuf)> = Vec::new();
    for (i, p) in c.shares.iter().enumerate() {
        let name = format!("{tag}{i}");
        let pcap = p.save(dir.join(format!("{name}.pcap")));
        let eve = dir.join(format!("{name}.json"));
        let cfg = config(dir, &name, &fleet.replace("{name}", &name));
        let child = replay_cmd(&cfg, &pcap, &eve)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        children.push((child, eve));
    }
    children
        .into_iter()
        .map(|(child, eve)| {
            let o = child.wait_with_output().unwrap();
            ok(&o, "a sensor of three");
            eve
        })
        .collect()
}

#[test]
fn three_sensors_of_a_fleet_raise_what_one_sensor_raises() {
    if skip("three_sensors_of_a_fleet_raise_what_one_sensor_raises") {
        return;
    }
    let dir = tmpdir("three");
    let c = captures();
    // Every share has traffic, and host 2's spread goes to all three.
    for s in 0..SHARES {
        assert!(
            (21..33).any(|e| share(host(2), ext(e)) == s),
            "share {s} has none of host 2's spread"
        );
    }
    let one = reference(&dir, &c);

    // Alone, the three sensors miss the spread volume and the baselines.
    let alone = three_sensors(&dir, &c, "alone", "");
    let alone: Vec<&Path> = alone.iter().map(|p| p.as_path()).collect();
    let alone = alerts(&alone);
    assert!(!has(&alone, 1_173_006, "10.0.0.2"), "{alone:?}");
    assert_ne!(alone, one);

    // With a fleet they raise exactly its alerts: each once, by one of them; and the stream
    // holds every event of the three.
    let srv = RedisServer::start().unwrap();
    let with_stream = format!(
        "{}[output.redis]\nenabled = true\nmode = \"stream\"\nkey = \"eve\"\n\
         spool_dir = \"{}/spool-{{name}}\"\n",
        fleet_single(&srv.url(), "t1"),
        dir.display()
    );
    let eves = three_sensors(&dir, &c, "s", &with_stream);
    let paths: Vec<&Path> = eves.iter().map(|p| p.as_path()).collect();
    assert_eq!(alerts(&paths), one);
    let mut written: Vec<String> = eves
        .iter()
        .flat_map(|e| {
            std::fs::read_to_string(e)
                .unwrap()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    let listed = srv.cli(&["--raw", "XRANGE", "eve", "-", "+"]).unwrap();
    let mut in_stream: Vec<String> = listed
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(String::from)
        .collect();
    written.sort();
    in_stream.sort();
    assert_eq!(in_stream.len(), written.len());
    assert!(
        in_stream == written,
        "the stream holds the three EVE files' lines"
    );
    for eve in &eves {
        let st = stats(eve);
        assert_eq!(st["fleet_up"], 1, "{st}");
        assert_eq!(st["fleet_errors"], 0, "{st}");
        assert_eq!(st["fleet_local_alerts"], 0, "{st}");
        assert!(st["fleet_round_trips"].as_u64().unwrap() > 0, "{st}");
        for e in events(eve) {
            assert!(e["host"].as_str().unwrap().starts_with('s'), "{e}");
            if e["event_type"] == "alert" {
                let sid = e["alert"]["signature_id"].as_u64().unwrap();
                let fleet = e["xfer"]["fleet"] == true;
                assert_eq!(
                    fleet,
                    [1_173_004, 1_173_005, 1_173_006].contains(&sid),
                    "{e}"
                );
            }
        }
    }
    // Every sensor reported its heartbeat.
    let o = bin()
        .args(["fleet", "status", "--json", "-c"])
        .arg(config(&dir, "status", &fleet_single(&srv.url(), "t1")))
        .output()
        .unwrap();
    ok(&o, "fleet status");
    let listed: Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["s0", "s1", "s2"]);
    // The same again, with a fresh prefix: the same alerts (packet time, not arrival order).
    let again = three_sensors(&dir, &c, "s", &fleet_single(&srv.url(), "t2"));
    let paths: Vec<&Path> = again.iter().map(|p| p.as_path()).collect();
    assert_eq!(alerts(&paths), one);
}

#[test]
fn three_sensors_on_a_redis_cluster() {
    if skip("three_sensors_on_a_redis_cluster") {
        return;
    }
    let dir = tmpdir("cluster");
    let c = captures();
    let one = reference(&dir, &c);
    let cluster = RedisCluster::start(3).unwrap();
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    let fleet = format!(
        "[fleet]\nredis_cluster = [{}]\nkey_prefix = \"xw\"\n",
        nodes.join(", ")
    );
    let eves = three_sensors(&dir, &c, "c", &fleet);
    let paths: Vec<&Path> = eves.iter().map(|p| p.as_path()).collect();
    assert_eq!(alerts(&paths), one);
    // The hosts' keys spread over the masters.
    let held: Vec<usize> = cluster
        .nodes
        .iter()
        .map(|n| n.cli(&["DBSIZE"]).unwrap().trim().parse().unwrap())
        .collect();
    assert!(held.iter().filter(|&&n| n > 0).count() >= 2, "{held:?}");
}

/// One sensor with a fleet and events to a Redis stream, its capture fed through a pipe: Redis is
/// killed after the first 20 hours went in and started again before the end. The alerts are the
/// reference's (raised from the sensor's own state while Redis was away, and not raised again
/// when its updates were delivered), and the stream holds every event of the EVE file.
#[test]
fn redis_killed_mid_replay_loses_no_alert_and_no_event() {
    if skip("redis_killed_mid_replay_loses_no_alert_and_no_event") {
        return;
    }
    let dir = tmpdir("kill");
    let c = captures();
    let one = reference(&dir, &c);
    let mut srv = RedisServer::start_persistent().unwrap();
    let fifo = dir.join("in.pcap");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let eve = dir.join("kill.json");
    let spool = dir.join("spool");
    let cfg = config(
        &dir,
        "k",
        &format!(
            "{}[output.redis]\nenabled = true\nmode = \"stream\"\nkey = \"eve\"\nbatch = 16\n\
             spool_dir = \"{}\"\n",
            fleet_single(&srv.url(), "k"),
            spool.display()
        ),
    );
    let child = replay_cmd(&cfg, &fifo, &eve)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let bytes = c.whole.bytes();
    pipe.write_all(&bytes[..c.hour20]).unwrap();
    pipe.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    srv.kill();
    pipe.write_all(&bytes[c.hour20..]).unwrap();
    pipe.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    srv.restart().unwrap();
    drop(pipe);
    let o = child.wait_with_output().unwrap();
    ok(&o, "the replay through Redis's death");
    assert_eq!(alerts(&[&eve]), one);
    let st = stats(&eve);
    assert!(st["fleet_errors"].as_u64().unwrap() >= 1, "{st}");
    assert!(st["fleet_local_alerts"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["fleet_ops_dropped"], 0, "{st}");
    // Every event reached the stream, in order (a batch cut by the kill may arrive twice).
    let lines: Vec<String> = std::fs::read_to_string(&eve)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let listed = srv.cli(&["--raw", "XRANGE", "eve", "-", "+"]).unwrap();
    let in_stream: Vec<&str> = listed.lines().filter(|l| l.starts_with('{')).collect();
    let mut at = 0;
    for l in &lines {
        match in_stream[at..].iter().position(|s| s == l) {
            Some(p) => at += p + 1,
            None => panic!(
                "not in the stream (in order): {l}\n{} of {} lines in the stream",
                in_stream.len(),
                lines.len()
            ),
        }
    }
}

/// A replay whose fleet's Redis cannot be reached fails before reading anything, naming the key
/// and the URL (never the password); with --fleet-optional it replays on its own state and
/// raises what one sensor without a fleet raises.
#[test]
fn unreachable_redis_fails_fast_unless_fleet_optional() {
    let dir = tmpdir("unreachable");
    let c = captures();
    let whole = c.whole.save(dir.join("whole.pcap"));
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config(
        &dir,
        "u",
        &fleet_single(&format!("redis://:s3cret@127.0.0.1:{port}/0"), "u"),
    );
    let eve = dir.join("u.json");
    let t0 = std::time::Instant::now();
    let o = replay_cmd(&cfg, &whole, &eve).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    assert!(err.contains("fleet.redis"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert!(!eve.exists(), "nothing is written");

    let o = replay_cmd(&cfg, &whole, &eve)
        .arg("--fleet-optional")
        .output()
        .unwrap();
    ok(&o, "--fleet-optional");
    let one = dir.join("one.json");
    let o = replay_cmd(&config(&dir, "one", ""), &whole, &one)
        .output()
        .unwrap();
    ok(&o, "no fleet");
    assert_eq!(alerts(&[&eve]), alerts(&[&one]));
    let st = stats(&eve);
    assert_eq!(st["fleet_up"], 0, "{st}");
    assert!(st["fleet_local_alerts"].as_u64().unwrap() >= 5, "{st}");
}

/// `rediss://`: a redis-server serving TLS only, with a certificate from a test CA that the
/// sensor trusts through SSL_CERT_FILE. The fleet works over it (and a server whose certificate
/// does not verify is refused).
#[test]
fn a_fleet_over_tls() {
    if skip("a_fleet_over_tls") {
        return;
    }
    let dir = tmpdir("tls");
    let ssl = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let made = ssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=xferwatch test CA",
    ]) && ssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && ssl(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    if !made {
        eprintln!("SKIP a_fleet_over_tls: openssl cannot make the test certificates");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args(["--tls-cert-file", "srv.pem", "--tls-key-file", "srv.key"])
        .args(["--tls-ca-cert-file", "ca.pem", "--tls-auth-clients", "no"])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(&dir)
        .current_dir(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let server = Kill(&mut server);
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > std::time::Duration::from_secs(5) {
            eprintln!("SKIP a_fleet_over_tls: this redis-server does not serve TLS");
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let c = captures();
    let whole = c.whole.save(dir.join("whole.pcap"));
    let one = reference(&dir, &c);
    let cfg = config(
        &dir,
        "tls",
        &fleet_single(&format!("rediss://127.0.0.1:{port}/0"), "tls"),
    );
    let eve = dir.join("tls.json");
    let o = replay_cmd(&cfg, &whole, &eve)
        .env("SSL_CERT_FILE", dir.join("ca.pem"))
        .output()
        .unwrap();
    ok(&o, "a replay over TLS");
    assert_eq!(alerts(&[&eve]), one);
    let st = stats(&eve);
    assert_eq!(st["fleet_up"], 1, "{st}");
    assert!(st["fleet_round_trips"].as_u64().unwrap() > 0, "{st}");
    // Without the CA, the certificate does not verify: refused, before reading.
    let o = replay_cmd(&cfg, &whole, &dir.join("refused.json"))
        .env("SSL_CERT_FILE", dir.join("srv.key"))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    drop(server);
}

/// Redis killed after the first 20 hours went in, and not back before the end: the alerts the
/// sensor raised on its own state stand, the ones whose updates were on their way when Redis
/// died included (held until the fleet had them, written when it could not).
#[test]
fn redis_gone_for_good_mid_replay_loses_no_alert() {
    if skip("redis_gone_for_good_mid_replay_loses_no_alert") {
        return;
    }
    let dir = tmpdir("gone");
    let c = captures();
    let one = reference(&dir, &c);
    let mut srv = RedisServer::start().unwrap();
    let fifo = dir.join("in.pcap");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let eve = dir.join("gone.json");
    let cfg = config(&dir, "g", &fleet_single(&srv.url(), "g"));
    let child = replay_cmd(&cfg, &fifo, &eve)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let bytes = c.whole.bytes();
    pipe.write_all(&bytes[..c.hour20]).unwrap();
    pipe.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    srv.kill();
    pipe.write_all(&bytes[c.hour20..]).unwrap();
    drop(pipe);
    let o = child.wait_with_output().unwrap();
    ok(&o, "the replay after Redis's death");
    assert_eq!(alerts(&[&eve]), one);
    let st = stats(&eve);
    assert_eq!(st["fleet_up"], 0, "{st}");
    assert!(st["fleet_local_alerts"].as_u64().unwrap() >= 5, "{st}");
}
