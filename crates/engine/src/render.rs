//! EVE lines for flows and transactions. Suricata's field names where Suricata has the field;
//! everything else under `xfer`.

use crate::app::{self, App, Proto};
use crate::config::Shared;
use crate::counters::{WorkerTotals, MAX_NOTABLE};
use crate::evidence::{bounded_name, Digests, FileTrack};
use crate::session::{FileSummary, Session};
use xferwatch_events::{write_event, write_flow, EventHeader, FlowRecord, JsonObject};
use xferwatch_parsers::ftp::FtpTx;
use xferwatch_parsers::smb::SmbTx;
use xferwatch_policy::detect::Sid;
use xferwatch_policy::{outbound_payload, Direction};
use xferwatch_stream::{Dir, Flow};

/// The flow's 5-tuple as text, for an event header.
struct Tuple {
    src: String,
    dst: String,
    community_id: String,
    in_iface: Option<std::sync::Arc<str>>,
    /// The sensor's name (`host`).
    host: Option<std::sync::Arc<str>>,
}

fn tuple(f: &Flow<App>, shared: &Shared) -> Tuple {
    let (c, s) = (f.client_endpoint(), f.server_endpoint());
    let mut community_id = String::with_capacity(xferwatch_events::COMMUNITY_ID_V1_LEN);
    let proto = match f.transport() {
        xferwatch_wire::Transport::Tcp => 6,
        xferwatch_wire::Transport::Udp => 17,
    };
    xferwatch_events::community_id_v1(
        &mut community_id,
        shared.community_id_seed,
        proto,
        c.addr.to_ip(),
        c.port,
        s.addr.to_ip(),
        s.port,
    );
    Tuple {
        src: ip_string(c.addr),
        dst: ip_string(s.addr),
        community_id,
        in_iface: (f.app.iface as usize)
            .checked_sub(1)
            .and_then(|i| shared.interfaces.get(i))
            .cloned(),
        host: shared.sensor.clone(),
    }
}

fn ip_string(a: xferwatch_wire::Addr) -> String {
    let mut s = String::with_capacity(15);
    xferwatch_events::push_ip(&mut s, a.to_ip());
    s
}

fn header<'a>(
    f: &Flow<App>,
    t: &'a Tuple,
    ts_us: i64,
    app_proto: Option<&'a str>,
) -> EventHeader<'a> {
    EventHeader {
        ts_us,
        flow_id: f.flow_id,
        host: t.host.as_deref(),
        src_ip: &t.src,
        src_port: f.client_endpoint().port,
        dest_ip: &t.dst,
        dest_port: f.server_endpoint().port,
        proto: f.transport().as_str(),
        vlan: f.key.vlan,
        app_proto,
        community_id: Some(&t.community_id),
        in_iface: t.in_iface.as_deref(),
    }
}

fn xfer_common(x: &mut JsonObject<'_>, f: &Flow<App>) {
    if f.app.session != 0 {
        x.u64("session_id", f.app.session);
    }
    if let Some(p) = f.app.parent {
        x.u64("parent_flow_id", p);
    }
}

/// What an alert says besides its flow.
pub struct AlertFacts {
    pub sid: Sid,
    /// As a flow record's `xfer.direction`: volume alerts `outbound`, mismatch alerts the flow's.
    pub direction: Direction,
    /// The internal and external ends, only when the alert crosses the boundary.
    pub internal: Option<xferwatch_wire::Addr>,
    pub external: Option<xferwatch_wire::Addr>,
    /// The session's outbound payload when the alert fired.
    pub session_total: u64,
    /// Volume signatures: what crossed what.
    pub raised: Option<xferwatch_policy::detect::Raised>,
    pub app_proto_expected: Option<&'static str>,
    pub port_mismatch: Option<bool>,
    /// 1173002/1173003: the flows this alert stands for (itself and those aggregated into it).
    pub mismatch_flows: Option<u64>,
}

/// A volume alert's `xfer.files`: the session's files so far (name, size, sha256 when whole),
/// then the file this flow is moving now (name and size so far), and how many more were left out.
fn alert_files(x: &mut JsonObject<'_>, f: &Flow<App>, session: Option<&Session>) {
    let done = session.map_or(&[][..], |s| &s.files[..]);
    let open = open_file(f);
    if done.is_empty() && open.is_none() {
        return;
    }
    x.obj_array("files", done, |o, file| {
        o.str("filename", &file.name).u64("size", file.size);
        if let Some(h) = &file.sha256 {
            o.str("sha256", h);
        }
        o.str(
            "state",
            if file.sha256.is_some() {
                "CLOSED"
            } else {
                "TRUNCATED"
            },
        );
    });
    if let Some((name, size)) = open {
        x.obj("file_in_progress", |o| {
            o.str("filename", name).u64("size", size);
        });
    }
    if let Some(more) = session.map(|s| s.files_more).filter(|m| *m > 0) {
        x.u64("files_more", more);
    }
}

/// The file a flow is carrying right now: its name and the bytes seen so far.
fn open_file(f: &Flow<App>) -> Option<(&str, u64)> {
    match &f.app.proto {
        Proto::FtpData(d) if d.track.is_some() => Some((
            bounded_name(d.file.as_deref().unwrap_or("")),
            d.track.as_ref().map_or(0, |t| t.size),
        )),
        Proto::Tftp(t) if t.track.is_some() => Some((
            bounded_name(t.request.as_ref().map_or("", |r| r.file.as_str())),
            t.track.as_ref().map_or(0, |t| t.size),
        )),
        _ => None,
    }
}

/// What a `fileinfo` event says about one file, whichever protocol moved it.
struct FileFacts<'a> {
    /// The name from packet data (bounded here, never used as a path).
    name: &'a str,
    /// What moved it: STOR, RETR, WRQ, WRITE, ...
    command: &'static str,
    /// Sender → receiver, relative to the internal network.
    direction: Direction,
    /// Kept only when the file is whole.
    digests: Option<Digests>,
    size: u64,
    gaps: u64,
    whole: bool,
    /// The carrying flow's `app_proto`, and the SMB FileId when there is one.
    label: &'static str,
    fuid: Option<&'a str>,
    ts_us: i64,
    /// The file's bytes in the file store, saved when it is whole.
    store: Option<crate::evidence::StoreFile>,
}

/// Writes the `fileinfo` event of `file` on flow `f`, and what its session keeps of it.
fn write_fileinfo(f: &Flow<App>, shared: &Shared, file: FileFacts<'_>) -> (String, FileSummary) {
    let digests = file.digests.filter(|_| file.whole);
    let stored = match (
        file.store,
        digests.as_ref().and_then(|d| d.sha256.as_deref()),
    ) {
        (Some(s), Some(sha)) => s.commit(sha),
        _ => false,
    };
    let name = bounded_name(file.name).to_string();
    let t = tuple(f, shared);
    let mut out = String::with_capacity(600);
    write_event(
        &mut out,
        &header(f, &t, file.ts_us, Some(file.label)),
        "fileinfo",
        |o| {
            o.obj("fileinfo", |x| {
                x.str("filename", &name);
                if let Some(d) = &digests {
                    for (k, h) in [("md5", &d.md5), ("sha1", &d.sha1), ("sha256", &d.sha256)] {
                        if let Some(h) = h {
                            x.str(k, h);
                        }
                    }
                }
                x.bool("gaps", file.gaps > 0)
                    .str("state", if file.whole { "CLOSED" } else { "TRUNCATED" })
                    .bool("stored", stored)
                    .u64("size", file.size)
                    .u64("tx_id", 0);
            });
            o.obj("xfer", |x| {
                xfer_common(x, f);
                x.str("direction", file.direction.as_str())
                    .str("command", file.command);
                if let Some(fuid) = file.fuid {
                    x.str("fuid", fuid);
                }
                if file.gaps > 0 {
                    x.u64("gaps", file.gaps);
                }
            });
        },
    );
    let summary = FileSummary {
        name,
        size: file.size,
        sha256: digests.and_then(|d| d.sha256),
    };
    (out, summary)
}

/// A finished track's digests (when it was seen whole), size and gap count; no track: nothing seen.
fn finish_track(track: Option<&mut FileTrack>) -> Finished {
    match track {
        Some(t) => (t.finish(), t.size, t.gaps, t.take_store()),
        None => (None, 0, 0, None),
    }
}

/// Digests (when whole), size, gaps and the stored bytes of a finished track.
type Finished = (
    Option<Digests>,
    u64,
    u64,
    Option<crate::evidence::StoreFile>,
);

/// The `fileinfo` event of the file a flow carried, when it ends: Suricata's fields, and under
/// `xfer` the session, the file's direction relative to the internal network and the command that
/// moved it. Also what the session keeps for its volume alerts. None when the flow moved no file
/// (a control connection, a directory listing).
pub fn fileinfo(f: &mut Flow<App>, shared: &Shared) -> Option<(String, FileSummary)> {
    let closed = f.end_reason == Some(xferwatch_stream::EndReason::Closed);
    let (client, server) = (f.client_endpoint().addr, f.server_endpoint().addr);
    let (name, command, client_sends, (digests, size, gaps, store), whole, label) =
        match &mut f.app.proto {
            Proto::FtpData(d) => {
                let command = d.command?;
                if !matches!(command, "STOR" | "STOU" | "APPE" | "RETR") {
                    return None;
                }
                let (digests, size, gaps, store) = finish_track(d.track.as_deref_mut());
                // The data connection carries one direction; without bytes, the sender is the
                // control client on an upload, the other end otherwise.
                let client_sends = match d.track_dir {
                    Some(dir) => dir == Dir::ToServer,
                    None => d
                        .control_client
                        .is_none_or(|c| (c == client) == (d.upload == Some(true))),
                };
                let whole = gaps == 0 && d.offset == 0 && closed;
                // A REST offset: the bytes before it were never seen.
                let gaps = gaps + u64::from(d.offset > 0);
                let name = d.file.take().unwrap_or_default();
                (
                    name,
                    command,
                    client_sends,
                    (digests, size, gaps, store),
                    whole,
                    "ftp-data",
                )
            }
            Proto::Tftp(st) if !st.handed_over => {
                let write = st
                    .request
                    .as_ref()
                    .map(|r| r.write)
                    .unwrap_or(st.transfer.write);
                let name = st.request.as_ref().map(|r| r.file.clone())?;
                let (digests, size, gaps, store) = finish_track(st.track.as_deref_mut());
                let gaps = gaps + st.transfer.missing;
                let whole = gaps == 0 && st.transfer.complete;
                // The requester is the transfer flow's client: it sends on a write.
                let command = if write { "WRQ" } else { "RRQ" };
                (
                    name,
                    command,
                    write,
                    (digests, size, gaps, store),
                    whole,
                    "tftp",
                )
            }
            _ => return None,
        };
    let (from, to) = if client_sends {
        (client, server)
    } else {
        (server, client)
    };
    let facts = FileFacts {
        name: &name,
        command,
        direction: shared.networks.direction(from, to),
        digests,
        size,
        gaps,
        whole,
        label,
        fuid: None,
        ts_us: f.last_us,
        store,
    };
    Some(write_fileinfo(f, shared, facts))
}

/// The `fileinfo` event of a file an SMB connection wrote (`read` false: WRITE requests, an
/// upload by the client) or read (`read` true: READ responses, a download to the client), at the
/// transaction that closed it (`tx`: its name, FileId, end-of-file and bytes written and read).
/// `track` holds what was hashed of it (None when hashing is off or the connection held too many
/// files at once).
pub fn smb_fileinfo(
    f: &Flow<App>,
    tx: &SmbTx,
    read: bool,
    mut track: Option<FileTrack>,
    ts_us: i64,
    shared: &Shared,
) -> (String, FileSummary) {
    let moved = if read {
        tx.bytes_read
    } else {
        tx.bytes_written
    };
    let followed = track.is_some() || !shared.app.hashes.any();
    let (digests, size, gaps, store) = match track.as_mut() {
        Some(t) => finish_track(Some(t)),
        None => (None, moved, 0, None),
    };
    // Whole: every byte moved seen in order from offset 0, up to the end-of-file the server
    // reported (a CLOSE without attributes reports 0: no end-of-file). With hashing on, a file
    // that was not followed (too many open at once) cannot be called whole. A range read twice
    // counts twice in `moved` but once in `size`: a read is whole when it reached the end-of-file.
    let eof_ok = tx.size.is_none_or(|eof| eof == 0 || eof == size);
    let all_moved = size == moved || (read && size > 0 && tx.size == Some(size));
    let whole = followed && gaps == 0 && eof_ok && all_moved;
    let name = smb_name(tx.filename.as_deref().unwrap_or(""));
    let (client, server) = (f.client_endpoint().addr, f.server_endpoint().addr);
    let (command, from, to) = if read {
        ("READ", server, client)
    } else {
        ("WRITE", client, server)
    };
    let facts = FileFacts {
        name,
        command,
        direction: shared.networks.direction(from, to),
        digests,
        size,
        gaps,
        whole,
        label: "smb",
        fuid: tx.fuid.as_deref(),
        ts_us,
        store,
    };
    write_fileinfo(f, shared, facts)
}

/// An `alert` event, Suricata-shaped, raised at packet time `ts_us` on flow `f`.
pub fn alert(
    f: &Flow<App>,
    a: &AlertFacts,
    ts_us: i64,
    shared: &Shared,
    session: Option<&Session>,
    evidence_pcap: Option<&str>,
) -> String {
    let sig = a.sid.signature();
    let t = tuple(f, shared);
    let facts = app::facts(f, shared);
    let mut out = String::with_capacity(900);
    write_event(
        &mut out,
        &header(f, &t, ts_us, facts.app_proto),
        "alert",
        |o| {
            alert_object(o, sig);
            o.obj("xfer", |x| {
                x.str("direction", a.direction.as_str());
                if let (Some(i), Some(e)) = (a.internal, a.external) {
                    x.str("internal_host", &i.to_string())
                        .str("external_host", &e.to_string());
                }
                xfer_common(x, f);
                x.u64(
                    "outbound_payload_bytes",
                    a.raised.map(|r| r.total).unwrap_or(a.session_total),
                );
                if let Some(r) = a.raised {
                    x.u64("threshold_bytes", r.threshold);
                    if let Some(b) = r.baseline {
                        x.u64("baseline_bytes", b.round().max(0.0) as u64);
                    }
                    if r.sid != Sid::LargeOutbound {
                        x.u64("session_outbound_payload_bytes", a.session_total);
                    }
                }
                if let Some(e) = a.app_proto_expected {
                    x.str("app_proto_expected", e);
                }
                if let Some(m) = a.port_mismatch {
                    x.bool("port_mismatch", m);
                }
                if let Some(n) = a.mismatch_flows {
                    x.u64("mismatch_flows", n);
                }
                if a.raised.is_some() {
                    alert_files(x, f, session);
                }
                if let Some(p) = evidence_pcap {
                    x.str("evidence_pcap", p);
                }
            });
        },
    );
    out
}

/// An alert record's Suricata `alert` object for signature `sig`.
fn alert_object(o: &mut JsonObject<'_>, sig: &xferwatch_policy::detect::Signature) {
    o.obj("alert", |x| {
        x.str("action", "allowed")
            .u64("gid", 1)
            .u64("signature_id", sig.id as u64)
            .u64("rev", sig.rev as u64)
            .str("signature", sig.msg)
            .str("category", sig.category)
            .u64("severity", sig.severity as u64);
        x.obj("metadata", |m| {
            m.str_array("mitre_analytic", &["AN1173"]);
            m.str_array("mitre_technique", sig.techniques);
        });
    });
}

/// What an alert raised later (by the fleet, after the flow may have ended) needs of `f`.
pub fn alert_ctx(
    f: &Flow<App>,
    shared: &Shared,
    session: Option<&Session>,
) -> crate::fleet::AlertCtx {
    let t = tuple(f, shared);
    crate::fleet::AlertCtx {
        flow_id: f.flow_id,
        src: t.src,
        src_port: f.client_endpoint().port,
        dst: t.dst,
        dst_port: f.server_endpoint().port,
        proto: f.transport().as_str(),
        vlan: f.key.vlan,
        app_proto: app::facts(f, shared).app_proto,
        community_id: t.community_id,
        in_iface: t.in_iface,
        session_id: f.app.session,
        parent_flow_id: f.app.parent,
        session_total: session.map_or(0, |s| s.outbound),
        external: session.and_then(|s| s.external),
        session_proto: session.map_or("other", |s| s.proto),
    }
}

/// A volume alert the fleet raised: the flow it names is the last one that added to the volume
/// (it may have ended since). `xfer.fleet` says the volume is the whole fleet's.
pub fn fleet_alert(
    c: &crate::fleet::AlertCtx,
    internal: xferwatch_wire::Addr,
    r: &xferwatch_policy::detect::Raised,
    ts_us: i64,
    shared: &Shared,
) -> String {
    let sig = r.sid.signature();
    let h = EventHeader {
        ts_us,
        flow_id: c.flow_id,
        host: shared.sensor.as_deref(),
        src_ip: &c.src,
        src_port: c.src_port,
        dest_ip: &c.dst,
        dest_port: c.dst_port,
        proto: c.proto,
        vlan: c.vlan,
        app_proto: c.app_proto,
        community_id: Some(&c.community_id),
        in_iface: c.in_iface.as_deref(),
    };
    let mut out = String::with_capacity(900);
    write_event(&mut out, &h, "alert", |o| {
        alert_object(o, sig);
        o.obj("xfer", |x| {
            x.str("direction", Direction::Outbound.as_str());
            x.str("internal_host", &internal.to_string());
            if let Some(e) = c.external {
                x.str("external_host", &e.to_string());
            }
            if c.session_id != 0 {
                x.u64("session_id", c.session_id);
            }
            if let Some(p) = c.parent_flow_id {
                x.u64("parent_flow_id", p);
            }
            x.u64("outbound_payload_bytes", r.total)
                .u64("threshold_bytes", r.threshold);
            if let Some(b) = r.baseline {
                x.u64("baseline_bytes", b.round().max(0.0) as u64);
            }
            x.u64("session_outbound_payload_bytes", c.session_total);
            x.bool("fleet", true);
        });
    });
    out
}

/// One FTP command and its reply.
pub fn ftp(f: &Flow<App>, tx: &FtpTx, ts_us: i64, shared: &Shared) -> String {
    let t = tuple(f, shared);
    let proto = f.app.label.unwrap_or("ftp");
    let mut out = String::with_capacity(512);
    write_event(&mut out, &header(f, &t, ts_us, Some(proto)), "ftp", |o| {
        o.obj("ftp", |x| {
            if !tx.command.is_empty() {
                x.str("command", &tx.command);
            }
            if let Some(d) = &tx.command_data {
                x.str("command_data", d);
            }
            if tx.command_truncated {
                x.bool("command_truncated", true);
            }
            if !tx.reply.is_empty() {
                x.str_array("reply", &tx.reply);
            }
            if !tx.completion_code.is_empty() {
                x.str_array("completion_code", &tx.completion_code);
            }
            if let Some(p) = tx.dynamic_port {
                x.u64("dynamic_port", p as u64);
            }
            if let Some(m) = tx.mode {
                x.str("mode", m);
            }
            x.str(
                "reply_received",
                if tx.reply_received { "yes" } else { "no" },
            );
            if tx.reply_truncated {
                x.bool("reply_truncated", true);
            }
        });
        o.obj("xfer", |x| {
            xfer_common(x, f);
            if tx.mode == Some("active") && f.app.anomalies.contains(app::Anomaly::FtpBounce) {
                x.bool("ftp_bounce", true);
            }
        });
    });
    out
}

/// A file name as SMB2 writes it: SMB1 names keep the share-relative leading backslash SMB2
/// names do not have (`\dir\a.txt` is `dir\a.txt`, the share root `\` is `""`).
fn smb_name(name: &str) -> &str {
    name.strip_prefix('\\').unwrap_or(name)
}

/// `smb.size` of a transaction: the end-of-file the server reported; for a file the connection
/// wrote to, when the server reported none (absent or 0: a CLOSE without attributes), the bytes
/// written to it.
fn smb_size(tx: &SmbTx) -> Option<u64> {
    match tx.size {
        None | Some(0) if tx.bytes_written > 0 => Some(tx.bytes_written),
        s => s,
    }
}

/// One SMB transaction (a file is one transaction from CREATE to CLOSE, its bytes summed).
pub fn smb(f: &Flow<App>, tx: &SmbTx, ts_us: i64, shared: &Shared) -> String {
    let t = tuple(f, shared);
    let mut out = String::with_capacity(512);
    write_event(&mut out, &header(f, &t, ts_us, Some("smb")), "smb", |o| {
        o.obj("smb", |x| {
            x.str("command", tx.command);
            if let Some(s) = tx.status {
                x.str("status", s);
            }
            if let Some(c) = tx.status_code {
                x.str("status_code", &format!("0x{c:x}"));
            }
            if let Some(d) = tx.dialect {
                x.str("dialect", d);
            }
            x.u64("session_id", tx.session_id);
            x.u64("tree_id", tx.tree_id as u64);
            if let Some(s) = &tx.share {
                x.str("share", s);
            }
            if let Some(n) = &tx.filename {
                x.str("filename", smb_name(n));
            }
            if let Some(u) = &tx.fuid {
                x.str("fuid", u);
            }
            if let Some(d) = tx.disposition {
                x.str("disposition", d);
            }
            if let Some(sz) = smb_size(tx) {
                x.u64("size", sz);
            }
            if let Some(n) = &tx.ntlmssp {
                if shared.log_credentials {
                    x.obj("ntlmssp", |m| {
                        m.str("user", &n.user)
                            .str("domain", &n.domain)
                            .str("host", &n.host);
                    });
                }
            }
        });
        o.obj("xfer", |x| {
            xfer_common(x, f);
            if tx.bytes_written > 0 || tx.bytes_read > 0 {
                x.u64("bytes_written", tx.bytes_written)
                    .u64("bytes_read", tx.bytes_read);
            }
            if tx.encrypted_bytes != [0, 0] {
                x.u64("encrypted_bytes_toserver", tx.encrypted_bytes[0])
                    .u64("encrypted_bytes_toclient", tx.encrypted_bytes[1]);
            }
        });
    });
    out
}

/// At the end of an FTP data channel (`ftp_data`) or a TFTP transfer (`tftp`): what moved, and the
/// event type written.
pub fn transfer_event(f: &Flow<App>, shared: &Shared) -> Option<(&'static str, String)> {
    // Most flows are neither: nothing is made for them (the tuple hashes a community id).
    let wanted = match &f.app.proto {
        Proto::FtpData(_) => true,
        Proto::Tftp(st) => !st.handed_over,
        _ => false,
    };
    if !wanted {
        return None;
    }
    let t = tuple(f, shared);
    let mut out = String::with_capacity(512);
    match &f.app.proto {
        Proto::FtpData(info) => {
            // Which way the file went: from the control client's host on an upload.
            let control_client_sends = info
                .control_client
                .map(|c| c == f.client_endpoint().addr)
                .unwrap_or(true);
            let (up, down) = if control_client_sends {
                (f.payload[0], f.payload[1])
            } else {
                (f.payload[1], f.payload[0])
            };
            let bytes = match info.upload {
                Some(true) => up,
                Some(false) => down,
                None => up.max(down),
            };
            write_event(
                &mut out,
                &header(f, &t, f.last_us, Some("ftp-data")),
                "ftp_data",
                |o| {
                    let file = info.file.as_deref().filter(|f| !f.is_empty());
                    if info.command.is_some() || file.is_some() {
                        o.obj("ftp_data", |x| {
                            if let Some(n) = file {
                                x.str("filename", n);
                            }
                            if let Some(c) = info.command {
                                x.str("command", c);
                            }
                        });
                    }
                    o.obj("xfer", |x| {
                        xfer_common(x, f);
                        x.u64("bytes", bytes);
                        if let Some(u) = info.upload {
                            x.str("direction", if u { "upload" } else { "download" });
                        }
                        if info.heuristic {
                            x.bool("linked_by_heuristic", true);
                        }
                        if info.inferred {
                            x.bool("linked_by_inference", true);
                        }
                    });
                },
            );
            Some(("ftp_data", out))
        }
        Proto::Tftp(st) if !st.handed_over => {
            let tr = &st.transfer;
            let write = st.request.as_ref().map(|r| r.write).unwrap_or(tr.write);
            write_event(
                &mut out,
                &header(f, &t, f.last_us, Some("tftp")),
                "tftp",
                |o| {
                    o.obj("tftp", |x| {
                        x.str("packet", if write { "write" } else { "read" });
                        if let Some(r) = &st.request {
                            x.str("file", &r.file).str("mode", &r.mode);
                        }
                    });
                    o.obj("xfer", |x| {
                        xfer_common(x, f);
                        x.obj("tftp", |y| {
                            if let Some(r) = &st.request {
                                if !r.options.is_empty() {
                                    y.obj("options", |z| {
                                        for (k, v) in &r.options {
                                            z.str(k, v);
                                        }
                                    });
                                }
                            }
                            if !tr.oack.is_empty() {
                                y.obj("oack", |z| {
                                    for (k, v) in &tr.oack {
                                        z.str(k, v);
                                    }
                                });
                            }
                            y.u64("blksize", tr.blksize as u64)
                                .u64("windowsize", tr.windowsize as u64);
                            if let Some(ts) = tr.tsize {
                                y.u64("tsize", ts);
                            }
                            y.u64("file_bytes", tr.file_bytes)
                                .u64("blocks", tr.blocks)
                                .u64("duplicates", tr.duplicates)
                                .u64("missing_blocks", tr.missing)
                                .bool("complete", tr.complete);
                            if let Some(e) = &tr.error {
                                y.u64("error_code", e.code as u64)
                                    .str("error_message", &e.message);
                            }
                        });
                    });
                },
            );
            Some(("tftp", out))
        }
        _ => None,
    }
}

/// Outbound payload bytes are added to the per-protocol totals as they are seen, every
/// [`LIVE_OUTBOUND_STEP`] bytes of a flow once its protocol is known (the rest when it ends), so a
/// long upload shows in the metrics while it runs. The protocol is the one known when counted.
pub const LIVE_OUTBOUND_STEP: u64 = 64 << 10;

/// Counts a running flow's outbound payload into `totals` (see [`LIVE_OUTBOUND_STEP`]).
pub fn count_outbound(f: &mut Flow<App>, shared: &Shared, totals: &mut WorkerTotals) {
    let sent = f.payload[0].max(f.payload[1]);
    if sent < f.app.out_totalled.saturating_add(LIVE_OUTBOUND_STEP) {
        return;
    }
    let client = f.client_endpoint();
    let server = f.server_endpoint();
    let direction = Direction::of(
        shared.networks.is_internal(client.addr),
        shared.networks.is_internal(server.addr),
    );
    let outbound = outbound_payload(direction, f.payload[0], f.payload[1]);
    let delta = outbound.saturating_sub(f.app.out_totalled);
    if delta < LIVE_OUTBOUND_STEP {
        return;
    }
    let Some(label) = app::facts(f, shared).app_proto else {
        return;
    };
    *totals.outbound_by_app_proto.entry(label).or_default() += delta;
    f.app.out_totalled = outbound;
}

/// An interim `flow` record of a running flow (`[output] flow_interim`): the counts so far,
/// `flow.reason` `"interim"`, `xfer.interim` true. Counted nowhere.
pub fn flow_interim(f: &Flow<App>, session: Option<&Session>, shared: &Shared) -> String {
    flow_line(f, session, shared, None)
}

/// The flow record, plus the summary line for notable flows.
pub fn flow(
    f: &Flow<App>,
    session: Option<&Session>,
    shared: &Shared,
    totals: &mut WorkerTotals,
) -> String {
    flow_line(f, session, shared, Some(totals))
}

/// The final record of a flow (counted in `totals`), or an interim one (no `totals`).
fn flow_line(
    f: &Flow<App>,
    session: Option<&Session>,
    shared: &Shared,
    totals: Option<&mut WorkerTotals>,
) -> String {
    let interim = totals.is_none();
    // Interim records count nowhere: a scratch set of totals, made only for them.
    let mut scratch;
    let totals = match totals {
        Some(t) => t,
        None => {
            scratch = WorkerTotals::default();
            &mut scratch
        }
    };
    let client = f.client_endpoint();
    let server = f.server_endpoint();
    let local_orig = shared.networks.is_internal(client.addr);
    let local_resp = shared.networks.is_internal(server.addr);
    let direction = Direction::of(local_orig, local_resp);
    let (anomalies, n_anomalies) = f.app.anomalies.names();
    let t = tuple(f, shared);
    let facts = app::facts(f, shared);
    match f.transport() {
        xferwatch_wire::Transport::Tcp => totals.flows_tcp += 1,
        xferwatch_wire::Transport::Udp => totals.flows_udp += 1,
    }
    let label = facts.app_proto.unwrap_or("none");
    *totals.flows_by_app_proto.entry(label).or_default() += 1;
    // What the worker has not counted yet while the flow ran (see `count_outbound`).
    let outbound = outbound_payload(direction, f.payload[0], f.payload[1]);
    let rest = outbound.saturating_sub(f.app.out_totalled);
    if rest > 0 {
        *totals.outbound_by_app_proto.entry(label).or_default() += rest;
    }
    if facts.port_mismatch == Some(true) {
        *totals.mismatch_by_app_proto.entry(label).or_default() += 1;
    }
    let rec = FlowRecord {
        header: header(f, &t, f.start_us, facts.app_proto),
        end_us: f.last_us,
        app_proto_ts: facts.app_proto_ts,
        app_proto_tc: facts.app_proto_tc,
        pkts_toserver: f.pkts[0],
        pkts_toclient: f.pkts[1],
        bytes_toserver: f.bytes[0],
        bytes_toclient: f.bytes[1],
        age: f.age_secs(),
        state: f.state.as_str(),
        reason: if interim {
            "interim"
        } else {
            f.end_reason.map(|r| r.as_str()).unwrap_or("shutdown")
        },
        alerted: f.app.alerted || session.is_some_and(|s| !s.alerted.is_empty()),
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
        parent_flow_id: f.app.parent,
        session_id: (f.app.session != 0).then_some(f.app.session),
        session_outbound_bytes: session.map(|s| s.outbound),
        tls_upgraded: f.app.tls_upgraded,
        linked_by_inference: app::inferred(f),
        anomalies: &anomalies[..n_anomalies],
        interim,
    };
    let file_transfer = facts
        .app_proto
        .is_some_and(|p| xferwatch_policy::is_file_transfer(p) || p == "ftp-data");
    if (file_transfer || facts.port_mismatch == Some(true)) && totals.notable.len() < MAX_NOTABLE {
        totals.notable.push((
            f.first_idx,
            format!(
                "{:<3} {:>21} -> {:<21} {:<8} {:<8} out {:>10} B{}",
                rec.header.proto,
                format!("{}:{}", t.src, client.port),
                format!("{}:{}", t.dst, server.port),
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
    let mut line = String::with_capacity(700);
    write_flow(&mut line, &rec);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smb_names_lose_the_leading_backslash() {
        assert_eq!(smb_name("\\ledger.bin"), "ledger.bin");
        assert_eq!(smb_name("\\dir\\a.txt"), "dir\\a.txt");
        assert_eq!(smb_name("\\"), "");
        assert_eq!(smb_name("payroll.bin"), "payroll.bin");
        assert_eq!(smb_name(""), "");
    }

    #[test]
    fn smb_size_falls_back_to_bytes_written() {
        let tx = |size, written, read| SmbTx {
            size,
            bytes_written: written,
            bytes_read: read,
            ..Default::default()
        };
        // A CLOSE without end-of-file after a 600 KB write: the bytes written.
        assert_eq!(smb_size(&tx(Some(0), 614_400, 0)), Some(614_400));
        assert_eq!(smb_size(&tx(None, 614_400, 0)), Some(614_400));
        // The server's end-of-file wins when it gave one.
        assert_eq!(smb_size(&tx(Some(700_000), 614_400, 0)), Some(700_000));
        // Nothing written: what the server said, or nothing.
        assert_eq!(smb_size(&tx(Some(0), 0, 4096)), Some(0));
        assert_eq!(smb_size(&tx(None, 0, 0)), None);
    }
}
