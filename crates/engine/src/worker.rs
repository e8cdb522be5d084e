//! A worker: owns one shard of the flow table, the transfer sessions and expected flows of that
//! shard, and turns packets into EVE records.
//!
//! Packets are sharded by host (see [`crate::pipeline::shard_fn`]), so every flow of one transfer — FTP control
//! and data, TFTP request and transfer — is on one worker: expectations, sessions and their totals
//! need no lock and follow packet order. Events are tagged with an [`OrderKey`] derived from packet
//! numbers only, so the writer merges the workers' streams into the same order whatever their number.

use crate::app::{self, Anomaly, App, AppEv, AppState, DataInfo, Proto, TftpState};
use crate::config::Shared;
use crate::counters::{Ev, OrderKey, Out, WorkerTotals, MAX_NOTABLE};
use crate::fleet::{FleetRaised, FleetSync};
use crate::pcaps::{Frame, SessionPcaps};
use crate::render;
use crate::session::{
    pair_key, Activity, FlowRef, FtpCmd, Inference, Pending, PendingKind, Sessions,
};
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;
use xferwatch_capture::{Batch, Item, PacketRec};
use xferwatch_parsers::ftp::FtpEvent;
use xferwatch_parsers::tftp::Transfer;
use xferwatch_policy::detect::{Detector, MismatchKey, Raised, Sid};
use xferwatch_policy::{rules, Direction};
use xferwatch_stream::{Dir, Expect, Expectations, Flow, FlowTable, ListenerIs};
use xferwatch_wire::{L4Packet, Transport};

/// How far ahead of the packet at hand the worker prefetches a packet's index entry, and its flow
/// record (with tens of thousands of interleaved flows, each is a cache miss otherwise).
const PREFETCH_FAR: usize = 8;
const PREFETCH_NEAR: usize = 4;
const PREFETCH_RING: usize = 16;

/// How often a live worker publishes its counters.
const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

pub struct Worker {
    id: usize,
    shared: Arc<Shared>,
    /// Events handed to the writer so far.
    events_sent: u64,
    table: FlowTable<App>,
    ended: Vec<Flow<App>>,
    app: AppState,
    expects: Expectations<Pending>,
    sessions: Sessions,
    inference: Inference,
    evs: Vec<AppEv>,
    expired: Vec<Pending>,
    events: Vec<(OrderKey, Ev)>,
    totals: WorkerTotals,
    detector: Detector,
    raised: Vec<Raised>,
    last_ts_us: i64,
    detect_gen: u64,
    save_gen: u64,
    published: Option<std::time::Instant>,
    /// The flow of the packet being handled, dropped if handling it panics.
    in_flight: Option<u32>,
    /// Session pcaps for alerts (`[evidence] dir`).
    pcaps: Option<SessionPcaps>,
    /// The fleet's shared state (`[fleet]`).
    fleet: Option<FleetSync>,
    fleet_raised: Vec<FleetRaised>,
    /// Tests only: panic on the packet with this number, as a bug on unforeseen bytes would.
    #[cfg(test)]
    pub(crate) panic_at_packet: Option<u64>,
}

/// Flows ended per chunk when the input ends.
const DRAIN_CHUNK: usize = 4096;
/// The longest a draining worker waits for the writer before each chunk (a safety net: the writer
/// always takes the smallest event once every worker has sent past it).
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Packets of a new flow during which an announcement may still claim it.
const LATE_LINK_PACKETS: u64 = 16;

/// Work for another flow found while one flow was borrowed.
enum Deferred {
    /// The TFTP request flow's transfer moved to a new flow.
    HandOver(u32, u64),
    /// An FTP data connection learns its command.
    DataCommand((u32, u64), FtpCmd),
}

impl Worker {
    pub fn new(id: usize, shared: Arc<Shared>) -> Self {
        let table = FlowTable::new(shared.table);
        let app = AppState::new(&shared.app);
        let expects = Expectations::new(shared.expect);
        let detector = Detector::new(shared.detect.clone());
        let pcaps = shared
            .pcaps
            .as_ref()
            .map(|(c, b)| SessionPcaps::new(c.clone(), b.clone(), shared.workers));
        let fleet = shared
            .fleet
            .as_ref()
            .map(|f| FleetSync::new(f, &shared.detect));
        Worker {
            events_sent: 0,
            pcaps,
            fleet,
            fleet_raised: Vec::new(),
            detector,
            raised: Vec::new(),
            last_ts_us: 0,
            detect_gen: 0,
            save_gen: 0,
            published: None,
            in_flight: None,
            #[cfg(test)]
            panic_at_packet: None,
            id,
            shared,
            table,
            ended: Vec::new(),
            app,
            expects,
            sessions: Sessions::default(),
            inference: Inference::default(),
            evs: Vec::new(),
            expired: Vec::new(),
            events: Vec::new(),
            totals: WorkerTotals::default(),
        }
    }

    /// Loads saved baselines for the hosts of this worker's shard.
    pub fn restore(
        &mut self,
        saved: &[(
            xferwatch_policy::detect::HostKey,
            xferwatch_policy::detect::HostBaseline,
        )],
        mine: impl Fn(&xferwatch_policy::detect::HostKey) -> bool,
    ) {
        for (k, b) in saved {
            if mine(k) {
                self.detector.restore_baseline(*k, b.clone());
            }
        }
    }

    pub fn run(mut self, rx: Receiver<Batch>, recycle: Sender<Batch>, out: Sender<Out>) {
        while let Ok(batch) = rx.recv() {
            self.beat();
            self.items_guarded(&batch);
            let end = batch.end;
            if self.shared.live.is_some() {
                self.live_housekeeping(rx.len(), end);
            }
            if end {
                // Flows still open end in order of their first packet, a chunk at a time: the
                // writer gets (and writes) each chunk before the next is made, so memory stays
                // flat however many flows were open.
                let order = self.table.drain_order();
                for chunk in order.chunks(DRAIN_CHUNK) {
                    self.wait_for_writer();
                    self.guarded(|w| {
                        for &(_, h) in chunk {
                            if let Some(f) = w.table.end_one(h) {
                                w.ended.push(f);
                            }
                        }
                        w.flush_ended(u64::MAX, 0);
                    });
                    let last = chunk.last().map_or(0, |c| c.0);
                    let events = std::mem::take(&mut self.events);
                    self.send(
                        &out,
                        Out {
                            worker: self.id,
                            events,
                            watermark: (u64::MAX, 0, last),
                            done: None,
                        },
                    );
                }
                self.guarded(|w| {
                    w.expects.drain(&mut w.expired);
                    w.release_expired();
                });
                // Every update still waiting goes to the fleet now, and what it raises is
                // written after the last flow.
                self.fleet_due((u64::MAX, 1), true);
            } else if self.fleet.is_some() {
                self.fleet_due((batch.through, 3), false);
            }
            // Everything up to the batch's last packet has been sent.
            let batch_through = batch.through;
            let watermark = (batch.through, u8::MAX, u64::MAX);
            let _ = recycle.try_send(batch);
            let done = if end {
                if let Some(p) = self.pcaps.as_mut() {
                    p.finish_all();
                    self.totals.pcaps = p.stats(self.id == 0);
                }
                self.totals.store = self.store_counts();
                if let Some(f) = self.fleet.as_ref() {
                    self.totals.fleet = f.stats;
                }
                self.totals.table = self.table.stats();
                self.totals.app = self.app.snapshot();
                self.totals.expect = self.expects.stats;
                self.totals.sessions = self.sessions.stats;
                self.detector.settle(self.last_ts_us);
                self.totals.detect = self.detector.stats;
                self.totals.baselines = self
                    .detector
                    .baselines()
                    .map(|(k, b)| (*k, b.clone()))
                    .collect();
                Some(std::mem::take(&mut self.totals))
            } else {
                None
            };
            if !self.events.is_empty() || done.is_some() || batch_through != 0 {
                let events = std::mem::take(&mut self.events);
                self.send(
                    &out,
                    Out {
                        worker: self.id,
                        events,
                        watermark,
                        done,
                    },
                );
            }
            if end {
                break;
            }
        }
    }

    /// Sends the fleet what is due (everything, when `all`: the input ended) and writes the
    /// alerts it raised, keyed after everything of packet `at.0` (phase `at.1`).
    fn fleet_due(&mut self, at: (u64, u8), all: bool) {
        let Some(fl) = self.fleet.as_mut() else {
            return;
        };
        let mut raised = std::mem::take(&mut self.fleet_raised);
        if all {
            let patience = self
                .shared
                .fleet
                .as_ref()
                .map_or(std::time::Duration::ZERO, |f| f.cfg.timeout);
            fl.finish(self.last_ts_us, patience, &mut raised);
        } else {
            fl.due(self.last_ts_us, false, &mut raised);
        }
        self.totals.fleet = fl.stats;
        // Local alerts whose updates could not reach the fleet: written now.
        let released = std::mem::take(&mut fl.released);
        let base = raised.len() as u64;
        for (n, (sid, line)) in released.into_iter().enumerate() {
            self.detector.count(sid);
            self.events.push(((at.0, at.1, base + n as u64), line));
        }
        let shared = self.shared.clone();
        for (n, r) in raised.drain(..).enumerate() {
            let c = &r.ctx;
            let sid = r.raised.sid;
            if self
                .detector
                .suppressed(sid, Some(r.internal), c.external, c.session_proto)
                .is_some()
            {
                continue;
            }
            self.detector.count(sid);
            let line = render::fleet_alert(c, r.internal, &r.raised, self.last_ts_us, &shared);
            self.events.push(((at.0, at.1, n as u64), line));
            if self.totals.alerts.len() < MAX_NOTABLE {
                let to = c
                    .external
                    .map_or_else(|| "-".to_string(), |e| e.to_string());
                self.totals.alerts.push((
                    at.0,
                    format!(
                        "{} {:<60} {:>15} -> {:<15} {:<8} {:<8} {:>10} B  (fleet)",
                        sid.id(),
                        sid.signature().msg,
                        r.internal.to_string(),
                        to,
                        "outbound",
                        c.session_proto,
                        r.raised.total,
                    ),
                ));
            }
        }
        self.fleet_raised = raised;
    }

    /// Sends to the writer; a writer that is gone is counted (its events are lost), never ignored.
    fn send(&mut self, out: &Sender<Out>, msg: Out) {
        let n = msg.events.len() as u64;
        if out.send(msg).is_err() {
            self.totals.health.writer_gone_events += n;
        } else {
            self.events_sent += n;
        }
    }

    /// Replay, at the end of the input: before the next chunk of open flows is rendered, waits
    /// (at most [`DRAIN_WAIT`]) until the writer has taken all but [`DRAIN_CHUNK`] of this
    /// worker's events. The writer merges the workers' events in packet order, so a worker that
    /// drains ahead of the others would otherwise pile its records up in the writer.
    fn wait_for_writer(&self) {
        let Some(p) = self.shared.writer_progress.as_ref() else {
            return;
        };
        let t0 = std::time::Instant::now();
        while self.events_sent.saturating_sub(p.taken(self.id)) > DRAIN_CHUNK as u64
            && t0.elapsed() < DRAIN_WAIT
        {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// Tells the daemon this worker is alive and making progress (a relaxed store per batch).
    fn beat(&self) {
        if let Some(live) = self.shared.live.as_ref() {
            if let Some(b) = live.beats.get(self.id) {
                b.stamp();
            }
        }
    }

    /// The items of one batch. A panic while handling one (a bug, on bytes nobody foresaw) costs
    /// that packet's flow and whatever was half-made at the time, counted; the worker goes on with
    /// the next item instead of dying with every flow of its shard.
    fn items_guarded(&mut self, batch: &Batch) {
        // The item being handled, read again after a panic (a Cell: the closure unwinds).
        let next = std::cell::Cell::new(0usize);
        while next.get() < batch.items.len() {
            let from = next.get();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // Prefetches: the index entry of the packet PREFETCH_FAR places ahead, then the
                // flow record of the one PREFETCH_NEAR ahead (its entry is in cache by then).
                let mut hashes = [0u32; PREFETCH_RING];
                let hash_at = |i: usize| match batch.items.get(i) {
                    Some(Item::Packet(r)) => {
                        Some(FlowTable::<App>::hash_of(r.transport, r.src, r.dst, r.vlan))
                    }
                    _ => None,
                };
                for j in from..from + PREFETCH_FAR {
                    if let Some(kh) = hash_at(j) {
                        hashes[j % PREFETCH_RING] = kh;
                        self.table.prefetch_entry(kh);
                    }
                }
                for (i, item) in batch.items.iter().enumerate().skip(from) {
                    if let Some(kh) = hash_at(i + PREFETCH_FAR) {
                        hashes[(i + PREFETCH_FAR) % PREFETCH_RING] = kh;
                        self.table.prefetch_entry(kh);
                    }
                    if let Some(Item::Packet(_)) = batch.items.get(i + PREFETCH_NEAR) {
                        self.table
                            .prefetch_flow(hashes[(i + PREFETCH_NEAR) % PREFETCH_RING]);
                    }
                    next.set(i);
                    self.in_flight = None;
                    self.item(batch, item, hashes[i % PREFETCH_RING]);
                }
                next.set(batch.items.len());
            }));
            if r.is_err() {
                self.after_panic();
                next.set(next.get() + 1);
            }
        }
        self.in_flight = None;
    }

    /// One item of a batch; `kh`: a packet's flow index hash, computed for the prefetch.
    fn item(&mut self, batch: &Batch, item: &Item, kh: u32) {
        match *item {
            Item::Tick { ts_us, idx } => {
                let start = self.events.len();
                self.table.expire(ts_us, &mut self.ended);
                self.flush_ended(idx, 0);
                if self.shared.flow_interim_us > 0 {
                    self.interim_flows(ts_us, idx);
                    // One ordered stream per worker (the writer merges heads): the tick's
                    // records by first packet, each flow's lines in the order written.
                    self.events[start..].sort_by_key(|e| e.0);
                }
                self.expects.expire(ts_us, &mut self.expired);
                self.release_expired();
            }
            Item::Packet(ref rec) => {
                let p = batch.l4(rec);
                let frame = batch.frame(rec).map(|bytes| Frame {
                    idx: rec.idx,
                    ts_us: rec.frame_ts_us,
                    bytes,
                    wire_len: rec.frame_wire,
                    dlt: rec.dlt,
                });
                self.packet(&p, rec, frame, kh);
            }
        }
    }

    /// Runs `f`; a panic in it is contained like one in [`Worker::items_guarded`].
    fn guarded(&mut self, f: impl FnOnce(&mut Worker)) {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))).is_err() {
            self.after_panic();
        }
    }

    /// After a contained panic: the flow being handled is dropped (its state may be half-updated),
    /// and so is the work in progress that may hold half-made state; everything is counted.
    fn after_panic(&mut self) {
        let h = &mut self.totals.health;
        h.panics += 1;
        h.panic_lost_flows += self.ended.len() as u64;
        self.ended.clear();
        self.evs.clear();
        self.raised.clear();
        self.expired.clear();
        if let Some(handle) = self.in_flight.take() {
            if self.table.end_one(handle).is_some() {
                self.totals.health.panic_lost_flows += 1;
            }
        }
        tracing::error!(
            "worker {}: a panic was contained ({} so far); the flow being handled was dropped",
            self.id,
            self.totals.health.panics
        );
    }

    /// Live daemon, once per batch: pick up a reloaded detection configuration, publish counters.
    fn live_housekeeping(&mut self, queue_depth: usize, end: bool) {
        let Some(live) = self.shared.live.as_ref() else {
            return;
        };
        use std::sync::atomic::Ordering;
        let gen = live.detect_gen.load(Ordering::Acquire);
        if gen != self.detect_gen {
            if let Ok(g) = live.detect.read() {
                // Thresholds and the allowlist change; learnt baselines and roll-ups stay.
                self.detector.cfg = g.1.clone();
                if let Some(f) = self.fleet.as_mut() {
                    f.reconfigure(&g.1);
                }
                self.detect_gen = g.0;
            }
        }
        let save = live.save_gen.load(Ordering::Acquire);
        let due = self.published.is_none_or(|t| t.elapsed() >= PUBLISH_EVERY);
        if !(due || save != self.save_gen || end) {
            return;
        }
        self.published = Some(std::time::Instant::now());
        let mut snap = WorkerTotals {
            table: self.table.stats(),
            app: self.app.snapshot(),
            expect: self.expects.stats,
            sessions: self.sessions.stats,
            flows_tcp: self.totals.flows_tcp,
            flows_udp: self.totals.flows_udp,
            flows_by_app_proto: self.totals.flows_by_app_proto.clone(),
            events_by_type: self.totals.events_by_type.clone(),
            detect: self.detector.stats,
            outbound_by_app_proto: self.totals.outbound_by_app_proto.clone(),
            mismatch_by_app_proto: self.totals.mismatch_by_app_proto.clone(),
            reassembly_memory: self.app.budget.used as u64,
            queue_depth: queue_depth as u64,
            health: self.totals.health,
            pcaps: self
                .pcaps
                .as_ref()
                .map(|p| p.stats(self.id == 0))
                .unwrap_or_default(),
            store: self.store_counts(),
            fleet: self.fleet.as_ref().map(|f| f.stats).unwrap_or_default(),
            ..Default::default()
        };
        if save != self.save_gen {
            self.save_gen = save;
            self.detector.settle(self.last_ts_us);
            snap.baselines = self
                .detector
                .baselines()
                .map(|(k, b)| (*k, b.clone()))
                .collect();
        }
        if let Some(slot) = live.slots.get(self.id) {
            if let Ok(mut s) = slot.lock() {
                // Baselines stay until the daemon takes them.
                if snap.baselines.is_empty() {
                    snap.baselines = std::mem::take(&mut s.baselines);
                }
                *s = snap;
            }
        }
    }

    /// Interim records of the flows running for another `[output] flow_interim` since their start
    /// or their last one, at this tick (packet time).
    fn interim_flows(&mut self, ts_us: i64, idx: u64) {
        let every = self.shared.flow_interim_us;
        if every <= 0 {
            return;
        }
        let shared = &*self.shared;
        for f in self.table.iter_mut() {
            let since = if f.app.interim_at == 0 {
                f.start_us
            } else {
                f.app.interim_at
            };
            if ts_us.saturating_sub(since) < every {
                continue;
            }
            f.app.interim_at = ts_us;
            let line = render::flow_interim(f, self.sessions.get(f.app.session), shared);
            self.events.push(((idx, 0, f.first_idx), line));
        }
    }

    /// The file store's counters, from worker 0 only (the store is the sensor's).
    fn store_counts(&self) -> [u64; 3] {
        use std::sync::atomic::Ordering::Relaxed;
        match (&self.shared.app.hashes.store, self.id) {
            (Some(s), 0) => [
                s.stored.load(Relaxed),
                s.duplicates.load(Relaxed),
                s.skipped.load(Relaxed),
            ],
            _ => [0; 3],
        }
    }

    fn release_expired(&mut self) {
        for x in self.expired.drain(..) {
            self.sessions.drop_ref(x.session);
        }
    }

    fn packet(&mut self, p: &L4Packet<'_>, rec: &PacketRec, frame: Option<Frame<'_>>, kh: u32) {
        let (frame_len, ts_us, idx) = (rec.frame_len, rec.ts_us, rec.idx);
        self.last_ts_us = self.last_ts_us.max(ts_us);
        let (h, mut dir) = self
            .table
            .packet_hashed(p, kh, frame_len, ts_us, idx, &mut self.ended);
        self.in_flight = Some(h);
        #[cfg(test)]
        assert!(
            self.panic_at_packet != Some(idx),
            "injected panic at packet {idx}"
        );
        self.flush_ended(idx, 1);
        let shared = &*self.shared;
        let Some(flow) = self.table.get_mut(h) else {
            return;
        };
        if flow.app.iface == 0 {
            flow.app.iface = rec.iface;
        }
        if let Some(pc) = self.pcaps.as_mut() {
            // A flow without session can only alert at its port check: once that is done, its
            // packets need not be kept.
            let may_alert = flow.app.session != 0 || !flow.app.mismatch_done;
            pc.packet(pcap_key(flow), &mut flow.app.ring, frame, may_alert);
        }
        let mut deferred: Vec<Deferred> = Vec::new();
        // A new flow: was it announced? Checked over its first packets, not only the first: with
        // several capture threads the announcement may be processed just after the flow starts.
        if flow.pkts[0] + flow.pkts[1] <= LATE_LINK_PACKETS
            && !self.expects.is_empty()
            && app::linkable(flow)
        {
            if let Some((x, which)) = self.expects.take_any(
                flow.transport(),
                flow.client_endpoint(),
                flow.server_endpoint(),
            ) {
                dir = link(
                    flow,
                    h,
                    dir,
                    x.data,
                    which,
                    &mut self.sessions,
                    &mut self.app,
                    &mut deferred,
                );
            }
        }
        app::on_packet(flow, dir, p, &shared.app, &mut self.app, &mut self.evs);
        if flow.app.session == 0 && !flow.app.session_tried {
            start_session(
                flow,
                h,
                ts_us,
                shared,
                &mut self.sessions,
                &mut self.expects,
            );
        }
        let first_idx = flow.first_idx;
        // Host pair whose FTP control connection showed data-connection activity on this packet.
        let mut activity = None;
        if !self.evs.is_empty() {
            let mut evs = std::mem::take(&mut self.evs);
            for ev in evs.drain(..) {
                match ev {
                    AppEv::Ftp(FtpEvent::Tx(tx)) => {
                        let line = render::ftp(flow, &tx, ts_us, &self.shared);
                        queue(
                            &mut self.totals,
                            &mut self.events,
                            "ftp",
                            (idx, 2, first_idx),
                            line,
                        );
                    }
                    AppEv::Ftp(FtpEvent::Announce(a)) => announce_data(
                        flow,
                        &a,
                        ts_us,
                        shared,
                        &mut self.sessions,
                        &mut self.expects,
                    ),
                    AppEv::Ftp(FtpEvent::DataActivity) => {
                        activity =
                            ftp_activity(flow, ts_us, &mut self.inference, &mut self.sessions)
                                .or(activity);
                    }
                    AppEv::Ftp(FtpEvent::Transfer {
                        command,
                        file,
                        upload,
                        offset,
                    }) => {
                        activity =
                            ftp_activity(flow, ts_us, &mut self.inference, &mut self.sessions)
                                .or(activity);
                        let s = flow.app.session;
                        if let Some((w, cmd)) = self.sessions.ftp_command(
                            s,
                            FtpCmd {
                                command,
                                file,
                                upload,
                                offset,
                            },
                        ) {
                            deferred.push(Deferred::DataCommand(w, cmd));
                        }
                    }
                    AppEv::Ftp(FtpEvent::TlsStarted) => {
                        // Announcements are encrypted from here on: any connection between the
                        // two hosts on ports above 1023, either way, is taken as a data channel
                        // of this session while the control channel lives (documented heuristic).
                        let (client, server) =
                            (flow.client_endpoint().addr, flow.server_endpoint().addr);
                        for (listener, peer) in [(server, client), (client, server)] {
                            let x = Pending {
                                session: flow.app.session,
                                parent: flow.flow_id,
                                kind: PendingKind::FtpData {
                                    control_client: client,
                                    heuristic: true,
                                    inferred: false,
                                },
                            };
                            if self.expects.insert_wildcard(
                                xferwatch_wire::Transport::Tcp,
                                listener,
                                peer,
                                flow.flow_id,
                                x,
                            ) {
                                self.sessions.hold(flow.app.session);
                            }
                        }
                    }
                    AppEv::Smb(tx) => {
                        smb_events(
                            flow,
                            &tx,
                            ts_us,
                            (idx, 2, first_idx),
                            shared,
                            &mut self.sessions,
                            &mut self.totals,
                            &mut self.events,
                        );
                    }
                }
            }
            self.evs = evs;
        }
        let key = (idx, 2, first_idx);
        if !flow.app.infer_offered && app::inferable(flow) {
            // Bytes nobody could place, between two hosts: an FTP data connection whose
            // announcement was missed, if their control connection says a transfer is on.
            flow.app.infer_offered = true;
            let pair = pair_key(
                flow.client_endpoint().addr,
                flow.server_endpoint().addr,
                flow.key.vlan,
            );
            match self.inference.recent(&pair, ts_us) {
                Some(a) => infer_link(
                    flow,
                    h,
                    &a,
                    &mut self.sessions,
                    &mut self.app,
                    &mut deferred,
                ),
                None => self.inference.orphan(pair, (h, flow.flow_id)),
            }
        }
        self.app.counters.ftp_infer_evictions = self.inference.evicted;
        render::count_outbound(flow, shared, &mut self.totals);
        let mut alerts = alerts!(self, shared);
        alerts.outbound(flow, ts_us, key);
        // A protocol on the wrong port: decided once the flow's protocol is.
        alerts.mismatch(flow, false, ts_us, key);
        self.apply_deferred(deferred);
        // Flows of a transfer session are evicted last under pressure (floods of junk go first).
        let protect = self.table.get_mut(h).is_some_and(|f| f.app.session != 0);
        self.table.set_protected(h, protect);
        if let Some(pair) = activity {
            self.claim_orphans(pair, ts_us, key);
        }
        self.dump_pcaps(Some(h), None);
    }

    /// Writes the rings of the sessions an alert just started a pcap for: the live flows of each
    /// (the session's members, or the lone flow `cur`) and `ended`, a flow that just left the
    /// table. Only a key that is neither (a lone flow alerted from elsewhere) walks the table.
    fn dump_pcaps(&mut self, cur: Option<u32>, ended: Option<&mut Flow<App>>) {
        let Some(pc) = self.pcaps.as_mut() else {
            return;
        };
        if !pc.pending() {
            return;
        }
        let mut handles: Vec<FlowRef> = Vec::new();
        let mut walk = false;
        for &k in pc.pending_keys() {
            if self.sessions.get(k).is_some() {
                handles.extend_from_slice(self.sessions.members(k));
                continue;
            }
            let at_hand = cur.and_then(|h| self.table.get_mut(h).map(|f| (h, f.flow_id)));
            match at_hand {
                Some((h, id)) if id == k => handles.push((h, id)),
                _ => walk |= ended.as_ref().is_none_or(|f| f.flow_id != k),
            }
        }
        let mut rings: Vec<(u64, Option<Box<crate::pcaps::PacketRing>>)> = Vec::new();
        if let Some(f) = ended {
            rings.push((pcap_key(f), f.app.ring.take()));
        }
        if walk {
            let table = self
                .table
                .iter_mut()
                .map(|f| (pcap_key(f), &mut f.app.ring));
            pc.dump(table.chain(rings.iter_mut().map(|(k, r)| (*k, r))));
            return;
        }
        for (h, id) in handles {
            if let Some(f) = self.table.get_mut(h).filter(|f| f.flow_id == id) {
                rings.push((pcap_key(f), f.app.ring.take()));
            }
        }
        pc.dump(rings.iter_mut().map(|(k, r)| (*k, r)));
    }

    /// FTP activity between two hosts: the unannounced connections waiting between them are its
    /// data connections.
    fn claim_orphans(&mut self, pair: crate::session::PairKey, ts_us: i64, key: OrderKey) {
        let Some(a) = self.inference.recent(&pair, ts_us) else {
            return;
        };
        let mut waiting = Vec::new();
        self.inference.take_orphans(&pair, &mut waiting);
        let shared = self.shared.clone();
        for (h, id) in waiting {
            let Some(f) = self.table.get_mut(h).filter(|f| f.flow_id == id) else {
                continue;
            };
            if !app::inferable(f) || f.flow_id == a.parent {
                continue;
            }
            let mut deferred = Vec::new();
            infer_link(f, h, &a, &mut self.sessions, &mut self.app, &mut deferred);
            alerts!(self, &shared).outbound(f, ts_us, key);
            self.apply_deferred(deferred);
        }
    }

    fn apply_deferred(&mut self, deferred: Vec<Deferred>) {
        for d in deferred {
            match d {
                Deferred::HandOver(h, id) => {
                    if let Some(f) = self.table.get_mut(h).filter(|f| f.flow_id == id) {
                        if let Proto::Tftp(t) = &mut f.app.proto {
                            t.handed_over = true;
                        }
                    }
                }
                Deferred::DataCommand((h, id), cmd) => {
                    if let Some(f) = self.table.get_mut(h).filter(|f| f.flow_id == id) {
                        if let Proto::FtpData(info) = &mut f.app.proto {
                            info.set_command(cmd);
                        }
                    }
                }
            }
        }
    }

    fn write(&mut self, kind: &'static str, key: OrderKey, line: String) {
        queue(&mut self.totals, &mut self.events, kind, key, line);
    }

    fn flush_ended(&mut self, idx: u64, phase: u8) {
        if self.ended.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let mut ended = std::mem::take(&mut self.ended);
        for mut f in ended.drain(..) {
            let key = (idx, phase, f.first_idx);
            let ts = f.last_us;
            // An announcement processed after the flow's packets (several capture threads) still
            // claims it before it is written.
            if app::linkable(&f) && !self.expects.is_empty() {
                if let Some((x, which)) =
                    self.expects
                        .take_any(f.transport(), f.client_endpoint(), f.server_endpoint())
                {
                    let mut deferred = Vec::new();
                    link(
                        &mut f,
                        u32::MAX,
                        Dir::ToServer,
                        x.data,
                        which,
                        &mut self.sessions,
                        &mut self.app,
                        &mut deferred,
                    );
                    self.apply_deferred(deferred);
                    alerts!(self, &shared).outbound(&mut f, ts, key);
                }
            }
            app::on_end(&mut f, &shared.app, &mut self.app, &mut self.evs);
            if app::inferable(&f) {
                // Decided only now (a short download): FTP activity between its hosts claims it.
                let pair = pair_key(
                    f.client_endpoint().addr,
                    f.server_endpoint().addr,
                    f.key.vlan,
                );
                if let Some(a) = self.inference.recent(&pair, ts) {
                    let mut deferred = Vec::new();
                    infer_link(
                        &mut f,
                        u32::MAX,
                        &a,
                        &mut self.sessions,
                        &mut self.app,
                        &mut deferred,
                    );
                    self.apply_deferred(deferred);
                    alerts!(self, &shared).outbound(&mut f, ts, key);
                }
            }
            let mut evs = std::mem::take(&mut self.evs);
            for ev in evs.drain(..) {
                match ev {
                    AppEv::Ftp(FtpEvent::Tx(tx)) => {
                        self.write("ftp", key, render::ftp(&f, &tx, ts, &shared))
                    }
                    AppEv::Smb(tx) => {
                        smb_events(
                            &mut f,
                            &tx,
                            ts,
                            key,
                            &shared,
                            &mut self.sessions,
                            &mut self.totals,
                            &mut self.events,
                        );
                    }
                    AppEv::Ftp(_) => {}
                }
            }
            self.evs = evs;
            alerts!(self, &shared).mismatch(&mut f, true, ts, key);
            if let Some((kind, line)) = render::transfer_event(&f, &shared) {
                self.write(kind, key, line);
            }
            if let Some((line, file)) = render::fileinfo(&mut f, &shared) {
                self.write("fileinfo", key, line);
                if let Some(s) = self.sessions.get_mut(f.app.session) {
                    s.add_file(file);
                }
            }
            if f.app.tls_upgraded {
                self.expects.remove_wildcards(f.flow_id, &mut self.expired);
                self.release_expired();
            }
            let session_over =
                f.app.session == 0 || self.sessions.flow_ended(f.app.session, f.flow_id);
            if session_over && f.app.session != 0 {
                alerts!(self, &shared).session_end(&f, ts, key);
            }
            self.dump_pcaps(None, Some(&mut f));
            if let Some(pc) = self.pcaps.as_mut() {
                if session_over {
                    pc.flow_ended(&mut f.app.ring);
                    pc.session_ended(pcap_key(&f));
                } else {
                    // An earlier connection of a session that goes on: kept for its pcap.
                    pc.hold(pcap_key(&f), &mut f.app.ring);
                }
            }
            let session = self.sessions.get(f.app.session);
            let line = render::flow(&f, session, &shared, &mut self.totals);
            self.events.push((key, line));
            if f.app.session != 0 {
                self.sessions.drop_ref(f.app.session);
            }
        }
        self.ended = ended;
    }
}

/// The parts of a worker an alert touches, borrowed apart from its flow table.
struct Alerts<'a> {
    detector: &'a mut Detector,
    sessions: &'a mut Sessions,
    raised: &'a mut Vec<Raised>,
    totals: &'a mut WorkerTotals,
    events: &'a mut Vec<(OrderKey, Ev)>,
    shared: &'a Shared,
    pcaps: &'a mut Option<SessionPcaps>,
    fleet: &'a mut Option<FleetSync>,
}

/// [`Alerts`] from a worker's fields (a macro, so the flow table stays borrowable).
macro_rules! alerts {
    ($w:expr, $shared:expr) => {
        Alerts {
            detector: &mut $w.detector,
            sessions: &mut $w.sessions,
            raised: &mut $w.raised,
            totals: &mut $w.totals,
            events: &mut $w.events,
            shared: $shared,
            pcaps: &mut $w.pcaps,
            fleet: &mut $w.fleet,
        }
    };
}
use alerts;

impl Alerts<'_> {
    /// Adds what the flow sent outbound since last time to its session, and raises what that
    /// crosses (1173001, 1173004) at this packet.
    fn outbound(&mut self, flow: &mut Flow<App>, ts_us: i64, key: OrderKey) {
        if flow.app.session == 0 {
            return;
        }
        let out = match flow.app.out_cache {
            Some((side, d)) if side == flow.client => d,
            _ => {
                let (c, s) = (flow.client_endpoint().addr, flow.server_endpoint().addr);
                let d = match self.shared.networks.direction(c, s) {
                    Direction::Outbound => Some(Dir::ToServer),
                    Direction::Inbound => Some(Dir::ToClient),
                    Direction::Internal | Direction::External => None,
                };
                flow.app.out_cache = Some((flow.client, d));
                d
            }
        };
        let Some(d) = out else { return };
        let now = flow.payload[d.idx()];
        let delta = now.saturating_sub(flow.app.out_counted);
        if delta == 0 {
            return;
        }
        flow.app.out_counted = now;
        let Some(s) = self.sessions.get_mut(flow.app.session) else {
            return;
        };
        s.outbound += delta;
        if let (Some(int), Some(_)) = (s.internal, s.external) {
            let large = s.alerted.contains(&Sid::LargeOutbound);
            let (vlan, proto, total) = (s.vlan, s.proto, s.outbound);
            self.detector
                .outbound(ts_us, int, vlan, proto, total, delta, large, self.raised);
            if let Some(fl) = self.fleet.as_mut() {
                let (shared, sessions) = (self.shared, &*self.sessions);
                let flow_ref: &Flow<App> = flow;
                fl.outbound(
                    ts_us,
                    int,
                    vlan,
                    proto,
                    delta,
                    || render::alert_ctx(flow_ref, shared, sessions.get(flow_ref.app.session)),
                    self.raised,
                );
                let held = fleet_filter(fl, self.raised);
                self.hold(flow, ts_us, held);
            }
        }
        self.session_alerts(flow, ts_us, key);
    }

    /// Local alerts of the shared signatures while the fleet is taken to be up: held with the
    /// host's waiting updates, written only if those cannot reach the fleet (so that Redis
    /// failing between two round trips loses no alert).
    fn hold(&mut self, flow: &Flow<App>, ts_us: i64, held: Vec<Raised>) {
        if held.is_empty() {
            return;
        }
        let Some(s) = self.sessions.get(flow.app.session) else {
            return;
        };
        let (Some(int), Some(ext)) = (s.internal, s.external) else {
            return;
        };
        let (proto, total, vlan) = (s.proto, s.outbound, s.vlan);
        let pk = xferwatch_policy::detect::proto_key(proto);
        for r in held {
            if self
                .detector
                .is_allowed_path(r.sid, Some(int), Some(ext), proto)
            {
                continue;
            }
            let kind = match r.sid {
                Sid::HostRollup => xferwatch_fleet::state::OpKind::Host,
                Sid::OverBaseline => xferwatch_fleet::state::OpKind::Baseline(pk),
                _ => xferwatch_fleet::state::OpKind::Pair(ext, pk),
            };
            let a = render::AlertFacts {
                sid: r.sid,
                direction: Direction::Outbound,
                internal: Some(int),
                external: Some(ext),
                session_total: total,
                raised: Some(r),
                app_proto_expected: None,
                port_mismatch: None,
                mismatch_flows: None,
            };
            let line = render::alert(flow, &a, ts_us, self.shared, Some(s), None);
            if let Some(fl) = self.fleet.as_mut() {
                fl.hold(
                    (int, vlan),
                    crate::fleet::Held {
                        sid: r.sid,
                        kind,
                        now_us: ts_us,
                        line,
                    },
                );
            }
        }
    }

    /// The last flow of a session ended: its volume joins the host pair's roll-up (1173005).
    fn session_end(&mut self, flow: &Flow<App>, ts_us: i64, key: OrderKey) {
        let Some(s) = self.sessions.get(flow.app.session) else {
            return;
        };
        let (Some(int), Some(ext)) = (s.internal, s.external) else {
            return;
        };
        let large = s.alerted.contains(&Sid::LargeOutbound);
        self.detector.session_end(
            ts_us,
            int,
            ext,
            s.vlan,
            s.proto,
            s.outbound,
            large,
            self.raised,
        );
        if let Some(fl) = self.fleet.as_mut() {
            let threshold = self.detector.cfg.threshold(s.proto);
            let alone = large || s.outbound >= threshold;
            fl.session_end(
                ts_us,
                int,
                ext,
                s.vlan,
                s.proto,
                s.outbound,
                threshold,
                alone,
                render::alert_ctx(flow, self.shared, Some(s)),
                self.raised,
            );
            let held = fleet_filter(fl, self.raised);
            self.hold(flow, ts_us, held);
        }
        self.session_alerts(flow, ts_us, key);
    }

    /// Writes the volume signatures the detector raised for the flow's session, unless an approved
    /// path covers them.
    fn session_alerts(&mut self, flow: &Flow<App>, ts_us: i64, key: OrderKey) {
        let mut raised = std::mem::take(self.raised);
        for r in raised.drain(..) {
            let Some(s) = self.sessions.get_mut(flow.app.session) else {
                break;
            };
            let (int, ext, proto, total) = (s.internal, s.external, s.proto, s.outbound);
            if self.detector.suppressed(r.sid, int, ext, proto).is_some() {
                continue;
            }
            if !s.alerted.contains(&r.sid) {
                s.alerted.push(r.sid);
            }
            // Volume alerts are raised only for sessions that cross the boundary: their direction
            // is that of the outbound volume they count.
            let a = render::AlertFacts {
                sid: r.sid,
                direction: Direction::Outbound,
                internal: int,
                external: ext,
                session_total: total,
                raised: Some(r),
                app_proto_expected: None,
                port_mismatch: None,
                mismatch_flows: None,
            };
            self.emit(flow, &a, ts_us, key);
        }
        raised.clear();
        *self.raised = raised;
    }

    /// 1173002/1173003 once the flow's protocol is settled (`final_`: the flow ended), unless an
    /// approved path covers it. Checked once per flow.
    fn mismatch(&mut self, flow: &mut Flow<App>, final_: bool, ts_us: i64, order: OrderKey) {
        if flow.app.mismatch_done {
            return;
        }
        let Some(m) = app::mismatch(flow, self.shared, final_) else {
            return;
        };
        flow.app.mismatch_done = true;
        if m.port_mismatch != Some(true) {
            return;
        }
        let proto = m.app_proto.unwrap_or("failed");
        let sid = rules::mismatch_sid(proto);
        let (c, s) = (flow.client_endpoint().addr, flow.server_endpoint().addr);
        let direction = self.shared.networks.direction(c, s);
        let ends = self.shared.networks.ends(c, s);
        // The allow-list matches the internal and external ends; for flows that do not cross the
        // boundary, client and server.
        let (int, ext) = ends.unwrap_or((c, s));
        if self
            .detector
            .suppressed(sid, Some(int), Some(ext), proto)
            .is_some()
        {
            return;
        }
        // Later flows of the same host pair, port, transport and protocol within the aggregation
        // window are counted into the key's next alert instead of alerting each.
        let key = MismatchKey::new(
            c,
            s,
            flow.server_endpoint().port,
            flow.transport() == Transport::Udp,
            flow.key.vlan,
            proto,
            sid,
        );
        let Some(flows) = self.detector.mismatch_gate(ts_us, key) else {
            return;
        };
        flow.app.alerted = true;
        let session_total = self
            .sessions
            .get(flow.app.session)
            .map(|s| s.outbound)
            .unwrap_or(0);
        let a = render::AlertFacts {
            sid,
            direction,
            internal: ends.map(|e| e.0),
            external: ends.map(|e| e.1),
            session_total,
            raised: None,
            app_proto_expected: m.app_proto_expected,
            port_mismatch: m.port_mismatch,
            mismatch_flows: Some(flows),
        };
        self.emit(flow, &a, ts_us, order);
    }

    /// Counts and writes one alert, and keeps a line for the summary.
    fn emit(&mut self, flow: &Flow<App>, a: &render::AlertFacts, ts_us: i64, key: OrderKey) {
        self.detector.count(a.sid);
        let session = self.sessions.get(flow.app.session);
        let pcap = self
            .pcaps
            .as_mut()
            .and_then(|p| p.alert(pcap_key(flow), a.sid.id(), ts_us));
        let line = render::alert(flow, a, ts_us, self.shared, session, pcap.as_deref());
        self.events.push((key, line));
        if self.totals.alerts.len() >= MAX_NOTABLE {
            return;
        }
        // Internal -> external for alerts that cross the boundary, client -> server otherwise;
        // the direction word says which.
        let (from, to) = match (a.internal, a.external) {
            (Some(i), Some(e)) => (i, e),
            _ => (flow.client_endpoint().addr, flow.server_endpoint().addr),
        };
        let proto = app::facts(flow, self.shared).app_proto.unwrap_or("-");
        let bytes = a.raised.map(|r| r.total).unwrap_or(a.session_total);
        let flows = match a.mismatch_flows {
            Some(n) if n > 1 => format!("  ({n} flows)"),
            _ => String::new(),
        };
        self.totals.alerts.push((
            key.0,
            format!(
                "{} {:<60} {:>15} -> {:<15} {:<8} {:<8} {:>10} B  port {}{}",
                a.sid.id(),
                a.sid.signature().msg,
                from.to_string(),
                to.to_string(),
                a.direction.as_str(),
                proto,
                bytes,
                flow.server_endpoint().port,
                flows
            ),
        ));
    }
}

/// With a fleet whose Redis answers, the shared signatures (1173004, 1173005, 1173006) are the
/// fleet's to raise: the worker's own are dropped. While it does not answer, they are raised here
/// (and counted).
fn fleet_filter(fl: &mut FleetSync, raised: &mut Vec<Raised>) -> Vec<Raised> {
    let shared = |s: Sid| matches!(s, Sid::OverBaseline | Sid::Rollup | Sid::HostRollup);
    if fl.up() {
        // Held (Alerts::hold) until the updates behind them reach the fleet.
        let held = raised.iter().filter(|r| shared(r.sid)).copied().collect();
        raised.retain(|r| !shared(r.sid));
        held
    } else {
        for _ in raised.iter().filter(|r| shared(r.sid)) {
            fl.count_local();
        }
        Vec::new()
    }
}

/// The session pcap a flow's packets go to: its session's, or its own when it has none.
fn pcap_key(f: &Flow<App>) -> u64 {
    if f.app.session != 0 {
        f.app.session
    } else {
        f.flow_id
    }
}

/// An SMB transaction's `smb` event; when it closed a file the connection wrote or read, that
/// file's `fileinfo` too (one per direction: the upload, then the download), and the file in its
/// session's list.
#[allow(
    clippy::too_many_arguments,
    reason = "the worker's tables are borrowed apart while the flow is borrowed from one of them"
)]
fn smb_events(
    flow: &mut Flow<App>,
    tx: &xferwatch_parsers::smb::SmbTx,
    ts_us: i64,
    key: OrderKey,
    shared: &Shared,
    sessions: &mut Sessions,
    totals: &mut WorkerTotals,
    events: &mut Vec<(OrderKey, Ev)>,
) {
    queue(
        totals,
        events,
        "smb",
        key,
        render::smb(flow, tx, ts_us, shared),
    );
    let Some(fuid) = tx.fuid.as_deref() else {
        return;
    };
    // Named pipes (the IPC$ share: DCE/RPC) carry no file, as in Suricata.
    let pipe = tx.share.as_deref().is_some_and(|s| {
        let b = s.as_bytes();
        b.len() >= 4 && b[b.len() - 4..].eq_ignore_ascii_case(b"IPC$")
    });
    if pipe {
        if let Some(f) = flow.app.smb_files.as_mut() {
            for read in [false, true] {
                let _ = f.take(fuid, read);
            }
        }
        return;
    }
    for (read, moved) in [(false, tx.bytes_written), (true, tx.bytes_read)] {
        if moved == 0 {
            continue;
        }
        let track = flow.app.smb_files.as_mut().and_then(|f| f.take(fuid, read));
        let (line, file) = render::smb_fileinfo(flow, tx, read, track, ts_us, shared);
        queue(totals, events, "fileinfo", key, line);
        if let Some(s) = sessions.get_mut(flow.app.session) {
            s.add_file(file);
        }
    }
}

/// Queues one transaction event for the writer, counted by type.
fn queue(
    totals: &mut WorkerTotals,
    events: &mut Vec<(OrderKey, Ev)>,
    kind: &'static str,
    key: OrderKey,
    line: String,
) {
    *totals.events_by_type.entry(kind).or_default() += 1;
    events.push((key, line));
}

/// A flow's first packet matched an expectation: it joins the announcer's session.
#[allow(
    clippy::too_many_arguments,
    reason = "the worker's tables are borrowed apart, not through self"
)]
fn link(
    flow: &mut Flow<App>,
    h: u32,
    dir: Dir,
    x: Pending,
    which: ListenerIs,
    sessions: &mut Sessions,
    st: &mut AppState,
    deferred: &mut Vec<Deferred>,
) -> Dir {
    let mut dir = dir;
    // The expectation's hold on the session passes to the flow.
    flow.app.session = if sessions.get(x.session).is_some() {
        sessions.flow_joined(x.session, (h, flow.flow_id));
        x.session
    } else {
        0
    };
    flow.app.session_tried = true;
    flow.app.parent = Some(x.parent);
    match x.kind {
        PendingKind::FtpData {
            control_client,
            heuristic,
            inferred,
        } => {
            if heuristic || inferred {
                // A standing expectation keeps its own hold on the session, and an inference has
                // none to pass on: the flow takes another.
                sessions.hold(x.session);
            }
            let mut info = DataInfo {
                control_client: Some(control_client),
                heuristic,
                inferred,
                ..Default::default()
            };
            let cmd = if inferred {
                sessions.ftp_data_inferred(x.session)
            } else {
                sessions.ftp_data_opened(x.session, (h, flow.flow_id))
            };
            if let Some(cmd) = cmd {
                info.set_command(cmd);
            }
            app::link(flow, "ftp-data", Proto::FtpData(Box::new(info)), st);
        }
        PendingKind::Tftp {
            request,
            request_flow,
        } => {
            // The requester is the transfer's client, whoever sent first.
            if which == ListenerIs::Server {
                flow.reverse();
                dir = dir.other();
            }
            let transfer = Transfer::new(request.write);
            app::link(
                flow,
                "tftp",
                Proto::Tftp(Box::new(TftpState {
                    request: Some(*request),
                    transfer,
                    handed_over: false,
                    track: None,
                })),
                st,
            );
            deferred.push(Deferred::HandOver(request_flow.0, request_flow.1));
        }
    }
    dir
}

/// A flow identified as a file-transfer protocol starts its session; a TFTP request announces its
/// transfer.
fn start_session(
    flow: &mut Flow<App>,
    h: u32,
    ts_us: i64,
    shared: &Shared,
    sessions: &mut Sessions,
    expects: &mut Expectations<Pending>,
) {
    let Some(proto) = app::found(flow) else {
        return;
    };
    let name = proto.as_str();
    if !xferwatch_policy::is_file_transfer(name) {
        flow.app.session_tried = true;
        return;
    }
    flow.app.session_tried = true;
    let (c, s) = (flow.client_endpoint().addr, flow.server_endpoint().addr);
    let (internal, external) = shared.networks.ends(c, s).unzip();
    if !sessions.start(flow.flow_id, name, internal, external, flow.key.vlan) {
        return;
    }
    flow.app.session = flow.flow_id;
    sessions.flow_joined(flow.flow_id, (h, flow.flow_id));
    if let Some(req) = app::tftp_request(flow) {
        let x = Expect {
            transport: Transport::Udp,
            listener: flow.client_endpoint(),
            listener_alt: None,
            peer: flow.server_endpoint().addr,
            peer_port: None,
            data: Pending {
                session: flow.flow_id,
                parent: flow.flow_id,
                kind: PendingKind::Tftp {
                    request: Box::new(req.clone()),
                    request_flow: (h, flow.flow_id),
                },
            },
        };
        if expects.insert(x, ts_us).is_ok() {
            sessions.hold(flow.flow_id);
        } else {
            flow.app.anomalies.insert(Anomaly::ExpectationRefused);
        }
    }
}

/// PORT/EPRT/227/229 on a control channel: expect the data connection.
fn announce_data(
    flow: &mut Flow<App>,
    a: &xferwatch_parsers::ftp::Announce,
    ts_us: i64,
    shared: &Shared,
    sessions: &mut Sessions,
    expects: &mut Expectations<Pending>,
) {
    let client = flow.client_endpoint().addr;
    let server = flow.server_endpoint().addr;
    let (listener, peer) = if a.client_listens {
        (client, server)
    } else {
        (server, client)
    };
    let announced = a.addr.filter(|x| *x != listener);
    if a.client_listens {
        if let Some(x) = announced {
            if rules::ftp_bounce(&shared.networks, client, server, x) {
                flow.app.anomalies.insert(Anomaly::FtpBounce);
            }
        }
    }
    // A third-party listener is matched only when its flows are sharded with this one's, so the
    // outcome does not depend on the number of workers.
    let vlan = flow.key.vlan;
    let listener_alt = announced
        .filter(|alt| (shared.shard)(*alt, peer, vlan) == (shared.shard)(client, server, vlan));
    let x = Expect {
        transport: Transport::Tcp,
        listener: xferwatch_wire::Endpoint {
            addr: listener,
            port: a.port,
        },
        listener_alt,
        peer,
        peer_port: None,
        data: Pending {
            session: flow.app.session,
            parent: flow.flow_id,
            kind: PendingKind::FtpData {
                control_client: client,
                heuristic: false,
                inferred: false,
            },
        },
    };
    if expects.insert(x, ts_us).is_ok() {
        sessions.hold(flow.app.session);
    } else {
        flow.app.anomalies.insert(Anomaly::ExpectationRefused);
    }
}

/// An FTP control connection said a data connection is in use: remembered for its host pair
/// (holding its session). Returns the pair, so the connections waiting between the two hosts can
/// be claimed.
fn ftp_activity(
    flow: &Flow<App>,
    ts_us: i64,
    inference: &mut Inference,
    sessions: &mut Sessions,
) -> Option<crate::session::PairKey> {
    if flow.app.session == 0 || !sessions.hold(flow.app.session) {
        return None;
    }
    let client = flow.client_endpoint().addr;
    let pair = pair_key(client, flow.server_endpoint().addr, flow.key.vlan);
    let mut release = Vec::new();
    inference.activity(
        pair,
        Activity {
            session: flow.app.session,
            parent: flow.flow_id,
            control_client: client,
            at_us: ts_us,
        },
        &mut release,
    );
    for id in release {
        sessions.drop_ref(id);
    }
    Some(pair)
}

/// Links a flow as an FTP data connection of the session whose activity claimed it (no
/// announcement was seen: `linked_by_inference`).
fn infer_link(
    flow: &mut Flow<App>,
    h: u32,
    a: &Activity,
    sessions: &mut Sessions,
    st: &mut AppState,
    deferred: &mut Vec<Deferred>,
) {
    if sessions.get(a.session).is_none() {
        return;
    }
    st.counters.ftp_data_inferred += 1;
    let x = Pending {
        session: a.session,
        parent: a.parent,
        kind: PendingKind::FtpData {
            control_client: a.control_client,
            heuristic: false,
            inferred: true,
        },
    };
    link(
        flow,
        h,
        Dir::ToServer,
        x,
        xferwatch_stream::ListenerIs::Server,
        sessions,
        st,
        deferred,
    );
}
