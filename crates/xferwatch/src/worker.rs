//! A worker: owns one shard of the flow table and turns finished flows into EVE records.
//!
//! Events are tagged with an [`OrderKey`] derived from packet numbers only, so the writer can merge the
//! workers' streams into the same order whatever the number of workers.

use crate::app::{App, AppCounters, AppState};
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;
use xferwatch_capture::{Batch, Item};
use xferwatch_events::{write_flow, FlowRecord};
use xferwatch_policy::{outbound_payload, Direction, Networks, PortTable};
use xferwatch_stream::{Flow, FlowTable, FlowTableConfig, TableStats};

/// (packet number, phase, flow's first packet number): ticks (phase 0) sort before the packet they
/// precede (phase 1); at one instant, flows are ordered by their first packet.
pub type OrderKey = (u64, u8, u64);

/// What a worker sends the writer.
pub enum Ev {
    Flow {
        line: String,
        /// The same record as an FTP data channel, in case an announcement names this flow.
        alt: Option<DataAlt>,
    },
    Expect(crate::app::Expectation),
}

pub struct DataAlt {
    pub line: String,
    pub server: xferwatch_wire::Endpoint,
    pub client: xferwatch_wire::Addr,
    pub start_us: i64,
    pub old_proto: &'static str,
}

pub struct Out {
    pub worker: usize,
    pub events: Vec<(OrderKey, Ev)>,
    /// Every event this worker will still send has a packet number above this.
    pub watermark: u64,
    pub done: Option<WorkerTotals>,
}

#[derive(Clone, Debug, Default)]
pub struct WorkerTotals {
    pub table: TableStats,
    pub app: AppCounters,
    pub flows_tcp: u64,
    pub flows_udp: u64,
    pub flows_by_app_proto: std::collections::BTreeMap<&'static str, u64>,
    /// File-transfer and mismatching flows for the human summary, (first packet, line), bounded.
    pub notable: Vec<(u64, String)>,
}

/// Notable flows kept per worker for the summary.
const MAX_NOTABLE: usize = 200;

pub struct Shared {
    pub networks: Networks,
    pub ports: PortTable,
    pub table: FlowTableConfig,
    pub app: crate::app::AppConfig,
}

pub struct Worker {
    id: usize,
    shared: Arc<Shared>,
    table: FlowTable<App>,
    ended: Vec<Flow<App>>,
    app: AppState,
    events: Vec<(OrderKey, Ev)>,
    expects: Vec<crate::app::Expectation>,
    totals: WorkerTotals,
}

impl Worker {
    pub fn new(id: usize, shared: Arc<Shared>) -> Self {
        let table = FlowTable::new(shared.table);
        let app = AppState::new(&shared.app);
        Worker {
            id,
            shared,
            table,
            ended: Vec::new(),
            app,
            events: Vec::new(),
            expects: Vec::new(),
            totals: WorkerTotals::default(),
        }
    }

    pub fn run(mut self, rx: Receiver<Batch>, recycle: Sender<Batch>, out: Sender<Out>) {
        while let Ok(batch) = rx.recv() {
            for item in &batch.items {
                match *item {
                    Item::Tick { ts_us, idx } => {
                        self.table.expire(ts_us, &mut self.ended);
                        self.flush_ended(idx, 0);
                    }
                    Item::Packet(ref rec) => {
                        let p = batch.l4(rec);
                        let (h, dir) = self.table.packet(
                            &p,
                            rec.frame_len,
                            rec.ts_us,
                            rec.idx,
                            &mut self.ended,
                        );
                        self.flush_ended(rec.idx, 1);
                        if let Some(flow) = self.table.get_mut(h) {
                            let first = flow.first_idx;
                            let (cfg, st) = (&self.shared.app, &mut self.app);
                            crate::app::on_packet(
                                flow,
                                dir,
                                &p,
                                rec.ts_us,
                                cfg,
                                st,
                                &mut self.expects,
                            );
                            for x in self.expects.drain(..) {
                                self.events.push(((rec.idx, 2, first), Ev::Expect(x)));
                            }
                        }
                    }
                }
            }
            let end = batch.end;
            if end {
                self.table.drain(&mut self.ended);
                self.flush_ended(u64::MAX, 0);
            }
            let watermark = batch.through;
            let _ = recycle.try_send(batch);
            let done = if end {
                self.totals.table = self.table.stats();
                self.totals.app = self.app.snapshot();
                Some(std::mem::take(&mut self.totals))
            } else {
                None
            };
            if !self.events.is_empty() || done.is_some() || watermark != 0 {
                let events = std::mem::take(&mut self.events);
                let _ = out.send(Out {
                    worker: self.id,
                    events,
                    watermark,
                    done,
                });
            }
            if end {
                break;
            }
        }
    }

    fn flush_ended(&mut self, idx: u64, phase: u8) {
        if self.ended.is_empty() {
            return;
        }
        let mut ended = std::mem::take(&mut self.ended);
        for mut f in ended.drain(..) {
            crate::app::on_end(&mut f, &mut self.app);
            let ev = self.render(&f);
            self.events.push(((idx, phase, f.first_idx), ev));
        }
        self.ended = ended;
    }

    fn render(&mut self, f: &Flow<App>) -> Ev {
        let client = f.client_endpoint();
        let server = f.server_endpoint();
        let local_orig = self.shared.networks.is_internal(client.addr);
        let local_resp = self.shared.networks.is_internal(server.addr);
        let direction = Direction::of(local_orig, local_resp);
        let src_ip = client.addr.to_string();
        let dest_ip = server.addr.to_string();
        let facts = crate::app::facts(f, &self.shared);
        match f.transport() {
            xferwatch_wire::Transport::Tcp => self.totals.flows_tcp += 1,
            xferwatch_wire::Transport::Udp => self.totals.flows_udp += 1,
        }
        *self
            .totals
            .flows_by_app_proto
            .entry(facts.app_proto.unwrap_or("none"))
            .or_default() += 1;
        let rec = FlowRecord {
            flow_id: f.flow_id,
            start_us: f.start_us,
            end_us: f.last_us,
            src_ip: &src_ip,
            src_port: client.port,
            dest_ip: &dest_ip,
            dest_port: server.port,
            proto: f.transport().as_str(),
            vlan: f.key.vlan,
            app_proto: facts.app_proto,
            app_proto_ts: facts.app_proto_ts,
            app_proto_tc: facts.app_proto_tc,
            pkts_toserver: f.pkts[0],
            pkts_toclient: f.pkts[1],
            bytes_toserver: f.bytes[0],
            bytes_toclient: f.bytes[1],
            age: f.age_secs(),
            state: f.state.as_str(),
            reason: f.end_reason.map(|r| r.as_str()).unwrap_or("shutdown"),
            alerted: false,
            local_orig,
            local_resp,
            direction: direction.as_str(),
            payload_bytes_toserver: f.payload[0],
            payload_bytes_toclient: f.payload[1],
            outbound_payload_bytes: outbound_payload(direction, f.payload[0], f.payload[1]),
            bytes_exact: f.bytes_exact(),
            app_proto_expected: facts.app_proto_expected,
            port_mismatch: facts.port_mismatch,
            snapped: f.snapped,
            parent_flow_id: None,
        };
        let file_transfer = facts
            .app_proto
            .is_some_and(xferwatch_policy::is_file_transfer);
        if (file_transfer || facts.port_mismatch == Some(true))
            && self.totals.notable.len() < MAX_NOTABLE
        {
            self.totals.notable.push((
                f.first_idx,
                format!(
                    "{:<3} {:>21} -> {:<21} {:<6} {:<8} out {:>10} B{}",
                    rec.proto,
                    format!("{}:{}", rec.src_ip, rec.src_port),
                    format!("{}:{}", rec.dest_ip, rec.dest_port),
                    facts.app_proto.unwrap_or("-"),
                    rec.direction,
                    rec.outbound_payload_bytes,
                    match (facts.port_mismatch, facts.app_proto_expected) {
                        (Some(true), Some(e)) => format!("  PORT MISMATCH (port implies {e})"),
                        (Some(true), None) => "  PORT MISMATCH (off its own port)".to_string(),
                        _ => String::new(),
                    }
                ),
            ));
        }
        let mut line = String::with_capacity(640);
        write_flow(&mut line, &rec);
        let alt = crate::app::may_be_data_channel(f).then(|| {
            let alt_rec = FlowRecord {
                app_proto: Some("ftp-data"),
                app_proto_ts: None,
                app_proto_tc: None,
                port_mismatch: Some(false),
                parent_flow_id: Some(0),
                ..rec.clone()
            };
            let mut alt_line = String::with_capacity(680);
            write_flow(&mut alt_line, &alt_rec);
            DataAlt {
                line: alt_line,
                server,
                client: client.addr,
                start_us: f.start_us,
                old_proto: facts.app_proto.unwrap_or("none"),
            }
        });
        Ev::Flow { line, alt }
    }
}
