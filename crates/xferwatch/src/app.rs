//! Per-flow application identification: feeds each flow's first bytes (in-order TCP prefix, first UDP
//! datagrams) to the fingerprints until one decides, then stops buffering — after that a packet costs
//! nothing here. Re-orients mid-stream flows when a fingerprint says the first sender was the server.

use crate::worker::Shared;
use xferwatch_fingerprint::{
    identify, AppProto, Dgram, Identification, Observed, Transport as FpTransport,
};
use xferwatch_policy::is_file_transfer;
use xferwatch_stream::{Budget, Dir, Flow, Reassembler};
use xferwatch_wire::{L4Packet, Transport};

/// Datagrams kept per UDP flow for fingerprinting, and bytes kept of each.
const UDP_DGRAMS: usize = 12;
const UDP_DGRAM_KEEP: usize = 600;

#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Bytes of each TCP direction buffered for identification.
    pub depth: usize,
    /// Reassembly memory per worker.
    pub memcap: usize,
    /// Payload needed on a well-known port before "nothing matched" is a mismatch.
    pub mismatch_min_payload: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Ident {
    #[default]
    Pending,
    Found(AppProto),
    Unknown,
}

#[derive(Debug, Default)]
pub struct App {
    ident: Ident,
    tcp: [Reassembler; 2],
    udp: Vec<(bool, Vec<u8>)>,
    /// A TFTP flow that starts with a read/write request (not a transfer on a new port).
    tftp_request: bool,
    /// Identified from one direction alone: the other direction's first bytes are still awaited, to
    /// tell whether the two sides speak different protocols (index into `tcp`).
    awaiting_side: Option<usize>,
    /// What each direction speaks on its own, when they differ (to server, to client).
    split: Option<(AppProto, AppProto)>,
}

/// Counters kept per worker, cheap, for the stats event and later the metrics.
#[derive(Clone, Debug, Default)]
pub struct AppCounters {
    pub identified: u64,
    pub unknown: u64,
    pub reoriented: u64,
    pub reassembly_gaps: u64,
    pub reassembly_overlaps: u64,
    pub reassembly_memcap_hits: u64,
}

impl AppCounters {
    pub fn merge(&mut self, o: &AppCounters) {
        self.identified += o.identified;
        self.unknown += o.unknown;
        self.reoriented += o.reoriented;
        self.reassembly_gaps += o.reassembly_gaps;
        self.reassembly_overlaps += o.reassembly_overlaps;
        self.reassembly_memcap_hits += o.reassembly_memcap_hits;
    }
}

pub struct AppState {
    pub budget: Budget,
    pub counters: AppCounters,
}

impl AppState {
    pub fn new(cfg: &AppConfig) -> Self {
        AppState {
            budget: Budget::new(cfg.memcap),
            counters: AppCounters::default(),
        }
    }
    pub fn snapshot(&self) -> AppCounters {
        let mut c = self.counters.clone();
        c.reassembly_gaps = self.budget.gaps;
        c.reassembly_overlaps = self.budget.overlaps;
        c.reassembly_memcap_hits = self.budget.memcap_hits;
        c
    }
}

pub fn on_packet(
    flow: &mut Flow<App>,
    dir: Dir,
    p: &L4Packet<'_>,
    ts_us: i64,
    cfg: &AppConfig,
    st: &mut AppState,
    expectations: &mut Vec<Expectation>,
) {
    if flow.app.ident != Ident::Pending {
        if is_ftp_control(flow) {
            follow_ftp(flow, dir, p, ts_us, st, expectations);
        } else if let (Some(side), Some(tcp)) = (flow.app.awaiting_side, p.tcp) {
            feed_tcp(
                &mut flow.app.tcp,
                dir,
                tcp,
                p.payload,
                cfg.depth,
                &mut st.budget,
            );
            if !flow.app.tcp[side].data().is_empty() || flow.app.tcp[side].is_done() {
                settle_split(flow, st);
            }
        }
        return;
    }
    let grew = match (p.transport, p.tcp) {
        (Transport::Tcp, Some(tcp)) => feed_tcp(
            &mut flow.app.tcp,
            dir,
            tcp,
            p.payload,
            cfg.depth,
            &mut st.budget,
        ),
        _ => {
            on_datagram(flow, dir, p.payload, st);
            return;
        }
    };
    if grew {
        let final_ = match flow.transport() {
            Transport::Tcp => flow.app.tcp.iter().any(|r| r.is_done()),
            Transport::Udp => flow.app.udp.len() >= UDP_DGRAMS,
        };
        decide(flow, final_, st, None);
    }
}

/// Feeds one TCP segment to its direction's reassembler (and the peer's ACK to the other one).
/// Returns true when an in-order prefix grew.
fn feed_tcp(
    r: &mut [Reassembler; 2],
    dir: Dir,
    tcp: xferwatch_wire::TcpInfo,
    payload: &[u8],
    depth: usize,
    budget: &mut Budget,
) -> bool {
    let d = dir.idx();
    if tcp.syn {
        r[d].on_syn(tcp.seq);
    }
    let mut grew = r[d].segment(tcp.data_seq(), payload, depth, budget);
    if tcp.ack_flag {
        grew |= r[1 - d].on_peer_ack(tcp.ack, depth, budget);
    }
    grew
}

/// A UDP datagram of an undecided flow. Identification runs on the datagram where it lies; it is
/// copied (within the worker's reassembly budget) only when the fingerprints need more, so the common
/// case — a DNS query, a TFTP request — allocates nothing.
fn on_datagram(flow: &mut Flow<App>, dir: Dir, payload: &[u8], st: &mut AppState) {
    if payload.is_empty() || flow.app.udp.len() >= UDP_DGRAMS {
        return;
    }
    let keep = &payload[..payload.len().min(UDP_DGRAM_KEEP)];
    let current = (dir == Dir::ToServer, keep);
    let last_slot = flow.app.udp.len() + 1 >= UDP_DGRAMS;
    if decide(flow, last_slot, st, Some(current)) {
        return;
    }
    if st.budget.try_take(keep.len()) {
        flow.app.udp.push((current.0, keep.to_vec()));
    } else {
        // No room to wait for more: decide on what is here.
        decide(flow, true, st, Some(current));
    }
}

/// Runs the fingerprints on what the flow has buffered (plus `extra`, a datagram not stored) and
/// applies the verdict. Returns false while more bytes are needed.
fn decide(
    flow: &mut Flow<App>,
    final_: bool,
    st: &mut AppState,
    extra: Option<(bool, &[u8])>,
) -> bool {
    // With the handshake seen, the client is known for certain; trust a reversal only on UDP and on
    // TCP flows picked up mid-stream.
    let may_reverse = flow.transport() == Transport::Udp || !(flow.syn_seen || flow.synack_seen);
    let (verdict, tftp_request) = {
        let app = &flow.app;
        let mut dgrams: [Dgram<'_>; UDP_DGRAMS] = [Dgram {
            to_server: true,
            data: &[],
        }; UDP_DGRAMS];
        let stored = app.udp.iter().map(|(ts, data)| (*ts, data.as_slice()));
        let mut n = 0;
        for ((ts, data), slot) in stored.chain(extra).zip(dgrams.iter_mut()) {
            *slot = Dgram {
                to_server: ts,
                data,
            };
            n += 1;
        }
        let obs = Observed {
            transport: match flow.transport() {
                Transport::Tcp => FpTransport::Tcp,
                Transport::Udp => FpTransport::Udp,
            },
            to_server: app.tcp[0].data(),
            to_client: app.tcp[1].data(),
            dgrams: &dgrams[..n],
            final_,
        };
        let verdict = identify(&obs);
        // The requester's first datagram, seen from the orientation the flow will have.
        let client_flag =
            !matches!(verdict, Identification::Found { reversed: true, .. } if may_reverse);
        let tftp_request = dgrams[..n]
            .iter()
            .find(|d| d.to_server == client_flag)
            .is_some_and(|d| xferwatch_fingerprint::is_tftp_request(d.data));
        (verdict, tftp_request)
    };
    match verdict {
        Identification::NeedMore => return false,
        Identification::Found { proto, reversed } => {
            if reversed && may_reverse {
                flow.reverse();
                flow.app.tcp.swap(0, 1);
                for d in &mut flow.app.udp {
                    d.0 = !d.0;
                }
                st.counters.reoriented += 1;
            }
            flow.app.tftp_request = proto == AppProto::Tftp && tftp_request;
            // Unicast DNS never targets a multicast group: DNS-format traffic there is LLMNR or mDNS.
            if proto == AppProto::Dns && flow.server_endpoint().addr.is_multicast() {
                flow.app.ident = Ident::Unknown;
                st.counters.unknown += 1;
                release(flow, st);
                return true;
            }
            flow.app.ident = Ident::Found(proto);
            st.counters.identified += 1;
            let empty = [0, 1].map(|i| flow.app.tcp[i].data().is_empty());
            if proto == AppProto::Ftp {
                // FTP control channels keep being read for the data connections they announce.
            } else if flow.transport() == Transport::Tcp && empty[0] != empty[1] && !final_ {
                // Decided from one side: look at the other side's first bytes before letting go.
                flow.app.awaiting_side = Some(if empty[0] { 0 } else { 1 });
            } else {
                settle_split(flow, st);
            }
        }
        Identification::Unknown => {
            flow.app.ident = Ident::Unknown;
            st.counters.unknown += 1;
            release(flow, st);
        }
    }
    true
}

/// Identifies each TCP direction on its own; when both are recognised and differ (an HTTP client
/// talking to an SSH server), the flow record carries `app_proto_ts`/`app_proto_tc` as Suricata's does.
/// Then the buffers go back.
fn settle_split(flow: &mut Flow<App>, st: &mut AppState) {
    let one_side = |to_server: &[u8], to_client: &[u8]| {
        let obs = Observed {
            transport: FpTransport::Tcp,
            to_server,
            to_client,
            dgrams: &[],
            final_: true,
        };
        match identify(&obs) {
            Identification::Found { proto, .. } => Some(proto),
            _ => None,
        }
    };
    let (d0, d1) = (flow.app.tcp[0].data(), flow.app.tcp[1].data());
    if flow.transport() == Transport::Tcp && !d0.is_empty() && !d1.is_empty() {
        if let (Some(ts), Some(tc)) = (one_side(d0, &[]), one_side(&[], d1)) {
            if ts != tc {
                flow.app.split = Some((ts, tc));
            }
        }
    }
    flow.app.awaiting_side = None;
    release(flow, st);
}

fn release(flow: &mut Flow<App>, st: &mut AppState) {
    for r in &mut flow.app.tcp {
        r.release(&mut st.budget);
    }
    for (_, d) in flow.app.udp.drain(..) {
        st.budget.release_bytes(d.len());
    }
    flow.app.udp = Vec::new();
}

/// The flow ended: decide with what was seen, and give the buffers back.
pub fn on_end(flow: &mut Flow<App>, st: &mut AppState) {
    if flow.app.ident == Ident::Pending && (flow.payload[0] > 0 || flow.payload[1] > 0) {
        decide(flow, true, st, None);
    }
    if flow.app.awaiting_side.is_some() {
        settle_split(flow, st);
    }
    release(flow, st);
}

/// What a flow record says about the application.
pub struct Facts {
    pub app_proto: Option<&'static str>,
    pub app_proto_ts: Option<&'static str>,
    pub app_proto_tc: Option<&'static str>,
    pub app_proto_expected: Option<&'static str>,
    pub port_mismatch: Option<bool>,
}

pub fn facts(flow: &Flow<App>, shared: &Shared) -> Facts {
    let server_port = flow.server_endpoint().port;
    let expected = shared.ports.expected(flow.transport(), server_port);
    let payload = flow.payload[0] + flow.payload[1];
    let app_proto = match flow.app.ident {
        Ident::Found(p) => Some(p.as_str()),
        Ident::Unknown => Some("failed"),
        Ident::Pending if payload > 0 => Some("failed"),
        Ident::Pending => None,
    };
    let mismatch = match flow.app.ident {
        // TFTP transfers run on new ports by design: never a mismatch.
        Ident::Found(AppProto::Tftp) if !flow.app.tftp_request => false,
        Ident::Found(p) if is_file_transfer(p.as_str()) => expected != Some(p.as_str()),
        Ident::Found(p) => expected.is_some_and(|e| e != p.as_str()),
        Ident::Unknown | Ident::Pending => {
            expected.is_some() && payload >= shared.app.mismatch_min_payload
        }
    };
    Facts {
        app_proto,
        app_proto_ts: flow.app.split.map(|(ts, _)| ts.as_str()),
        app_proto_tc: flow.app.split.map(|(_, tc)| tc.as_str()),
        app_proto_expected: expected,
        port_mismatch: if app_proto.is_some() {
            Some(mismatch)
        } else {
            None
        },
    }
}

/// A data connection an FTP control channel announced: the side that listens on `port`, and its peer.
#[derive(Clone, Debug)]
pub struct Expectation {
    pub listener: xferwatch_wire::Addr,
    pub peer: xferwatch_wire::Addr,
    /// The address written in the command or reply, when it differs from the listener (NAT, FXP).
    pub announced: Option<xferwatch_wire::Addr>,
    pub port: u16,
    pub parent_flow_id: u64,
    pub ts_us: i64,
}

/// Longest FTP control line followed; longer lines are skipped.
const FTP_LINE_MAX: usize = 4096;

/// Follows an identified FTP control channel: parses complete lines in both directions for PORT/EPRT
/// commands and 227/229 replies, and reports the data connections they announce.
pub fn follow_ftp(
    flow: &mut Flow<App>,
    dir: Dir,
    p: &L4Packet<'_>,
    ts_us: i64,
    st: &mut AppState,
    out: &mut Vec<Expectation>,
) {
    let Some(tcp) = p.tcp else { return };
    feed_tcp(
        &mut flow.app.tcp,
        dir,
        tcp,
        p.payload,
        FTP_LINE_MAX,
        &mut st.budget,
    );
    let client = flow.client_endpoint().addr;
    let server = flow.server_endpoint().addr;
    for side in [0usize, 1] {
        loop {
            let buf = flow.app.tcp[side].data();
            let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
                if buf.len() >= FTP_LINE_MAX {
                    let n = buf.len();
                    flow.app.tcp[side].consume(n, FTP_LINE_MAX, &mut st.budget);
                }
                break;
            };
            if let Some((announced, port)) = crate::ftp_lines::announcement(&buf[..nl], side == 0) {
                let (listener, peer) = if side == 0 {
                    (client, server)
                } else {
                    (server, client)
                };
                let announced = announced.filter(|a| *a != listener);
                out.push(Expectation {
                    listener,
                    peer,
                    announced,
                    port,
                    parent_flow_id: flow.flow_id,
                    ts_us,
                });
            }
            flow.app.tcp[side].consume(nl + 1, FTP_LINE_MAX, &mut st.budget);
        }
    }
}

pub fn is_ftp_control(flow: &Flow<App>) -> bool {
    flow.app.ident == Ident::Found(AppProto::Ftp)
}

/// Data channels are any TCP flow not already identified as a control protocol of its own.
pub fn may_be_data_channel(flow: &Flow<App>) -> bool {
    flow.transport() == Transport::Tcp
        && !matches!(
            flow.app.ident,
            Ident::Found(AppProto::Ftp | AppProto::Smb | AppProto::Ssh | AppProto::Smtp)
        )
}
