//! A worker's side of the fleet: the outbound volume of its internal hosts goes to the fleet's
//! Redis in batches, and the fleet says which update crossed a threshold (1173004, 1173005,
//! 1173006). Each alert is then raised once for the whole fleet, by the sensor whose update
//! crossed it.
//!
//! Updates wait per host and leave together, in one pipelined round trip, when a host's oldest
//! waiting update is `sync_interval` old (packet time), when the host may be about to cross (its
//! last known volume plus what waits reaches the threshold), and when the input ends. No packet
//! waits for Redis.
//!
//! The worker's own detector keeps running beside: while Redis cannot be reached, its alerts are
//! raised (and recorded in the updates that wait, so the fleet does not raise them again when
//! they are delivered); while Redis answers, the fleet's are.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xferwatch_fleet::state::{Op, OpKind, Params, State, ALONE, MUTE};
use xferwatch_fleet::FleetConfig;
use xferwatch_policy::detect::{DetectConfig, Raised, Sid};
use xferwatch_wire::Addr;

/// Updates waiting in one worker at most; beyond, the host waiting longest loses its updates
/// (counted).
pub const MAX_PENDING_OPS: usize = 262_144;
/// Hosts sent per pipelined round trip at most.
const HOSTS_PER_ROUND_TRIP: usize = 256;
/// Reconnection back-off (wall clock).
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What the engine is told about its fleet.
#[derive(Clone, Debug)]
pub struct FleetSetup {
    pub cfg: FleetConfig,
    /// Connect before the first packet (replay: the caller checked that Redis answers, so that
    /// the whole input is judged with the fleet's state); otherwise connect in the background.
    pub connect_at_start: bool,
}

/// A flow as an alert raised later names it: what its event header and `xfer` need.
#[derive(Clone, Debug)]
pub struct AlertCtx {
    pub flow_id: u64,
    pub src: String,
    pub src_port: u16,
    pub dst: String,
    pub dst_port: u16,
    pub proto: &'static str,
    pub vlan: u16,
    pub app_proto: Option<&'static str>,
    pub community_id: String,
    pub in_iface: Option<Arc<str>>,
    pub session_id: u64,
    pub parent_flow_id: Option<u64>,
    /// The session's outbound payload when this was taken.
    pub session_total: u64,
    /// The session's external host.
    pub external: Option<Addr>,
    /// The session's protocol (`ftp`, `tftp`, `smb`), for the allowlist.
    pub session_proto: &'static str,
}

/// A fleet alert to write.
#[derive(Clone, Debug)]
pub struct FleetRaised {
    pub raised: Raised,
    pub internal: Addr,
    pub ctx: Arc<AlertCtx>,
}

/// Counters of one worker's fleet traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetStats {
    /// Workers with a fleet (1 per worker), and those whose Redis answers now.
    pub workers: u64,
    pub up: u64,
    pub round_trips: u64,
    pub ops: u64,
    /// Round trips that failed (Redis went away).
    pub errors: u64,
    /// Updates lost at [`MAX_PENDING_OPS`].
    pub ops_dropped: u64,
    /// Updates waiting now.
    pub pending: u64,
    /// Local alerts raised while Redis could not be reached.
    pub local_alerts: u64,
    pub reconnects: u64,
}

impl FleetStats {
    pub fn merge(&mut self, o: &FleetStats) {
        self.workers += o.workers;
        self.up += o.up;
        self.round_trips += o.round_trips;
        self.ops += o.ops;
        self.errors += o.errors;
        self.ops_dropped += o.ops_dropped;
        self.pending += o.pending;
        self.local_alerts += o.local_alerts;
        self.reconnects += o.reconnects;
    }
}

/// One host's waiting updates.
struct Pending {
    /// Packet time of the oldest.
    since_us: i64,
    ops: Vec<Op>,
    /// The flow each op's alert would name.
    ctxs: Vec<Arc<AlertCtx>>,
    /// It may cross: send at the next chance.
    hot: bool,
}

/// What the fleet said last about a host, to tell when it may be about to cross.
#[derive(Clone, Copy, Default)]
struct Known {
    /// The host roll-up's window sum, and whether it alerted within the window.
    host_sum: u64,
    /// Per protocol: the baseline window, its volume and its limit (0 while learning).
    baseline: [(i64, u64, u64); 4],
}

pub struct FleetSync {
    cfg: FleetConfig,
    params: Params,
    host_threshold: u64,
    baseline_on: bool,
    state: Option<State>,
    /// A connection being made in the background.
    connecting: Option<std::sync::mpsc::Receiver<anyhow::Result<State>>>,
    retry_at: Option<Instant>,
    backoff: Duration,
    hosts: HashMap<(Addr, u16), Pending>,
    known: HashMap<(Addr, u16), Known>,
    pending_ops: usize,
    /// The last host context built, reused while the same flow sends.
    last_ctx: Option<Arc<AlertCtx>>,
    pub stats: FleetStats,
    /// The last error, for the log.
    pub last_error: Option<String>,
}

fn proto_key(p: &str) -> u8 {
    match p {
        "ftp" => 0,
        "tftp" => 1,
        "smb" => 2,
        _ => 3,
    }
}

/// The fleet's settings from the detector's.
pub fn params(d: &DetectConfig) -> Params {
    Params {
        baseline_window_us: d.baseline.window_us,
        learning_windows: d.baseline.learning_windows,
        k: d.baseline.k,
        floor_bytes: d.baseline.floor_bytes,
        host_window_us: d.host_rollup.window_us,
        rollup_window_us: d.rollup_window_us,
    }
}

impl FleetSync {
    pub fn new(setup: &FleetSetup, detect: &DetectConfig) -> FleetSync {
        let mut f = FleetSync {
            cfg: setup.cfg.clone(),
            params: params(detect),
            host_threshold: detect.host_rollup.threshold_bytes,
            baseline_on: detect.baseline.enabled,
            state: None,
            connecting: None,
            retry_at: None,
            backoff: RETRY_FIRST,
            hosts: HashMap::default(),
            known: HashMap::default(),
            pending_ops: 0,
            last_ctx: None,
            stats: FleetStats::default(),
            last_error: None,
        };
        if setup.connect_at_start {
            match State::connect(&f.cfg) {
                Ok(s) => f.state = Some(s),
                Err(e) => f.went_down(e.to_string()),
            }
        }
        f.stats.up = u64::from(f.state.is_some());
        f.stats.workers = 1;
        f
    }

    /// A reloaded detection configuration.
    pub fn reconfigure(&mut self, detect: &DetectConfig) {
        self.params = params(detect);
        self.host_threshold = detect.host_rollup.threshold_bytes;
        self.baseline_on = detect.baseline.enabled;
    }

    /// Redis answers: the fleet decides the shared signatures.
    pub fn up(&self) -> bool {
        self.state.is_some()
    }

    /// The context of the flow now sending for `host`: `make` builds it when the flow changed.
    fn ctx(&mut self, flow_id: u64, total: u64, make: impl FnOnce() -> AlertCtx) -> Arc<AlertCtx> {
        match &mut self.last_ctx {
            Some(c) if c.flow_id == flow_id => {
                if c.session_total != total {
                    Arc::make_mut(c).session_total = total;
                }
                c.clone()
            }
            _ => {
                let c = Arc::new(make());
                self.last_ctx = Some(c.clone());
                c
            }
        }
    }

    fn push(&mut self, host: (Addr, u16), op: Op, ctx: Arc<AlertCtx>, merge: bool) {
        let p = self.hosts.entry(host).or_insert_with(|| Pending {
            since_us: op.now_us,
            ops: Vec::new(),
            ctxs: Vec::new(),
            hot: false,
        });
        if merge {
            // Into the key's last op when it has the same bucket or window and the same flags:
            // never into an earlier one, which would move bytes before a MUTE op that came
            // between (and raise again what was raised locally).
            if let Some(i) = p.ops.iter().rposition(|o| o.kind == op.kind) {
                let last = &mut p.ops[i];
                if last.flags == op.flags && bucket(&self.params, last) == bucket(&self.params, &op)
                {
                    last.delta += op.delta;
                    last.now_us = last.now_us.max(op.now_us);
                    p.ctxs[i] = ctx;
                    return;
                }
            }
        }
        p.ops.push(op);
        p.ctxs.push(ctx);
        self.pending_ops += 1;
        if self.pending_ops > MAX_PENDING_OPS {
            self.shed();
        }
    }

    /// Drops the updates of the host waiting longest.
    fn shed(&mut self) {
        let Some(key) = self
            .hosts
            .iter()
            .min_by_key(|(_, p)| p.since_us)
            .map(|(k, _)| *k)
        else {
            return;
        };
        if let Some(p) = self.hosts.remove(&key) {
            self.pending_ops -= p.ops.len();
            self.stats.ops_dropped += p.ops.len() as u64;
        }
    }

    /// `delta` outbound bytes of `internal` (its session's protocol `proto`) at `now_us`.
    /// `local` holds what the worker's own detector raised for it; while Redis is down they are
    /// raised, and recorded so that the fleet does not raise them again.
    #[allow(
        clippy::too_many_arguments,
        reason = "the facts of one outbound delta, as the worker has them"
    )]
    pub fn outbound(
        &mut self,
        now_us: i64,
        internal: Addr,
        vlan: u16,
        proto: &str,
        delta: u64,
        flow_id: u64,
        session_total: u64,
        make_ctx: impl FnOnce() -> AlertCtx,
        local: &[Raised],
    ) {
        let ctx = self.ctx(flow_id, session_total, make_ctx);
        let host = (internal, vlan);
        let up = self.up();
        let mute = |sid: Sid| {
            if !up && local.iter().any(|r| r.sid == sid) {
                MUTE
            } else {
                0
            }
        };
        let pk = proto_key(proto);
        if self.host_threshold > 0 {
            let op = Op {
                kind: OpKind::Host,
                now_us,
                delta,
                threshold: self.host_threshold,
                flags: mute(Sid::HostRollup),
            };
            self.push(host, op, ctx.clone(), true);
        }
        if self.baseline_on {
            let op = Op {
                kind: OpKind::Baseline(pk),
                now_us,
                delta,
                threshold: 0,
                flags: mute(Sid::OverBaseline),
            };
            self.push(host, op, ctx, true);
        }
        // May it cross? Then it goes at the next chance.
        let k = self.known.get(&host).copied().unwrap_or_default();
        let window = self.params.baseline_window_us.max(1);
        let Some(p) = self.hosts.get_mut(&host) else {
            return;
        };
        if p.hot {
            return;
        }
        let waiting = |kind: OpKind| -> u64 {
            p.ops
                .iter()
                .filter(|o| o.kind == kind)
                .map(|o| o.delta)
                .sum()
        };
        let host_hot =
            self.host_threshold > 0 && k.host_sum + waiting(OpKind::Host) >= self.host_threshold;
        let (w, cur, limit) = k.baseline[pk as usize];
        let base_hot = self.baseline_on
            && limit > 0
            && w == now_us.div_euclid(window)
            && cur + waiting(OpKind::Baseline(pk)) > limit;
        p.hot = host_hot || base_hot;
    }

    /// A session of `internal` and `external` ended with `total` outbound bytes: it joins their
    /// roll-up (1173005). `alone`: it crossed the threshold by itself.
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
        threshold: u64,
        alone: bool,
        ctx: AlertCtx,
        local: &[Raised],
    ) {
        let muted = !self.up() && local.iter().any(|r| r.sid == Sid::Rollup);
        let op = Op {
            kind: OpKind::Pair(external, proto_key(proto)),
            now_us,
            delta: total,
            threshold,
            flags: if alone { ALONE } else { 0 } | if muted { MUTE } else { 0 },
        };
        self.push((internal, vlan), op, Arc::new(ctx), false);
    }

    /// A local alert was raised because Redis was down.
    pub fn count_local(&mut self) {
        self.stats.local_alerts += 1;
    }

    /// Sends what is due at packet time `now_us` (everything when `all`), and returns the alerts
    /// the fleet raised.
    pub fn due(&mut self, now_us: i64, all: bool, out: &mut Vec<FleetRaised>) {
        self.poll_connect();
        if self.hosts.is_empty() {
            self.stats.pending = 0;
            return;
        }
        if self.state.is_none() {
            self.stats.pending = self.pending_ops as u64;
            return;
        }
        let interval = self.cfg.sync_interval_us.max(1);
        let mut ready: Vec<(Addr, u16)> = self
            .hosts
            .iter()
            .filter(|(_, p)| all || p.hot || now_us.saturating_sub(p.since_us) >= interval)
            .map(|(k, _)| *k)
            .collect();
        // The same order every run (the map's is not).
        ready.sort_unstable();
        for chunk in ready.chunks(HOSTS_PER_ROUND_TRIP) {
            let mut batch = Vec::with_capacity(chunk.len());
            let mut ctxs = Vec::with_capacity(chunk.len());
            for key in chunk {
                if let Some(p) = self.hosts.remove(key) {
                    self.pending_ops -= p.ops.len();
                    batch.push((*key, p.ops));
                    ctxs.push((p.since_us, p.ctxs));
                }
            }
            let Some(state) = self.state.as_mut() else {
                self.requeue(batch, ctxs);
                continue;
            };
            match state.sync(&self.params, &batch) {
                Ok(replies) => {
                    self.stats.round_trips = state.round_trips;
                    self.stats.ops = state.ops;
                    for (((host, ops), (_, cs)), rs) in batch.iter().zip(&ctxs).zip(replies) {
                        self.learn(*host, ops, &rs);
                        for ((op, ctx), r) in ops.iter().zip(cs).zip(rs) {
                            if !r.alert {
                                continue;
                            }
                            let sid = match op.kind {
                                OpKind::Host => Sid::HostRollup,
                                OpKind::Baseline(_) => Sid::OverBaseline,
                                OpKind::Pair(..) => Sid::Rollup,
                            };
                            out.push(FleetRaised {
                                raised: Raised {
                                    sid,
                                    total: r.total,
                                    threshold: r.limit,
                                    baseline: r.mean,
                                },
                                internal: host.0,
                                ctx: ctx.clone(),
                            });
                        }
                    }
                }
                Err(e) => {
                    self.stats.errors += 1;
                    // Not known to have been applied: sent again once Redis is back (a round
                    // trip cut between its execution and its reply counts twice).
                    self.requeue(batch, ctxs);
                    self.went_down(e.to_string());
                }
            }
        }
        self.stats.pending = self.pending_ops as u64;
    }

    fn requeue(
        &mut self,
        batch: Vec<((Addr, u16), Vec<Op>)>,
        ctxs: Vec<(i64, Vec<Arc<AlertCtx>>)>,
    ) {
        for ((key, ops), (since, cs)) in batch.into_iter().zip(ctxs) {
            self.pending_ops += ops.len();
            let p = self.hosts.entry(key).or_insert_with(|| Pending {
                since_us: since,
                ops: Vec::new(),
                ctxs: Vec::new(),
                hot: false,
            });
            // Older updates first.
            let mut o = ops;
            o.append(&mut p.ops);
            p.ops = o;
            let mut c = cs;
            c.append(&mut p.ctxs);
            p.ctxs = c;
            p.since_us = p.since_us.min(since);
        }
    }

    /// Keeps what the fleet said about a host, to tell when it may cross next.
    fn learn(&mut self, host: (Addr, u16), ops: &[Op], replies: &[xferwatch_fleet::state::Reply]) {
        let window = self.params.baseline_window_us.max(1);
        let k = self.known.entry(host).or_default();
        for (op, r) in ops.iter().zip(replies) {
            match op.kind {
                OpKind::Host => {
                    // Alerted: quiet for the window; do not hurry.
                    k.host_sum = if r.alert { 0 } else { r.total };
                }
                OpKind::Baseline(p) => {
                    let limit = if r.alert { 0 } else { r.limit };
                    k.baseline[p.min(3) as usize] = (op.now_us.div_euclid(window), r.total, limit);
                }
                OpKind::Pair(..) => {}
            }
        }
        // Bounded like the waiting updates.
        if self.known.len() > MAX_PENDING_OPS {
            self.known.clear();
        }
    }

    fn went_down(&mut self, why: String) {
        if self.state.take().is_some() || self.last_error.is_none() {
            tracing::warn!(
                "fleet: {}: {why}; detection goes on with this sensor's own state",
                self.cfg.target.describe()
            );
        }
        self.last_error = Some(why);
        self.stats.up = 0;
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
    }

    /// Reconnects in the background, never blocking the worker on a Redis that is away.
    fn poll_connect(&mut self) {
        if self.state.is_some() {
            return;
        }
        if let Some(rx) = &self.connecting {
            match rx.try_recv() {
                Ok(Ok(s)) => {
                    self.connecting = None;
                    self.state = Some(s);
                    self.stats.up = 1;
                    self.stats.reconnects += 1;
                    self.backoff = RETRY_FIRST;
                    tracing::warn!(
                        "fleet: {} answers again; {} waiting updates are delivered",
                        self.cfg.target.describe(),
                        self.pending_ops
                    );
                }
                Ok(Err(e)) => {
                    self.connecting = None;
                    self.went_down(e.to_string());
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => self.connecting = None,
            }
            return;
        }
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let cfg = self.cfg.clone();
        let spawned = std::thread::Builder::new()
            .name("fleet-connect".into())
            .spawn(move || {
                let _ = tx.send(State::connect(&cfg));
            });
        if spawned.is_ok() {
            self.connecting = Some(rx);
        } else {
            self.retry_at = Some(Instant::now() + self.backoff);
        }
    }

    /// Waits (at most `patience`) for a connection being made, then sends everything: the end
    /// of a replay.
    pub fn finish(&mut self, now_us: i64, patience: Duration, out: &mut Vec<FleetRaised>) {
        let t0 = Instant::now();
        loop {
            self.due(now_us, true, out);
            if self.hosts.is_empty() || t0.elapsed() >= patience {
                break;
            }
            if self.state.is_none() && self.connecting.is_none() {
                self.retry_at = None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The bucket (roll-ups) or window (baselines) an op falls in, for merging.
fn bucket(p: &Params, o: &Op) -> i64 {
    let len = match o.kind {
        OpKind::Host => (p.host_window_us / 60).max(1),
        OpKind::Baseline(_) => p.baseline_window_us.max(1),
        OpKind::Pair(..) => (p.rollup_window_us / 60).max(1),
    };
    o.now_us.div_euclid(len)
}
