//! Configuration: raw TOML (+ `XFERWATCH__SECTION__KEY` environment overrides) → validated settings,
//! checked once at the edge. Unknown keys and bad values are errors that name the key and the expected
//! form. Every key of `sensor.toml.example` is here, including those later capabilities read, so a
//! configuration written today stays valid.

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use serde::{de, Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// A byte count: an integer, or a string such as "50MiB", "10 MB", "1.5GiB", "1PiB".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Bytes(pub u64);

/// Largest accepted byte threshold (1 PiB): anything above is a typo.
const MAX_BYTES: u64 = 1 << 50;

/// Every unit a byte size may carry (matched without regard to case, so "50mib" and "50MiB" agree):
/// K/M/G/T/P and KB..PB are decimal, Ki..Pi and KiB..PiB binary.
const BYTE_UNITS: [(&str, u64); 21] = [
    ("b", 1),
    ("k", 1_000),
    ("kb", 1_000),
    ("ki", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1_000_000),
    ("mb", 1_000_000),
    ("mi", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1_000_000_000),
    ("gb", 1_000_000_000),
    ("gi", 1 << 30),
    ("gib", 1 << 30),
    ("t", 1_000_000_000_000),
    ("tb", 1_000_000_000_000),
    ("ti", 1 << 40),
    ("tib", 1 << 40),
    ("p", 1_000_000_000_000_000),
    ("pb", 1_000_000_000_000_000),
    ("pi", 1 << 50),
    ("pib", 1 << 50),
];

/// Parses a byte size exactly (integer arithmetic, no floating point): digits, an optional fraction,
/// optional spaces, an optional unit. The fraction is rounded down to whole bytes. Anything above
/// 1 PiB, or below 1 byte, is out of range.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let not_a_size =
        || format!("`{s}` is not a byte size (examples: 52428800, \"50MiB\", \"10 MB\", \"1PiB\")");
    let out_of_range = || format!("`{s}` is out of range (1 byte to 1 PiB)");
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(not_a_size());
    }
    let unit_lc = unit.trim().to_ascii_lowercase();
    let mult = match unit_lc.as_str() {
        "" => 1,
        u => BYTE_UNITS
            .iter()
            .find(|(name, _)| *name == u)
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                format!(
                    "unknown byte unit `{}` in `{s}` (use B, KB, KiB, MB, MiB, GB, GiB, TB, TiB, PB, PiB)",
                    unit.trim()
                )
            })?,
    };
    // Leading zeros are harmless; more significant digits than u128 holds are out of range anyway.
    let int = int.trim_start_matches('0');
    if int.len() > 30 {
        return Err(out_of_range());
    }
    let whole: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| not_a_size())?
    };
    // Only as many fraction digits as can matter (a byte is the smallest unit, 10^18 > 1 PB).
    let frac = &frac[..frac.len().min(20)];
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| not_a_size())?
    };
    let frac_bytes = frac_value * u128::from(mult) / 10u128.pow(frac.len() as u32);
    let v = whole
        .checked_mul(u128::from(mult))
        .and_then(|w| w.checked_add(frac_bytes))
        .ok_or_else(out_of_range)?;
    if v < 1 || v > u128::from(MAX_BYTES) {
        return Err(out_of_range());
    }
    Ok(v as u64)
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte count: a positive integer or a string like \"50MiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bytes, E> {
                if v == 0 || v > MAX_BYTES {
                    return Err(E::custom(format!("{v} is out of range (1 byte to 1 PiB)")));
                }
                Ok(Bytes(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bytes, E> {
                if v <= 0 {
                    return Err(E::custom(format!("{v} is not a positive byte count")));
                }
                self.visit_u64(v as u64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
                parse_bytes(v).map(Bytes).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration: integer seconds, or a string such as "30s", "5m", "1h", "2d".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Seconds(pub u64);

pub fn parse_seconds(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (examples: 30, \"30s\", \"5m\", \"1h\")"))?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        u => {
            return Err(format!(
                "unknown duration unit `{u}` in `{s}` (use s, m, h, d)"
            ))
        }
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too long"))?;
    if v == 0 || v > 365 * 86_400 {
        return Err(format!("`{s}` is out of range (1 second to 365 days)"));
    }
    Ok(v)
}

/// A duration that may be 0 (off): 0, "0s", or what [`parse_seconds`] takes.
fn seconds_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<Seconds, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = Seconds;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("0 (off) or a duration: integer seconds or a string like \"30s\", \"1h\"")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
            if v < 0 {
                return Err(E::custom(format!("{v} is not a duration")));
            }
            self.visit_u64(v as u64)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
            let t = v.trim();
            let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic()).trim();
            if !digits.is_empty() && digits.bytes().all(|b| b == b'0') {
                // 0 in any unit: off (a bad unit is still refused).
                return parse_seconds(&format!("1{}", &t[digits.len()..]))
                    .map(|_| Seconds(0))
                    .map_err(|_| {
                        E::custom(format!("unknown duration unit in `{v}` (use s, m, h, d)"))
                    });
            }
            parse_seconds(v).map(Seconds).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration: integer seconds or a string like \"30s\", \"5m\", \"1h\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                parse_seconds(&v.to_string())
                    .map(Seconds)
                    .map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                if v <= 0 {
                    return Err(E::custom(format!("{v} is not a positive duration")));
                }
                self.visit_u64(v as u64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                parse_seconds(v).map(Seconds).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub network: Network,
    pub engine: Engine,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub capture: Capture,
    pub output: Output,
    pub metrics: Metrics,
    pub log: Log,
    pub service: Service,
    pub detect: Detect,
    pub evidence: Evidence,
    pub sensor: Sensor,
    pub fleet: Fleet,
    pub allow: Vec<Allow>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sensor {
    /// This sensor's name: every event's `host`, its entry in the fleet (empty: the host name).
    pub name: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fleet {
    /// One Redis server: `redis://[:password@]host:port[/db]`, `rediss://` for TLS.
    pub redis: String,
    /// Or a Redis Cluster: some of its nodes.
    pub redis_cluster: Vec<String>,
    /// Start of every key the fleet writes.
    pub key_prefix: String,
    /// Connect and reply timeout.
    pub timeout: Seconds,
    /// A host's volume reaches Redis at least this often (packet time), sooner when it may
    /// cross a threshold.
    pub sync_interval: Seconds,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            redis: String::new(),
            redis_cluster: Vec::new(),
            key_prefix: "xferwatch".into(),
            timeout: Seconds(2),
            sync_interval: Seconds(5),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisOutput {
    pub enabled: bool,
    /// "stream" (XADD), "list" (RPUSH) or "channel" (PUBLISH).
    pub mode: String,
    pub key: String,
    /// Its own server (empty: the fleet's).
    pub url: String,
    /// Streams: approximate MAXLEN (0: unbounded).
    pub maxlen: u64,
    /// Events per pipelined round trip.
    pub batch: usize,
    /// Where events wait, in order, while Redis is unreachable.
    pub spool_dir: String,
    /// The spool's size at most; events beyond are dropped and counted.
    pub spool_max: Bytes,
}

impl Default for RedisOutput {
    fn default() -> Self {
        RedisOutput {
            enabled: false,
            mode: "stream".into(),
            key: "xferwatch".into(),
            url: String::new(),
            maxlen: 1_000_000,
            batch: 256,
            spool_dir: "spool".into(),
            spool_max: Bytes(256 << 20),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Evidence {
    /// Hashes of every file moved: any of "sha256", "sha1", "md5" (empty: sizes only).
    pub hashes: Vec<String>,
    /// Directory of the session pcaps, one per alerted session (empty: none are written).
    pub dir: String,
    /// A session's pcap is closed at this size.
    pub max_bytes_per_session: Bytes,
    /// All session pcaps together; the oldest finished ones are removed first.
    pub max_total: Bytes,
    /// Packets kept from the start of every flow, for the pcap of an alert that comes later.
    pub ring_first_packets: usize,
    /// Bytes of every flow's latest packets kept besides.
    pub ring_last_bytes: Bytes,
    /// Memory of all those rings together; packets beyond it are not kept (counted).
    pub ring_memory: Bytes,
    /// Whole files are saved under `dir/files/`, named by their SHA-256.
    pub store_files: bool,
    /// All stored files together; a file that would pass it is not stored (counted).
    pub max_store: Bytes,
}

impl Default for Evidence {
    fn default() -> Self {
        Evidence {
            hashes: vec!["sha256".into()],
            dir: String::new(),
            max_bytes_per_session: Bytes(64 << 20),
            max_total: Bytes(1 << 30),
            ring_first_packets: 8,
            ring_last_bytes: Bytes(32 << 10),
            ring_memory: Bytes(16 << 20),
            store_files: false,
            max_store: Bytes(1 << 30),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Networks whose hosts are "internal"; everything else is external. A bare address is one
    /// host (/32, /128).
    #[serde(deserialize_with = "cidr::list")]
    pub internal: Vec<IpNet>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Engine {
    /// Worker threads (0 = one per available core).
    pub workers: usize,
    /// Queue depth per worker, in batches.
    pub queue_batches: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_flows: usize,
    /// Announced connections (FTP data, TFTP transfers) waiting for their flow, whole sensor.
    pub max_expectations: usize,
    pub defrag_max_datagrams: usize,
    /// Datagrams being reassembled from one source address at once.
    pub defrag_max_per_source: usize,
    pub defrag_memcap: Bytes,
    pub reassembly_memcap: Bytes,
    pub reassembly_flow_depth: Bytes,
    /// Fill of a worker's share of the flow table (percent) that starts emergency mode.
    pub emergency_enter_percent: u8,
    /// Fill (percent) at or below which emergency mode ends.
    pub emergency_leave_percent: u8,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    pub tcp_new: Seconds,
    pub tcp_established: Seconds,
    pub tcp_closed: Seconds,
    pub udp_new: Seconds,
    pub udp_established: Seconds,
    pub defrag: Seconds,
    /// In emergency mode, for unprotected flows: TCP before its handshake and one-way UDP,
    pub emergency_new: Seconds,
    /// TCP and UDP with traffic both ways,
    pub emergency_established: Seconds,
    /// and closed TCP lingering.
    pub emergency_closed: Seconds,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capture {
    pub interfaces: Vec<String>,
    pub snaplen: u32,
    pub promisc: bool,
    pub buffer_size: Bytes,
    pub bpf: String,
    pub immediate: bool,
    pub timeout_ms: u32,
    pub threads_per_interface: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Output {
    pub eve_path: String,
    pub stats_interval: Seconds,
    pub log_credentials: bool,
    /// The seed of every event's Community ID (v1), as Zeek's and Suricata's are set.
    pub community_id_seed: u16,
    /// Events held in memory while the EVE file cannot be written (disk full, file gone).
    pub buffer_max: Bytes,
    /// An interim `flow` record of every flow still running, this often (packet time; 0: none).
    #[serde(deserialize_with = "seconds_or_zero")]
    pub flow_interim: Seconds,
    /// EVE events to Redis too.
    pub redis: RedisOutput,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    pub enabled: bool,
    pub listen: String,
    #[serde(deserialize_with = "cidr::list")]
    pub allow: Vec<IpNet>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// "text" or "json".
    pub format: String,
    pub level: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Service {
    pub user: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Detect {
    pub large_outbound: LargeOutbound,
    pub mismatch: Mismatch,
    pub baseline: Baseline,
    pub rollup: Rollup,
    pub host_rollup: HostRollup,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostRollup {
    /// 1173006: an internal host's outbound volume to all external hosts together within the
    /// window (0: off).
    pub threshold_bytes: Bytes,
    pub window: Seconds,
    pub max_hosts: usize,
}

impl Default for HostRollup {
    fn default() -> Self {
        HostRollup {
            threshold_bytes: Bytes(200 << 20),
            window: Seconds(3600),
            max_hosts: 100_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LargeOutbound {
    pub threshold_bytes: Bytes,
    pub per_protocol: BTreeMap<String, Bytes>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mismatch {
    /// Extra ports per protocol, merged with the built-in port table.
    pub expected_ports: BTreeMap<String, Vec<u16>>,
    /// Payload bytes to see on a well-known port before "nothing matched" counts as a mismatch.
    pub min_payload_bytes: Bytes,
    /// 1173002/1173003: later flows of a key (host pair, server port, transport, protocol,
    /// signature) within this long of its alert are counted into its next alert; 0: an alert per
    /// flow.
    #[serde(deserialize_with = "seconds_or_zero")]
    pub aggregate_window: Seconds,
    /// Aggregation keys kept at most (the least recently active goes first).
    pub aggregate_max_keys: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Baseline {
    pub enabled: bool,
    pub window: Seconds,
    pub learning_windows: u32,
    pub k: f64,
    pub floor_bytes: Bytes,
    pub state_file: String,
    pub max_hosts: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rollup {
    pub window: Seconds,
    pub max_pairs: usize,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Allow {
    /// A network, or a bare address for one host.
    #[serde(default, deserialize_with = "cidr::option")]
    pub internal: Option<IpNet>,
    #[serde(default, deserialize_with = "cidr::option")]
    pub external: Option<IpNet>,
    pub app_proto: Option<String>,
    #[serde(default)]
    pub signatures: Vec<u32>,
    pub reason: String,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            internal: xferwatch_policy::DEFAULT_INTERNAL
                .iter()
                .map(|s| s.parse().expect("valid default CIDR"))
                .collect(),
        }
    }
}
impl Default for Engine {
    fn default() -> Self {
        Engine {
            workers: 0,
            queue_batches: 8,
        }
    }
}
impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_flows: 200_000,
            max_expectations: 65_536,
            defrag_max_datagrams: 4096,
            defrag_max_per_source: xferwatch_capture::DEFAULT_MAX_PER_SOURCE,
            defrag_memcap: Bytes(32 << 20),
            reassembly_memcap: Bytes(64 << 20),
            reassembly_flow_depth: Bytes(4 << 10),
            emergency_enter_percent: 90,
            emergency_leave_percent: 70,
        }
    }
}
impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_new: Seconds(60),
            tcp_established: Seconds(600),
            tcp_closed: Seconds(10),
            udp_new: Seconds(120),
            udp_established: Seconds(300),
            defrag: Seconds(30),
            emergency_new: Seconds(5),
            emergency_established: Seconds(60),
            emergency_closed: Seconds(1),
        }
    }
}
impl Default for Capture {
    fn default() -> Self {
        Capture {
            interfaces: Vec::new(),
            snaplen: 65_535,
            promisc: true,
            buffer_size: Bytes(128 << 20),
            bpf: String::new(),
            immediate: false,
            timeout_ms: 100,
            threads_per_interface: 1,
        }
    }
}
impl Default for Output {
    fn default() -> Self {
        Output {
            eve_path: "eve.json".into(),
            stats_interval: Seconds(60),
            log_credentials: false,
            community_id_seed: 0,
            buffer_max: Bytes(64 << 20),
            flow_interim: Seconds(0),
            redis: RedisOutput::default(),
        }
    }
}
impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            enabled: true,
            listen: "127.0.0.1:9727".into(),
            allow: vec![
                "127.0.0.0/8".parse().expect("cidr"),
                "::1/128".parse().expect("cidr"),
            ],
        }
    }
}
impl Default for Log {
    fn default() -> Self {
        Log {
            format: "text".into(),
            level: "info".into(),
        }
    }
}
impl Default for LargeOutbound {
    fn default() -> Self {
        LargeOutbound {
            threshold_bytes: Bytes(52_428_800),
            per_protocol: BTreeMap::new(),
        }
    }
}
impl Default for Mismatch {
    fn default() -> Self {
        Mismatch {
            expected_ports: BTreeMap::new(),
            min_payload_bytes: Bytes(64),
            aggregate_window: Seconds(3600),
            aggregate_max_keys: 100_000,
        }
    }
}
impl Default for Baseline {
    fn default() -> Self {
        Baseline {
            enabled: true,
            window: Seconds(3600),
            learning_windows: 24,
            k: 3.0,
            floor_bytes: Bytes(10 << 20),
            state_file: String::new(),
            max_hosts: 100_000,
        }
    }
}
impl Default for Rollup {
    fn default() -> Self {
        Rollup {
            window: Seconds(3600),
            max_pairs: 100_000,
        }
    }
}

/// Signature ids of the detection issue, the only ones an `[[allow]]` entry may name.
pub const SIGNATURE_IDS: [u32; 6] = [
    1_173_001, 1_173_002, 1_173_003, 1_173_004, 1_173_005, 1_173_006,
];

impl Settings {
    /// Detection with the whole sensor's table sizes (the engine shares them out).
    pub fn detect_config(&self) -> xferwatch_policy::detect::DetectConfig {
        use xferwatch_policy::detect::{
            AllowEntry, BaselineConfig, DetectConfig, HostRollupConfig,
        };
        let d = &self.detect;
        DetectConfig {
            threshold_bytes: d.large_outbound.threshold_bytes.0,
            per_protocol: d
                .large_outbound
                .per_protocol
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.0))
                .collect(),
            allow: self
                .allow
                .iter()
                .map(|a| AllowEntry {
                    internal: a.internal,
                    external: a.external,
                    app_proto: a.app_proto.as_ref().map(|p| p.to_ascii_lowercase()),
                    signatures: a.signatures.clone(),
                    reason: a.reason.clone(),
                })
                .collect(),
            rollup_window_us: d.rollup.window.0 as i64 * 1_000_000,
            rollup_max_pairs: d.rollup.max_pairs,
            baseline: BaselineConfig {
                enabled: d.baseline.enabled,
                window_us: d.baseline.window.0 as i64 * 1_000_000,
                learning_windows: d.baseline.learning_windows,
                k: d.baseline.k,
                floor_bytes: d.baseline.floor_bytes.0,
                max_hosts: d.baseline.max_hosts,
            },
            mismatch_window_us: d.mismatch.aggregate_window.0 as i64 * 1_000_000,
            mismatch_max_keys: d.mismatch.aggregate_max_keys,
            host_rollup: HostRollupConfig {
                threshold_bytes: d.host_rollup.threshold_bytes.0,
                window_us: d.host_rollup.window.0 as i64 * 1_000_000,
                max_hosts: d.host_rollup.max_hosts,
            },
        }
    }

    /// Loads `path` (if any) plus environment overrides, then validates.
    pub fn load(path: Option<&Path>) -> Result<Settings> {
        let mut b = config::Config::builder();
        if let Some(p) = path {
            if !p.exists() {
                bail!("{}: no such configuration file", p.display());
            }
            b = b.add_source(
                config::File::from(p)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        b = b.add_source(
            config::Environment::with_prefix("XFERWATCH")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("network.internal")
                .with_list_parse_key("capture.interfaces")
                .with_list_parse_key("metrics.allow"),
        );
        let name = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "environment".into());
        let raw = b.build().map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let s: Settings = raw
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("{name}: {}", dotted_key(&e.to_string())))?;
        s.validate().with_context(|| name.clone())?;
        Ok(s)
    }

    /// This sensor's name: `[sensor] name`, else the host name.
    pub fn sensor_name(&self) -> String {
        if !self.sensor.name.is_empty() {
            return self.sensor.name.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "xferwatch".into())
    }

    /// The fleet's Redis (`[fleet] redis` or `redis_cluster`), if any.
    pub fn fleet_target(&self) -> Option<xferwatch_fleet::Target> {
        let f = &self.fleet;
        if !f.redis.is_empty() {
            Some(xferwatch_fleet::Target::Single(f.redis.clone()))
        } else if !f.redis_cluster.is_empty() {
            Some(xferwatch_fleet::Target::Cluster(f.redis_cluster.clone()))
        } else {
            None
        }
    }

    /// The fleet this sensor belongs to, if any.
    pub fn fleet_config(&self) -> Option<xferwatch_fleet::FleetConfig> {
        let f = &self.fleet;
        Some(xferwatch_fleet::FleetConfig {
            target: self.fleet_target()?,
            key_prefix: f.key_prefix.clone(),
            sensor: self.sensor_name(),
            timeout: std::time::Duration::from_secs(f.timeout.0.max(1)),
            sync_interval_us: f.sync_interval.0.min(86_400) as i64 * 1_000_000,
        })
    }

    /// EVE events to Redis (`[output.redis]`), if enabled.
    pub fn redis_output(&self) -> Option<xferwatch_fleet::OutputConfig> {
        let r = &self.output.redis;
        if !r.enabled {
            return None;
        }
        let target = if r.url.is_empty() {
            self.fleet_target()?
        } else {
            xferwatch_fleet::Target::Single(r.url.clone())
        };
        Some(xferwatch_fleet::OutputConfig {
            target,
            mode: xferwatch_fleet::OutputMode::parse(&r.mode)?,
            key: r.key.clone(),
            maxlen: r.maxlen,
            batch: r.batch,
            spool_dir: std::path::PathBuf::from(&r.spool_dir),
            spool_max: r.spool_max.0,
            timeout: std::time::Duration::from_secs(self.fleet.timeout.0.max(1)),
        })
    }

    fn validate_fleet(&self) -> Result<()> {
        let f = &self.fleet;
        if !f.redis.is_empty() && !f.redis_cluster.is_empty() {
            bail!("fleet: give redis or redis_cluster, not both");
        }
        if let Some(t) = self.fleet_target() {
            let key = if f.redis.is_empty() {
                "fleet.redis_cluster"
            } else {
                "fleet.redis"
            };
            t.check().map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
        }
        if f.key_prefix.is_empty()
            || f.key_prefix.len() > 64
            || f.key_prefix.contains(['{', '}'])
            || f.key_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            bail!(
                "fleet.key_prefix: {:?}: 1 to 64 characters, no braces or spaces",
                f.key_prefix
            );
        }
        if f.timeout.0 == 0 || f.timeout.0 > 60 {
            bail!("fleet.timeout: expected 1s to 60s");
        }
        if f.sync_interval.0 == 0 || f.sync_interval.0 > 3600 {
            bail!("fleet.sync_interval: expected 1s to 1h");
        }
        if self.sensor.name.len() > 128 || self.sensor.name.chars().any(|c| c.is_control()) {
            bail!("sensor.name: at most 128 characters, no control characters");
        }
        let r = &self.output.redis;
        if r.enabled {
            if xferwatch_fleet::OutputMode::parse(&r.mode).is_none() {
                bail!(
                    "output.redis.mode: {:?} is not one of \"stream\", \"list\", \"channel\"",
                    r.mode
                );
            }
            if r.key.is_empty() {
                bail!("output.redis.key: empty");
            }
            if r.url.is_empty() {
                if self.fleet_target().is_none() {
                    bail!("output.redis: needs output.redis.url or a [fleet] redis to send to");
                }
            } else {
                xferwatch_fleet::Target::Single(r.url.clone())
                    .check()
                    .map_err(|e| anyhow::anyhow!("output.redis.url: {e}"))?;
            }
            if r.batch == 0 || r.batch > 10_000 {
                bail!("output.redis.batch: expected 1..=10000");
            }
            if r.spool_dir.is_empty() {
                bail!("output.redis.spool_dir: empty (events wait there while Redis is down)");
            }
        }
        let h = &self.detect.host_rollup;
        if h.threshold_bytes.0 > 0 && (h.window.0 == 0 || h.window.0 > 30 * 86_400) {
            bail!("detect.host_rollup.window: expected 1s to 30 days");
        }
        if h.max_hosts == 0 {
            bail!("detect.host_rollup.max_hosts: at least 1");
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<()> {
        self.validate_fleet()?;
        for h in &self.evidence.hashes {
            if !["sha256", "sha1", "md5"].contains(&h.as_str()) {
                bail!(
                    "evidence.hashes: {h:?} is not a hash this sensor computes (sha256, sha1, md5)"
                );
            }
        }
        if self.evidence.store_files {
            if self.evidence.dir.is_empty() {
                bail!("evidence.store_files: needs evidence.dir (the files go under DIR/files)");
            }
            if !self.evidence.hashes.iter().any(|h| h == "sha256") {
                bail!("evidence.store_files: needs \"sha256\" in evidence.hashes (files are named by it)");
            }
        }
        if !self.evidence.dir.is_empty() {
            if self.evidence.max_bytes_per_session.0 < 4096 {
                bail!("evidence.max_bytes_per_session: at least 4 KiB");
            }
            if self.evidence.max_total.0 < self.evidence.max_bytes_per_session.0 {
                bail!("evidence.max_total: smaller than evidence.max_bytes_per_session");
            }
            if self.evidence.ring_first_packets > 1024 {
                bail!("evidence.ring_first_packets: at most 1024");
            }
        }
        if self.network.internal.is_empty() {
            bail!("network.internal: empty; give at least one CIDR (e.g. [\"10.0.0.0/8\"])");
        }
        if self.engine.workers > 256 {
            bail!(
                "engine.workers: {} is too many (0 = one per core, at most 256)",
                self.engine.workers
            );
        }
        if self.engine.queue_batches == 0 || self.engine.queue_batches > 65_536 {
            bail!("engine.queue_batches: expected 1..=65536");
        }
        if self.limits.max_expectations == 0 || self.limits.max_expectations > 10_000_000 {
            bail!(
                "limits.max_expectations: expected 1..=10000000, got {}",
                self.limits.max_expectations
            );
        }
        if self.limits.defrag_max_per_source == 0 {
            bail!("limits.defrag_max_per_source: expected at least 1");
        }
        let (enter, leave) = (
            self.limits.emergency_enter_percent,
            self.limits.emergency_leave_percent,
        );
        if enter == 0 || enter > 100 || leave >= enter {
            bail!(
                "limits.emergency_enter_percent ({enter}) and emergency_leave_percent ({leave}): expected 0 <= leave < enter <= 100"
            );
        }
        if self.limits.max_flows == 0 || self.limits.max_flows > 100_000_000 {
            bail!(
                "limits.max_flows: expected 1..=100000000, got {}",
                self.limits.max_flows
            );
        }
        for k in self.detect.large_outbound.per_protocol.keys() {
            if !xferwatch_policy::is_file_transfer(k) {
                bail!("detect.large_outbound.per_protocol.{k}: unknown protocol (expected ftp, tftp or smb)");
            }
        }
        for (k, ports) in &self.detect.mismatch.expected_ports {
            if !xferwatch_policy::KNOWN_PROTOCOLS.contains(&k.as_str()) {
                bail!(
                    "detect.mismatch.expected_ports.{k}: unknown protocol (expected one of {})",
                    xferwatch_policy::KNOWN_PROTOCOLS.join(", ")
                );
            }
            if ports.contains(&0) {
                bail!("detect.mismatch.expected_ports.{k}: port 0 is not a port");
            }
        }
        if !(self.detect.baseline.k.is_finite()
            && self.detect.baseline.k >= 1.0
            && self.detect.baseline.k <= 1000.0)
        {
            bail!(
                "detect.baseline.k: expected a number from 1 to 1000, got {}",
                self.detect.baseline.k
            );
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!(
                "log.format: expected \"text\" or \"json\", got {:?}",
                self.log.format
            );
        }
        if self.capture.threads_per_interface == 0 || self.capture.threads_per_interface > 64 {
            bail!("capture.threads_per_interface: expected 1..=64");
        }
        if self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            bail!(
                "metrics.listen: {:?} is not an address:port (e.g. \"127.0.0.1:9727\")",
                self.metrics.listen
            );
        }
        for (i, a) in self.allow.iter().enumerate() {
            for sid in &a.signatures {
                if !SIGNATURE_IDS.contains(sid) {
                    bail!("allow[{i}].signatures: unknown signature id {sid} (known: 1173001..1173006)");
                }
            }
            if let Some(p) = &a.app_proto {
                if !xferwatch_policy::is_file_transfer(p) {
                    bail!(
                        "allow[{i}].app_proto: unknown protocol {p:?} (expected ftp, tftp or smb)"
                    );
                }
            }
            if a.reason.trim().is_empty() {
                bail!("allow[{i}].reason: say why this path is approved");
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML, defaults resolved.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }

    /// The engine's typed configuration, for `workers` worker threads.
    pub fn engine_config(&self, workers: usize) -> xferwatch_engine::EngineConfig {
        xferwatch_engine::EngineConfig {
            workers: workers.max(1),
            queue_batches: self.engine.queue_batches,
            internal: self.network.internal.clone(),
            ports: self.port_table(),
            table: self.flow_table_config(),
            reassembly_depth: self.limits.reassembly_flow_depth.0.min(1 << 20) as usize,
            reassembly_memcap: self.limits.reassembly_memcap.0 as usize,
            mismatch_min_payload: self.detect.mismatch.min_payload_bytes.0,
            ftp: xferwatch_parsers::ftp::FtpLimits::default(),
            smb: xferwatch_parsers::smb::SmbLimits::default(),
            hashes: {
                let has = |n: &str| self.evidence.hashes.iter().any(|h| h == n);
                xferwatch_engine::evidence::Hashes {
                    sha256: has("sha256"),
                    sha1: has("sha1"),
                    md5: has("md5"),
                    store: None,
                }
            },
            max_expectations: self.limits.max_expectations,
            defrag: xferwatch_capture::DefragLimits {
                max_datagrams: self.limits.defrag_max_datagrams,
                max_per_source: self.limits.defrag_max_per_source,
                max_total_bytes: self.limits.defrag_memcap.0 as usize,
                timeout_us: self.timeouts.defrag.0 as i64 * 1_000_000,
            },
            log_credentials: self.output.log_credentials,
            community_id_seed: self.output.community_id_seed,
            detect: self.detect_config(),
            flow_interim_secs: self.output.flow_interim.0,
            sensor: Some(self.sensor_name()),
            // `replay` and `run` add it: each has its own way of reaching Redis.
            fleet: None,
            // Live only: `run` names its interfaces (events' in_iface).
            interfaces: Vec::new(),
            file_store: (self.evidence.store_files && !self.evidence.dir.is_empty()).then(|| {
                (
                    std::path::PathBuf::from(&self.evidence.dir),
                    self.evidence.max_store.0,
                )
            }),
            pcaps: (!self.evidence.dir.is_empty()).then(|| {
                let e = &self.evidence;
                xferwatch_engine::pcaps::PcapConfig {
                    dir: std::path::PathBuf::from(&e.dir),
                    head_packets: e.ring_first_packets,
                    tail_bytes: e.ring_last_bytes.0.min(64 << 20) as usize,
                    ring_memory: e.ring_memory.0.min(1 << 40) as usize,
                    max_bytes_per_session: e.max_bytes_per_session.0,
                    max_total: e.max_total.0,
                }
            }),
        }
    }

    /// The baseline state file (`[detect.baseline] state_file`), read now when baselines are kept.
    pub fn baseline_file(&self) -> xferwatch_engine::BaselineFile {
        let b = &self.detect.baseline;
        let path = (b.enabled && !b.state_file.is_empty())
            .then(|| std::path::PathBuf::from(&b.state_file));
        xferwatch_engine::BaselineFile::load(path, b.window.0)
    }

    pub fn port_table(&self) -> xferwatch_policy::PortTable {
        let mut t = xferwatch_policy::PortTable::default();
        for (proto, ports) in &self.detect.mismatch.expected_ports {
            for tr in xferwatch_policy::transports_of(proto) {
                for p in ports {
                    t.set(*tr, *p, proto);
                }
            }
        }
        t
    }

    pub fn flow_table_config(&self) -> xferwatch_stream::FlowTableConfig {
        let us = |s: Seconds| s.0 as i64 * 1_000_000;
        xferwatch_stream::FlowTableConfig {
            max_flows: self.limits.max_flows,
            timeouts: xferwatch_stream::Timeouts {
                tcp_new: us(self.timeouts.tcp_new),
                tcp_established: us(self.timeouts.tcp_established),
                tcp_closed: us(self.timeouts.tcp_closed),
                udp_new: us(self.timeouts.udp_new),
                udp_established: us(self.timeouts.udp_established),
            },
            emergency: xferwatch_stream::Emergency {
                enter_percent: self.limits.emergency_enter_percent,
                leave_percent: self.limits.emergency_leave_percent,
                new: us(self.timeouts.emergency_new),
                established: us(self.timeouts.emergency_established),
                closed: us(self.timeouts.emergency_closed),
            },
        }
    }
}

/// The configuration library writes a key below an array element without its dot
/// (`allow[0]external`): put it back (`allow[0].external`), in the key named only.
fn dotted_key(msg: &str) -> String {
    const MARK: &str = "for key `";
    let Some(at) = msg.find(MARK).map(|i| i + MARK.len()) else {
        return msg.to_string();
    };
    let (head, rest) = msg.split_at(at);
    let end = rest.find('`').unwrap_or(rest.len());
    let mut key = String::new();
    let mut prev = ' ';
    for c in rest[..end].chars() {
        if prev == ']' && c != '[' && c != '.' {
            key.push('.');
        }
        key.push(c);
        prev = c;
    }
    format!("{head}{key}{}", &rest[end..])
}

/// Networks in the configuration: `10.0.0.0/8`, or a bare address for one host (`/32`, `/128`).
/// An error says what is wrong: not an address, a prefix too long, host bits set (with the network
/// meant).
mod cidr {
    use ipnet::IpNet;
    use serde::{de, Deserialize, Deserializer};
    use std::net::IpAddr;

    pub fn parse(text: &str) -> Result<IpNet, String> {
        let t = text.trim();
        let Some((addr, prefix)) = t.split_once('/') else {
            return t
                .parse::<IpAddr>()
                .map(IpNet::from)
                .map_err(|_| format!("{text:?} is not an IP address or network (CIDR)"));
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?}: {addr:?} is not an IP address"))?;
        let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
        let len: u8 = prefix
            .parse()
            .map_err(|_| format!("{text:?}: prefix {prefix:?} is not a number (0..={max})"))?;
        if len > max {
            let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
            return Err(format!(
                "{text:?}: prefix /{len} is too long for an {family} address (at most /{max})"
            ));
        }
        let net = IpNet::new(ip, len).map_err(|e| format!("{text:?}: {e}"))?;
        if net.trunc() != net {
            return Err(format!(
                "{text:?}: host bits set after the /{len} prefix; write the network, {}, or the \
                 address alone for one host",
                net.trunc()
            ));
        }
        Ok(net)
    }

    pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| parse(t).map_err(de::Error::custom))
            .collect()
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpNet>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| parse(&t).map_err(de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine's own defaults (for those who embed it) are the sensor's documented defaults.
    #[test]
    fn engine_defaults_are_the_sensors() {
        let from_toml = Settings::default().engine_config(3);
        // The sensor's name is the host's, which the engine cannot know.
        let engine = xferwatch_engine::EngineConfig {
            workers: 3,
            sensor: Some(Settings::default().sensor_name()),
            ..Default::default()
        };
        assert_eq!(format!("{from_toml:?}"), format!("{engine:?}"));
    }

    #[test]
    fn flow_interim_may_be_off() {
        let p = |v: &str| -> Result<u64, String> {
            toml::from_str::<Output>(&format!("flow_interim = {v}"))
                .map(|o| o.flow_interim.0)
                .map_err(|e| e.to_string())
        };
        assert_eq!(p("0"), Ok(0));
        assert_eq!(p("\"0s\""), Ok(0));
        assert_eq!(p("\"10m\""), Ok(600));
        assert!(p("-1").is_err());
        assert!(p("\"soon\"").is_err());
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("50MiB"), Ok(52_428_800));
        assert_eq!(parse_bytes("10 MB"), Ok(10_000_000));
        assert_eq!(parse_bytes("1.5KiB"), Ok(1536));
        assert_eq!(parse_bytes("52428800"), Ok(52_428_800));
        assert!(parse_bytes("-5").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
        assert!(parse_bytes("99999PiB").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes(".").is_err());
        assert!(parse_bytes("1.2.3MB").is_err());
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("0.1B").is_err());
    }

    /// Regression: "1 PiB" was documented as the upper bound, but no P unit parsed, with or without
    /// the space.
    #[test]
    fn every_documented_unit_with_and_without_space() {
        let units: [(&str, u64); 13] = [
            ("B", 1),
            ("KB", 1_000),
            ("KiB", 1 << 10),
            ("MB", 1_000_000),
            ("MiB", 1 << 20),
            ("GB", 1_000_000_000),
            ("GiB", 1 << 30),
            ("TB", 1_000_000_000_000),
            ("TiB", 1 << 40),
            ("PB", 1_000_000_000_000_000),
            ("PiB", 1 << 50),
            ("K", 1_000),
            ("Ki", 1 << 10),
        ];
        for (unit, mult) in units {
            for form in [
                format!("1{unit}"),
                format!("1 {unit}"),
                format!(" 1  {unit} "),
                format!("1{}", unit.to_ascii_lowercase()),
                format!("1{}", unit.to_ascii_uppercase()),
            ] {
                assert_eq!(parse_bytes(&form), Ok(mult), "{form}");
            }
        }
        assert_eq!(parse_bytes("1PiB"), Ok(MAX_BYTES));
        assert_eq!(parse_bytes("1 PiB"), Ok(MAX_BYTES));
        assert_eq!(parse_bytes("1024TiB"), Ok(MAX_BYTES));
        assert_eq!(parse_bytes("0.5PiB"), Ok(MAX_BYTES / 2));
    }

    #[test]
    fn byte_sizes_out_of_range_are_errors_not_wraps() {
        for s in [
            "1.0000001PiB",
            "1025TiB",
            "1126PB",
            "2PiB",
            "18446744073709551616",
            "99999999999999999999999999999999999999999PiB",
            "340282366920938463463374607431768211456 B",
        ] {
            let e = parse_bytes(s).unwrap_err();
            assert!(e.contains("out of range"), "{s}: {e}");
        }
        // Exact at the bound, no floating point rounding either way.
        assert_eq!(parse_bytes("1125899906842624"), Ok(MAX_BYTES));
        assert!(parse_bytes("1125899906842625").is_err());
        assert_eq!(parse_bytes("1.000000000000000000000000001KiB"), Ok(1024));
    }

    /// An out-of-range size in a file is an error that names the key.
    #[test]
    fn byte_size_error_names_the_key() {
        let dir = std::env::temp_dir().join(format!("xferwatch-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sensor.toml");
        std::fs::write(
            &file,
            "[network]\ninternal = [\"10.0.0.0/8\"]\n[detect.large_outbound]\nthreshold_bytes = \"2 PiB\"\n",
        )
        .unwrap();
        let e = format!("{:#}", Settings::load(Some(&file)).unwrap_err());
        std::fs::remove_dir_all(&dir).ok();
        assert!(e.contains("threshold_bytes"), "{e}");
        assert!(e.contains("out of range"), "{e}");
        let ok = dir.join("ok.toml");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            &ok,
            "[network]\ninternal = [\"10.0.0.0/8\"]\n[detect.large_outbound]\nthreshold_bytes = \"1PiB\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&ok));
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(
            s.unwrap().detect.large_outbound.threshold_bytes,
            Bytes(MAX_BYTES)
        );
    }

    /// Loads `text` as a configuration file.
    fn load_toml(tag: &str, text: &str) -> Result<Settings> {
        let dir = std::env::temp_dir().join(format!("xferwatch-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sensor.toml");
        std::fs::write(&file, text).unwrap();
        let s = Settings::load(Some(&file));
        std::fs::remove_dir_all(&dir).ok();
        s
    }

    /// A bare address is one host; errors say what is wrong with a network, under its full key.
    #[test]
    fn networks_and_bare_addresses() {
        let s = load_toml(
            "cidr-ok",
            "[network]\ninternal = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::1\"]\n\
             [[allow]]\nexternal = \"203.0.113.9\"\nreason = \"backup\"\n",
        )
        .unwrap();
        let nets: Vec<String> = s.network.internal.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::1/128"]);
        assert_eq!(s.allow[0].external.unwrap().to_string(), "203.0.113.9/32");
        let cases = [
            (
                "[network]\ninternal = [\"10.0.0.0/33\"]\n",
                &["network.internal", "/33 is too long", "at most /32"][..],
            ),
            (
                "[[allow]]\nexternal = \"203.0.113.9/33\"\nreason = \"x\"\n",
                &["allow[0].external", "too long"][..],
            ),
            (
                "[[allow]]\ninternal = \"10.1.2.3/8\"\nreason = \"x\"\n",
                &["allow[0].internal", "host bits", "10.0.0.0/8"][..],
            ),
            (
                "[[allow]]\nexternal = \"example.org\"\nreason = \"x\"\n",
                &["allow[0].external", "not an IP address"][..],
            ),
        ];
        for (text, words) in cases {
            let e = format!("{:#}", load_toml("cidr-bad", text).unwrap_err());
            for w in words {
                assert!(e.contains(w), "{w:?} missing from {e}");
            }
        }
    }

    #[test]
    fn dotted_keys() {
        assert_eq!(
            dotted_key("bad for key `allow[0]external` in x"),
            "bad for key `allow[0].external` in x"
        );
        assert_eq!(dotted_key("for key `a[1][2]b.c`"), "for key `a[1][2].b.c`");
        assert_eq!(dotted_key("no key"), "no key");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_seconds("1h"), Ok(3600));
        assert_eq!(parse_seconds("90"), Ok(90));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("3 weeks").is_err());
    }

    #[test]
    fn aggregate_window() {
        let w = |v: &str| {
            toml::from_str::<Mismatch>(&format!("aggregate_window = {v}"))
                .map(|m| m.aggregate_window.0)
                .map_err(|e| e.to_string())
        };
        assert_eq!(w("0"), Ok(0));
        assert_eq!(w("\"0s\""), Ok(0));
        assert_eq!(w("\"0\""), Ok(0));
        assert_eq!(w("600"), Ok(600));
        assert_eq!(w("\"2h\""), Ok(7200));
        assert!(w("-1").is_err());
        assert!(w("\"0 weeks\"").is_err());
        assert_eq!(Mismatch::default().aggregate_window.0, 3600);
        let d = Settings::default().detect_config();
        assert_eq!(d.mismatch_window_us, 3_600_000_000);
        assert_eq!(d.mismatch_max_keys, 100_000);
    }

    #[test]
    fn defaults_validate_and_render() {
        let s = Settings::default();
        s.validate().unwrap();
        let t = s.to_toml();
        assert!(t.contains("threshold_bytes = 52428800"));
        let back: Settings = toml::from_str(&t).unwrap();
        assert_eq!(back.limits.max_flows, 200_000);
    }
}
