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
use xferwatch_policy::detect::{proto_key, DetectConfig, Raised, Sid};
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
    /// Alerts the worker's own detector raised while these updates waited: the fleet decides
    /// when they are delivered; if they cannot be, these are written instead.
    held: Vec<Held>,
}

/// A local alert of a shared signature, held until the fleet has the updates behind it.
#[derive(Debug)]
pub struct Held {
    pub sid: Sid,
    /// The key the MUTE op goes to when this alert is written.
    pub kind: OpKind,
    pub now_us: i64,
    /// The alert record, rendered when it was raised.
    pub line: String,
}

/// What a round trip carries besides its ops, per host: the oldest update's time, the flows
/// the ops' alerts would name, the held local alerts.
type Carried = (i64, Vec<Arc<AlertCtx>>, Vec<Held>);

/// What the fleet said last about a host, to tell when it may be about to cross.
#[derive(Clone, Copy, Default)]
struct Known {
    /// The host roll-up's window sum.
    host_sum: u64,
    /// The host roll-up alerted (here or on another sensor): quiet until then, packet time.
    host_quiet_until: i64,
    /// Per protocol: the baseline window, its volume, its limit (0 while learning), and whether
    /// it alerted in that window.
    baseline: [(i64, u64, u64, bool); 4],
}

pub struct FleetSync {
    cfg: FleetConfig,
    params: Params,
    host_threshold: u64,
    baseline_on: bool,
    /// The link's thread: requests go in order, replies come back in the same order.
    tx: crossbeam_channel::Sender<Req>,
    rx: crossbeam_channel::Receiver<Resp>,
    /// Redis answered the last request.
    up: bool,
    /// A probe (a connection attempt) is on its way.
    probing: bool,
    /// The contexts of the round trips on their way, oldest first.
    in_flight: std::collections::VecDeque<Vec<Carried>>,
    /// Held local alerts to write now (their updates could not reach the fleet).
    pub released: Vec<(Sid, String)>,
    hosts: HashMap<(Addr, u16), Pending>,
    known: HashMap<(Addr, u16), Known>,
    pending_ops: usize,
    pub stats: FleetStats,
    /// The last error, for the log.
    pub last_error: Option<String>,
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

/// What a worker asks of its link's thread.
enum Req {
    Sync(Params, Vec<((Addr, u16), Vec<Op>)>),
    /// Connect if not connected (`true`: now, whatever the back-off says).
    Probe(bool),
}

/// The thread's answers, in the order of the requests.
enum Resp {
    Synced {
        batch: Vec<((Addr, u16), Vec<Op>)>,
        result: Result<Vec<Vec<xferwatch_fleet::state::Reply>>, String>,
        round_trips: u64,
        ops: u64,
    },
    Probed(Result<(), String>),
}

/// Round trips on their way at most; beyond, the worker waits for the oldest.
const MAX_IN_FLIGHT: usize = 64;

/// The link's thread: owns the connection, so that neither a round trip nor a connection
/// attempt ever holds a worker up. A failed round trip drops the connection; the next probe
/// after the back-off connects again.
fn link(
    cfg: FleetConfig,
    mut state: Option<State>,
    rx: crossbeam_channel::Receiver<Req>,
    tx: crossbeam_channel::Sender<Resp>,
) {
    let mut retry_at: Option<Instant> = None;
    let mut backoff = RETRY_FIRST;
    while let Ok(req) = rx.recv() {
        let resp = match req {
            Req::Probe(now) => {
                if state.is_some() {
                    Resp::Probed(Ok(()))
                } else if !now && retry_at.is_some_and(|t| Instant::now() < t) {
                    Resp::Probed(Err("waiting to retry".into()))
                } else {
                    match State::connect(&cfg) {
                        Ok(s) => {
                            state = Some(s);
                            backoff = RETRY_FIRST;
                            Resp::Probed(Ok(()))
                        }
                        Err(e) => {
                            retry_at = Some(Instant::now() + backoff);
                            backoff = (backoff * 2).min(RETRY_MAX);
                            Resp::Probed(Err(e.to_string()))
                        }
                    }
                }
            }
            Req::Sync(params, batch) => {
                let (result, round_trips, ops) = match state.as_mut() {
                    None => (Err("not connected".to_string()), 0, 0),
                    Some(s) => {
                        let (r0, o0) = (s.round_trips, s.ops);
                        let r = s.sync(&params, &batch).map_err(|e| e.to_string());
                        (r, s.round_trips - r0, s.ops - o0)
                    }
                };
                if result.is_err() {
                    state = None;
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
                Resp::Synced {
                    batch,
                    result,
                    round_trips,
                    ops,
                }
            }
        };
        if tx.send(resp).is_err() {
            return;
        }
    }
}

impl FleetSync {
    pub fn new(setup: &FleetSetup, detect: &DetectConfig) -> FleetSync {
        let cfg = setup.cfg.clone();
        // Replay: connected before the first packet, so that the whole input is judged with the
        // fleet's state (the caller checked that Redis answers).
        let (state, err) = if setup.connect_at_start {
            match State::connect(&cfg) {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (None, None)
        };
        let up = state.is_some();
        let (req_tx, req_rx) = crossbeam_channel::unbounded();
        let (resp_tx, resp_rx) = crossbeam_channel::unbounded();
        let c = cfg.clone();
        let spawned = std::thread::Builder::new()
            .name("xw-fleet".into())
            .spawn(move || link(c, state, req_rx, resp_tx));
        let mut f = FleetSync {
            cfg,
            params: params(detect),
            host_threshold: detect.host_rollup.threshold_bytes,
            baseline_on: detect.baseline.enabled,
            tx: req_tx,
            rx: resp_rx,
            up,
            probing: false,
            in_flight: std::collections::VecDeque::new(),
            released: Vec::new(),
            hosts: HashMap::default(),
            known: HashMap::default(),
            pending_ops: 0,
            stats: FleetStats::default(),
            last_error: None,
        };
        if let Err(e) = spawned {
            f.up = false;
            f.last_error = Some(format!("cannot start the fleet's thread: {e}"));
        }
        if let Some(e) = err {
            f.went_down(e);
        }
        f.stats.up = u64::from(f.up);
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
        self.up
    }

    /// Queues `op` for `host`; `ctx` (made once by `make` if needed) is the flow its alert would
    /// name, taken when the op is new: an update merged into an op keeps that op's flow.
    fn push(
        &mut self,
        host: (Addr, u16),
        op: Op,
        ctx: &mut Option<Arc<AlertCtx>>,
        make: &mut dyn FnMut() -> AlertCtx,
        merge: bool,
    ) {
        let p = self.hosts.entry(host).or_insert_with(|| Pending {
            since_us: op.now_us,
            ops: Vec::new(),
            ctxs: Vec::new(),
            hot: false,
            held: Vec::new(),
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
                    return;
                }
            }
        }
        let c = ctx.get_or_insert_with(|| Arc::new(make())).clone();
        p.ops.push(op);
        p.ctxs.push(c);
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
        make_ctx: impl FnOnce() -> AlertCtx,
        local: &[Raised],
    ) {
        let mut make_ctx = Some(make_ctx);
        let mut make = || make_ctx.take().map_or_else(unreachable_ctx, |f| f());
        let mut ctx = None;
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
            self.push(host, op, &mut ctx, &mut make, true);
        }
        if self.baseline_on {
            let op = Op {
                kind: OpKind::Baseline(pk),
                now_us,
                delta,
                threshold: 0,
                flags: mute(Sid::OverBaseline),
            };
            self.push(host, op, &mut ctx, &mut make, true);
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
        let host_hot = self.host_threshold > 0
            && now_us >= k.host_quiet_until
            && k.host_sum + waiting(OpKind::Host) >= self.host_threshold;
        let (w, cur, limit, alerted) = k.baseline[pk as usize];
        let base_hot = self.baseline_on
            && limit > 0
            && !alerted
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
        let mut ctx = Some(Arc::new(ctx));
        self.push((internal, vlan), op, &mut ctx, &mut unreachable_ctx, false);
    }

    /// A local alert was raised because Redis was down.
    pub fn count_local(&mut self) {
        self.stats.local_alerts += 1;
    }

    /// Sends what is due at packet time `now_us` (everything when `all`), and hands over the
    /// alerts of the replies that came back.
    pub fn due(&mut self, now_us: i64, all: bool, out: &mut Vec<FleetRaised>) {
        while let Ok(r) = self.rx.try_recv() {
            self.handle(r, out);
        }
        self.stats.pending = self.pending_ops as u64;
        if !self.up {
            if !self.probing && self.tx.send(Req::Probe(false)).is_ok() {
                self.probing = true;
            }
            return;
        }
        if self.hosts.is_empty() {
            return;
        }
        // Once a host has waited sync_interval (packet time), every waiting host goes, in as
        // few round trips as can be; in between, only the hosts that may be crossing.
        let interval = self.cfg.sync_interval_us.max(1);
        let tick = all
            || self
                .hosts
                .values()
                .any(|p| now_us.saturating_sub(p.since_us) >= interval);
        let mut ready: Vec<(Addr, u16)> = self
            .hosts
            .iter()
            .filter(|(_, p)| tick || p.hot)
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
                    ctxs.push((p.since_us, p.ctxs, p.held));
                }
            }
            match self.tx.send(Req::Sync(self.params, batch)) {
                Ok(()) => self.in_flight.push_back(ctxs),
                Err(crossbeam_channel::SendError(Req::Sync(_, batch))) => {
                    self.requeue(batch, ctxs);
                    self.went_down("the fleet's thread is gone".into());
                }
                Err(_) => {}
            }
        }
        while self.in_flight.len() > MAX_IN_FLIGHT {
            self.wait_one(out);
        }
        self.stats.pending = self.pending_ops as u64;
    }

    /// Waits for the next reply (bounded: a link that says nothing for long is taken as down).
    fn wait_one(&mut self, out: &mut Vec<FleetRaised>) {
        let patience = self.cfg.timeout * 4 + Duration::from_secs(1);
        match self.rx.recv_timeout(patience) {
            Ok(r) => self.handle(r, out),
            Err(_) => {
                // Nothing will come back for what is on its way: count it lost.
                let lost: Vec<Vec<Carried>> = self.in_flight.drain(..).collect();
                for ctxs in lost {
                    self.stats.ops_dropped += ctxs.iter().map(|c| c.1.len() as u64).sum::<u64>();
                    for (_, _, held) in ctxs {
                        self.release(held, None);
                    }
                }
                self.probing = false;
                self.went_down("the fleet's thread does not answer".into());
            }
        }
    }

    fn handle(&mut self, r: Resp, out: &mut Vec<FleetRaised>) {
        match r {
            Resp::Probed(Ok(())) => {
                self.probing = false;
                if !self.up {
                    self.up = true;
                    self.stats.up = 1;
                    self.stats.reconnects += 1;
                    tracing::warn!(
                        "fleet: {} answers again; {} waiting updates are delivered",
                        self.cfg.target.describe(),
                        self.pending_ops
                    );
                }
            }
            Resp::Probed(Err(e)) => {
                self.probing = false;
                self.last_error = Some(e);
            }
            Resp::Synced {
                batch,
                result,
                round_trips,
                ops,
            } => {
                let ctxs = self.in_flight.pop_front().unwrap_or_default();
                self.stats.round_trips += round_trips;
                self.stats.ops += ops;
                match result {
                    Ok(replies) => {
                        for (((host, ops), (_, cs, _)), rs) in batch.iter().zip(&ctxs).zip(replies)
                        {
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
                        self.went_down(e);
                        // Not known to have been applied: sent again once Redis is back (a
                        // round trip cut between its execution and its reply counts twice).
                        // The local alerts they carried are written now, as any raised while
                        // Redis is away, and recorded behind them (MUTE).
                        let mut helds = Vec::new();
                        let mut stripped = Vec::with_capacity(ctxs.len());
                        for ((host, _), (since, cs, held)) in batch.iter().zip(ctxs) {
                            helds.push((*host, held));
                            stripped.push((since, cs, Vec::new()));
                        }
                        self.requeue(batch, stripped);
                        for (host, held) in helds {
                            self.release(held, Some(host));
                        }
                    }
                }
            }
        }
    }

    fn requeue(&mut self, batch: Vec<((Addr, u16), Vec<Op>)>, ctxs: Vec<Carried>) {
        for ((key, ops), (since, cs, mut held)) in batch.into_iter().zip(ctxs) {
            self.pending_ops += ops.len();
            let p = self.hosts.entry(key).or_insert_with(|| Pending {
                since_us: since,
                ops: Vec::new(),
                ctxs: Vec::new(),
                hot: false,
                held: Vec::new(),
            });
            // Older updates first.
            let mut o = ops;
            o.append(&mut p.ops);
            p.ops = o;
            let mut c = cs;
            c.append(&mut p.ctxs);
            p.ctxs = c;
            held.append(&mut p.held);
            p.held = held;
            p.since_us = p.since_us.min(since);
        }
    }

    /// Keeps what the fleet said about a host, to tell when it may cross next.
    fn learn(&mut self, host: (Addr, u16), ops: &[Op], replies: &[xferwatch_fleet::state::Reply]) {
        let window = self.params.baseline_window_us.max(1);
        let host_window = self.params.host_window_us.max(1);
        let k = self.known.entry(host).or_default();
        for (op, r) in ops.iter().zip(replies) {
            match op.kind {
                OpKind::Host => {
                    k.host_sum = r.total;
                    // Raised now, or already (here or elsewhere: over the threshold without
                    // alerting means the window alerted): nothing to hurry for a window.
                    if r.alert || (r.limit > 0 && r.total >= r.limit) {
                        k.host_quiet_until = op.now_us.saturating_add(host_window);
                    }
                }
                OpKind::Baseline(p) => {
                    let w = op.now_us.div_euclid(window);
                    let slot = &mut k.baseline[p.min(3) as usize];
                    let alerted =
                        r.alert || (slot.0 == w && slot.3) || (r.limit > 0 && r.total > r.limit);
                    *slot = (w, r.total, r.limit, alerted);
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
        if self.up || self.last_error.is_none() {
            tracing::warn!(
                "fleet: {}: {why}; detection goes on with this sensor's own state",
                self.cfg.target.describe()
            );
        }
        self.last_error = Some(why);
        self.up = false;
        self.stats.up = 0;
    }

    /// The end of the input: sends everything and waits for the replies; while Redis does not
    /// answer, keeps trying for `patience` (wall clock). What is still waiting then stays
    /// counted in `pending`.
    pub fn finish(&mut self, now_us: i64, patience: Duration, out: &mut Vec<FleetRaised>) {
        let t0 = Instant::now();
        loop {
            self.due(now_us, true, out);
            while !self.in_flight.is_empty() {
                self.wait_one(out);
            }
            if self.hosts.is_empty() || t0.elapsed() >= patience {
                break;
            }
            if !self.up {
                // Try now, whatever the back-off, and wait for the answer.
                if !self.probing && self.tx.send(Req::Probe(true)).is_ok() {
                    self.probing = true;
                }
                while self.probing && t0.elapsed() < patience {
                    match self.rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(r) => self.handle(r, out),
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        Err(_) => {
                            self.probing = false;
                            break;
                        }
                    }
                }
                if !self.up {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        // Updates that never reached the fleet: the local alerts they carried stand.
        let left: Vec<Vec<Held>> = self
            .hosts
            .values_mut()
            .map(|p| std::mem::take(&mut p.held))
            .collect();
        for held in left {
            self.release(held, None);
        }
        self.stats.pending = self.pending_ops as u64;
    }

    /// A local alert of `host` raised while its updates wait for the fleet: held with them.
    pub fn hold(&mut self, host: (Addr, u16), h: Held) {
        let p = self.hosts.entry(host).or_insert_with(|| Pending {
            since_us: h.now_us,
            ops: Vec::new(),
            ctxs: Vec::new(),
            hot: false,
            held: Vec::new(),
        });
        p.held.push(h);
        // The fleet decides it at the next chance.
        p.hot = true;
    }

    /// Writes held alerts whose updates could not reach the fleet; with `host`, records each
    /// behind the updates that wait (MUTE), so that the fleet does not raise it again.
    fn release(&mut self, held: Vec<Held>, host: Option<(Addr, u16)>) {
        for h in held {
            self.stats.local_alerts += 1;
            if let Some(host) = host {
                // The waiting updates of the same key and window must not raise it again when
                // they are delivered, whatever their order: they carry the MUTE too.
                let p = self.params;
                if let Some(w) = self.hosts.get_mut(&host) {
                    for op in w.ops.iter_mut().filter(|o| o.kind == h.kind) {
                        let same = match h.kind {
                            OpKind::Baseline(_) => {
                                let bw = p.baseline_window_us.max(1);
                                op.now_us.div_euclid(bw) == h.now_us.div_euclid(bw)
                            }
                            OpKind::Host => (op.now_us - h.now_us).abs() < p.host_window_us.max(1),
                            OpKind::Pair(..) => {
                                (op.now_us - h.now_us).abs() < p.rollup_window_us.max(1)
                            }
                        };
                        if same {
                            op.flags |= MUTE;
                        }
                    }
                }
                let op = Op {
                    kind: h.kind,
                    now_us: h.now_us,
                    delta: 0,
                    threshold: 0,
                    flags: MUTE,
                };
                let mut ctx = Some(Arc::new(unreachable_ctx()));
                self.push(host, op, &mut ctx, &mut unreachable_ctx, false);
            }
            self.released.push((h.sid, h.line));
        }
    }
}

/// The context maker of an op that has its context already (never called).
fn unreachable_ctx() -> AlertCtx {
    AlertCtx {
        flow_id: 0,
        src: String::new(),
        src_port: 0,
        dst: String::new(),
        dst_port: 0,
        proto: "",
        vlan: 0,
        app_proto: None,
        community_id: String::new(),
        in_iface: None,
        session_id: 0,
        parent_flow_id: None,
        session_total: 0,
        external: None,
        session_proto: "other",
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
