//! Detection for MITRE ATT&CK analytic AN1173: the signatures, thresholds, the allowlist of approved
//! paths, per-host-pair roll-ups over a sliding window and per-host baselines. Parsers and the flow
//! table report facts (bytes, protocols, ports); everything that decides "alert" is here.
//!
//! Time is whatever the caller says (packet time in replay), so the same input raises the same
//! alerts. Every table is capped; an eviction is counted.

use ipnet::IpNet;
use rustc_hash::FxHashMap as HashMap;
use std::collections::VecDeque;
use xferwatch_wire::Addr;

/// One signature: stable id and text, Suricata-shaped.
#[derive(Clone, Copy, Debug)]
pub struct Signature {
    pub id: u32,
    pub rev: u32,
    pub msg: &'static str,
    pub category: &'static str,
    pub severity: u8,
    pub techniques: &'static [&'static str],
}

/// The signatures this sensor raises (MITRE ATT&CK analytic AN1173), by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Sid {
    /// One transfer session's outbound volume crossed its threshold.
    LargeOutbound = 1_173_001,
    /// A file-transfer protocol on a port that is not its own.
    OffPort = 1_173_002,
    /// A well-known port carrying another protocol.
    PortOtherProto = 1_173_003,
    /// A host's outbound volume in a window above its learnt baseline.
    OverBaseline = 1_173_004,
    /// A host pair's sessions together crossed the threshold within the roll-up window.
    Rollup = 1_173_005,
    /// An internal host's outbound volume to all external hosts together crossed the host
    /// roll-up threshold within its window.
    HostRollup = 1_173_006,
}

impl Sid {
    pub const ALL: [Sid; NSIDS] = [
        Sid::LargeOutbound,
        Sid::OffPort,
        Sid::PortOtherProto,
        Sid::OverBaseline,
        Sid::Rollup,
        Sid::HostRollup,
    ];
    /// The signature id as written in events and named in configuration.
    pub const fn id(self) -> u32 {
        self as u32
    }
    /// 0 for 1173001, … 5 for 1173006: the index into per-signature counters.
    pub const fn index(self) -> usize {
        (self as u32 - Sid::LargeOutbound as u32) as usize
    }
    pub fn from_id(id: u32) -> Option<Sid> {
        Sid::ALL.into_iter().find(|s| s.id() == id)
    }
    /// The signature's message, category, severity and techniques.
    pub fn signature(self) -> &'static Signature {
        &SIGNATURES[self.index()]
    }
}

/// The number of signatures.
pub const NSIDS: usize = 6;

pub const SIGNATURES: [Signature; NSIDS] = [
    Signature {
        id: Sid::LargeOutbound.id(),
        rev: 1,
        msg: "XFERWATCH large outbound file transfer to an external host",
        category: "Potential Corporate Privacy Violation",
        severity: 2,
        techniques: &["T1048", "T1048.003"],
    },
    Signature {
        id: Sid::OffPort.id(),
        rev: 1,
        msg: "XFERWATCH file-transfer protocol on a non-standard port",
        category: "Potentially Bad Traffic",
        severity: 2,
        techniques: &["T1571", "T1048"],
    },
    Signature {
        id: Sid::PortOtherProto.id(),
        rev: 1,
        msg: "XFERWATCH well-known port carrying another protocol",
        category: "Potentially Bad Traffic",
        severity: 3,
        techniques: &["T1571"],
    },
    Signature {
        id: Sid::OverBaseline.id(),
        rev: 1,
        msg: "XFERWATCH outbound file-transfer volume above the host's baseline",
        category: "Potential Corporate Privacy Violation",
        severity: 2,
        techniques: &["T1048", "T1030"],
    },
    Signature {
        id: Sid::Rollup.id(),
        rev: 1,
        msg: "XFERWATCH many transfers to one external host add up to a large outbound volume",
        category: "Potential Corporate Privacy Violation",
        severity: 2,
        techniques: &["T1048", "T1030"],
    },
    Signature {
        id: Sid::HostRollup.id(),
        rev: 1,
        msg: "XFERWATCH host's transfers to many external hosts add up to a large outbound volume",
        category: "Potential Corporate Privacy Violation",
        severity: 2,
        techniques: &["T1048", "T1030"],
    },
];

/// An approved path: the named signatures are not raised for matching traffic (still counted).
#[derive(Clone, Debug)]
pub struct AllowEntry {
    pub internal: Option<IpNet>,
    pub external: Option<IpNet>,
    pub app_proto: Option<String>,
    /// Empty: every signature.
    pub signatures: Vec<u32>,
    pub reason: String,
}

impl AllowEntry {
    fn matches(
        &self,
        sid: Sid,
        internal: Option<Addr>,
        external: Option<Addr>,
        proto: &str,
    ) -> bool {
        let net_ok = |net: &Option<IpNet>, a: Option<Addr>| match (net, a) {
            (None, _) => true,
            (Some(n), Some(a)) => n.contains(&a.to_ip()),
            (Some(_), None) => false,
        };
        (self.signatures.is_empty() || self.signatures.contains(&sid.id()))
            && net_ok(&self.internal, internal)
            && net_ok(&self.external, external)
            && self.app_proto.as_deref().is_none_or(|p| p == proto)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct BaselineConfig {
    pub enabled: bool,
    pub window_us: i64,
    /// Windows seen before the baseline is trusted.
    pub learning_windows: u32,
    pub k: f64,
    pub floor_bytes: u64,
    pub max_hosts: usize,
}

/// 1173006: an internal host's outbound volume to all external hosts over a sliding window.
#[derive(Clone, Copy, Debug)]
pub struct HostRollupConfig {
    /// 0: off.
    pub threshold_bytes: u64,
    pub window_us: i64,
    pub max_hosts: usize,
}

#[derive(Clone, Debug)]
pub struct DetectConfig {
    pub threshold_bytes: u64,
    /// Per-protocol overrides (ftp, tftp, smb).
    pub per_protocol: Vec<(String, u64)>,
    pub allow: Vec<AllowEntry>,
    pub rollup_window_us: i64,
    pub rollup_max_pairs: usize,
    pub baseline: BaselineConfig,
    /// 1173002/1173003 aggregation window (`detect.mismatch.aggregate_window`); 0: an alert per
    /// flow.
    pub mismatch_window_us: i64,
    /// Aggregation keys kept at most (`detect.mismatch.aggregate_max_keys`).
    pub mismatch_max_keys: usize,
    pub host_rollup: HostRollupConfig,
}

impl Default for DetectConfig {
    /// The sensor's documented defaults (`sensor.toml.example`): 50 MiB per transfer, hourly
    /// roll-ups and baselines over 100,000 pairs and hosts, 24 windows of learning, k = 3, a
    /// 10 MiB floor.
    fn default() -> Self {
        DetectConfig {
            threshold_bytes: 50 << 20,
            per_protocol: Vec::new(),
            allow: Vec::new(),
            rollup_window_us: 3_600_000_000,
            rollup_max_pairs: 100_000,
            baseline: BaselineConfig {
                enabled: true,
                window_us: 3_600_000_000,
                learning_windows: 24,
                k: 3.0,
                floor_bytes: 10 << 20,
                max_hosts: 100_000,
            },
            mismatch_window_us: 3_600_000_000,
            mismatch_max_keys: 100_000,
            host_rollup: HostRollupConfig {
                threshold_bytes: 200 << 20,
                window_us: 3_600_000_000,
                max_hosts: 100_000,
            },
        }
    }
}

impl DetectConfig {
    pub fn threshold(&self, proto: &str) -> u64 {
        self.per_protocol
            .iter()
            .find(|(p, _)| p == proto)
            .map(|(_, t)| *t)
            .unwrap_or(self.threshold_bytes)
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct DetectStats {
    /// Alerts raised, by signature (index = id - 1173001).
    pub alerts: [u64; NSIDS],
    /// Alerts an allowlist entry suppressed, by signature.
    pub suppressed: [u64; NSIDS],
    /// Mismatch alerts held back by aggregation, by signature (their flows are counted in the
    /// key's next alert).
    pub aggregated: [u64; NSIDS],
    pub rollup_evictions: u64,
    pub host_rollup_evictions: u64,
    pub baseline_evictions: u64,
    /// Keys dropped from the mismatch aggregation table at its limit.
    pub mismatch_evictions: u64,
}

impl DetectStats {
    pub fn merge(&mut self, o: &DetectStats) {
        for i in 0..NSIDS {
            self.alerts[i] += o.alerts[i];
            self.suppressed[i] += o.suppressed[i];
            self.aggregated[i] += o.aggregated[i];
        }
        self.rollup_evictions += o.rollup_evictions;
        self.host_rollup_evictions += o.host_rollup_evictions;
        self.baseline_evictions += o.baseline_evictions;
        self.mismatch_evictions += o.mismatch_evictions;
    }
}

/// A signature that fired: what the alert record says besides the flow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Raised {
    pub sid: Sid,
    /// The volume that crossed (session, roll-up window or baseline window).
    pub total: u64,
    pub threshold: u64,
    /// Baseline alerts: the learnt per-window volume.
    pub baseline: Option<f64>,
}

/// Protocol names as small keys (0 ftp, 1 tftp, 2 smb, 3 anything else).
pub fn proto_key(p: &str) -> u8 {
    match p {
        "ftp" => 0,
        "tftp" => 1,
        "smb" => 2,
        _ => 3,
    }
}

pub fn proto_name(k: u8) -> &'static str {
    ["ftp", "tftp", "smb", "other"][k.min(3) as usize]
}

/// Buckets of a sliding window.
const ROLLUP_BUCKETS: usize = 60;

#[derive(Clone, Debug)]
struct Rollup {
    /// (bucket start, bytes), oldest first, at most ROLLUP_BUCKETS.
    buckets: VecDeque<(i64, u64)>,
    sum: u64,
    /// When this pair last raised 1173005 or a session of it 1173001 (one alert per window).
    last_alert_us: Option<i64>,
    touched_us: i64,
}

impl Rollup {
    fn new(now_us: i64) -> Self {
        Rollup {
            buckets: VecDeque::new(),
            sum: 0,
            last_alert_us: None,
            touched_us: now_us,
        }
    }

    /// Adds `delta` at `now_us`, after sliding out the buckets older than `window`.
    fn add(&mut self, now_us: i64, delta: u64, window: i64) {
        let bucket_len = (window / ROLLUP_BUCKETS as i64).max(1);
        while let Some(&(start, bytes)) = self.buckets.front() {
            if start + bucket_len <= now_us - window {
                self.buckets.pop_front();
                self.sum -= bytes;
            } else {
                break;
            }
        }
        let start = now_us - now_us.rem_euclid(bucket_len);
        match self.buckets.back_mut() {
            Some((s, b)) if *s == start => *b += delta,
            _ => {
                if self.buckets.len() > ROLLUP_BUCKETS {
                    if let Some((_, b)) = self.buckets.pop_front() {
                        self.sum -= b;
                    }
                }
                self.buckets.push_back((start, delta));
            }
        }
        self.sum += delta;
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct HostBaseline {
    pub window_start_us: i64,
    pub current: u64,
    /// EWMA of per-window volume and of its absolute deviation.
    pub mean: f64,
    pub dev: f64,
    pub windows: u32,
    pub alerted: bool,
    touched_us: i64,
}

impl HostBaseline {
    pub fn new(window_start_us: i64, current: u64, mean: f64, dev: f64, windows: u32) -> Self {
        HostBaseline {
            window_start_us,
            current,
            mean,
            dev,
            windows,
            alerted: false,
            touched_us: window_start_us,
        }
    }
}

/// EWMA weight of a new window.
const BASELINE_ALPHA: f64 = 0.1;
/// Empty windows folded in at most, after a long silence (beyond, the baseline has decayed anyway).
const MAX_CATCHUP_WINDOWS: u32 = 512;

pub type PairKey = (Addr, Addr, u16, u8);
pub type HostKey = (Addr, u16, u8);
/// An internal host and its VLAN: the host roll-up's key (every protocol together).
pub type HostOnlyKey = (Addr, u16);

/// What mismatch alerts (1173002/1173003) are aggregated by: the host pair (either way round),
/// the server port, the transport, the VLAN, the `app_proto` seen and the signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MismatchKey {
    hosts: (Addr, Addr),
    server_port: u16,
    udp: bool,
    vlan: u16,
    app_proto: &'static str,
    sid: Sid,
}

impl MismatchKey {
    pub fn new(
        client: Addr,
        server: Addr,
        server_port: u16,
        udp: bool,
        vlan: u16,
        app_proto: &'static str,
        sid: Sid,
    ) -> Self {
        MismatchKey {
            hosts: (client.min(server), client.max(server)),
            server_port,
            udp,
            vlan,
            app_proto,
            sid,
        }
    }
}

/// One key of the mismatch aggregation table.
#[derive(Clone, Copy, Debug)]
struct MismatchAgg {
    /// Packet time of the key's last alert: its window runs from here.
    alert_us: i64,
    /// Flows of the key whose alert was held back since then.
    held: u64,
    touched_us: i64,
}

pub struct Detector {
    pub cfg: DetectConfig,
    rollups: HashMap<PairKey, Rollup>,
    rollup_lru: Lru<PairKey>,
    host_rollups: HashMap<HostOnlyKey, Rollup>,
    host_rollup_lru: Lru<HostOnlyKey>,
    baselines: HashMap<HostKey, HostBaseline>,
    baseline_lru: Lru<HostKey>,
    mismatch: HashMap<MismatchKey, MismatchAgg>,
    mismatch_lru: Lru<MismatchKey>,
    pub stats: DetectStats,
}

impl Detector {
    pub fn new(cfg: DetectConfig) -> Self {
        Detector {
            cfg,
            rollups: HashMap::default(),
            rollup_lru: Lru::default(),
            host_rollups: HashMap::default(),
            host_rollup_lru: Lru::default(),
            baselines: HashMap::default(),
            baseline_lru: Lru::default(),
            mismatch: HashMap::default(),
            mismatch_lru: Lru::default(),
            stats: DetectStats::default(),
        }
    }

    /// Aggregation of 1173002/1173003: a flow of `key` raises an alert at packet time `now_us`
    /// unless the key alerted less than `mismatch_window_us` ago. Returns the number of flows the
    /// alert stands for (this one and those held back since the key's previous alert), or None
    /// when it is held back (counted in `stats.aggregated`). A window of 0 alerts on every flow.
    pub fn mismatch_gate(&mut self, now_us: i64, key: MismatchKey) -> Option<u64> {
        let window = self.cfg.mismatch_window_us;
        if window <= 0 {
            return Some(1);
        }
        self.mismatch_lru.sweep(&self.mismatch, |a| a.touched_us);
        if let Some(a) = self.mismatch.get_mut(&key) {
            self.mismatch_lru.touch(key, &mut a.touched_us, now_us);
            if now_us < a.alert_us.saturating_add(window) {
                a.held += 1;
                self.stats.aggregated[key.sid.index()] += 1;
                return None;
            }
            let flows = a.held + 1;
            a.alert_us = now_us;
            a.held = 0;
            return Some(flows);
        }
        // A loop: a reload may have lowered the limit.
        while self.mismatch.len() >= self.cfg.mismatch_max_keys.max(1) {
            self.mismatch_lru
                .evict(&mut self.mismatch, |a| a.touched_us);
            self.stats.mismatch_evictions += 1;
        }
        let mut a = MismatchAgg {
            alert_us: now_us,
            held: 0,
            // Not `now_us`: the touch below must queue the new key.
            touched_us: i64::MIN,
        };
        self.mismatch_lru.touch(key, &mut a.touched_us, now_us);
        self.mismatch.insert(key, a);
        Some(1)
    }

    /// Is `sid` suppressed for this traffic? Counts the suppression; returns the entry's reason.
    pub fn suppressed(
        &mut self,
        sid: Sid,
        internal: Option<Addr>,
        external: Option<Addr>,
        proto: &str,
    ) -> Option<&str> {
        let i = self
            .cfg
            .allow
            .iter()
            .position(|e| e.matches(sid, internal, external, proto))?;
        self.stats.suppressed[sid.index()] += 1;
        Some(&self.cfg.allow[i].reason)
    }

    /// Would `sid` be suppressed for this traffic? (Nothing counted.)
    pub fn is_allowed_path(
        &self,
        sid: Sid,
        internal: Option<Addr>,
        external: Option<Addr>,
        proto: &str,
    ) -> bool {
        self.cfg
            .allow
            .iter()
            .any(|e| e.matches(sid, internal, external, proto))
    }

    /// Counts a raised alert.
    pub fn count(&mut self, sid: Sid) {
        self.stats.alerts[sid.index()] += 1;
    }

    /// `delta` more outbound bytes in a session of `proto` from `internal` to the outside, whose total
    /// is now `session_total`. `session_alerted` says 1173001 already fired for the session. Pushes
    /// what fires (not yet checked against the allowlist).
    #[allow(
        clippy::too_many_arguments,
        reason = "the facts of one outbound delta, as the worker has them per packet"
    )]
    pub fn outbound(
        &mut self,
        now_us: i64,
        internal: Addr,
        vlan: u16,
        proto: &str,
        session_total: u64,
        delta: u64,
        session_alerted: bool,
        out: &mut Vec<Raised>,
    ) {
        let threshold = self.cfg.threshold(proto);
        let session_fires = !session_alerted
            && session_total >= threshold
            && session_total.saturating_sub(delta) < threshold;
        if session_fires {
            out.push(Raised {
                sid: Sid::LargeOutbound,
                total: session_total,
                threshold,
                baseline: None,
            });
        }
        if self.cfg.baseline.enabled {
            self.baseline(now_us, (internal, vlan, proto_key(proto)), delta, out);
        }
        if self.cfg.host_rollup.threshold_bytes > 0 {
            self.host_rollup(now_us, (internal, vlan), delta, out);
        }
    }

    /// 1173006: `delta` more outbound bytes of `key` in its sliding window; fires once per
    /// window when the window's sum reaches the threshold.
    fn host_rollup(&mut self, now_us: i64, key: HostOnlyKey, delta: u64, out: &mut Vec<Raised>) {
        let cfg = self.cfg.host_rollup;
        self.host_rollup_lru
            .sweep(&self.host_rollups, |r| r.touched_us);
        if !self.host_rollups.contains_key(&key) {
            if self.host_rollups.len() >= cfg.max_hosts.max(1) {
                self.host_rollup_lru
                    .evict(&mut self.host_rollups, |r| r.touched_us);
                self.stats.host_rollup_evictions += 1;
            }
            self.host_rollups.insert(key, Rollup::new(now_us));
        }
        let Some(r) = self.host_rollups.get_mut(&key) else {
            return;
        };
        self.host_rollup_lru.touch(key, &mut r.touched_us, now_us);
        let window = cfg.window_us.max(1);
        r.add(now_us, delta, window);
        let quiet = r.last_alert_us.is_none_or(|t| now_us - t >= window);
        if quiet && r.sum >= cfg.threshold_bytes {
            r.last_alert_us = Some(now_us);
            out.push(Raised {
                sid: Sid::HostRollup,
                total: r.sum,
                threshold: cfg.threshold_bytes,
                baseline: None,
            });
        }
    }

    /// A session ended with `total` outbound bytes: it joins its host pair's roll-up, which fires
    /// 1173005 when the window's sum crosses the threshold — evaluated as sessions end, so a session
    /// that crosses on its own raises 1173001 instead and the roll-up does not repeat it.
    #[allow(
        clippy::too_many_arguments,
        reason = "the facts of one ended session, as the worker has them"
    )]
    pub fn session_end(
        &mut self,
        now_us: i64,
        internal: Addr,
        external: Addr,
        vlan: u16,
        proto: &str,
        total: u64,
        alerted_large: bool,
        out: &mut Vec<Raised>,
    ) {
        let threshold = self.cfg.threshold(proto);
        // A session that crossed on its own is 1173001's business, raised or suppressed.
        let crossed_alone = alerted_large || total >= threshold;
        self.rollup(
            now_us,
            (internal, external, vlan, proto_key(proto)),
            total,
            threshold,
            crossed_alone,
            out,
        );
    }

    fn rollup(
        &mut self,
        now_us: i64,
        key: PairKey,
        delta: u64,
        threshold: u64,
        session_alerted: bool,
        out: &mut Vec<Raised>,
    ) {
        let window = self.cfg.rollup_window_us.max(1);
        self.rollup_lru.sweep(&self.rollups, |r| r.touched_us);
        if !self.rollups.contains_key(&key) {
            if self.rollups.len() >= self.cfg.rollup_max_pairs.max(1) {
                self.rollup_lru.evict(&mut self.rollups, |r| r.touched_us);
                self.stats.rollup_evictions += 1;
            }
            self.rollups.insert(key, Rollup::new(now_us));
        }
        let Some(r) = self.rollups.get_mut(&key) else {
            return;
        };
        self.rollup_lru.touch(key, &mut r.touched_us, now_us);
        r.add(now_us, delta, window);
        if session_alerted {
            // A session of this pair alerted on its own: the roll-up does not repeat it.
            r.last_alert_us = Some(now_us);
            return;
        }
        let quiet = r.last_alert_us.is_none_or(|t| now_us - t >= window);
        if quiet && r.sum >= threshold {
            r.last_alert_us = Some(now_us);
            out.push(Raised {
                sid: Sid::Rollup,
                total: r.sum,
                threshold,
                baseline: None,
            });
        }
    }

    fn baseline(&mut self, now_us: i64, key: HostKey, delta: u64, out: &mut Vec<Raised>) {
        let cfg = self.cfg.baseline;
        let w = cfg.window_us.max(1);
        self.baseline_lru.sweep(&self.baselines, |b| b.touched_us);
        if !self.baselines.contains_key(&key) {
            if self.baselines.len() >= cfg.max_hosts.max(1) {
                self.baseline_lru
                    .evict(&mut self.baselines, |b| b.touched_us);
                self.stats.baseline_evictions += 1;
            }
            let start = now_us - now_us.rem_euclid(w);
            self.baselines
                .insert(key, HostBaseline::new(start, 0, 0.0, 0.0, 0));
        }
        let Some(b) = self.baselines.get_mut(&key) else {
            return;
        };
        self.baseline_lru.touch(key, &mut b.touched_us, now_us);
        roll_windows(b, now_us, w);
        b.current += delta;
        if b.alerted || b.windows < cfg.learning_windows {
            return;
        }
        let limit = (cfg.k * b.mean).max(cfg.floor_bytes as f64);
        if b.current as f64 > limit {
            b.alerted = true;
            out.push(Raised {
                sid: Sid::OverBaseline,
                total: b.current,
                threshold: limit.ceil() as u64,
                baseline: Some(b.mean),
            });
        }
    }

    /// Every baseline, for the state file.
    pub fn baselines(&self) -> impl Iterator<Item = (&HostKey, &HostBaseline)> {
        self.baselines.iter()
    }

    /// Loads a saved baseline (at start).
    pub fn restore_baseline(&mut self, key: HostKey, b: HostBaseline) {
        if self.baselines.len() < self.cfg.baseline.max_hosts.max(1) {
            self.baseline_lru.q.push_back((key, b.touched_us));
            self.baselines.insert(key, b);
        }
    }

    /// Brings every baseline up to `now_us` (closing finished windows), e.g. before saving.
    pub fn settle(&mut self, now_us: i64) {
        let w = self.cfg.baseline.window_us.max(1);
        for b in self.baselines.values_mut() {
            roll_windows(b, now_us, w);
        }
    }
}

/// Closes every window that ended before `now_us`, folding its volume into the baseline.
fn roll_windows(b: &mut HostBaseline, now_us: i64, w: i64) {
    let mut n = 0;
    while now_us >= b.window_start_us + w {
        let v = b.current as f64;
        if b.windows == 0 {
            b.mean = v;
            b.dev = 0.0;
        } else {
            let d = (v - b.mean).abs();
            b.mean += BASELINE_ALPHA * (v - b.mean);
            b.dev += BASELINE_ALPHA * (d - b.dev);
        }
        b.windows = b.windows.saturating_add(1);
        b.current = 0;
        b.alerted = false;
        b.window_start_us += w;
        n += 1;
        if n >= MAX_CATCHUP_WINDOWS {
            // A long silence: jump to the current window.
            b.window_start_us = now_us - now_us.rem_euclid(w);
            break;
        }
    }
}

/// Least-recently-used order over a capped map: (key, touch time) in touch order. An entry whose
/// time is no longer its key's touch time is stale and skipped; stale entries are swept out when
/// they outnumber the live ones several times, so the queue stays within a few times the map.
struct Lru<K> {
    q: VecDeque<(K, i64)>,
}

impl<K> Default for Lru<K> {
    fn default() -> Self {
        Lru { q: VecDeque::new() }
    }
}

impl<K: std::hash::Hash + Eq + Copy> Lru<K> {
    /// `key` was used at `now`; `touched` is its entry's touch time.
    fn touch(&mut self, key: K, touched: &mut i64, now: i64) {
        if *touched != now || self.q.is_empty() {
            self.q.push_back((key, now));
        }
        *touched = now;
    }

    /// Drops the least recently touched entry of `map`.
    fn evict<V>(&mut self, map: &mut HashMap<K, V>, touched: impl Fn(&V) -> i64) {
        while let Some((k, t)) = self.q.pop_front() {
            if map.get(&k).is_some_and(|v| touched(v) == t) {
                map.remove(&k);
                return;
            }
        }
        // The queue lost track (should not happen): drop any entry to stay bounded.
        if let Some(k) = map.keys().next().copied() {
            map.remove(&k);
        }
    }

    /// Removes the stale entries once there are many.
    fn sweep<V>(&mut self, map: &HashMap<K, V>, touched: impl Fn(&V) -> i64) {
        if self.q.len() > 4 * map.len() + 1024 {
            self.q
                .retain(|(k, t)| map.get(k).is_some_and(|v| touched(v) == *t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DetectConfig {
        DetectConfig {
            threshold_bytes: 1000,
            per_protocol: vec![("tftp".into(), 500)],
            allow: vec![AllowEntry {
                internal: Some("10.1.2.3/32".parse().unwrap()),
                external: Some("203.0.113.0/24".parse().unwrap()),
                app_proto: Some("ftp".into()),
                signatures: vec![Sid::LargeOutbound.id()],
                reason: "partner".into(),
            }],
            rollup_window_us: 3_600_000_000,
            rollup_max_pairs: 4,
            baseline: BaselineConfig {
                enabled: true,
                window_us: 3_600_000_000,
                learning_windows: 3,
                k: 3.0,
                floor_bytes: 100,
                max_hosts: 4,
            },
            mismatch_window_us: 3_600_000_000,
            mismatch_max_keys: 4,
            host_rollup: HostRollupConfig {
                threshold_bytes: 5000,
                window_us: 3_600_000_000,
                max_hosts: 4,
            },
        }
    }

    const H: i64 = 3_600_000_000;

    fn a(x: u8) -> Addr {
        Addr::v4([10, 0, 0, x])
    }
    fn e(x: u8) -> Addr {
        Addr::v4([203, 0, 113, x])
    }

    #[test]
    fn session_fires_once_at_crossing() {
        let mut d = Detector::new(cfg());
        let mut out = Vec::new();
        d.outbound(0, a(1), 0, "ftp", 600, 600, false, &mut out);
        assert!(out.iter().all(|r| r.sid != Sid::LargeOutbound));
        d.outbound(1, a(1), 0, "ftp", 1200, 600, false, &mut out);
        assert_eq!(
            out.iter().filter(|r| r.sid == Sid::LargeOutbound).count(),
            1
        );
        out.clear();
        d.outbound(2, a(1), 0, "ftp", 1800, 600, true, &mut out);
        assert!(out.is_empty());
        // Per-protocol threshold.
        d.outbound(3, a(2), 0, "tftp", 600, 600, false, &mut out);
        assert_eq!(out[0].threshold, 500);
    }

    #[test]
    fn rollup_many_small_sessions() {
        let mut d = Detector::new(cfg());
        let mut out = Vec::new();
        for i in 0..5 {
            // Each session 300 bytes: none crosses 1000 alone.
            d.session_end(i * 60_000_000, a(1), e(9), 0, "ftp", 300, false, &mut out);
        }
        let r: Vec<_> = out.iter().filter(|r| r.sid == Sid::Rollup).collect();
        assert_eq!(r.len(), 1, "{out:?}");
        assert_eq!(r[0].total, 1200);
        // Two hours later the window has slid: small sessions alone do not fire.
        out.clear();
        d.session_end(3 * H, a(1), e(9), 0, "ftp", 300, false, &mut out);
        assert!(out.iter().all(|r| r.sid != Sid::Rollup));
        // A session that alerted on its own feeds the window without a second alert.
        d.session_end(3 * H + 1, a(1), e(9), 0, "ftp", 5000, true, &mut out);
        assert!(out.iter().all(|r| r.sid != Sid::Rollup));
    }

    #[test]
    fn allowlist() {
        let mut d = Detector::new(cfg());
        let int = Addr::v4([10, 1, 2, 3]);
        assert_eq!(
            d.suppressed(Sid::LargeOutbound, Some(int), Some(e(5)), "ftp"),
            Some("partner")
        );
        assert!(d
            .suppressed(Sid::OffPort, Some(int), Some(e(5)), "ftp")
            .is_none());
        assert!(d
            .suppressed(Sid::LargeOutbound, Some(int), Some(e(5)), "smb")
            .is_none());
        assert!(d
            .suppressed(Sid::LargeOutbound, Some(a(9)), Some(e(5)), "ftp")
            .is_none());
        assert_eq!(d.stats.suppressed[0], 1);
    }

    #[test]
    fn baseline_learns_then_alerts() {
        let mut d = Detector::new(cfg());
        let mut out = Vec::new();
        // Five quiet hours of 200 bytes per hour.
        for h in 0..5 {
            d.outbound(h * H + 10, a(7), 0, "smb", 200, 200, true, &mut out);
        }
        assert!(out.iter().all(|r| r.sid != Sid::OverBaseline));
        // Then 700 bytes in one hour: above 3 × 200.
        d.outbound(5 * H + 10, a(7), 0, "smb", 400, 400, true, &mut out);
        assert!(out.iter().all(|r| r.sid != Sid::OverBaseline));
        d.outbound(5 * H + 20, a(7), 0, "smb", 300, 300, true, &mut out);
        let b: Vec<_> = out.iter().filter(|r| r.sid == Sid::OverBaseline).collect();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].total, 700);
        // Once per window.
        d.outbound(5 * H + 30, a(7), 0, "smb", 300, 300, true, &mut out);
        assert_eq!(out.iter().filter(|r| r.sid == Sid::OverBaseline).count(), 1);
    }

    #[test]
    fn lru_queue_stays_bounded_on_a_long_transfer() {
        let mut d = Detector::new(cfg());
        let mut out = Vec::new();
        for i in 0..100_000i64 {
            d.outbound(i, a(1), 0, "ftp", 1, 1, true, &mut out);
        }
        assert!(d.baseline_lru.q.len() <= 4 * d.baselines.len() + 1025);
    }

    #[test]
    fn tables_are_capped() {
        let mut d = Detector::new(cfg());
        let mut out = Vec::new();
        for i in 0..50u8 {
            d.outbound(i as i64, a(i), 0, "ftp", 1, 1, false, &mut out);
            d.session_end(i as i64, a(i), e(i), 0, "ftp", 1, false, &mut out);
        }
        assert!(d.rollups.len() <= 4 && d.baselines.len() <= 4);
        assert_eq!(d.stats.rollup_evictions, 46);
        assert_eq!(d.stats.baseline_evictions, 46);
    }

    #[test]
    fn host_rollup_sums_every_destination() {
        let mut d = Detector::new(cfg());
        let mut out = Vec::new();
        // 12 sessions of 450 bytes to 12 hosts, over FTP, TFTP and SMB: none alone, no pair,
        // crosses 1000; the host together crosses 5000 at the twelfth.
        for i in 0..12i64 {
            let proto = ["ftp", "tftp", "smb"][i as usize % 3];
            d.outbound(i * 1000, a(1), 0, proto, 450, 450, true, &mut out);
            d.session_end(i * 1000, a(1), e(i as u8), 0, proto, 450, false, &mut out);
        }
        let h: Vec<_> = out.iter().filter(|r| r.sid == Sid::HostRollup).collect();
        assert_eq!(h.len(), 1, "{out:?}");
        assert_eq!(h[0].total, 5400);
        assert_eq!(h[0].threshold, 5000);
        // Once per window; another host is its own key; off when the threshold is 0.
        d.outbound(20_000, a(1), 0, "ftp", 5000, 5000, true, &mut out);
        assert_eq!(out.iter().filter(|r| r.sid == Sid::HostRollup).count(), 1);
        d.outbound(20_000, a(2), 0, "ftp", 5000, 5000, true, &mut out);
        assert_eq!(out.iter().filter(|r| r.sid == Sid::HostRollup).count(), 2);
        // A window later the host may alert again.
        d.outbound(2 * H, a(1), 0, "ftp", 6000, 6000, true, &mut out);
        assert_eq!(out.iter().filter(|r| r.sid == Sid::HostRollup).count(), 3);
        let mut c = cfg();
        c.host_rollup.threshold_bytes = 0;
        let mut d = Detector::new(c);
        out.clear();
        d.outbound(0, a(1), 0, "ftp", 1 << 40, 1 << 40, true, &mut out);
        assert!(out.iter().all(|r| r.sid != Sid::HostRollup));
    }

    fn mk(client: Addr, server: Addr, port: u16) -> MismatchKey {
        MismatchKey::new(client, server, port, true, 0, "failed", Sid::PortOtherProto)
    }

    #[test]
    fn mismatch_aggregates_per_key_and_window() {
        let mut d = Detector::new(cfg());
        let k = mk(a(1), a(2), 53);
        // The first flow alerts; the next 16 within the hour are held back.
        assert_eq!(d.mismatch_gate(0, k), Some(1));
        for i in 1..=16 {
            assert_eq!(d.mismatch_gate(i * 1_000_000, k), None);
        }
        assert_eq!(d.stats.aggregated[Sid::PortOtherProto.index()], 16);
        // Another port, another signature, another pair: their own keys.
        assert_eq!(d.mismatch_gate(10, mk(a(1), a(2), 54)), Some(1));
        let other_sid = MismatchKey::new(a(1), a(2), 53, true, 0, "failed", Sid::OffPort);
        assert_eq!(d.mismatch_gate(10, other_sid), Some(1));
        // The pair either way round is one key.
        assert_eq!(d.mismatch_gate(20, mk(a(2), a(1), 53)), None);
        // After the window: an alert for the 18 flows since the last one (this one included).
        assert_eq!(d.mismatch_gate(H, k), Some(18));
        assert_eq!(d.mismatch_gate(H + 1, k), None);
        assert_eq!(d.mismatch_gate(2 * H, k), Some(2));
        assert_eq!(d.stats.mismatch_evictions, 0);
    }

    #[test]
    fn mismatch_window_zero_alerts_every_flow() {
        let mut c = cfg();
        c.mismatch_window_us = 0;
        let mut d = Detector::new(c);
        for i in 0..5 {
            assert_eq!(d.mismatch_gate(i, mk(a(1), a(2), 53)), Some(1));
        }
        assert_eq!(d.stats.aggregated, [0; NSIDS]);
        assert!(d.mismatch.is_empty());
    }

    #[test]
    fn mismatch_table_is_capped() {
        let mut d = Detector::new(cfg());
        for i in 0..50u8 {
            assert_eq!(d.mismatch_gate(i as i64, mk(a(i), a(200), 53)), Some(1));
        }
        assert!(d.mismatch.len() <= 4);
        assert_eq!(d.stats.mismatch_evictions, 46);
        // The most recent keys stay; the oldest went first.
        assert_eq!(d.mismatch_gate(100, mk(a(49), a(200), 53)), None);
        assert_eq!(d.mismatch_gate(100, mk(a(0), a(200), 53)), Some(1));
    }
}
