//! The generator: keeps `concurrency` sessions running and round-robins their next packets into
//! one pcap, tracking what the sensor should report.

use crate::expect::Expect;
use crate::pcap::PcapWriter;
use crate::plan::{build, Planner, Profile, World, BASE_UNIX};
use crate::session::{Content, Session};
use serde_json::{json, Value};
use std::io::{self, Write};

/// Default threshold of the large-outbound alert (the sensor's default): 50 MiB.
pub const DEFAULT_THRESHOLD: u64 = 50 << 20;

/// What to generate.
#[derive(Clone, Debug)]
pub struct Config {
    /// Profile.
    pub profile: Profile,
    /// Approximate size of the capture file.
    pub bytes: u64,
    /// Seed.
    pub seed: u64,
    /// Internal hosts (default per profile).
    pub hosts: Option<u32>,
    /// Exact number of sessions (default: as many as the byte budget allows).
    pub flows: Option<u64>,
    /// Sessions running at once (default per profile).
    pub concurrency: Option<usize>,
    /// Threshold of 1173001 the expectation is computed for.
    pub threshold: u64,
}

impl Config {
    /// A configuration with the profile's defaults.
    pub fn new(profile: Profile, bytes: u64, seed: u64) -> Config {
        Config {
            profile,
            bytes,
            seed,
            hosts: None,
            flows: None,
            concurrency: None,
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

/// What was generated.
#[derive(Debug)]
pub struct Outcome {
    /// What the sensor should report.
    pub expect: Expect,
    /// Records written.
    pub packets: u64,
    /// Frame bytes written.
    pub frame_bytes: u64,
    /// Size of the pcap file.
    pub file_bytes: u64,
    /// Sessions generated (transfers and background).
    pub sessions: u64,
    /// Most sessions running at once.
    pub max_active: usize,
    /// Packet time of the first and the last packet, microseconds since the epoch.
    pub first_us: u64,
    /// Packet time of the last packet.
    pub last_us: u64,
    /// Internal hosts.
    pub hosts: u32,
    /// Concurrency used.
    pub concurrency: usize,
}

impl Outcome {
    /// The expectation document.
    pub fn json(&self, cfg: &Config) -> Value {
        self.expect.to_json(json!({
            "generator": "xferwatch-gen",
            "profile": cfg.profile.name(),
            "seed": cfg.seed,
            "hosts": self.hosts,
            "concurrency": self.concurrency,
            "packets": self.packets,
            "bytes": self.frame_bytes,
            "pcap_bytes": self.file_bytes,
            "sessions_generated": self.sessions,
            "max_concurrent_sessions": self.max_active,
            "first_packet_us": self.first_us,
            "last_packet_us": self.last_us,
        }))
    }
}

/// Writes the capture to `w`.
pub fn generate<W: Write>(cfg: &Config, w: W) -> io::Result<(W, Outcome)> {
    let hosts = cfg.hosts.unwrap_or(cfg.profile.default_hosts()).max(1);
    let conc = cfg
        .concurrency
        .unwrap_or(cfg.profile.default_concurrency())
        .max(1);
    let content = Content::new(cfg.seed);
    let mut out = PcapWriter::new(w)?;
    let mut world = World::new(hosts, cfg.seed);
    let mut planner = Planner::new(cfg.profile, cfg.bytes, cfg.seed, cfg.flows, conc);
    let mut x = Expect::new(cfg.threshold);
    let mut active: Vec<Session> = Vec::new();
    let first_us = BASE_UNIX * 1_000_000 + crate::rng::mix(cfg.seed) % 1_000_000;
    let mut now = first_us;
    let mut last = now;
    let mut i = 0usize;
    let mut idx = 0u64;
    let mut exhausted = false;
    let mut max_active = 0;
    loop {
        while !exhausted && active.len() < conc {
            match planner.next_spec() {
                Some(spec) => {
                    let s = build(&spec, idx, &mut world, &mut x);
                    idx += 1;
                    planner.charge(s.estimate());
                    if !s.done() {
                        active.push(s);
                    }
                }
                None => exhausted = true,
            }
        }
        max_active = max_active.max(active.len());
        if active.is_empty() {
            break;
        }
        if i >= active.len() {
            i = 0;
        }
        let s = &mut active[i];
        let e = s.step();
        let head: &[u8] = if e.hdr {
            &s.hdr
        } else {
            &s.arena[e.a.0 as usize..e.a.1 as usize]
        };
        let tail = content.at(e.b.pos, e.b.len);
        let c = &mut s.conns[e.c];
        x.packet(c, e.side, head.len() + tail.len());
        let len = if e.udp {
            c.udp(&mut out, now, e.side, head, tail)?
        } else {
            c.tcp(&mut out, now, e.side, e.flags, head, tail)?
        };
        last = now;
        // One gigabit per second: 125 bytes per microsecond.
        now += (len as u64 / 125).max(1);
        if s.done() {
            active.swap_remove(i);
        } else {
            i += 1;
        }
    }
    let packets = out.packets;
    let frame_bytes = out.frame_bytes;
    let file_bytes = out.file_bytes;
    let w = out.finish()?;
    Ok((
        w,
        Outcome {
            expect: x,
            packets,
            frame_bytes,
            file_bytes,
            sessions: idx,
            max_active,
            first_us,
            last_us: last,
            hosts,
            concurrency: conc,
        },
    ))
}

/// Parses a byte size: an integer, or a number with a unit (`B`, `K`/`KB`, `KiB`, `M`/`MB`,
/// `MiB`, `G`/`GB`, `GiB`, `T`/`TB`, `TiB`; K/M/G/T decimal, Ki/Mi/Gi/Ti binary), e.g. `1GiB`,
/// `200MB`, `1.5GiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: String = num.chars().filter(|&c| c != '_').collect();
    let unit = unit.trim();
    let mult: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "ki" | "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gi" | "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "ti" | "tib" => 1 << 40,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}")),
    };
    let (int, frac) = num.split_once('.').unwrap_or((&num, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(format!("no number in {s:?}"));
    }
    let parse = |d: &str| -> Result<u128, String> {
        if d.is_empty() {
            Ok(0)
        } else {
            d.parse::<u128>()
                .map_err(|_| format!("bad number in {s:?}"))
        }
    };
    let frac = &frac[..frac.len().min(12)];
    let v = parse(int)? * mult + parse(frac)? * mult / 10u128.pow(frac.len() as u32);
    u64::try_from(v).map_err(|_| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("200MB"), Ok(200_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64 KiB"), Ok(65536));
        assert_eq!(parse_size("20M"), Ok(20_000_000));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
