//! End-to-end: `xferwatch replay` with `[output.redis]` sends every EVE line to a real
//! `redis-server` (skipped when it is not installed), and spools them while Redis is down.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use xferwatch_fleet::testing::{available, RedisServer};
use xferwatch_fleet::{redis, Conn, Target};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xferwatch-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bundled() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("pcaps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    v
}

/// pcaps/demo.toml with `[output.redis]` to `url`, spooling in `dir/spool`.
fn config(dir: &Path, url: &str) -> PathBuf {
    let mut c = std::fs::read_to_string(root().join("pcaps/demo.toml")).unwrap();
    c.push_str(&format!(
        "\n[output.redis]\nenabled = true\nurl = \"{url}\"\nmode = \"stream\"\nkey = \"eve\"\n\
         maxlen = 0\nbatch = 32\nspool_dir = \"{}\"\n",
        dir.join("spool").display()
    ));
    let p = dir.join("sensor.toml");
    std::fs::write(&p, c).unwrap();
    p
}

fn replay(cfg: &Path, eve: &Path) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xferwatch"));
    c.arg("replay")
        .arg("-q")
        .arg("--force")
        .arg("-c")
        .arg(cfg)
        .arg("--eve")
        .arg(eve)
        .args(bundled());
    for (k, _) in std::env::vars() {
        if k.starts_with("XFERWATCH__") {
            c.env_remove(k);
        }
    }
    c.output().unwrap()
}

fn lines(eve: &Path) -> Vec<String> {
    std::fs::read_to_string(eve)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn stream(s: &RedisServer) -> Vec<String> {
    let mut c = Conn::open(&Target::Single(s.url()), Duration::from_secs(2)).unwrap();
    let v: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("eve")
        .arg("-")
        .arg("+")
        .query(c.link())
        .unwrap();
    v.into_iter()
        .map(|(_, f)| f.into_iter().map(|(_, v)| v).collect::<String>())
        .collect()
}

fn spooled_lines(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir.join("spool")) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "spool"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap().lines().count())
        .sum()
}

#[test]
fn replay_sends_the_eve_lines_to_a_stream() {
    if let Err(why) = available() {
        eprintln!("SKIP replay_sends_the_eve_lines_to_a_stream: {why}");
        return;
    }
    let s = RedisServer::start().unwrap();
    let dir = tmpdir("redis-stream");
    let cfg = config(&dir, &s.url());
    let eve = dir.join("out.json");
    let out = replay(&cfg, &eve);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = lines(&eve);
    assert!(want.len() > 20, "{} events", want.len());
    assert_eq!(
        stream(&s),
        want,
        "the stream holds the EVE file's lines, in order"
    );
    assert_eq!(spooled_lines(&dir), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_spools_while_redis_is_down_and_the_next_run_sends_it_first() {
    if let Err(why) = available() {
        eprintln!("SKIP replay_spools_while_redis_is_down_and_the_next_run_sends_it_first: {why}");
        return;
    }
    let mut s = RedisServer::start().unwrap();
    let dir = tmpdir("redis-down");
    let cfg = config(&dir, &s.url());
    s.kill();
    let eve1 = dir.join("first.json");
    let out = replay(&cfg, &eve1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "spooled events are not lost: {err}"
    );
    let first = lines(&eve1);
    assert_eq!(spooled_lines(&dir), first.len(), "every event is spooled");
    assert!(
        err.contains(&format!("{} event(s)", first.len())) && err.contains("spool"),
        "{err}"
    );
    s.restart().unwrap();
    let eve2 = dir.join("second.json");
    let out = replay(&cfg, &eve2);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = first;
    want.extend(lines(&eve2));
    assert_eq!(
        stream(&s),
        want,
        "the spool first, then the run's own events"
    );
    assert_eq!(spooled_lines(&dir), 0, "the spool is empty once delivered");
    let _ = std::fs::remove_dir_all(&dir);
}
