//! Per-flow application identification: feeds each flow's first bytes (in-order TCP prefix, first UDP
//! datagrams) to the fingerprints until one decides, then stops buffering — after that a packet costs
//! nothing here. Re-orients mid-stream flows when a fingerprint says the first sender was the server.

use crate::config::{AppConfig, Shared};
use crate::counters::AppCounters;
use crate::evidence::{FileTrack, Hashes};
use xferwatch_fingerprint::{
    identify, smb_sync, AppProto, Dgram, Fingerprint, Identification, Observed, SmbFingerprint,
    SmbSync, Transport as FpTransport,
};
use xferwatch_parsers::ftp::{FtpConn, FtpEvent};
use xferwatch_parsers::smb::{FileKey, FileOp, SmbConn, SmbTx};
use xferwatch_parsers::tftp::{parse_request, Request, Transfer};
use xferwatch_policy::rules::{self, Identified};
use xferwatch_stream::{Budget, Dir, Flow, Reassembler};
use xferwatch_wire::{Addr, L4Packet, Transport};

/// Datagrams kept per UDP flow for fingerprinting, and bytes kept of each.
const UDP_DGRAMS: usize = 12;
const UDP_DGRAM_KEEP: usize = 600;

/// Stream bytes of each direction searched for the next SMB message when a connection is picked
/// up in the middle (of a large WRITE, say) and no fingerprint placed its first bytes: the largest
/// SMB message the parser accepts (16 MiB) and a little more, so one whole message is always
/// crossed.
const HUNT_WINDOW: u64 = (16 << 20) + (64 << 10);
/// Connections searched at once per worker: each holds up to two [`HUNT_DEPTH`] buffers (and the
/// out-of-order segments reassembly keeps), so a capture that starts amid many connections cannot
/// turn the search into a memory sink. Beyond, a connection is not searched (counted).
const MAX_HUNTS: usize = 1024;
/// Bytes of each direction buffered while hunting: a candidate message header and what follows it.
const HUNT_DEPTH: usize = 4096;
/// Bytes kept at the end of a window searched in vain: a header may straddle two segments.
const HUNT_TAIL: usize = 7;

/// The search for the next SMB message on a connection picked up mid-stream.
#[derive(Debug)]
pub struct Hunt {
    /// Each direction's payload when the search began (the window is counted from there).
    from: [u64; 2],
    /// The direction's buffer starts with a candidate message.
    found: [bool; 2],
}

/// Something odd about a flow, listed in its record's `xfer.anomalies` (in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// An SMB connection picked up in the middle (the bytes before count as a lower bound).
    SmbMidstreamPickup,
    /// An FTP PORT/EPRT naming a third host (see `xferwatch_policy::rules::ftp_bounce`).
    FtpBounce,
    /// An announced data channel could not be expected (table full).
    ExpectationRefused,
    FtpLimitReached,
    SmbLimitReached,
    SmbMalformed,
    TftpMalformed,
}

impl Anomaly {
    const ALL: [Anomaly; 7] = [
        Anomaly::SmbMidstreamPickup,
        Anomaly::FtpBounce,
        Anomaly::ExpectationRefused,
        Anomaly::FtpLimitReached,
        Anomaly::SmbLimitReached,
        Anomaly::SmbMalformed,
        Anomaly::TftpMalformed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Anomaly::SmbMidstreamPickup => "smb_midstream_pickup",
            Anomaly::FtpBounce => "ftp_bounce",
            Anomaly::ExpectationRefused => "expectation_refused",
            Anomaly::FtpLimitReached => "ftp_limit_reached",
            Anomaly::SmbLimitReached => "smb_limit_reached",
            Anomaly::SmbMalformed => "smb_malformed",
            Anomaly::TftpMalformed => "tftp_malformed",
        }
    }
}

/// A flow's anomalies: a bit set (no allocation), each at most once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies(u8);

impl Anomalies {
    pub fn insert(&mut self, a: Anomaly) {
        self.0 |= 1 << a as u8;
    }
    pub fn contains(&self, a: Anomaly) -> bool {
        self.0 & (1 << a as u8) != 0
    }
    /// The names, in [`Anomaly`] order, for the flow record.
    pub fn names(&self) -> ([&'static str; 7], usize) {
        let mut out = [""; 7];
        let mut n = 0;
        for a in Anomaly::ALL {
            if self.contains(a) {
                out[n] = a.as_str();
                n += 1;
            }
        }
        (out, n)
    }
}

/// What a parser reported on this packet; the worker turns it into expectations, session facts and
/// transaction events.
pub enum AppEv {
    Ftp(FtpEvent),
    Smb(SmbTx),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Ident {
    #[default]
    Pending,
    Found(AppProto),
    Unknown,
    /// Named by an announcement (FTP data channel, TFTP transfer): no fingerprinting.
    Linked,
}

/// The protocol parser that follows a flow after identification.
#[derive(Default)]
pub enum Proto {
    #[default]
    None,
    Ftp(Box<FtpConn>),
    FtpData(Box<DataInfo>),
    Tftp(Box<TftpState>),
    Smb(Box<SmbConn>),
}

impl std::fmt::Debug for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::None => "none",
            Proto::Ftp(_) => "ftp",
            Proto::FtpData(_) => "ftp-data",
            Proto::Tftp(_) => "tftp",
            Proto::Smb(_) => "smb",
        })
    }
}

/// What an FTP data channel carries, learnt from its control channel.
#[derive(Debug, Default)]
pub struct DataInfo {
    pub command: Option<&'static str>,
    pub file: Option<String>,
    /// The control channel's client sends (STOR/STOU/APPE).
    pub upload: Option<bool>,
    /// The control channel's client address: which way "upload" goes on this flow.
    pub control_client: Option<Addr>,
    /// Linked by the AUTH TLS heuristic, not by a readable announcement.
    pub heuristic: bool,
    /// Linked by inference from the control channel's activity: no announcement was seen.
    pub inferred: bool,
    /// REST offset of the command: the file is seen from there.
    pub offset: u64,
    /// The file's bytes as they arrive, in the one direction that carries them.
    pub track: Option<Box<FileTrack>>,
    pub track_dir: Option<Dir>,
}

impl DataInfo {
    /// The control channel named the command that moves this connection's file.
    pub fn set_command(&mut self, cmd: crate::session::FtpCmd) {
        self.command = Some(cmd.command);
        self.file = Some(cmd.file);
        self.upload = Some(cmd.upload);
        self.offset = cmd.offset;
    }

    fn bytes(&mut self, dir: Dir, p: &L4Packet<'_>, hashes: &Hashes) {
        let Some(tcp) = p.tcp.filter(|_| !p.payload.is_empty()) else {
            return;
        };
        if *self.track_dir.get_or_insert(dir) != dir {
            return;
        }
        self.track
            .get_or_insert_with(|| Box::new(FileTrack::new(hashes)))
            .tcp(tcp.data_seq(), p.payload, p.payload_len as usize);
    }
}

#[derive(Debug)]
pub struct TftpState {
    pub request: Option<Request>,
    pub transfer: Transfer,
    /// A request whose transfer moved to another flow (which reports the transfer).
    pub handed_over: bool,
    /// The file's DATA blocks, hashed in order.
    pub track: Option<Box<FileTrack>>,
}

impl TftpState {
    fn datagram(&mut self, from_requester: bool, d: &[u8], hashes: &Hashes) {
        if let Some((offset, data)) = self.transfer.datagram(from_requester, d) {
            self.track
                .get_or_insert_with(|| Box::new(FileTrack::new(hashes)))
                .at(offset, data);
        }
    }
}

/// The two TCP reassemblers of a flow, allocated only while a flow needs them (identification, or
/// a parser that follows the stream) and freed when it is done: most flows are identified from
/// their first bytes, and a flow record stays small.
#[derive(Debug, Default)]
pub struct Streams(Option<Box<[Reassembler; 2]>>);

static NO_STREAMS: [Reassembler; 2] = [Reassembler::new(), Reassembler::new()];

impl std::ops::Deref for Streams {
    type Target = [Reassembler; 2];
    fn deref(&self) -> &[Reassembler; 2] {
        self.0.as_deref().unwrap_or(&NO_STREAMS)
    }
}

impl std::ops::DerefMut for Streams {
    fn deref_mut(&mut self) -> &mut [Reassembler; 2] {
        self.0
            .get_or_insert_with(|| Box::new([Reassembler::new(), Reassembler::new()]))
    }
}

#[derive(Debug, Default)]
pub struct App {
    ident: Ident,
    tcp: Streams,
    udp: Vec<(bool, Vec<u8>)>,
    /// A TFTP flow that starts with a read/write request (not a transfer on a new port).
    tftp_request: bool,
    /// Identified from one direction alone: the other direction's first bytes are still awaited, to
    /// tell whether the two sides speak different protocols (index into `tcp`).
    awaiting_side: Option<usize>,
    /// What each direction speaks on its own, when they differ (to server, to client).
    split: Option<(AppProto, AppProto)>,
    /// Picked up mid-stream and not identified: still looking for the next SMB message.
    hunt: Option<Box<Hunt>>,
    /// The control channel switched to TLS (FTP AUTH TLS).
    pub tls_upgraded: bool,
    /// A label that overrides the identified protocol ("ftp-data", "tftp" for a linked transfer).
    pub label: Option<&'static str>,
    /// The flow that announced this one.
    pub parent: Option<u64>,
    /// The transfer session this flow counts towards (0: none).
    pub session: u64,
    /// Outbound payload already added to the session.
    pub out_counted: u64,
    /// Which direction is outbound, for the client side it was computed for (flows can turn).
    pub out_cache: Option<(xferwatch_wire::Side, Option<Dir>)>,
    pub proto: Proto,
    /// What was odd about this flow (caps its parsers reached, a bounce, a mid-stream pickup).
    pub anomalies: Anomalies,
    /// SMB: the files being written or read on this connection, hashed as the WRITE request and
    /// READ response data passes.
    pub smb_files: Option<Box<SmbFiles>>,
    /// A session was asked for once (the table may have been full).
    pub session_tried: bool,
    /// The port/protocol check was made (it is made once).
    pub mismatch_done: bool,
    /// An alert named this flow.
    pub alerted: bool,
    /// Offered once to FTP data-connection inference.
    pub infer_offered: bool,
    /// The flow's kept frames, for a session pcap should it alert (`[evidence] dir`).
    pub ring: Option<Box<crate::pcaps::PacketRing>>,
    /// Outbound payload already added to the per-protocol totals (counted as it is seen).
    pub out_totalled: u64,
    /// The capture interface the flow was first seen on (1-based into the engine's
    /// `interfaces`; 0: none, replay).
    pub iface: u16,
    /// Packet time of the flow's last interim record (0: none yet).
    pub interim_at: i64,
}

/// SMB files written or read on one connection, by file id and direction (`true`: read), at most
/// [`MAX_SMB_FILES`] at once.
#[derive(Debug, Default)]
pub struct SmbFiles(pub Vec<(FileKey, bool, FileTrack)>);

/// Files (per direction) of one SMB connection hashed at once; beyond, a new file is not hashed
/// (its fileinfo still has its size from the parser, TRUNCATED).
pub const MAX_SMB_FILES: usize = 64;

impl SmbFiles {
    fn op(&mut self, op: FileOp<'_>, hashes: &Hashes) {
        match op {
            FileOp::Bytes(b) => {
                if let Some((_, _, t)) = self
                    .0
                    .iter_mut()
                    .find(|(k, r, _)| *k == b.key && *r == b.read)
                {
                    t.at(b.offset, b.data);
                } else if self.0.len() < MAX_SMB_FILES {
                    let mut t = FileTrack::new(hashes);
                    t.at(b.offset, b.data);
                    self.0.push((b.key, b.read, t));
                }
            }
            FileOp::Rekey { from, to } => {
                // A file that already has bytes under its real id keeps those (should not
                // happen: the id is new); the compound's bytes are then forgotten.
                let taken = |k: FileKey, r: bool, v: &[(FileKey, bool, FileTrack)]| {
                    v.iter().any(|(x, y, _)| *x == k && *y == r)
                };
                let mut i = 0;
                while i < self.0.len() {
                    let (k, r) = (self.0[i].0, self.0[i].1);
                    if k != from {
                        i += 1;
                        continue;
                    }
                    match to {
                        Some(to) if !taken(to, r, &self.0) => {
                            self.0[i].0 = to;
                            i += 1;
                        }
                        _ => {
                            self.0.swap_remove(i);
                        }
                    }
                }
            }
        }
    }

    /// The file with this `fuid` (as an SmbTx writes it) and direction, taken out.
    pub fn take(&mut self, fuid: &str, read: bool) -> Option<FileTrack> {
        let i = self
            .0
            .iter()
            .position(|(k, r, _)| *r == read && xferwatch_parsers::smb::fuid_of(k) == fuid)?;
        Some(self.0.swap_remove(i).2)
    }
}

pub struct AppState {
    pub budget: Budget,
    pub counters: AppCounters,
    /// Hashes files get (none: SMB WRITE data is skipped unseen, as before hashing existed).
    pub hashes: Hashes,
    /// Connections searched for the next SMB message now (at most `MAX_HUNTS`).
    hunting: usize,
}

impl AppState {
    pub fn new(cfg: &AppConfig) -> Self {
        AppState {
            budget: Budget::new(cfg.memcap),
            counters: AppCounters::default(),
            hunting: 0,
            hashes: cfg.hashes.clone(),
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
    cfg: &AppConfig,
    st: &mut AppState,
    evs: &mut Vec<AppEv>,
) {
    match flow.app.ident {
        Ident::Pending => {}
        Ident::Linked => {
            match &mut flow.app.proto {
                Proto::Tftp(t) => t.datagram(dir == Dir::ToServer, p.payload, &cfg.hashes),
                Proto::FtpData(d) => d.bytes(dir, p, &cfg.hashes),
                _ => {}
            }
            return;
        }
        Ident::Found(_) | Ident::Unknown => {
            match &mut flow.app.proto {
                Proto::Ftp(_) | Proto::Smb(_) => follow_stream(flow, dir, p, st, evs),
                Proto::Tftp(t) => t.datagram(dir == Dir::ToServer, p.payload, &cfg.hashes),
                Proto::FtpData(d) => d.bytes(dir, p, &cfg.hashes),
                Proto::None if flow.app.hunt.is_some() => {
                    if let Some(tcp) = p.tcp {
                        feed_tcp(
                            &mut flow.app.tcp,
                            dir,
                            tcp,
                            p.payload,
                            HUNT_DEPTH,
                            &mut st.budget,
                        );
                        hunt(flow, cfg, st, false);
                        read_buffered(flow, st, evs);
                    }
                }
                Proto::None => {
                    if let (Some(side), Some(tcp)) = (flow.app.awaiting_side, p.tcp) {
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
                }
            }
            return;
        }
    }
    if p.tcp.is_some() && flow.app.tcp.0.is_none() {
        // No buffers before the first data (a SYN flood costs no heap): they start from the
        // handshake the flow's sequence trackers saw.
        if p.payload.is_empty() {
            return;
        }
        for d in 0..2 {
            if let Some(s) = flow.seq[d].data_start_seq() {
                flow.app.tcp[d].on_syn(s.wrapping_sub(1));
            }
        }
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
            on_datagram(flow, dir, p.payload, cfg, st);
            return;
        }
    };
    if grew {
        let final_ = match flow.transport() {
            Transport::Tcp => flow.app.tcp.iter().any(|r| r.is_done()),
            Transport::Udp => flow.app.udp.len() >= UDP_DGRAMS,
        };
        decide(flow, final_, cfg, st, None);
        // The bytes that decided may already hold commands or messages.
        read_buffered(flow, st, evs);
    }
}

/// Marks a flow as announced by another one: no fingerprinting, the parser state given.
pub fn link(flow: &mut Flow<App>, label: &'static str, proto: Proto, st: &mut AppState) {
    release(flow, st);
    stop_hunt(flow, st);
    flow.app.ident = Ident::Linked;
    flow.app.label = Some(label);
    flow.app.proto = proto;
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
fn on_datagram(flow: &mut Flow<App>, dir: Dir, payload: &[u8], cfg: &AppConfig, st: &mut AppState) {
    if payload.is_empty() || flow.app.udp.len() >= UDP_DGRAMS {
        return;
    }
    let keep = &payload[..payload.len().min(UDP_DGRAM_KEEP)];
    let current = (dir == Dir::ToServer, keep);
    let last_slot = flow.app.udp.len() + 1 >= UDP_DGRAMS;
    if decide(flow, last_slot, cfg, st, Some(current)) {
        return;
    }
    if st.budget.try_take(keep.len()) {
        flow.app.udp.push((current.0, keep.to_vec()));
    } else {
        // No room to wait for more: decide on what is here.
        decide(flow, true, cfg, st, Some(current));
    }
}

/// Runs the fingerprints on what the flow has buffered (plus `extra`, a datagram not stored) and
/// applies the verdict. Returns false while more bytes are needed.
fn decide(
    flow: &mut Flow<App>,
    final_: bool,
    cfg: &AppConfig,
    st: &mut AppState,
    extra: Option<(bool, &[u8])>,
) -> bool {
    // With the handshake seen, the client is known for certain; trust a reversal only on UDP and on
    // TCP flows picked up mid-stream.
    let may_reverse = flow.transport() == Transport::Udp || !(flow.syn_seen || flow.synack_seen);
    let (verdict, tftp_request, tftp) = {
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
        // A TFTP flow gets its transaction state from the datagrams seen so far.
        let tftp = matches!(
            verdict,
            Identification::Found {
                proto: AppProto::Tftp,
                ..
            }
        )
        .then(|| {
            let mut request: Option<Request> = None;
            let mut transfer: Option<Transfer> = None;
            for d in &dgrams[..n] {
                let from_requester = d.to_server == client_flag;
                if request.is_none() && transfer.is_none() && from_requester && tftp_request {
                    if let Some(r) = parse_request(d.data) {
                        transfer = Some(Transfer::new(r.write));
                        request = Some(r);
                        continue;
                    }
                }
                let _ = transfer
                    .get_or_insert_with(Transfer::without_request)
                    .datagram(from_requester, d.data);
            }
            Box::new(TftpState {
                request,
                transfer: transfer.unwrap_or_else(Transfer::without_request),
                handed_over: false,
                track: None,
            })
        });
        (verdict, tftp_request, tftp)
    };
    match verdict {
        Identification::NeedMore => return false,
        Identification::Found { proto, reversed } => {
            if reversed && may_reverse {
                turn(flow, st);
            }
            flow.app.tftp_request = proto == AppProto::Tftp && tftp_request;
            if proto == AppProto::Dns && rules::dns_format_is_not_dns(flow.server_endpoint().addr) {
                flow.app.ident = Ident::Unknown;
                st.counters.unknown += 1;
                release(flow, st);
                return true;
            }
            flow.app.ident = Ident::Found(proto);
            st.counters.identified += 1;
            let empty = [0, 1].map(|i| flow.app.tcp[i].data().is_empty());
            let tcp = flow.transport() == Transport::Tcp;
            if let Some(t) = tftp {
                flow.app.proto = Proto::Tftp(t);
                release(flow, st);
            } else if proto == AppProto::Ftp && tcp {
                // FTP control channels keep being read, line by line.
                flow.app.proto = Proto::Ftp(Box::new(FtpConn::new(cfg.ftp)));
            } else if proto == AppProto::Smb && tcp {
                // SMB is followed message by message over the whole connection.
                flow.app.proto = Proto::Smb(Box::new(SmbConn::new(cfg.smb)));
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
            let midstream = flow.transport() == Transport::Tcp && may_reverse && !final_flow(flow);
            if midstream && st.hunting >= MAX_HUNTS {
                st.counters.midstream_hunts_refused += 1;
            }
            if midstream && st.hunting < MAX_HUNTS {
                // Picked up mid-stream: the first bytes may be the middle of a message. Look for
                // the next SMB message before giving up.
                st.counters.midstream_hunts += 1;
                st.hunting += 1;
                flow.app.hunt = Some(Box::new(Hunt {
                    from: flow.payload,
                    found: [false; 2],
                }));
                hunt(flow, cfg, st, false);
            } else {
                release(flow, st);
            }
        }
    }
    true
}

/// The flow will deliver no more bytes (both directions closed).
fn final_flow(flow: &Flow<App>) -> bool {
    flow.state == xferwatch_stream::FlowState::Closed
}

/// One step of the mid-stream SMB search: each direction's buffer is scanned for the next SMB
/// message and what precedes it dropped; once both directions start with one (a request and its
/// response, as the SMB fingerprint judges them; one direction alone on a `final_` flow whose other
/// direction stayed silent), the flow is SMB from there and the bytes before count as a lower bound
/// of its volume (they were counted as they passed). Gives up when either direction searched
/// [`HUNT_WINDOW`] bytes in vain, or the reassembly memory ran out.
fn hunt(flow: &mut Flow<App>, cfg: &AppConfig, st: &mut AppState, final_: bool) {
    let Some(h) = flow.app.hunt.as_deref_mut() else {
        return;
    };
    let mut exhausted = false;
    for d in 0..2 {
        let r = &mut flow.app.tcp[d];
        if !h.found[d] {
            // A hole in a window still searched changes nothing: the search goes on after it (the
            // parser learns of holes only once it reads from a message).
            let _ = r.take_gap();
            let n = r.data().len();
            let drop = match smb_sync(r.data()) {
                SmbSync::At(q) => {
                    h.found[d] = true;
                    q
                }
                SmbSync::Partial(q) => q,
                SmbSync::Nothing => n.saturating_sub(HUNT_TAIL),
            };
            r.consume(drop, HUNT_DEPTH, &mut st.budget);
            let searched = flow.payload[d].saturating_sub(h.from[d]);
            exhausted |= !h.found[d] && searched > HUNT_WINDOW;
        }
        // Buffering stopped for good (reassembly memory ran out): nothing more to search.
        exhausted |= r.is_done() && r.data().len() < HUNT_DEPTH;
    }
    let (d0, d1) = (flow.app.tcp[0].data(), flow.app.tcp[1].data());
    let verdict = match h.found {
        [true, true] => SmbFingerprint.probe(&Observed {
            transport: FpTransport::Tcp,
            to_server: d0,
            to_client: d1,
            dgrams: &[],
            final_,
        }),
        [true, false] if final_ && d1.is_empty() => SmbFingerprint.probe(&Observed {
            transport: FpTransport::Tcp,
            to_server: d0,
            to_client: &[],
            dgrams: &[],
            final_,
        }),
        [false, true] if final_ && d0.is_empty() => SmbFingerprint.probe(&Observed {
            transport: FpTransport::Tcp,
            to_server: &[],
            to_client: d1,
            dgrams: &[],
            final_,
        }),
        _ => xferwatch_fingerprint::Verdict::NeedMore,
    };
    match verdict {
        xferwatch_fingerprint::Verdict::Match { reversed } => {
            stop_hunt(flow, st);
            if reversed {
                turn(flow, st);
            }
            flow.app.ident = Ident::Found(AppProto::Smb);
            st.counters.identified += 1;
            st.counters.midstream_smb += 1;
            flow.app.anomalies.insert(Anomaly::SmbMidstreamPickup);
            flow.app.proto = Proto::Smb(Box::new(SmbConn::new(cfg.smb)));
        }
        xferwatch_fingerprint::Verdict::NoMatch => {
            // Two candidates that do not make an SMB exchange: search on past them.
            h.found = [false; 2];
            for r in flow.app.tcp.iter_mut() {
                r.consume(1, HUNT_DEPTH, &mut st.budget);
            }
        }
        xferwatch_fingerprint::Verdict::NeedMore => {}
    }
    if final_ || (exhausted && flow.app.hunt.is_some()) {
        stop_hunt(flow, st);
        if !matches!(flow.app.proto, Proto::Smb(_)) {
            release(flow, st);
        }
    }
}

/// The search for an SMB message is over (found, given up, or the flow linked).
fn stop_hunt(flow: &mut Flow<App>, st: &mut AppState) {
    if flow.app.hunt.take().is_some() {
        st.hunting = st.hunting.saturating_sub(1);
    }
}

/// The caller's client was the server: the flow and its buffers are turned round.
fn turn(flow: &mut Flow<App>, st: &mut AppState) {
    flow.reverse();
    flow.app.tcp.swap(0, 1);
    for d in &mut flow.app.udp {
        d.0 = !d.0;
    }
    st.counters.reoriented += 1;
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
    if let Some(mut streams) = flow.app.tcp.0.take() {
        for r in streams.iter_mut() {
            r.release(&mut st.budget);
        }
    }
    for (_, d) in flow.app.udp.drain(..) {
        st.budget.release_bytes(d.len());
    }
    flow.app.udp = Vec::new();
}

/// The flow ended: decide with what was seen, let the parsers report what is still open, and give
/// the buffers back.
pub fn on_end(flow: &mut Flow<App>, cfg: &AppConfig, st: &mut AppState, evs: &mut Vec<AppEv>) {
    if flow.app.ident == Ident::Pending && (flow.payload[0] > 0 || flow.payload[1] > 0) {
        decide(flow, true, cfg, st, None);
    }
    if flow.app.awaiting_side.is_some() {
        settle_split(flow, st);
    }
    if flow.app.hunt.is_some() {
        hunt(flow, cfg, st, true);
        if matches!(flow.app.proto, Proto::Smb(_)) {
            read_buffered(flow, st, evs);
        }
    }
    let counters = &mut st.counters;
    let mut anomaly = None;
    match &mut flow.app.proto {
        Proto::Ftp(c) => {
            let mut out = Vec::new();
            c.finish(&mut out);
            evs.extend(out.into_iter().map(AppEv::Ftp));
            counters.ftp_commands += c.stats.commands;
            counters.ftp_limit_hits += c.stats.limit_hits;
            counters.ftp_bad_announcements += c.stats.malformed_announcements;
            if c.stats.limit_hits > 0 {
                anomaly = Some(Anomaly::FtpLimitReached);
            }
        }
        Proto::Smb(c) => {
            let mut out = Vec::new();
            c.finish(&mut out);
            evs.extend(out.into_iter().map(AppEv::Smb));
            let s = c.stats();
            counters.smb_messages += s.messages;
            counters.smb_malformed += s.malformed;
            counters.smb_resyncs += s.resyncs;
            counters.smb_limit_hits += s.limit_hits;
            counters.smb_field_errors += s.field_errors;
            if s.limit_hits > 0 {
                anomaly = Some(Anomaly::SmbLimitReached);
            } else if s.malformed > 0 {
                anomaly = Some(Anomaly::SmbMalformed);
            }
        }
        Proto::Tftp(t) => {
            counters.tftp_malformed += t.transfer.malformed;
            if t.transfer.malformed > 0 {
                anomaly = Some(Anomaly::TftpMalformed);
            }
        }
        _ => {}
    }
    if let Some(a) = anomaly {
        flow.app.anomalies.insert(a);
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
    let found = match flow.app.ident {
        Ident::Found(p) => Some(p.as_str()),
        Ident::Unknown => Some("failed"),
        Ident::Pending if payload > 0 => Some("failed"),
        Ident::Pending | Ident::Linked => None,
    };
    let app_proto = flow.app.label.or(found);
    let identified = match flow.app.ident {
        Ident::Linked => Identified::Linked,
        Ident::Found(p) => Identified::Found {
            proto: p.as_str(),
            tftp_request: flow.app.tftp_request,
        },
        // A capture that begins mid-stream shows bytes no fingerprint can place.
        Ident::Unknown | Ident::Pending => Identified::Nothing {
            payload,
            from_start: flow.transport() == Transport::Udp || flow.syn_seen,
        },
    };
    let mismatch = rules::port_mismatch(identified, expected, shared.app.mismatch_min_payload);
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

/// The flow's port/protocol facts once they are settled (`final_`: the flow ended), else None.
pub fn mismatch(flow: &Flow<App>, shared: &Shared, final_: bool) -> Option<Facts> {
    let settled = match flow.app.ident {
        Ident::Pending => final_,
        Ident::Linked | Ident::Found(_) => true,
        // Still searching for the next SMB message: the protocol may yet be found.
        Ident::Unknown if flow.app.hunt.is_some() => final_,
        Ident::Unknown => {
            final_
                || shared
                    .ports
                    .expected(flow.transport(), flow.server_endpoint().port)
                    .is_none()
                || flow.payload[0] + flow.payload[1] >= shared.app.mismatch_min_payload
        }
    };
    settled.then(|| facts(flow, shared))
}

/// The identified protocol, before labels: what session a flow starts.
pub fn found(flow: &Flow<App>) -> Option<AppProto> {
    match flow.app.ident {
        Ident::Found(p) => Some(p),
        _ => None,
    }
}

/// A flow an announcement may still claim: not linked, and not identified as a protocol of its own.
pub fn linkable(flow: &Flow<App>) -> bool {
    matches!(flow.app.ident, Ident::Pending | Ident::Unknown) && flow.app.session == 0
}

/// A flow FTP activity between its hosts may claim as a data connection whose announcement was
/// missed: TCP, carrying bytes no fingerprint placed, not linked, in no session, on ports a data
/// connection uses (both above 1023, or one of them 20: active mode).
pub fn inferable(flow: &Flow<App>) -> bool {
    let (c, s) = (flow.client_endpoint().port, flow.server_endpoint().port);
    flow.transport() == Transport::Tcp
        && flow.app.ident == Ident::Unknown
        && flow.app.session == 0
        && flow.payload[0] + flow.payload[1] > 0
        && ((c > 1023 && s > 1023) || c == 20 || s == 20)
}

/// Whether a linked FTP data connection was inferred.
pub fn inferred(flow: &Flow<App>) -> bool {
    matches!(&flow.app.proto, Proto::FtpData(d) if d.inferred)
}

/// A TFTP request flow's request, once identified.
pub fn tftp_request(flow: &Flow<App>) -> Option<&Request> {
    match &flow.app.proto {
        Proto::Tftp(t) if flow.app.tftp_request => t.request.as_ref(),
        _ => None,
    }
}

/// Longest FTP control line followed; longer lines are skipped.
const FTP_LINE_MAX: usize = 4096;
/// Bytes of an SMB stream buffered while a message header is incomplete.
const SMB_DEPTH: usize = 96 * 1024;

/// Follows a stream a parser reads to its end: an FTP control channel line by line (until AUTH
/// TLS), an SMB connection message by message (WRITE/READ data skipped by length).
fn follow_stream(
    flow: &mut Flow<App>,
    dir: Dir,
    p: &L4Packet<'_>,
    st: &mut AppState,
    evs: &mut Vec<AppEv>,
) {
    let Some(tcp) = p.tcp else { return };
    let depth = match flow.app.proto {
        // Encrypted from here on: nothing to read, nothing kept.
        Proto::Ftp(_) if flow.app.tls_upgraded => return,
        Proto::Ftp(_) => FTP_LINE_MAX,
        _ => SMB_DEPTH,
    };
    feed_tcp(
        &mut flow.app.tcp,
        dir,
        tcp,
        p.payload,
        depth,
        &mut st.budget,
    );
    read_buffered(flow, st, evs);
}

/// Hands the stream parser what is buffered in order.
fn read_buffered(flow: &mut Flow<App>, st: &mut AppState, evs: &mut Vec<AppEv>) {
    match flow.app.proto {
        Proto::Ftp(_) => ftp_lines(flow, st, evs),
        Proto::Smb(_) => smb_drain(flow, st, evs),
        _ => {}
    }
}

fn ftp_lines(flow: &mut Flow<App>, st: &mut AppState, evs: &mut Vec<AppEv>) {
    let Proto::Ftp(conn) = &mut flow.app.proto else {
        return;
    };
    let mut out = Vec::new();
    let tcp = &mut flow.app.tcp;
    for (side, r) in tcp.iter_mut().enumerate() {
        if let Some(g) = r.take_gap() {
            // Bytes were lost (a hole, or a snap length that cut packets short): what came before
            // the hole ends there. Its lines still count, the last one cut short: a reply code keeps
            // commands and replies paired, and a cut 227 is an unreadable announcement (evidence
            // for a data connection), not nothing.
            let g = g.min(r.data().len());
            for piece in r.data()[..g].split(|&b| b == b'\n') {
                if !piece.is_empty() {
                    conn.line(side == 0, piece, &mut out);
                }
            }
            r.consume(g, FTP_LINE_MAX, &mut st.budget);
        }
    }
    // Both directions' buffered lines, in the lockstep order FTP keeps: the greeting, then each
    // command followed by its replies. (After the first packets only one side has new lines.)
    loop {
        while conn.pending() > 0 || !conn.greeted() {
            if !next_line(&mut tcp[1], false, conn, st, &mut out) {
                break;
            }
        }
        if next_line(&mut tcp[0], true, conn, st, &mut out) {
            continue;
        }
        while next_line(&mut tcp[1], false, conn, st, &mut out) {}
        break;
    }
    if conn.tls {
        // AUTH TLS: nothing readable follows. The flow stays `ftp` (as Suricata and the
        // reference labels have it); the record says the channel became FTPS.
        flow.app.tls_upgraded = true;
        release(flow, st);
    }
    evs.extend(out.into_iter().map(AppEv::Ftp));
}

/// Hands one complete line of `r` to the parser; false when there is none.
fn next_line(
    r: &mut Reassembler,
    from_client: bool,
    conn: &mut FtpConn,
    st: &mut AppState,
    out: &mut Vec<FtpEvent>,
) -> bool {
    let buf = r.data();
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() >= FTP_LINE_MAX {
            // A line longer than any FTP line: dropped.
            let n = buf.len();
            r.consume(n, FTP_LINE_MAX, &mut st.budget);
            conn.stats.limit_hits += 1;
        }
        return false;
    };
    conn.line(from_client, &buf[..nl], out);
    r.consume(nl + 1, FTP_LINE_MAX, &mut st.budget);
    true
}

fn smb_drain(flow: &mut Flow<App>, st: &mut AppState, evs: &mut Vec<AppEv>) {
    let app = &mut flow.app;
    let Proto::Smb(conn) = &mut app.proto else {
        return;
    };
    let hashes = &st.hashes;
    let files = &mut app.smb_files;
    // Without hashes no file is followed: its fileinfo has the sizes the parser counted.
    let mut on_file = |op: FileOp<'_>| {
        if hashes.any() {
            files.get_or_insert_with(Default::default).op(op, hashes)
        }
    };
    let mut out = Vec::new();
    for side in [0usize, 1] {
        let to_server = side == 0;
        let r = &mut app.tcp[side];
        loop {
            if let Some(g) = r.take_gap() {
                let g = g.min(r.data().len());
                conn.feed_files(to_server, &r.data()[..g], &mut out, &mut on_file);
                r.consume(g, SMB_DEPTH, &mut st.budget);
                conn.gap(to_server);
            }
            let used = conn.feed_files(to_server, r.data(), &mut out, &mut on_file);
            r.consume(used, SMB_DEPTH, &mut st.budget);
            let skip = conn.skippable(to_server);
            // File data passes through the parser when files are hashed; otherwise it is skipped
            // without ever being buffered.
            let keep = hashes.any() && conn.file_data_ahead(to_server);
            if skip > 0 && r.data().is_empty() && !keep {
                let n = r.skip(skip, SMB_DEPTH, &mut st.budget);
                conn.skipped(to_server, n);
                // Segments waiting beyond the skipped bytes may now be in order.
                if !r.data().is_empty() {
                    continue;
                }
            } else if used == 0 && r.data().len() >= SMB_DEPTH {
                // A message larger than the parser will look at: start over at the next header.
                let n = r.data().len();
                r.consume(n, SMB_DEPTH, &mut st.budget);
                conn.gap(to_server);
            }
            break;
        }
    }
    evs.extend(out.into_iter().map(AppEv::Smb));
}

#[cfg(test)]
mod smb_files_tests {
    use super::*;
    use xferwatch_parsers::smb::{fuid_of, FileBytes};

    fn bytes(key: FileKey, read: bool, offset: u64, data: &[u8]) -> FileOp<'_> {
        FileOp::Bytes(FileBytes {
            key,
            read,
            offset,
            data,
        })
    }

    /// One track per file and direction; a compound's bytes follow the file once its CREATE is
    /// answered, and are forgotten when the open failed.
    #[test]
    fn per_direction_tracks_and_rekey() {
        let h = &Hashes::default();
        let fid = FileKey::V2([7; 16]);
        let mut f = SmbFiles::default();
        f.op(bytes(FileKey::Compound(2), false, 0, b"abc"), h);
        f.op(
            FileOp::Rekey {
                from: FileKey::Compound(2),
                to: Some(fid),
            },
            h,
        );
        f.op(bytes(fid, false, 3, b"def"), h);
        f.op(bytes(fid, true, 0, b"xy"), h);
        f.op(bytes(FileKey::Compound(9), false, 0, b"lost"), h);
        f.op(
            FileOp::Rekey {
                from: FileKey::Compound(9),
                to: None,
            },
            h,
        );
        assert_eq!(f.0.len(), 2);
        let mut w = f.take(&fuid_of(&fid), false).expect("written");
        assert_eq!((w.size, w.gaps), (6, 0));
        assert_eq!(
            w.finish().and_then(|d| d.sha256).as_deref(),
            // sha256("abcdef")
            Some("bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721")
        );
        let r = f.take(&fuid_of(&fid), true).expect("read");
        assert_eq!(r.size, 2);
        assert!(f.take(&fuid_of(&fid), true).is_none());
        assert!(f.0.is_empty());
    }

    #[test]
    fn at_most_max_smb_files_are_followed() {
        let mut f = SmbFiles::default();
        for i in 0..(MAX_SMB_FILES as u16 + 10) {
            f.op(
                bytes(FileKey::V1(i), i % 2 == 0, 0, b"z"),
                &Hashes::default(),
            );
        }
        assert_eq!(f.0.len(), MAX_SMB_FILES);
    }
}
