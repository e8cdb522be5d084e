//! Live-capture tests of `xferwatch run`: the daemon captures in a throw-away network namespace
//! while `tcpreplay` sends a bundled capture into it, and what it reports is compared with
//! `xferwatch replay` of the same file.
//!
//! Root only. Without root, or without a tool a test needs (ip, tcpreplay, curl, kill,
//! prometheus, promtool, systemd-analyze), the test prints `skipped: <why>` and passes.
//! `make deps` (as root) installs the tools; `make test-live` runs these tests.
//!
//! The rig: a network namespace `xwt-<pid>-<n>` with `lo` up and a veth pair `xwcap`/`xwsend`
//! (IPv6 off, no addresses, no route anywhere), so the only frames on the link are the ones
//! tcpreplay sends out of `xwsend`; the daemon captures on `xwcap`. Everything runs inside the
//! namespace (`ip netns exec`), the metrics endpoint and Prometheus on the namespace's own
//! loopback. A Drop guard kills what the test started and deletes the namespace, also when a
//! test panics. Every wait is bounded. Working files are in `target/tmp/xwlive-*` (kept when a
//! test fails, removed otherwise).
//!
//! The daemon binary is the one Cargo built; `XFERWATCH_LIVE_BIN` may name another build of it.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

const CAP_IF: &str = "xwcap";
const SEND_IF: &str = "xwsend";
/// Metrics address of the daemon inside the namespace (each namespace has its own loopback).
const METRICS: &str = "127.0.0.1:9727";
/// Web address of Prometheus inside the namespace.
const PROM_WEB: &str = "127.0.0.1:9090";

/// The live tests share two cores and measure timing-sensitive things: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
static SEQ: AtomicUsize = AtomicUsize::new(0);

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn pcap(name: &str) -> PathBuf {
    repo().join("pcaps").join(name)
}

/// The daemon under test.
fn daemon_bin() -> PathBuf {
    match std::env::var_os("XFERWATCH_LIVE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_xferwatch")),
    }
}

/// The binary used for the reference replays.
fn replay_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_xferwatch"))
}

// ------------------------------------------------------------------------------ preflight --

fn skip(test: &str, why: &str) {
    // Straight to the process's standard error, past the test harness's capture, so that
    // `make test`'s skip summary sees it.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Paths of the external tools a test needs.
struct Tools(BTreeMap<&'static str, PathBuf>);

impl Tools {
    fn get(&self, name: &str) -> &Path {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("tool {name} was not asked for in preflight"))
    }
}

/// Root and the named tools, or a "skipped" line and None.
fn preflight(test: &str, needs: &[&'static str]) -> Option<Tools> {
    if !is_root() {
        skip(
            test,
            "needs root (network namespaces, packet capture); run `sudo make test-live`",
        );
        return None;
    }
    let mut tools = BTreeMap::new();
    for &name in needs {
        match find_tool(name) {
            Some(p) => {
                tools.insert(name, p);
            }
            None => {
                let pkg = match name {
                    "ip" => "iproute2",
                    "promtool" => "prometheus",
                    "kill" => "procps",
                    other => other,
                };
                skip(
                    test,
                    &format!("`{name}` not found (package {pkg}; `make deps` as root installs it)"),
                );
                return None;
            }
        }
    }
    let bin = daemon_bin();
    if !bin.exists() {
        skip(test, &format!("daemon binary {} not found", bin.display()));
        return None;
    }
    Some(Tools(tools))
}

// ------------------------------------------------------------------------ bounded commands --

/// Runs a command to completion, killing it after `limit`. Output is collected by threads, so a
/// chatty command cannot block on a full pipe.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {desc}: {e}"))?;
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let t_err = thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err.read_to_end(&mut b);
        b
    });
    let status = match wait_child(&mut child, limit) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{desc} did not finish within {limit:?}"));
        }
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}

fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(_) => return None,
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls `probe` every 200 ms until it returns Some, for at most `limit`.
fn poll<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

// ------------------------------------------------------------------------------ processes --

/// A process the test started; killed (SIGKILL) when dropped if it is still running.
struct Proc {
    name: String,
    child: Child,
    kill: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, sig: &str) {
        let out = run_bounded(
            Command::new(&self.kill).args(["-s", sig, &self.pid().to_string()]),
            Duration::from_secs(5),
        );
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "kill -s {sig} {} ({}) failed: {}{}",
                self.pid(),
                self.name,
                text(&o.stderr).trim(),
                self.diag()
            ),
            Err(e) => panic!("{e}"),
        }
    }

    fn running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(s)) => {
                self.status = Some(s);
                false
            }
            _ => true,
        }
    }

    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = wait_child(&mut self.child, limit);
        }
        self.status
    }

    fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn stdout_text(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// The last lines of the process's standard error, for failure messages.
    fn diag(&self) -> String {
        let err = self.stderr_text();
        let lines: Vec<&str> = err.lines().collect();
        let tail = &lines[lines.len().saturating_sub(25)..];
        format!(
            "\n--- {} (pid {}) stderr, last {} lines ({}):\n{}",
            self.name,
            self.pid(),
            tail.len(),
            self.stderr.display(),
            tail.join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = wait_child(&mut self.child, Duration::from_secs(10));
        }
    }
}

// ------------------------------------------------------------------------------------ rig --

/// A network namespace with a veth pair; deleted (with everything still running in it) on drop.
struct Rig {
    test: String,
    ns: String,
    dir: PathBuf,
    tools: Tools,
    ns_created: bool,
}

impl Rig {
    /// The rig, or why this machine cannot have one (e.g. no network namespaces here).
    fn new(test: &str, tools: Tools) -> Result<Rig, String> {
        static REAPED: std::sync::Once = std::sync::Once::new();
        REAPED.call_once(|| reap_stale(&tools));
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let ns = format!("xwt-{}-{n}", std::process::id());
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("xwlive-{test}-{ns}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the test directory");
        let mut rig = Rig {
            test: test.to_string(),
            ns,
            dir,
            tools,
            ns_created: false,
        };
        let out = rig.ip(&["netns", "add", &rig.ns.clone()])?;
        if !out.status.success() {
            return Err(format!(
                "cannot create a network namespace: {}",
                text(&out.stderr).trim()
            ));
        }
        rig.ns_created = true;
        // No IPv6 on the link (no link-local address, DAD, router solicitations or MLD): the
        // only frames are the ones tcpreplay sends. Interfaces created afterwards inherit
        // `default`. A kernel without IPv6 has no such files, which is just as good.
        let _ = rig.exec_ok(&[
            "sh",
            "-c",
            "for f in all default; do echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done 2>/dev/null; true",
        ]);
        let ns = rig.ns.clone();
        rig.ip_ok(&["-n", &ns, "link", "set", "lo", "up"]);
        rig.ip_ok(&[
            "-n", &ns, "link", "add", CAP_IF, "type", "veth", "peer", "name", SEND_IF,
        ]);
        rig.ip_ok(&["-n", &ns, "link", "set", CAP_IF, "up"]);
        rig.ip_ok(&["-n", &ns, "link", "set", SEND_IF, "up"]);
        let up = poll(Duration::from_secs(10), || {
            let o = rig.ip(&["-n", &ns, "-o", "link", "show"]).ok()?;
            let s = text(&o.stdout);
            let ok = [CAP_IF, SEND_IF].iter().all(|i| {
                s.lines()
                    .any(|l| l.contains(&format!(" {i}@")) && l.contains("LOWER_UP"))
            });
            ok.then_some(())
        });
        assert!(up.is_some(), "veth pair in {} did not come up", rig.ns);
        Ok(rig)
    }

    fn ip(&self, args: &[&str]) -> Result<Output, String> {
        run_bounded(
            Command::new(self.tools.get("ip")).args(args),
            Duration::from_secs(20),
        )
    }

    fn ip_ok(&self, args: &[&str]) {
        match self.ip(args) {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("ip {} failed: {}", args.join(" "), text(&o.stderr).trim()),
            Err(e) => panic!("{e}"),
        }
    }

    /// `ip netns exec NS args...`, bounded.
    fn exec(&self, args: &[&str], limit: Duration) -> Result<Output, String> {
        run_bounded(
            Command::new(self.tools.get("ip"))
                .args(["netns", "exec", &self.ns])
                .args(args),
            limit,
        )
    }

    fn exec_ok(&self, args: &[&str]) -> Output {
        match self.exec(args, Duration::from_secs(60)) {
            Ok(o) if o.status.success() => o,
            Ok(o) => panic!(
                "{} failed ({}): {}{}",
                args.join(" "),
                o.status,
                text(&o.stderr).trim(),
                text(&o.stdout).trim()
            ),
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts `args` inside the namespace; its output goes to files in the test directory.
    fn spawn(&self, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let stdout = self.dir.join(format!("{name}.stdout"));
        let stderr = self.dir.join(format!("{name}.stderr"));
        let mut cmd = Command::new(self.tools.get("ip"));
        cmd.args(["netns", "exec", &self.ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("stdout file"))
            .stderr(fs::File::create(&stderr).expect("stderr file"));
        clean_env(&mut cmd);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            kill: self.tools.get("kill").to_path_buf(),
            stdout,
            stderr,
            status: None,
        }
    }

    /// tcpreplay of `file` out of the sending end, in the background.
    fn tcpreplay_bg(&self, file: &Path, rate: &[&str]) -> Proc {
        let tcpreplay = self.tools.get("tcpreplay").to_string_lossy().into_owned();
        let file = file.to_string_lossy().into_owned();
        let mut args = vec![tcpreplay.as_str(), "-q", "-i", SEND_IF];
        args.extend_from_slice(rate);
        args.push(&file);
        self.spawn("tcpreplay", &args, &[])
    }

    /// tcpreplay of `file` at top speed, to completion.
    fn tcpreplay(&self, file: &Path) {
        let mut p = self.tcpreplay_bg(file, &["--topspeed"]);
        let st = p.wait(Duration::from_secs(60));
        assert!(
            st.is_some_and(|s| s.success()),
            "tcpreplay of {} failed or hung ({st:?}):\n{}{}",
            file.display(),
            p.stdout_text(),
            p.diag()
        );
    }

    /// HTTP GET inside the namespace; the body when the status is 2xx.
    fn http_get(&self, url: &str) -> Option<String> {
        let curl = self.tools.get("curl").to_string_lossy().into_owned();
        let o = self
            .exec(
                &[&curl, "-s", "-f", "--max-time", "3", url],
                Duration::from_secs(8),
            )
            .ok()?;
        o.status.success().then(|| text(&o.stdout))
    }

    fn scrape(&self) -> Option<String> {
        self.http_get(&format!("http://{METRICS}/metrics"))
    }

    /// Starts the daemon with `cfg` and waits (at most 20 s) for READY=1 on a notify socket.
    fn start_daemon(&self, name: &str, cfg: &Path, env: &[(&str, &str)]) -> Daemon {
        let sock = notify_path(&self.dir, name);
        let _ = fs::remove_file(&sock);
        let notify = UnixDatagram::bind(&sock)
            .unwrap_or_else(|e| panic!("bind notify socket {}: {e}", sock.display()));
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("notify timeout");
        // As systemd's socket is, writable by a daemon that dropped to another user.
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&sock, fs::Permissions::from_mode(0o777));
            let _ = fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755));
        }
        let bin = daemon_bin().to_string_lossy().into_owned();
        let cfg_s = cfg.to_string_lossy().into_owned();
        let sock_s = sock.to_string_lossy().into_owned();
        let mut all_env = vec![("NOTIFY_SOCKET", sock_s.as_str())];
        all_env.extend_from_slice(env);
        let proc = self.spawn(name, &[&bin, "run", "-c", &cfg_s], &all_env);
        let mut d = Daemon {
            proc,
            notify,
            sock,
            messages: Vec::new(),
        };
        if !d.wait_notify("READY=1", Duration::from_secs(20)) {
            let st = d.proc.wait(Duration::from_millis(200));
            panic!(
                "daemon did not report READY=1 on NOTIFY_SOCKET within 20 s (exit status: {st:?}; \
                 notify messages: {:?}){}",
                d.messages,
                d.proc.diag()
            );
        }
        d
    }

    /// Polls the daemon's metrics until `cond` holds (at most `limit`); the samples that did.
    fn wait_metrics(
        &self,
        d: &mut Daemon,
        what: &str,
        limit: Duration,
        mut cond: impl FnMut(&Metrics) -> bool,
    ) -> Metrics {
        let mut last = String::new();
        let got = poll(limit, || {
            if !d.proc.running() {
                return Some(Err(()));
            }
            let body = self.scrape()?;
            let m = Metrics::parse(&body);
            last = body;
            cond(&m).then_some(Ok(m))
        });
        match got {
            Some(Ok(m)) => m,
            Some(Err(())) => panic!(
                "daemon exited ({:?}) while waiting for {what}{}",
                d.proc.status,
                d.proc.diag()
            ),
            None => panic!(
                "timed out after {limit:?} waiting for {what}; last metrics scraped from \
                 http://{METRICS}/metrics:\n{}{}",
                interesting_metrics(&last),
                d.proc.diag()
            ),
        }
    }

    /// SIGTERM, then the exit status (at most 30 s).
    fn stop_daemon(&self, d: &mut Daemon) -> ExitStatus {
        d.proc.signal("TERM");
        match d.proc.wait(Duration::from_secs(30)) {
            Some(s) => s,
            None => panic!(
                "daemon did not exit within 30 s of SIGTERM{}",
                d.proc.diag()
            ),
        }
    }

    /// A config for the daemon in the namespace: pcaps/demo.toml (the bundled captures'
    /// thresholds) plus capture, output, metrics and log settings, then `extra` (more tables).
    fn config(&self, name: &str, threads: u32, extra: &str) -> (PathBuf, PathBuf) {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).expect("config dir");
        let eve = dir.join("eve.json");
        let cfg = dir.join("sensor.toml");
        let body = format!(
            "{demo}\n\
             [capture]\n\
             interfaces = [\"{CAP_IF}\"]\n\
             snaplen = 65535\n\
             promisc = true\n\
             buffer_size = \"64MiB\"\n\
             immediate = false\n\
             timeout_ms = 100\n\
             threads_per_interface = {threads}\n\
             \n\
             [output]\n\
             eve_path = {eve}\n\
             stats_interval = \"1s\"\n\
             \n\
             [metrics]\n\
             enabled = true\n\
             listen = \"{METRICS}\"\n\
             allow = [\"127.0.0.0/8\"]\n\
             \n\
             [log]\n\
             format = \"text\"\n\
             level = \"info\"\n\
             {extra}\n",
            demo = demo_toml(),
            eve = toml_str(&eve),
        );
        fs::write(&cfg, body).expect("write config");
        (cfg, eve)
    }

    /// A real Prometheus in the namespace (web on PROM_WEB, the namespace's own loopback, so the
    /// port is free), scraping the daemon every second into a fresh storage directory in the test
    /// directory; waits (at most 60 s) until it is ready.
    fn start_prometheus(&self) -> Proc {
        let prom_dir = self.dir.join("prometheus");
        fs::create_dir_all(prom_dir.join("data")).unwrap();
        let prom_cfg = prom_dir.join("prometheus.yml");
        fs::write(
            &prom_cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: xferwatch\n    static_configs:\n      - targets: [\"{METRICS}\"]\n"
            ),
        )
        .unwrap();
        let prom_bin = self.tools.get("prometheus").to_string_lossy().into_owned();
        let mut prom = self.spawn(
            "prometheus",
            &[
                &prom_bin,
                &format!("--config.file={}", prom_cfg.display()),
                &format!("--storage.tsdb.path={}", prom_dir.join("data").display()),
                &format!("--web.listen-address={PROM_WEB}"),
                "--log.level=warn",
            ],
            &[],
        );
        let ready = poll(Duration::from_secs(60), || {
            if !prom.running() {
                return Some(false);
            }
            self.http_get(&format!("http://{PROM_WEB}/-/ready"))
                .map(|_| true)
        });
        assert_eq!(
            ready,
            Some(true),
            "Prometheus did not become ready{}",
            prom.diag()
        );
        prom
    }

    /// GET of Prometheus's HTTP API `/api/v1/<path>` with the (url-encoded) parameters: the JSON
    /// answer, also for a rejected query (status "error", with errorType and error).
    fn prom_api(&self, path: &str, params: &[(&str, &str)]) -> Option<Value> {
        let curl = self.tools.get("curl").to_string_lossy().into_owned();
        let url = format!("http://{PROM_WEB}/api/v1/{path}");
        let mut args = vec![
            curl,
            "-s".into(),
            "--max-time".into(),
            "3".into(),
            "-G".into(),
            url,
        ];
        for (k, v) in params {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = self.exec(&args, Duration::from_secs(8)).ok()?;
        serde_json::from_slice(&o.stdout).ok()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if self.ns_created {
            // Whatever still runs in the namespace was started by this test.
            if let Ok(o) = self.ip(&["netns", "pids", &self.ns]) {
                for pid in text(&o.stdout).split_whitespace() {
                    let _ = run_bounded(
                        Command::new(self.tools.get("kill")).args(["-s", "KILL", pid]),
                        Duration::from_secs(5),
                    );
                }
            }
            let deleted = poll(Duration::from_secs(10), || {
                let o = self.ip(&["netns", "del", &self.ns]).ok()?;
                o.status.success().then_some(())
            });
            if deleted.is_none() {
                eprintln!(
                    "{}: warning: could not delete network namespace {}",
                    self.test, self.ns
                );
            }
        }
        if thread::panicking() {
            eprintln!("{}: test files kept in {}", self.test, self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Deletes the namespaces `xwt-<pid>-<n>` left by an earlier run of these tests that was killed
/// before its Drop guards ran (its pid is gone), with whatever still runs in them.
fn reap_stale(tools: &Tools) {
    let ip = tools.get("ip");
    let Ok(o) = run_bounded(
        Command::new(ip).args(["netns", "list"]),
        Duration::from_secs(20),
    ) else {
        return;
    };
    for line in text(&o.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let mut parts = name.splitn(3, '-');
        let (Some("xwt"), Some(pid), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let numeric = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        if !numeric(pid) || !numeric(n) || Path::new("/proc").join(pid).exists() {
            continue;
        }
        if let Ok(o) = run_bounded(
            Command::new(ip).args(["netns", "pids", name]),
            Duration::from_secs(20),
        ) {
            for p in text(&o.stdout).split_whitespace() {
                let _ = run_bounded(
                    Command::new(tools.get("kill")).args(["-s", "KILL", p]),
                    Duration::from_secs(5),
                );
            }
        }
        let _ = run_bounded(
            Command::new(ip).args(["netns", "del", name]),
            Duration::from_secs(20),
        );
        eprintln!("removed the stale test namespace {name}");
    }
}

/// Short path for the notify socket (unix socket paths are limited to 107 bytes).
fn notify_path(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}.notify"));
    if p.as_os_str().len() < 100 {
        p
    } else {
        std::env::temp_dir().join(format!(
            "xwt-{}-{}-{name}.notify",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ))
    }
}

fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("XFERWATCH")
            || k == "RUST_LOG"
            || k.starts_with("NOTIFY_")
            || k.starts_with("WATCHDOG_")
            || k == "LISTEN_FDS"
            || k == "LISTEN_PID"
        {
            cmd.env_remove(&*k);
        }
    }
}

fn demo_toml() -> String {
    fs::read_to_string(pcap("demo.toml")).expect("pcaps/demo.toml")
}

fn toml_str(p: &Path) -> String {
    let s = p.to_string_lossy();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The daemon with its notify socket.
struct Daemon {
    proc: Proc,
    notify: UnixDatagram,
    sock: PathBuf,
    messages: Vec<String>,
}

impl Daemon {
    /// Reads notify datagrams until one has the line `what` (e.g. "READY=1"), the process
    /// exits, or `limit` passes.
    fn wait_notify(&mut self, what: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let m = text(&buf[..n]);
                let hit = m.lines().any(|l| l == what);
                self.messages.push(m);
                if hit {
                    return true;
                }
                continue;
            }
            if Instant::now() >= deadline || !self.proc.running() {
                // Drain what was sent just before the exit.
                while let Ok(n) = self.notify.recv(&mut buf) {
                    let m = text(&buf[..n]);
                    let hit = m.lines().any(|l| l == what);
                    self.messages.push(m);
                    if hit {
                        return true;
                    }
                }
                return false;
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.sock);
    }
}

// -------------------------------------------------------------------------------- metrics --

struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Prometheus text exposition, parsed.
struct Metrics(Vec<Sample>);

impl Metrics {
    fn parse(body: &str) -> Metrics {
        let mut v = Vec::new();
        for line in body.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(s) = parse_sample(line) {
                v.push(s);
            }
        }
        Metrics(v)
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.name == name)
    }

    /// Sum of the series `name` whose labels include all of `filter`.
    fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                filter
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Non-zero values of `name`, summed by the value of `label`.
    fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        for s in self.0.iter().filter(|s| s.name == name) {
            let k = s.labels.get(label).cloned().unwrap_or_default();
            *m.entry(k).or_insert(0.0) += s.value;
        }
        m.retain(|_, v| *v != 0.0);
        m
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let end = loop {
            // skip separators
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let &(i, c) = chars.peek()?;
            if c == '}' {
                break i + 1;
            }
            let mut key = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == '=' {
                    break;
                }
                key.push(c);
                chars.next();
            }
            chars.next(); // '='
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut val = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => val.push('\n'),
                        other => val.push(other),
                    },
                    '"' => break,
                    c => val.push(c),
                }
            }
            labels.insert(key.trim().to_string(), val);
        };
        rest = &r[end..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The xferwatch_* samples of a scrape, for failure messages.
fn interesting_metrics(body: &str) -> String {
    if body.is_empty() {
        return "(no successful scrape)".into();
    }
    body.lines()
        .filter(|l| l.starts_with("xferwatch_"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ------------------------------------------------------------------------------------ EVE --

/// Every line of an EVE file, parsed; panics on a line that is not a complete JSON object.
fn read_eve(path: &Path) -> Vec<Value> {
    let body = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        body.is_empty() || body.ends_with('\n'),
        "{} ends with an incomplete line: {:?}",
        path.display(),
        body.lines().last()
    );
    body.lines()
        .enumerate()
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("{} line {}: not JSON ({e}): {l}", path.display(), i + 1)
            });
            assert!(
                v.is_object(),
                "{} line {}: not an object",
                path.display(),
                i + 1
            );
            v
        })
        .collect()
}

type FlowKey = (String, String, u64, String, u64, String, u64, u64);

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn flows(ev: &[Value]) -> Vec<&Value> {
    ev.iter().filter(|e| e["event_type"] == "flow").collect()
}

/// (proto, src_ip, src_port, dest_ip, dest_port, app_proto, payload toserver, payload toclient)
/// of every flow record, sorted.
fn flow_keys(ev: &[Value]) -> Vec<FlowKey> {
    let mut v: Vec<FlowKey> = flows(ev)
        .into_iter()
        .map(|e| {
            (
                s(&e["proto"]),
                s(&e["src_ip"]),
                e["src_port"].as_u64().unwrap_or(0),
                s(&e["dest_ip"]),
                e["dest_port"].as_u64().unwrap_or(0),
                s(&e["app_proto"]),
                e["xfer"]["payload_bytes_toserver"]
                    .as_u64()
                    .unwrap_or(u64::MAX),
                e["xfer"]["payload_bytes_toclient"]
                    .as_u64()
                    .unwrap_or(u64::MAX),
            )
        })
        .collect();
    v.sort();
    v
}

/// Alert records by signature id.
fn alerts_by_sig(ev: &[Value]) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for e in ev.iter().filter(|e| e["event_type"] == "alert") {
        *m.entry(s(&e["alert"]["signature_id"])).or_insert(0.0) += 1.0;
    }
    m
}

fn outbound_sum(ev: &[Value]) -> u64 {
    flows(ev)
        .iter()
        .map(|e| e["xfer"]["outbound_payload_bytes"].as_u64().unwrap_or(0))
        .sum()
}

/// `xferwatch replay` of `file` with `cfg`: its events.
fn replay(cfg: &Path, file: &Path, out: &Path) -> Vec<Value> {
    let mut cmd = Command::new(replay_bin());
    cmd.args(["replay", "-q", "--force", "-c"])
        .arg(cfg)
        .arg("--eve")
        .arg(out)
        .arg(file);
    clean_env(&mut cmd);
    let o = run_bounded(&mut cmd, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        o.status.success(),
        "xferwatch replay {} failed: {}",
        file.display(),
        text(&o.stderr)
    );
    read_eve(out)
}

/// Packets in a classic pcap file (the bundled captures are classic pcap).
fn pcap_packets(file: &Path) -> u64 {
    let d = fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    assert!(d.len() >= 24, "{}: too short for a pcap", file.display());
    let le = match &d[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("{}: not a classic pcap file", file.display()),
    };
    let u32_at = |o: usize| {
        let b = [d[o], d[o + 1], d[o + 2], d[o + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let (mut off, mut n) = (24usize, 0u64);
    while off + 16 <= d.len() {
        off += 16 + u32_at(off + 8) as usize;
        n += 1;
    }
    n
}

/// Short flow timeouts, so that every flow of a bundled capture (all shorter than 0.1 s) ends
/// a few seconds after the traffic and the counters counted at flow end are final while the
/// daemon still runs. The daemon must advance its flow clock while the link is idle.
const SHORT_TIMEOUTS: &str = "\n[timeouts]\ntcp_new = \"2s\"\ntcp_established = \"2s\"\ntcp_closed = \"1s\"\nudp_new = \"2s\"\nudp_established = \"2s\"\n";

fn packets_on(m: &Metrics) -> f64 {
    m.sum("xferwatch_capture_packets_total", &[("interface", CAP_IF)])
}

fn show_keys(k: &[FlowKey]) -> String {
    k.iter()
        .map(|k| format!("  {k:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------- tests --

/// Runs the daemon on `name` (with `threads` capture threads), sends the capture at top speed,
/// and checks it against `xferwatch replay` of the same file and config: the flow records, the
/// alerts, and the metrics against the records.
fn check_live_against_replay(rig: &Rig, test: &str, run: &str, name: &str, threads: u32) {
    let t0 = Instant::now();
    let file = pcap(name);
    let npkts = pcap_packets(&file) as f64;
    let (cfg, eve) = rig.config(run, threads, SHORT_TIMEOUTS);
    let expected = replay(&cfg, &file, &rig.dir.join(run).join("replay.json"));

    let mut d = rig.start_daemon(&format!("daemon-{run}"), &cfg, &[]);
    rig.tcpreplay(&file);
    let what = format!(
        "{run}: {CAP_IF} packets >= {npkts} and xferwatch_flows_active == 0 (flows end by \
         timeout while the link is idle)"
    );
    // Capture and worker counters are published apart: also wait until the workers have ended
    // as many flows as replay writes, so the snapshot is not one from before the traffic.
    let want_flows = flows(&expected).len() as f64;
    let m = rig.wait_metrics(&mut d, &what, Duration::from_secs(30), |m| {
        packets_on(m) >= npkts
            && m.has("xferwatch_flows_active")
            && m.sum("xferwatch_flows_active", &[]) == 0.0
            && m.sum("xferwatch_flows_ended_total", &[]) >= want_flows
    });
    let st = rig.stop_daemon(&mut d);
    assert!(
        st.success(),
        "{run}: daemon exit status {st}{}",
        d.proc.diag()
    );
    let live = read_eve(&eve);
    // Every event about a flow names the interface it was captured on (replay has none).
    for e in live.iter().filter(|e| e.get("flow_id").is_some()) {
        assert_eq!(e["in_iface"], CAP_IF, "{run}: in_iface of {e}");
    }
    assert!(expected.iter().all(|e| e.get("in_iface").is_none()));

    let (want, got) = (flow_keys(&expected), flow_keys(&live));
    assert_eq!(
        got,
        want,
        "{run}: live flow records differ from replay\nlive:\n{}\nreplay:\n{}\nmetrics:\n{}",
        show_keys(&got),
        show_keys(&want),
        m.0.iter()
            .filter(|s| s.name.contains("drops") || s.name.contains("packets"))
            .map(|s| format!("  {}{:?} {}", s.name, s.labels, s.value))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        alerts_by_sig(&live),
        alerts_by_sig(&expected),
        "{run}: live alerts (left) differ from replay (right)"
    );

    // The metrics (scraped after every flow had ended) add up to the EVE records.
    let metric_out = m.sum("xferwatch_outbound_payload_bytes_total", &[]);
    assert_eq!(
        metric_out,
        outbound_sum(&live) as f64,
        "{run}: sum(xferwatch_outbound_payload_bytes_total) != sum of the flow records' \
         xfer.outbound_payload_bytes"
    );
    assert_eq!(
        m.by_label("xferwatch_alerts_total", "signature_id"),
        alerts_by_sig(&live),
        "{run}: xferwatch_alerts_total by signature_id (left) != alert records (right)"
    );
    assert_eq!(
        m.sum("xferwatch_flows_ended_total", &[]),
        flows(&live).len() as f64,
        "{run}: sum(xferwatch_flows_ended_total) != number of flow records"
    );
    println!(
        "{test}: {run}: {} flows, {} alerts, {} outbound payload bytes: live == replay ({:.1} s)",
        got.len(),
        alerts_by_sig(&live).values().sum::<f64>(),
        metric_out,
        t0.elapsed().as_secs_f64()
    );
}

/// The test's turn (live tests run one at a time) and its rig, or None after saying why the test is
/// skipped (not root, a tool missing, no network namespaces here).
fn rig_for(test: &str, needs: &[&'static str]) -> Option<(MutexGuard<'static, ()>, Rig)> {
    let guard = serial();
    let tools = preflight(test, needs)?;
    match Rig::new(test, tools) {
        Ok(r) => Some((guard, r)),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

/// (a) What the daemon reports live equals what replay reports for the same capture, and the
/// metrics add up to the EVE records.
#[test]
fn live_matches_replay() {
    const T: &str = "live_matches_replay";
    let Some((_g, rig)) = rig_for(T, &["ip", "tcpreplay", "curl", "kill"]) else {
        return;
    };
    for (i, name) in [
        "ftp-passive-upload.pcap",
        "tftp-rrq-wrq.pcap",
        "smb-port443.pcap",
        "http-port21.pcap",
    ]
    .iter()
    .enumerate()
    {
        let run = format!("{i}-{}", name.trim_end_matches(".pcap"));
        check_live_against_replay(&rig, T, &run, name, 1);
    }
}

/// (f) The daemon in a fleet: a real redis-server in the rig's namespace holds the fleet's state
/// and receives every event (a list). The bundled captures sent onto the veth raise the host
/// roll-up (1173006, threshold 1 MiB here) on the fleet's state, once; the list holds exactly the
/// EVE file's lines; the heartbeat lists the sensor as running; `xferwatch_fleet_up` is 1.
#[test]
fn daemon_in_a_fleet_with_events_to_redis() {
    const T: &str = "daemon_in_a_fleet_with_events_to_redis";
    let Some((_g, rig)) = rig_for(
        T,
        &[
            "ip",
            "tcpreplay",
            "curl",
            "kill",
            "redis-server",
            "redis-cli",
        ],
    ) else {
        return;
    };
    let (server, cli) = (
        rig.tools.get("redis-server").to_string_lossy().into_owned(),
        rig.tools.get("redis-cli").to_string_lossy().into_owned(),
    );
    let mut redis = rig.spawn(
        "redis",
        &[
            &server,
            "--port",
            "16390",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        &[],
    );
    let ping = |rig: &Rig| {
        rig.exec(&[&cli, "-p", "16390", "PING"], Duration::from_secs(5))
            .ok()
            .filter(|o| text(&o.stdout).contains("PONG"))
    };
    assert!(
        poll(Duration::from_secs(10), || ping(&rig)).is_some(),
        "redis-server did not answer{}",
        redis.diag()
    );
    let spool = rig.dir.join("spool");
    let extra = format!(
        "{SHORT_TIMEOUTS}\n[detect.host_rollup]\nthreshold_bytes = \"1MiB\"\n\
         [sensor]\nname = \"live-1\"\n\
         [fleet]\nredis = \"redis://127.0.0.1:16390/0\"\nkey_prefix = \"lv\"\n\
         [output.redis]\nenabled = true\nmode = \"list\"\nkey = \"eve\"\nspool_dir = {}\n",
        toml_str(&spool)
    );
    let (cfg, eve) = rig.config("fleet", 1, &extra);
    let mut d = rig.start_daemon("daemon-fleet", &cfg, &[]);
    let names = [
        "ftp-passive-upload.pcap",
        "ftp-multi-stor.pcap",
        "tftp-rrq-wrq.pcap",
        "smb-upload.pcap",
    ];
    let mut npkts = 0.0;
    for n in names {
        rig.tcpreplay(&pcap(n));
        npkts += pcap_packets(&pcap(n)) as f64;
    }
    let m = rig.wait_metrics(
        &mut d,
        "packets seen, every flow ended, the fleet up",
        Duration::from_secs(30),
        |m| {
            packets_on(m) >= npkts
                && m.has("xferwatch_flows_active")
                && m.sum("xferwatch_flows_active", &[]) == 0.0
                && m.sum("xferwatch_fleet_up", &[]) == 1.0
        },
    );
    assert!(m.sum("xferwatch_fleet_round_trips_total", &[]) > 0.0);
    let st = rig.stop_daemon(&mut d);
    assert!(st.success(), "daemon exit status {st}{}", d.proc.diag());
    let live = read_eve(&eve);
    let fleet: Vec<&Value> = live
        .iter()
        .filter(|e| e["event_type"] == "alert" && e["alert"]["signature_id"] == 1_173_006)
        .collect();
    assert_eq!(fleet.len(), 1, "one 1173006, on the fleet's state");
    assert_eq!(fleet[0]["xfer"]["fleet"], true, "{}", fleet[0]);
    assert!(live.iter().all(|e| e["host"] == "live-1"));
    // The list holds the EVE file, line for line.
    let o = rig
        .exec(
            &[&cli, "-p", "16390", "--raw", "LRANGE", "eve", "0", "-1"],
            Duration::from_secs(10),
        )
        .expect("LRANGE");
    let listed: Vec<String> = text(&o.stdout).lines().map(String::from).collect();
    let written: Vec<String> = fs::read_to_string(&eve)
        .expect("EVE file")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(listed, written, "the Redis list and the EVE file");
    // The heartbeat: the sensor, running, with its packets.
    let o = rig
        .exec(
            &[&cli, "-p", "16390", "--raw", "HGET", "lv:sensors", "live-1"],
            Duration::from_secs(10),
        )
        .expect("HGET");
    let beat: Value = serde_json::from_str(text(&o.stdout).trim()).expect("a heartbeat");
    assert_eq!(beat["mode"], "run", "{beat}");
    assert!(beat["packets"].as_f64().unwrap_or(0.0) >= npkts, "{beat}");
    redis.signal("TERM");
    let _ = redis.wait(Duration::from_secs(10));
    println!(
        "{T}: {} events in the EVE file and the Redis list, 1173006 once on the fleet's state",
        written.len()
    );
}

/// (a') The same with two capture threads on the interface (a PACKET_FANOUT hash group): an FTP
/// data connection may arrive through another thread than the control connection announcing
/// it, and must still be recognised as ftp-data.
#[test]
fn live_matches_replay_with_fanout() {
    const T: &str = "live_matches_replay_with_fanout";
    let Some((_g, rig)) = rig_for(T, &["ip", "tcpreplay", "curl", "kill"]) else {
        return;
    };
    for (i, name) in ["ftp-passive-upload.pcap", "tftp-rrq-wrq.pcap"]
        .iter()
        .enumerate()
    {
        let run = format!("{i}-{}-fanout2", name.trim_end_matches(".pcap"));
        check_live_against_replay(&rig, T, &run, name, 2);
    }
}

/// (b) A real Prometheus scrapes the daemon and sees what the EVE file says; promtool finds no
/// problem in the exposition.
#[test]
fn prometheus_scrapes_the_daemon() {
    const T: &str = "prometheus_scrapes_the_daemon";
    let Some((_g, rig)) = rig_for(
        T,
        &["ip", "tcpreplay", "curl", "kill", "prometheus", "promtool"],
    ) else {
        return;
    };
    let t0 = Instant::now();
    let file = pcap("ftp-passive-upload.pcap");
    let (cfg, eve) = rig.config("daemon", 1, SHORT_TIMEOUTS);
    let expected = replay(&cfg, &file, &rig.dir.join("replay.json"));
    let want_out = outbound_sum(&expected) as f64;
    let want_alerts: f64 = alerts_by_sig(&expected).values().sum();

    let mut d = rig.start_daemon("daemon", &cfg, &[]);

    let mut prom = rig.start_prometheus();

    rig.tcpreplay(&file);
    let npkts = pcap_packets(&file) as f64;
    rig.wait_metrics(
        &mut d,
        "all packets captured and every flow ended",
        Duration::from_secs(30),
        |m| {
            packets_on(m) >= npkts
                && m.sum("xferwatch_flows_active", &[]) == 0.0
                && m.has("xferwatch_flows_active")
        },
    );

    let query = |q: &str| -> Option<f64> {
        let v = rig.prom_api("query", &[("query", q)])?;
        if v["status"] != "success" {
            return None;
        }
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    };
    let mut last = (None, None);
    let seen = poll(Duration::from_secs(30), || {
        let out = query("sum(xferwatch_outbound_payload_bytes_total)");
        let al = query("sum(xferwatch_alerts_total)");
        last = (out, al);
        (out == Some(want_out) && al == Some(want_alerts)).then_some(())
    });
    assert!(
        seen.is_some(),
        "Prometheus never saw sum(xferwatch_outbound_payload_bytes_total) = {want_out} and \
         sum(xferwatch_alerts_total) = {want_alerts}; last answers {last:?}; up = {:?}{}{}",
        query("up"),
        d.proc.diag(),
        prom.diag()
    );

    // promtool's lint of the exposition.
    let body = rig.scrape().expect("scrape the daemon");
    let scraped = rig.dir.join("metrics.txt");
    fs::write(&scraped, &body).unwrap();
    let promtool = rig.tools.get("promtool").to_string_lossy().into_owned();
    let o = run_bounded(
        Command::new("sh")
            .arg("-c")
            .arg("\"$0\" check metrics < \"$1\"")
            .arg(&promtool)
            .arg(&scraped),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let report = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        o.status.success() && report.trim().is_empty(),
        "promtool check metrics reports problems (exit {}):\n{report}",
        o.status
    );

    // The process metrics, scraped by Prometheus too; only /metrics answers.
    let rss = Metrics::parse(&body).sum("process_resident_memory_bytes", &[]);
    assert!(rss > 0.0, "process_resident_memory_bytes {rss}");
    assert!(
        query("process_open_fds").is_some_and(|v| v > 0.0),
        "Prometheus has no process_open_fds"
    );
    let curl = rig.tools.get("curl").to_string_lossy().into_owned();
    for (path, want) in [("/metrics", "200"), ("/other", "404"), ("/", "404")] {
        let o = rig
            .exec(
                &[
                    &curl,
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "3",
                    &format!("http://{METRICS}{path}"),
                ],
                Duration::from_secs(8),
            )
            .expect("curl");
        assert_eq!(text(&o.stdout), want, "GET {path}");
    }

    let st = rig.stop_daemon(&mut d);
    assert!(st.success(), "daemon exit status {st}{}", d.proc.diag());
    let live = read_eve(&eve);
    assert_eq!(
        outbound_sum(&live) as f64,
        want_out,
        "EVE outbound bytes != replay"
    );
    assert_eq!(
        alerts_by_sig(&live).values().sum::<f64>(),
        want_alerts,
        "EVE alert count != replay"
    );
    prom.signal("TERM");
    let _ = prom.wait(Duration::from_secs(15));
    println!(
        "{T}: Prometheus saw {want_out} outbound bytes and {want_alerts} alerts; promtool clean ({:.1} s)",
        t0.elapsed().as_secs_f64()
    );
}

/// (c) SIGTERM in the middle of a transfer: exit 0, every flow gets its record, the final stats
/// event counts them all.
#[test]
fn sigterm_mid_traffic_loses_nothing() {
    const T: &str = "sigterm_mid_traffic_loses_nothing";
    let Some((_g, rig)) = rig_for(T, &["ip", "tcpreplay", "curl", "kill"]) else {
        return;
    };
    let t0 = Instant::now();
    let file = pcap("ftp-passive-upload.pcap"); // 727 packets: ~3.6 s at 200 packets/s
    let (cfg, eve) = rig.config("daemon", 1, "");
    let mut d = rig.start_daemon("daemon", &cfg, &[]);
    let mut tr = rig.tcpreplay_bg(&file, &["--pps", "200"]);
    let started = Instant::now();
    rig.wait_metrics(&mut d, "the first packets", Duration::from_secs(10), |m| {
        packets_on(m) > 0.0
    });
    if let Some(rest) = Duration::from_secs(1).checked_sub(started.elapsed()) {
        thread::sleep(rest);
    }
    assert!(
        tr.running(),
        "tcpreplay finished before the SIGTERM: the test would not stop the daemon mid-traffic"
    );
    let st = rig.stop_daemon(&mut d);
    let mid = tr.running();
    drop(tr);
    assert!(
        st.success(),
        "daemon exit status after SIGTERM: {st}{}",
        d.proc.diag()
    );
    assert!(mid, "tcpreplay had finished before the daemon exited");

    let ev = read_eve(&eve);
    let nflows = flows(&ev).len();
    let last = ev.last().expect("EVE file is empty");
    assert_eq!(
        last["event_type"], "stats",
        "the last EVE event is not the final stats event"
    );
    let total = last["stats"]["flow"]["total"].as_u64();
    assert_eq!(
        total,
        Some(nflows as u64),
        "final stats.flow.total != number of flow records ({nflows})"
    );
    assert!(nflows >= 1, "no flow records at all");
    let flow_pkts: u64 = flows(&ev)
        .iter()
        .map(|e| {
            e["flow"]["pkts_toserver"].as_u64().unwrap_or(0)
                + e["flow"]["pkts_toclient"].as_u64().unwrap_or(0)
        })
        .sum();
    assert_eq!(
        Some(flow_pkts),
        last["stats"]["decoder"]["pkts"].as_u64(),
        "packets in flow records != final stats.decoder.pkts"
    );
    println!(
        "{T}: stopped after {flow_pkts} of {} packets; {nflows} flow records == final stats.flow.total ({:.1} s)",
        pcap_packets(&file),
        t0.elapsed().as_secs_f64()
    );
}

/// (d) SIGHUP after the EVE file was renamed (logrotate): the daemon writes a new file, nothing
/// is lost or cut.
#[test]
fn sighup_reopens_the_eve_file() {
    const T: &str = "sighup_reopens_the_eve_file";
    let Some((_g, rig)) = rig_for(T, &["ip", "tcpreplay", "curl", "kill"]) else {
        return;
    };
    let t0 = Instant::now();
    let file = pcap("ftp-passive-upload.pcap"); // 727 packets: ~7.3 s at 100 packets/s
    let npkts = pcap_packets(&file) as f64;
    let (cfg, eve) = rig.config("daemon", 1, "");
    let expected = replay(&cfg, &file, &rig.dir.join("replay.json"));
    let mut d = rig.start_daemon("daemon", &cfg, &[]);
    let mut tr = rig.tcpreplay_bg(&file, &["--pps", "100"]);
    rig.wait_metrics(&mut d, "the first packets", Duration::from_secs(10), |m| {
        packets_on(m) > 0.0
    });
    // Something in the file before the rotation (events, or the 1 s stats event).
    let _ = poll(Duration::from_secs(3), || {
        fs::metadata(&eve).ok().filter(|m| m.len() > 0).map(|_| ())
    });
    let rotated = eve.with_extension("json.1");
    fs::rename(&eve, &rotated).expect("rename eve.json");
    assert!(tr.running(), "tcpreplay finished before the rotation");
    d.proc.signal("HUP");
    let reopened = poll(Duration::from_secs(10), || {
        fs::metadata(&eve).ok().filter(|m| m.len() > 0).map(|_| ())
    });
    assert!(
        reopened.is_some(),
        "no new, non-empty {} within 10 s of SIGHUP{}",
        eve.display(),
        d.proc.diag()
    );
    let hup_while_sending = tr.running();
    let st = tr.wait(Duration::from_secs(60));
    assert!(
        st.is_some_and(|s| s.success()),
        "tcpreplay failed: {st:?}{}",
        tr.diag()
    );
    rig.wait_metrics(
        &mut d,
        "every packet captured",
        Duration::from_secs(15),
        |m| packets_on(m) >= npkts,
    );
    let st = rig.stop_daemon(&mut d);
    assert!(st.success(), "daemon exit status {st}{}", d.proc.diag());

    let old = read_eve(&rotated);
    let new = read_eve(&eve);
    assert!(!new.is_empty(), "the reopened EVE file is empty");
    let mut all = old.clone();
    all.extend(new.iter().cloned());
    assert_eq!(
        flows(&all).len(),
        flows(&expected).len(),
        "flow records in {} + {} != replay's",
        rotated.display(),
        eve.display()
    );
    assert_eq!(
        flow_keys(&all),
        flow_keys(&expected),
        "flow records across the two files differ from replay"
    );
    println!(
        "{T}: {} events before, {} after the SIGHUP{}; {} flow records == replay ({:.1} s)",
        old.len(),
        new.len(),
        if hup_while_sending {
            " (sent while traffic ran)"
        } else {
            ""
        },
        flows(&all).len(),
        t0.elapsed().as_secs_f64()
    );
}

/// (e) Startup errors: exit status != 0 and one line on stderr that names the problem.
#[test]
fn bad_startup_is_one_clear_line() {
    const T: &str = "bad_startup_is_one_clear_line";
    let _g = serial();
    let Some(tools) = preflight(T, &["kill"]) else {
        return;
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "xwlive-{T}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    // These run in the machine's own namespace: a free loopback port, and `lo` (which exists
    // everywhere) where an interface is needed. Level "warn": the contract is about the error,
    // not about progress lines.
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let write_cfg = |name: &str, iface: &str, listen: &str| -> PathBuf {
        let p = dir.join(format!("{name}.toml"));
        let body = format!(
            "{}\n[capture]\ninterfaces = [\"{iface}\"]\npromisc = false\n\n[output]\neve_path = {}\n\n\
             [metrics]\nenabled = true\nlisten = \"{listen}\"\nallow = [\"127.0.0.0/8\"]\n\n[log]\nlevel = \"warn\"\n",
            demo_toml(),
            toml_str(&dir.join(format!("{name}.eve.json")))
        );
        fs::write(&p, body).unwrap();
        p
    };
    let start = |cfg: &Path| -> (Option<ExitStatus>, String) {
        let mut cmd = Command::new(daemon_bin());
        cmd.args(["run", "-c"]).arg(cfg);
        clean_env(&mut cmd);
        match run_bounded(&mut cmd, Duration::from_secs(20)) {
            Ok(o) => (Some(o.status), text(&o.stderr)),
            Err(e) => (None, e),
        }
    };
    let _ = tools;

    let mut cases: Vec<(&str, PathBuf, String, Option<std::net::TcpListener>)> = Vec::new();
    if Path::new("/sys/class/net/nosuch0").exists() {
        skip(
            T,
            "an interface named nosuch0 exists here; missing-interface case not run",
        );
    } else {
        let port = free_port();
        cases.push((
            "missing interface",
            write_cfg("nosuch", "nosuch0", &format!("127.0.0.1:{port}")),
            "nosuch0".into(),
            None,
        ));
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    cases.push((
        "metrics port in use",
        write_cfg("busy", "lo", &busy_addr),
        busy_addr.clone(),
        Some(busy),
    ));
    let missing = dir.join("no-such-config.toml");
    cases.push((
        "unreadable config",
        missing.clone(),
        "no-such-config.toml".into(),
        None,
    ));

    for (what, cfg, needle, _hold) in &cases {
        let (st, err) = start(cfg);
        let st = st.unwrap_or_else(|| panic!("{what}: {err}"));
        assert!(
            !st.success(),
            "{what}: exit status {st}, want non-zero; stderr:\n{err}"
        );
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{what}: stderr should be one line, is {}:\n{err}",
            lines.len()
        );
        assert!(
            lines[0].contains(needle.as_str()),
            "{what}: the error line does not name {needle:?}: {}",
            lines[0]
        );
        println!("{T}: {what}: {st}: {}", lines[0]);
    }
    let _ = fs::remove_dir_all(&dir);
}

/// (f) The unit file is rated "OK" or better by `systemd-analyze security --offline=true`.
#[test]
fn systemd_unit_is_hardened() {
    const T: &str = "systemd_unit_is_hardened";
    let Some(sa) = find_tool("systemd-analyze") else {
        return skip(T, "systemd-analyze not found (package systemd)");
    };
    let unit = repo().join("systemd/xferwatch.service");
    let o = run_bounded(
        Command::new(&sa)
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&unit),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = format!("{}{}", text(&o.stdout), text(&o.stderr));
    if !o.status.success() && out.contains("--offline") {
        return skip(
            T,
            "this systemd-analyze has no --offline (systemd < 252); install the unit and run \
             `systemd-analyze security xferwatch.service`",
        );
    }
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no \"Overall exposure level\" line (exit {}):\n{out}",
                o.status
            )
        });
    // "→ Overall exposure level for xferwatch.service: 1.8 OK 🙂"
    let verdict = line.rsplit(':').next().unwrap_or("").trim();
    let mut parts = verdict.split_whitespace();
    let score: f64 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    let level = parts.next().unwrap_or("");
    assert!(
        ["PERFECT", "SAFE", "OK"].contains(&level),
        "exposure level {score} {level}, want OK or better:\n{out}"
    );
    println!("{T}: overall exposure level {score} {level}");
}

/// The systemd notify protocol: READY=1 once capturing, WATCHDOG=1 every WATCHDOG_USEC/2,
/// STOPPING=1 at shutdown.
#[test]
fn notify_ready_watchdog_stopping() {
    const T: &str = "notify_ready_watchdog_stopping";
    let Some((_g, rig)) = rig_for(T, &["ip", "curl", "kill"]) else {
        return;
    };
    let (cfg, _eve) = rig.config("daemon", 1, "");
    // 1 s watchdog: pings are due every 0.5 s.
    let mut d = rig.start_daemon("daemon", &cfg, &[("WATCHDOG_USEC", "1000000")]);
    let t = Instant::now();
    let mut pings = 0;
    while t.elapsed() < Duration::from_millis(2600) {
        let before = d.messages.len();
        if d.wait_notify(
            "WATCHDOG=1",
            Duration::from_millis(2600).saturating_sub(t.elapsed()),
        ) {
            pings += 1;
        } else if d.messages.len() == before {
            break;
        }
    }
    assert!(
        pings >= 3,
        "{pings} WATCHDOG=1 in 2.6 s with WATCHDOG_USEC=1000000, want at least 3 (one per 0.5 s); \
         messages: {:?}",
        d.messages
    );
    d.proc.signal("TERM");
    let stopping = d.wait_notify("STOPPING=1", Duration::from_secs(30));
    let st = d.proc.wait(Duration::from_secs(30));
    assert!(
        stopping,
        "no STOPPING=1 at shutdown; messages: {:?}",
        d.messages
    );
    assert!(
        st.is_some_and(|s| s.success()),
        "exit status {st:?}{}",
        d.proc.diag()
    );
    println!("{T}: READY=1, {pings} WATCHDOG=1 in 2.6 s, STOPPING=1, exit 0");
}

/// (g) Started as root with `[service] user`, the daemon runs as that user with no capability left;
/// SIGHUP reloads the allowlist: the same upload alerts before the reload and is suppressed after.
#[test]
fn drops_privileges_and_reloads_the_allowlist_on_hup() {
    const T: &str = "drops_privileges_and_reloads_the_allowlist_on_hup";
    let Some((_g, rig)) = rig_for(T, &["ip", "tcpreplay", "curl", "kill"]) else {
        return;
    };
    let file = pcap("ftp-passive-upload.pcap");
    let npkts = pcap_packets(&file) as f64;
    let service = "[service]\nuser = \"nobody\"\n";
    let (cfg, eve) = rig.config("privs", 1, &format!("{SHORT_TIMEOUTS}\n{service}"));
    // The dropped user must be able to read the configuration again on SIGHUP.
    for p in [cfg.parent().unwrap(), cfg.as_path()] {
        use std::os::unix::fs::PermissionsExt;
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let mut d = rig.start_daemon("daemon-privs", &cfg, &[]);
    let status = fs::read_to_string(format!("/proc/{}/status", d.proc.pid())).expect("status");
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), "65534 65534 65534 65534", "runs as nobody");
    assert_eq!(field("CapEff:"), "0000000000000000", "no capability left");
    assert_eq!(field("CapPrm:"), "0000000000000000", "no capability left");

    rig.tcpreplay(&file);
    rig.wait_metrics(
        &mut d,
        "first upload seen and its flows ended",
        Duration::from_secs(30),
        |m| packets_on(m) >= npkts && m.sum("xferwatch_flows_active", &[]) == 0.0,
    );
    // Approve the path, reload, send the same upload again.
    let allow = "[[allow]]\ninternal = \"10.77.0.2/32\"\nexternal = \"198.51.100.0/24\"\n\
                 app_proto = \"ftp\"\nsignatures = [1173001]\nreason = \"approved in the test\"\n";
    let body = fs::read_to_string(&cfg).expect("config") + "\n" + allow;
    fs::write(&cfg, body).expect("rewrite config");
    d.proc.signal("HUP");
    std::thread::sleep(Duration::from_millis(700));
    rig.tcpreplay(&file);
    // Capture counters and worker counters are published apart: wait for the worker's verdict.
    let m = rig.wait_metrics(
        &mut d,
        "second upload suppressed",
        Duration::from_secs(30),
        |m| {
            packets_on(m) >= 2.0 * npkts
                && m.sum(
                    "xferwatch_alerts_suppressed_total",
                    &[("signature_id", "1173001")],
                ) >= 1.0
        },
    );
    let st = rig.stop_daemon(&mut d);
    assert!(st.success(), "exit status {st}{}", d.proc.diag());
    let ev = read_eve(&eve);
    let large: Vec<&Value> = ev
        .iter()
        .filter(|e| e["event_type"] == "alert" && e["alert"]["signature_id"] == 1_173_001)
        .collect();
    assert_eq!(large.len(), 1, "one 1173001 before the reload, none after");
    assert_eq!(
        m.sum(
            "xferwatch_alerts_suppressed_total",
            &[("signature_id", "1173001")]
        ),
        1.0,
        "the second upload's alert was suppressed and counted"
    );
    assert!(
        d.proc.stderr_text().contains("allow entries"),
        "the reload is logged{}",
        d.proc.diag()
    );
    println!("{T}: uid 65534, CapEff 0, one alert before SIGHUP, one suppressed after");
}

/// (h) A burst faster than one worker with a one-batch queue: the sensor keeps running, every packet
/// is either handed to the sensor or counted as a kernel drop, queue drops are counted, memory stays
/// bounded, and it still stops cleanly.
#[test]
fn burst_keeps_running_and_counts_drops() {
    const T: &str = "burst_keeps_running_and_counts_drops";
    let Some((_g, rig)) = rig_for(T, &["ip", "tcpreplay", "curl", "kill"]) else {
        return;
    };
    let file = pcap("smb-upload.pcap");
    let loops = 100u64;
    let sent = pcap_packets(&file) * loops;
    let engine = "[engine]\nworkers = 1\nqueue_batches = 1\n";
    let (cfg, eve) = rig.config("burst", 1, &format!("{SHORT_TIMEOUTS}\n{engine}"));
    let mut d = rig.start_daemon("daemon-burst", &cfg, &[]);
    let loop_arg = format!("--loop={loops}");
    let mut p = rig.tcpreplay_bg(&file, &["--topspeed", &loop_arg]);
    let st = p.wait(Duration::from_secs(120));
    assert!(
        st.is_some_and(|s| s.success()),
        "tcpreplay failed{}",
        p.diag()
    );
    let m = rig.wait_metrics(
        &mut d,
        "the burst accounted for",
        Duration::from_secs(30),
        |m| {
            let seen = packets_on(m)
                + m.sum("xferwatch_capture_drops_total", &[("where", "kernel")])
                + m.sum("xferwatch_capture_drops_total", &[("where", "interface")]);
            seen >= sent as f64
        },
    );
    assert!(d.proc.running(), "the daemon survived the burst");
    let status = fs::read_to_string(format!("/proc/{}/status", d.proc.pid())).expect("status");
    let hwm_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // The capture buffer (64 MiB ring) plus bounded tables.
    assert!(hwm_kib < 256 * 1024, "peak memory {hwm_kib} KiB");
    let st = rig.stop_daemon(&mut d);
    assert!(st.success(), "exit status {st}{}", d.proc.diag());
    let ev = read_eve(&eve);
    let stats = ev
        .iter()
        .rev()
        .find(|e| e["event_type"] == "stats")
        .expect("stats");
    assert_eq!(
        stats["stats"]["flow"]["total"].as_u64().unwrap_or(0),
        flows(&ev).len() as u64,
        "every flow the sensor created has its record"
    );
    println!(
        "{T}: {sent} packets sent; handed to the sensor {}, kernel drops {}, queue drops {}; peak {} MiB",
        packets_on(&m),
        m.sum("xferwatch_capture_drops_total", &[("where", "kernel")]),
        m.sum("xferwatch_capture_drops_total", &[("where", "queue")]),
        hwm_kib / 1024
    );
}

/// (i) A burst of malformed connections to the metrics listener (one warning each from the
/// exporter): the log stays a few lines (rate-limited per call site), every failure is counted,
/// the endpoint keeps answering, and no colour codes reach a log that is not a terminal.
#[test]
fn malformed_metrics_connections_are_rate_limited_and_counted() {
    const T: &str = "malformed_metrics_connections_are_rate_limited_and_counted";
    let Some((_g, rig)) = rig_for(T, &["ip", "curl", "kill", "bash"]) else {
        return;
    };
    const CONNECTIONS: u32 = 300;
    let (cfg, _eve) = rig.config("malformed", 1, "");
    let mut d = rig.start_daemon("daemon-malformed", &cfg, &[]);
    let (host, port) = METRICS.split_once(':').expect("host:port");
    let script = format!(
        "for i in $(seq {CONNECTIONS}); do \
           exec 3<>/dev/tcp/{host}/{port} || exit 1; \
           printf 'NOT HTTP AT ALL \\001\\002\\r\\n\\r\\n' >&3; cat <&3 >/dev/null; exec 3<&-; \
         done"
    );
    let bash = rig.tools.get("bash").to_string_lossy().into_owned();
    let t0 = Instant::now();
    let out = rig
        .exec(&[&bash, "-c", &script], Duration::from_secs(60))
        .expect("malformed connections");
    assert!(out.status.success(), "bash: {}", text(&out.stderr));
    let m = rig.wait_metrics(
        &mut d,
        "every malformed connection counted",
        Duration::from_secs(20),
        |m| m.sum("xferwatch_metrics_listener_errors_total", &[]) >= f64::from(CONNECTIONS),
    );
    let suppressed = m.sum(
        "xferwatch_log_messages_suppressed_total",
        &[("level", "warn")],
    );
    let log = d.proc.stderr_text();
    let warnings = log
        .lines()
        .filter(|l| l.contains("Error serving connection"))
        .count();
    assert!(
        (1..=5).contains(&warnings),
        "{warnings} warning lines for {CONNECTIONS} malformed connections{}",
        d.proc.diag()
    );
    assert!(
        suppressed >= f64::from(CONNECTIONS) - 5.0,
        "suppressed {suppressed}"
    );
    assert!(
        log.lines().count() < 30,
        "the log stays short{}",
        d.proc.diag()
    );
    assert!(
        !log.contains('\x1b'),
        "no ANSI escape in a log file{}",
        d.proc.diag()
    );
    assert!(d.proc.running(), "the daemon survived");
    let st = rig.stop_daemon(&mut d);
    assert!(st.success(), "exit status {st}{}", d.proc.diag());
    println!(
        "{T}: {CONNECTIONS} malformed connections in {:.1} s: {} counted, {warnings} warning lines, \
         {suppressed} suppressed, {} log lines in all",
        t0.elapsed().as_secs_f64(),
        m.sum("xferwatch_metrics_listener_errors_total", &[]),
        d.proc.stderr_text().lines().count()
    );
}

/// (j) CAP_NET_RAW alone is enough, also for promiscuous mode (libpcap asks for it per socket with
/// PACKET_ADD_MEMBERSHIP, which needs no CAP_NET_ADMIN): started as nobody with only CAP_NET_RAW, as
/// the systemd unit does, the daemon opens the interface promiscuously, sees every packet and alerts.
#[test]
fn captures_promiscuously_with_cap_net_raw_alone() {
    const T: &str = "captures_promiscuously_with_cap_net_raw_alone";
    let Some((_g, rig)) = rig_for(T, &["ip", "tcpreplay", "curl", "kill", "setpriv"]) else {
        return;
    };
    let file = pcap("ftp-passive-upload.pcap");
    let npkts = pcap_packets(&file) as f64;
    let (cfg, eve) = rig.config("netraw", 1, SHORT_TIMEOUTS);
    // The unprivileged user reads the configuration and writes the EVE file.
    for (p, mode) in [
        (rig.dir.as_path(), 0o755),
        (cfg.parent().unwrap(), 0o777),
        (cfg.as_path(), 0o644),
    ] {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let setpriv = rig.tools.get("setpriv").to_string_lossy().into_owned();
    let bin = daemon_bin().to_string_lossy().into_owned();
    let cfg_s = cfg.to_string_lossy().into_owned();
    let mut p = rig.spawn(
        "daemon-netraw",
        &[
            &setpriv,
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all,+net_raw",
            "--ambient-caps=-all,+net_raw",
            "--bounding-set=-all,+net_raw",
            &bin,
            "run",
            "-c",
            &cfg_s,
        ],
        &[],
    );
    let up = poll(Duration::from_secs(20), || {
        if !p.running() {
            return Some(false);
        }
        rig.scrape().map(|_| true)
    });
    assert_eq!(
        up,
        Some(true),
        "daemon with CAP_NET_RAW alone did not come up{}",
        p.diag()
    );
    let status = fs::read_to_string(format!("/proc/{}/status", p.pid())).expect("status");
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_default()
            .to_string()
    };
    // Bit 13: CAP_NET_RAW, nothing else.
    assert_eq!(field("CapEff:"), "0000000000002000", "{status}");
    assert_eq!(field("CapBnd:"), "0000000000002000", "{status}");
    assert_eq!(field("Uid:"), "65534");
    let link = rig.exec_ok(&["ip", "-d", "link", "show", CAP_IF]);
    assert!(
        text(&link.stdout).contains("promiscuity 1"),
        "the capture socket holds the interface in promiscuous mode:\n{}",
        text(&link.stdout)
    );
    rig.tcpreplay(&file);
    let m = poll(Duration::from_secs(30), || {
        let m = Metrics::parse(&rig.scrape()?);
        (packets_on(&m) >= npkts
            && m.sum("xferwatch_alerts_total", &[("signature_id", "1173001")]) >= 1.0)
            .then_some(m)
    });
    assert!(m.is_some(), "packets and the alert seen{}", p.diag());
    p.signal("TERM");
    let st = p.wait(Duration::from_secs(30));
    assert!(st.is_some_and(|s| s.success()), "exit {st:?}{}", p.diag());
    let alerts = read_eve(&eve)
        .iter()
        .filter(|e| e["event_type"] == "alert")
        .count();
    assert!(alerts >= 1, "the upload's alert is in the EVE file");
    println!(
        "{T}: uid 65534, CapEff 0x2000 (net_raw only), promiscuity 1, {} packets, {alerts} alert(s)",
        packets_on(&m.unwrap())
    );
}

/// (h) Issue 12: the capture interface deleted and re-created (a NIC reset, a VM migration) is
/// reopened by itself; while it is gone the daemon says so (capture_up 0, STATUS=DEGRADED) and
/// does not feed the watchdog; afterwards an upload is detected as before.
#[test]
fn lost_interface_is_reopened() {
    const T: &str = "lost_interface_is_reopened";
    let Some((_g, rig)) = rig_for(T, &["ip", "tcpreplay", "curl", "kill"]) else {
        return;
    };
    let file = pcap("ftp-passive-upload.pcap");
    let (cfg, eve) = rig.config("daemon", 1, "");
    let expected = replay(&cfg, &file, &rig.dir.join("replay.json"));
    let want = alerts_by_sig(&expected)
        .get("1173001")
        .copied()
        .unwrap_or(0.0);
    assert!(want >= 1.0, "the capture holds a large upload");
    let mut d = rig.start_daemon("daemon", &cfg, &[("WATCHDOG_USEC", "1000000")]);
    rig.wait_metrics(&mut d, "capture up", Duration::from_secs(10), |m| {
        m.sum("xferwatch_capture_up", &[]) == 1.0
    });
    let ns = rig.ns.clone();
    rig.ip_ok(&["-n", &ns, "link", "del", CAP_IF]);
    rig.wait_metrics(&mut d, "capture_up 0", Duration::from_secs(15), |m| {
        m.sum("xferwatch_capture_up", &[]) == 0.0
    });
    // What was sent until the daemon noticed (within a second) is read first; from then on, no
    // watchdog ping while no capture is up.
    d.messages.clear();
    d.wait_notify("-", Duration::from_millis(1500));
    let degraded = d.messages.iter().any(|m| m.contains("DEGRADED"));
    d.messages.clear();
    d.wait_notify("WATCHDOG=1", Duration::from_secs(3));
    let pings = d
        .messages
        .iter()
        .filter(|m| m.contains("WATCHDOG=1"))
        .count();
    rig.ip_ok(&[
        "-n", &ns, "link", "add", CAP_IF, "type", "veth", "peer", "name", SEND_IF,
    ]);
    rig.ip_ok(&["-n", &ns, "link", "set", CAP_IF, "up"]);
    rig.ip_ok(&["-n", &ns, "link", "set", SEND_IF, "up"]);
    rig.wait_metrics(&mut d, "capture reopened", Duration::from_secs(20), |m| {
        m.sum("xferwatch_capture_up", &[]) == 1.0
            && m.sum("xferwatch_capture_reopens_total", &[]) >= 1.0
    });
    thread::sleep(Duration::from_millis(500));
    let npkts = pcap_packets(&file) as f64;
    rig.tcpreplay(&file);
    rig.wait_metrics(
        &mut d,
        "every packet captured",
        Duration::from_secs(15),
        |m| packets_on(m) >= npkts,
    );
    let st = rig.stop_daemon(&mut d);
    assert!(st.success(), "daemon exit status {st}{}", d.proc.diag());
    assert_eq!(pings, 0, "the watchdog was fed while no capture was up");
    assert!(degraded, "STATUS= said nothing: {:?}", d.messages);
    let got = alerts_by_sig(&read_eve(&eve))
        .get("1173001")
        .copied()
        .unwrap_or(0.0);
    assert_eq!(got, want, "the upload after the reopening is detected");
    println!("{T}: reopened; {got} large-outbound alert(s) after it, no watchdog ping while down");
}

/// (i) Issue 12: a full disk stops the EVE file, not the sensor: events are held (output_up 0,
/// STATUS=DEGRADED), and once space returns they are written, nothing lost.
#[test]
fn full_disk_holds_events_until_space_returns() {
    const T: &str = "full_disk_holds_events_until_space_returns";
    let Some((_g, rig)) = rig_for(T, &["ip", "tcpreplay", "curl", "kill", "mount", "umount"])
    else {
        return;
    };
    let file = pcap("ftp-passive-upload.pcap");
    let (cfg, _) = rig.config("daemon", 1, "");
    let expected = replay(&cfg, &file, &rig.dir.join("replay.json"));
    let mnt = rig.dir.join("small");
    fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new(rig.tools.get("mount"))
        .args(["-t", "tmpfs", "-o", "size=1m", "xwtest"])
        .arg(&mnt)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        skip(T, "cannot mount a tmpfs");
        return;
    }
    struct Unmount(PathBuf, PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new(&self.0).arg(&self.1).status();
        }
    }
    let _unmount = Unmount(rig.tools.get("umount").to_path_buf(), mnt.clone());
    let eve = mnt.join("eve.json");
    let body = fs::read_to_string(&cfg).unwrap().replace(
        "[output]\n",
        &format!("[output]\neve_path = {}\n", toml_str(&eve)),
    );
    // The config's own eve_path line comes second: drop it.
    let mut seen = false;
    let body: String = body
        .lines()
        .filter(|l| {
            if l.starts_with("eve_path") {
                let keep = !seen;
                seen = true;
                keep
            } else {
                true
            }
        })
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&cfg, body).unwrap();
    let mut d = rig.start_daemon("daemon", &cfg, &[]);
    // Fill the file system.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
    }
    rig.tcpreplay(&file);
    rig.wait_metrics(&mut d, "output_up 0", Duration::from_secs(15), |m| {
        m.sum("xferwatch_output_up", &[]) == 0.0
    });
    let degraded = d.wait_notify(
        "STATUS=DEGRADED: EVE output failing (No space left on device (os error 28))",
        Duration::from_secs(5),
    ) || d.messages.iter().any(|m| m.contains("EVE output failing"));
    fs::remove_file(&filler).unwrap();
    rig.wait_metrics(&mut d, "output_up 1", Duration::from_secs(20), |m| {
        m.sum("xferwatch_output_up", &[]) == 1.0
    });
    let st = rig.stop_daemon(&mut d);
    assert!(st.success(), "daemon exit status {st}{}", d.proc.diag());
    assert!(degraded, "STATUS= said nothing: {:?}", d.messages);
    let ev = read_eve(&eve);
    assert_eq!(
        flow_keys(&ev),
        flow_keys(&expected),
        "every flow record written after all"
    );
    assert_eq!(alerts_by_sig(&ev), alerts_by_sig(&expected));
    let stats = ev
        .iter()
        .rev()
        .find(|e| s(&e["event_type"]) == "stats")
        .unwrap();
    assert_eq!(
        stats["xfer"]["events_dropped"].as_u64(),
        Some(0),
        "nothing dropped"
    );
    println!(
        "{T}: held while the disk was full, {} events written after",
        ev.len()
    );
}

// ------------------------------------------------------------------------- Grafana dashboard --

/// The Grafana dashboard of deploy/grafana/xferwatch.json, reduced to what its queries need.
struct Dashboard {
    /// Panels other than rows.
    panels: usize,
    /// Its query variables in order: name, label_values() selector, label.
    vars: Vec<(String, String, String)>,
    /// Every panel target: panel title and expression.
    targets: Vec<(String, String)>,
}

/// Reads the dashboard and checks its form: schemaVersion >= 36, a Prometheus data source
/// variable used by every panel and target, the sensor (instance) and interface variables as
/// `label_values(selector, label)` queries, unique panel ids, an expression in every target.
fn dashboard() -> Dashboard {
    let path = repo().join("deploy/grafana/xferwatch.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        v["schemaVersion"].as_u64().is_some_and(|n| n >= 36),
        "schemaVersion {} < 36",
        v["schemaVersion"]
    );
    let ds_ok = |d: &Value| d["type"] == "prometheus" && d["uid"] == "${datasource}";
    let list = v["templating"]["list"].as_array().expect("templating.list");
    assert!(
        list.iter().any(|t| t["name"] == "datasource"
            && t["type"] == "datasource"
            && t["query"] == "prometheus"),
        "no Prometheus data source variable `datasource`"
    );
    let mut vars = Vec::new();
    for t in list.iter().filter(|t| t["type"] == "query") {
        let name = t["name"].as_str().expect("variable name").to_string();
        assert!(
            ds_ok(&t["datasource"]),
            "variable {name}: data source is not ${{datasource}}"
        );
        let def = t["definition"].as_str().unwrap_or_default();
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: not label_values(selector, label): {def}"));
        let (sel, label) = inner
            .rsplit_once(',')
            .unwrap_or_else(|| panic!("variable {name}: {def}"));
        assert_eq!(
            t["query"]["query"], def,
            "variable {name}: query and definition differ"
        );
        vars.push((name, sel.trim().to_string(), label.trim().to_string()));
    }
    for want in ["instance", "interface"] {
        assert!(
            vars.iter().any(|(n, _, _)| n == want),
            "no `{want}` variable"
        );
    }
    let mut flat = Vec::new();
    for p in v["panels"].as_array().expect("panels") {
        flat.push(p);
        // A collapsed row keeps its panels inside it.
        flat.extend(p["panels"].as_array().into_iter().flatten());
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut panels = 0;
    let mut targets = Vec::new();
    for p in flat {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "panel id {id} twice");
        if p["type"] == "row" {
            continue;
        }
        panels += 1;
        let title = p["title"].as_str().unwrap_or_default().to_string();
        assert!(
            ds_ok(&p["datasource"]),
            "panel {title}: data source is not ${{datasource}}"
        );
        let ts = p["targets"].as_array().filter(|t| !t.is_empty());
        let ts = ts.unwrap_or_else(|| panic!("panel {title} has no targets"));
        for t in ts {
            assert!(
                ds_ok(&t["datasource"]),
                "panel {title}: a target's data source"
            );
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(
                !expr.trim().is_empty(),
                "panel {title}: a target without expr"
            );
            targets.push((title.clone(), expr.to_string()));
        }
    }
    Dashboard {
        panels,
        vars,
        targets,
    }
}

/// A dashboard expression as Grafana sends it: the variables replaced by their values (a regex
/// alternation, as Grafana formats multi-value variables) and the interval macros by durations.
fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut e = expr.to_string();
    for (name, value) in values {
        e = e
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    for (mac, dur) in [
        ("$__rate_interval", "1m"),
        ("$__interval", "15s"),
        ("$__range", "5m"),
    ] {
        e = e.replace(mac, dur);
    }
    assert!(!e.contains('$'), "unsubstituted variable in {e}");
    e
}

/// Label values as one regex for a PromQL string: `(a|b)`, regex metacharacters escaped.
fn regex_alternation(values: &[String]) -> String {
    let esc: Vec<String> = values
        .iter()
        .map(|v| {
            v.chars()
                .map(|c| {
                    if r"\.+*?()|[]{}^$".contains(c) {
                        format!(r"\\{c}")
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        })
        .collect();
    format!("({})", esc.join("|"))
}

/// (l) The Grafana dashboard: a real Prometheus scrapes the daemon while every bundled capture
/// is replayed onto its interface; then each variable resolves to values and each panel query,
/// with the variables and interval macros substituted, is valid and returns data.
#[test]
fn grafana_dashboard_queries_return_data() {
    const T: &str = "grafana_dashboard_queries_return_data";
    let dash = dashboard();
    let Some((_g, rig)) = rig_for(T, &["ip", "tcpreplay", "curl", "kill", "prometheus"]) else {
        println!(
            "{T}: dashboard form checked ({} panels, {} queries); the live queries need root",
            dash.panels,
            dash.targets.len()
        );
        return;
    };
    let t0 = Instant::now();
    let (cfg, _eve) = rig.config("daemon", 1, SHORT_TIMEOUTS);
    let mut d = rig.start_daemon("daemon", &cfg, &[]);
    let mut prom = rig.start_prometheus();

    let mut files: Vec<PathBuf> = fs::read_dir(repo().join("pcaps"))
        .expect("pcaps/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    files.sort();
    let mut npkts = 0.0;
    for f in &files {
        rig.tcpreplay(f);
        npkts += pcap_packets(f) as f64;
    }
    rig.wait_metrics(
        &mut d,
        "every replayed packet captured and every flow ended",
        Duration::from_secs(60),
        |m| {
            packets_on(m) >= npkts
                && m.has("xferwatch_flows_active")
                && m.sum("xferwatch_flows_active", &[]) == 0.0
        },
    );

    // The variables, in order (a later one may use an earlier one), from the labels Prometheus
    // has stored.
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut shown = Vec::new();
    for (name, sel, label) in &dash.vars {
        let sel = substitute(sel, &values);
        let got = poll(Duration::from_secs(30), || {
            let v = rig.prom_api(&format!("label/{label}/values"), &[("match[]", &sel)])?;
            let vals: Vec<String> = v["data"]
                .as_array()?
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect();
            (!vals.is_empty()).then_some(vals)
        });
        let vals = got.unwrap_or_else(|| {
            panic!(
                "variable {name}: label_values({sel}, {label}) found nothing in 30 s{}",
                prom.diag()
            )
        });
        shown.push(format!("{name}={}", vals.join(",")));
        values.insert(name.clone(), regex_alternation(&vals));
    }

    // Every panel query, until each returns data (a few scrapes after the traffic).
    let queries: Vec<(String, String)> = dash
        .targets
        .iter()
        .map(|(title, e)| (title.clone(), substitute(e, &values)))
        .collect();
    let mut empty: Vec<String> = Vec::new();
    let done = poll(Duration::from_secs(60), || {
        empty.clear();
        for (title, q) in &queries {
            let Some(v) = rig.prom_api("query", &[("query", q)]) else {
                empty.push(format!("{title}: no answer: {q}"));
                continue;
            };
            assert_eq!(
                v["status"], "success",
                "panel {title}: Prometheus rejects the query {q}: {} {}",
                v["errorType"], v["error"]
            );
            if v["data"]["result"].as_array().is_none_or(|r| r.is_empty()) {
                empty.push(format!("{title}: no data: {q}"));
            }
        }
        empty.is_empty().then_some(())
    });
    assert!(
        done.is_some(),
        "{} of {} dashboard queries returned no data within 60 s:\n  {}{}",
        empty.len(),
        queries.len(),
        empty.join("\n  "),
        prom.diag()
    );

    prom.signal("TERM");
    let _ = prom.wait(Duration::from_secs(15));
    let st = rig.stop_daemon(&mut d);
    assert!(st.success(), "daemon exit status {st}{}", d.proc.diag());
    println!(
        "{T}: {} captures replayed ({npkts} packets); {} panels, {} queries: all valid and \
         returned data ({}) ({:.1} s)",
        files.len(),
        dash.panels,
        queries.len(),
        shown.join("; "),
        t0.elapsed().as_secs_f64()
    );
}
