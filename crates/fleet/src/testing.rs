//! Real Redis servers for tests: `redis-server` processes on free loopback ports, one alone or
//! three made into a Redis Cluster with `redis-cli --cluster create`. Each lives in its own
//! temporary directory, persists nothing, and is killed (and its directory removed) on drop.
//!
//! Tests call [`available`] first and skip, saying why, when the binaries are missing.

use anyhow::{bail, Context, Result};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Are `redis-server` and `redis-cli` installed? Err says what is missing.
pub fn available() -> std::result::Result<(), String> {
    for bin in ["redis-server", "redis-cli"] {
        let ok = Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!(
                "{bin} is not installed (Debian: apt-get install redis-server redis-tools; make deps-test does it as root)"
            ));
        }
    }
    Ok(())
}

/// A port on 127.0.0.1 that nobody listens on, whose cluster bus port (+10000) is free too.
fn free_port() -> Result<u16> {
    for _ in 0..200 {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let p = l.local_addr()?.port();
        drop(l);
        if p < 55_000 && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return Ok(p);
        }
    }
    bail!("no free loopback port pair found")
}

/// One `redis-server`.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    cluster: bool,
    password: Option<String>,
    /// Append-only file, fsync'd at every write: what was acknowledged survives a kill.
    persistent: bool,
}

impl RedisServer {
    /// Starts a server that keeps an append-only file (fsync at every write), so that a kill
    /// and a [`RedisServer::restart`] lose nothing it acknowledged.
    pub fn start_persistent() -> Result<RedisServer> {
        let mut s = RedisServer::spawn(free_port()?, false, None)?;
        s.persistent = true;
        s.restart()?;
        Ok(s)
    }

    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Result<RedisServer> {
        RedisServer::spawn(free_port()?, false, None)
    }

    /// Starts a server that wants `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> Result<RedisServer> {
        RedisServer::spawn(free_port()?, false, Some(password.to_string()))
    }

    fn spawn(port: u16, cluster: bool, password: Option<String>) -> Result<RedisServer> {
        let dir =
            std::env::temp_dir().join(format!("xferwatch-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut s = RedisServer {
            child: None,
            port,
            dir,
            cluster,
            password,
            persistent: false,
        };
        s.restart()?;
        Ok(s)
    }

    /// (Re)starts the server on its port, e.g. after [`RedisServer::kill`].
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--protected-mode", "no"])
            .args(if self.persistent {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "everysec"]
            })
            .args(["--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--logfile", "redis.log"]);
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        if self.cluster {
            cmd.args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args(["--cluster-node-timeout", "2000"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        self.child = Some(child);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.cli(&["PING"]).is_ok_and(|o| o.contains("PONG"))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "redis-server on port {} did not answer within 10 s (log: {})",
            self.port,
            self.dir.join("redis.log").display()
        )
    }

    /// `redis://127.0.0.1:<port>/0` (with the password, if any).
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Runs `redis-cli -p <port> ARGS…` and returns its standard output.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(p) = &self.password {
            cmd.args(["--no-auth-warning", "-a", p]);
        }
        if self.cluster {
            cmd.arg("-c");
        }
        let out = cmd.args(args).stderr(Stdio::null()).output()?;
        if !out.status.success() {
            bail!("redis-cli {args:?} failed");
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of `n` masters, no replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `n` (at least 3) cluster-enabled servers and joins them; returns once every node
    /// says `cluster_state:ok`.
    pub fn start(n: usize) -> Result<RedisCluster> {
        let mut nodes = Vec::new();
        for _ in 0..n.max(3) {
            nodes.push(RedisServer::spawn(free_port()?, true, None)?);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("redis-cli --cluster create")?;
        if !out.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let t0 = Instant::now();
        loop {
            let ok = nodes.iter().all(|s| {
                s.cli(&["CLUSTER", "INFO"])
                    .is_ok_and(|o| o.contains("cluster_state:ok"))
            });
            if ok {
                return Ok(RedisCluster { nodes });
            }
            if t0.elapsed() > Duration::from_secs(20) {
                bail!("the cluster did not reach cluster_state:ok within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect()
    }
}
