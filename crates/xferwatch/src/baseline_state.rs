//! The baseline state file: every (internal host, VLAN, protocol) baseline, saved at shutdown (and
//! periodically by the daemon) and loaded at start, so a restart forgets nothing. Written to a
//! temporary file and renamed, so a crash never leaves half a file. A file that cannot be read is
//! reported and set aside (renamed `*.corrupt`); the sensor starts learning afresh.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use xferwatch_policy::detect::{proto_name, HostBaseline, HostKey};
use xferwatch_wire::Addr;

pub type Saved = Vec<(HostKey, HostBaseline)>;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    window_secs: u64,
    hosts: Vec<Host>,
}

#[derive(Serialize, Deserialize)]
struct Host {
    host: std::net::IpAddr,
    vlan: u16,
    proto: String,
    window_start_us: i64,
    current: u64,
    mean: f64,
    dev: f64,
    windows: u32,
}

fn proto_key(p: &str) -> Option<u8> {
    (0..3u8).find(|k| proto_name(*k) == p)
}

/// Loads the state file. Missing: empty. Unreadable or from another window length: reported, the
/// file is renamed aside, empty.
pub fn load(path: &Path, window_secs: u64) -> Saved {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(
                "{}: cannot read the baseline state ({e}); starting afresh",
                path.display()
            );
            return Vec::new();
        }
    };
    let parsed: Result<File, String> = serde_json::from_str::<File>(&text)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            if f.version != 1 {
                Err(format!("version {} (expected 1)", f.version))
            } else if f.window_secs != window_secs {
                Err(format!(
                    "window of {} s, but detect.baseline.window is {} s",
                    f.window_secs, window_secs
                ))
            } else {
                Ok(f)
            }
        });
    match parsed {
        Ok(f) => f
            .hosts
            .into_iter()
            .filter(|h| h.mean.is_finite() && h.dev.is_finite() && h.mean >= 0.0)
            .filter_map(|h| {
                let k = proto_key(&h.proto)?;
                Some((
                    (Addr::from(h.host), h.vlan, k),
                    HostBaseline::new(h.window_start_us, h.current, h.mean, h.dev, h.windows),
                ))
            })
            .collect(),
        Err(why) => {
            let aside = path.with_extension("corrupt");
            let moved = std::fs::rename(path, &aside).is_ok();
            tracing::warn!(
                "{}: baseline state not usable ({why}); {}starting afresh",
                path.display(),
                if moved {
                    format!("moved to {}, ", aside.display())
                } else {
                    String::new()
                }
            );
            Vec::new()
        }
    }
}

/// Saves every baseline, sorted (the same state gives the same file).
pub fn save(path: &Path, window_secs: u64, mut all: Saved) -> Result<()> {
    all.sort_by(|a, b| (a.0 .0.octets(), a.0 .1, a.0 .2).cmp(&(b.0 .0.octets(), b.0 .1, b.0 .2)));
    let f = File {
        version: 1,
        window_secs,
        hosts: all
            .into_iter()
            .map(|((addr, vlan, k), b)| Host {
                host: addr.to_ip(),
                vlan,
                proto: proto_name(k).to_string(),
                window_start_us: b.window_start_us,
                current: b.current,
                mean: b.mean,
                dev: b.dev,
                windows: b.windows,
            })
            .collect(),
    };
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(&f).context("cannot encode the baseline state")?;
    std::fs::write(&tmp, text + "\n")
        .with_context(|| format!("{}: cannot write the baseline state", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot replace the baseline state", path.display()))?;
    Ok(())
}
