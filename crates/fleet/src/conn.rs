//! Connections to the fleet's Redis: one server or a cluster, with bounded connect and reply
//! times so that a Redis that is down costs a sensor a timeout, never a hang.

use anyhow::{anyhow, bail, Context, Result};
use std::time::Duration;

/// Where the fleet's Redis is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One server: `redis://[:password@]host:port[/db]`, or `rediss://` for TLS.
    Single(String),
    /// A Redis Cluster, given by one or more of its nodes.
    Cluster(Vec<String>),
}

impl Target {
    /// The URLs, for messages: passwords are replaced by `***`.
    pub fn describe(&self) -> String {
        match self {
            Target::Single(u) => redact(u),
            Target::Cluster(v) => format!(
                "cluster [{}]",
                v.iter().map(|u| redact(u)).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// Checks the URLs' syntax (scheme, host, port, database) without connecting.
    pub fn check(&self) -> Result<()> {
        let urls: Vec<&String> = match self {
            Target::Single(u) => vec![u],
            Target::Cluster(v) => {
                if v.is_empty() {
                    bail!("no node given");
                }
                v.iter().collect()
            }
        };
        for u in urls {
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                bail!(
                    "{}: expected redis://host:port or rediss://host:port",
                    redact(u)
                );
            }
            redis::Client::open(u.as_str()).map_err(|e| anyhow!("{}: {e}", redact(u)))?;
        }
        Ok(())
    }
}

/// `redis://user:secret@host` → `redis://user:***@host`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let host_start = rest.find('/').unwrap_or(rest.len());
    match rest[..host_start].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let hidden = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{}{hidden}{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_string(),
    }
}

/// An open connection to a server or a cluster.
pub enum Conn {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Conn {
    /// Connects within `timeout`; every later reply must come within `timeout` too.
    pub fn open(target: &Target, timeout: Duration) -> Result<Conn> {
        install_crypto();
        match target {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| anyhow!("{}: {e}", redact(url)))?;
                let c = client
                    .get_connection_with_timeout(timeout)
                    .map_err(|e| anyhow!("{}: {e}", redact(url)))?;
                c.set_read_timeout(Some(timeout))?;
                c.set_write_timeout(Some(timeout))?;
                Ok(Conn::Single(c))
            }
            Target::Cluster(nodes) => {
                let client = redis::cluster::ClusterClient::builder(nodes.clone())
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(1)
                    .build()
                    .map_err(|e| anyhow!("{}: {e}", target.describe()))?;
                let c = client
                    .get_connection()
                    .map_err(|e| anyhow!("{}: {e}", target.describe()))?;
                Ok(Conn::Cluster(Box::new(c)))
            }
        }
    }

    /// The connection, for commands, pipelines and scripts.
    pub fn link(&mut self) -> &mut dyn redis::ConnectionLike {
        match self {
            Conn::Single(c) => c,
            Conn::Cluster(c) => c.as_mut(),
        }
    }

    /// PING: the server answers.
    pub fn ping(&mut self) -> Result<()> {
        let pong: String = redis::cmd("PING").query(self.link()).context("PING")?;
        if pong != "PONG" {
            bail!("PING answered {pong:?}");
        }
        Ok(())
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

/// rustls needs one process-wide crypto provider; ring is the one built in.
fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: another part of the process installed one first, which is as good.
        #[allow(
            deprecated,
            reason = "ring's provider lacks post-quantum key exchange; Redis TLS does not need it"
        )]
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("redis://:s3cret@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact("rediss://u:s3cret@h:6380"), "rediss://u:***@h:6380");
        assert_eq!(redact("redis://tok@h"), "redis://***@h");
        assert_eq!(redact("redis://h:6379/2"), "redis://h:6379/2");
        let t = Target::Cluster(vec!["redis://:pw@a:1".into(), "redis://b:2".into()]);
        assert_eq!(t.describe(), "cluster [redis://:***@a:1, redis://b:2]");
    }

    #[test]
    fn urls_are_checked_without_connecting() {
        assert!(Target::Single("redis://127.0.0.1:6379/0".into())
            .check()
            .is_ok());
        assert!(Target::Single("rediss://:pw@example.org:6380".into())
            .check()
            .is_ok());
        assert!(Target::Single("http://127.0.0.1:6379".into())
            .check()
            .is_err());
        assert!(Target::Cluster(vec![]).check().is_err());
    }

    #[test]
    fn a_real_server_and_a_real_cluster_answer() {
        if let Err(why) = crate::testing::available() {
            eprintln!("SKIP a_real_server_and_a_real_cluster_answer: {why}");
            return;
        }
        let s = crate::testing::RedisServer::start_with_password("pw").unwrap();
        let mut c = Conn::open(&Target::Single(s.url()), Duration::from_secs(2)).unwrap();
        c.ping().unwrap();
        let bad = Target::Single(format!("redis://:wrong@127.0.0.1:{}/0", s.port));
        assert!(Conn::open(&bad, Duration::from_secs(2))
            .and_then(|mut c| c.ping())
            .is_err());
        let cl = crate::testing::RedisCluster::start(3).unwrap();
        let mut c = Conn::open(&Target::Cluster(cl.urls()), Duration::from_secs(2)).unwrap();
        assert!(c.is_cluster());
        for i in 0..50 {
            let _: () = redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg(i)
                .query(c.link())
                .unwrap();
        }
        // The keys spread over the three masters.
        let held: Vec<usize> = cl
            .nodes
            .iter()
            .map(|n| n.cli(&["DBSIZE"]).unwrap().trim().parse().unwrap())
            .collect();
        assert_eq!(held.iter().sum::<usize>(), 50, "{held:?}");
        assert!(held.iter().all(|&n| n > 0), "{held:?}");
    }

    #[test]
    fn a_closed_port_is_a_quick_error() {
        let t0 = std::time::Instant::now();
        let e = Conn::open(
            &Target::Single("redis://127.0.0.1:1/".into()),
            Duration::from_millis(500),
        );
        assert!(e.is_err());
        assert!(t0.elapsed() < Duration::from_secs(3));
    }
}
