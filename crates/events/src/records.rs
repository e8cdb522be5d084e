//! The records xferwatch writes. Field names are Suricata's where Suricata has the field.

use crate::json::JsonObject;

/// Everything a `flow` event says. Built by the engine from a finished flow.
#[derive(Clone, Debug, Default)]
pub struct FlowRecord<'a> {
    /// The common fields; its time is the flow's start.
    pub header: EventHeader<'a>,
    pub end_us: i64,
    pub app_proto_ts: Option<&'a str>,
    pub app_proto_tc: Option<&'a str>,
    pub pkts_toserver: u64,
    pub pkts_toclient: u64,
    pub bytes_toserver: u64,
    pub bytes_toclient: u64,
    pub age: i64,
    pub state: &'a str,
    pub reason: &'a str,
    pub alerted: bool,
    // xfer
    pub local_orig: bool,
    pub local_resp: bool,
    pub direction: &'a str,
    pub payload_bytes_toserver: u64,
    pub payload_bytes_toclient: u64,
    pub outbound_payload_bytes: u64,
    pub bytes_exact: bool,
    pub app_proto_expected: Option<&'a str>,
    pub port_mismatch: Option<bool>,
    pub snapped: bool,
    /// The flow that announced this one (an FTP data channel's control connection).
    pub parent_flow_id: Option<u64>,
    /// The transfer session the flow belongs to, and that session's outbound payload so far.
    pub session_id: Option<u64>,
    pub session_outbound_bytes: Option<u64>,
    /// The application switched to TLS mid-flow (FTP AUTH TLS: the channel is FTPS from there on).
    pub tls_upgraded: bool,
    /// An FTP data connection attached to its control connection by inference (its announcement
    /// was not captured or not readable), not by an announcement.
    pub linked_by_inference: bool,
    /// Named caps this flow's parsers reached (bounded list of static names).
    pub anomalies: &'a [&'static str],
    /// An interim record of a flow still running (`[output] flow_interim`).
    pub interim: bool,
}

pub fn write_flow(out: &mut String, r: &FlowRecord<'_>) {
    write_event(out, &r.header, "flow", |o| write_flow_body(o, r));
}

fn write_flow_body(o: &mut JsonObject<'_>, r: &FlowRecord<'_>) {
    if let Some(p) = r.app_proto_ts {
        o.str("app_proto_ts", p);
    }
    if let Some(p) = r.app_proto_tc {
        o.str("app_proto_tc", p);
    }
    o.obj("flow", |f| {
        f.u64("pkts_toserver", r.pkts_toserver)
            .u64("pkts_toclient", r.pkts_toclient);
        f.u64("bytes_toserver", r.bytes_toserver)
            .u64("bytes_toclient", r.bytes_toclient);
        f.ts("start", r.header.ts_us).ts("end", r.end_us);
        f.i64("age", r.age)
            .str("state", r.state)
            .str("reason", r.reason)
            .bool("alerted", r.alerted);
    });
    o.obj("xfer", |x| {
        x.bool("local_orig", r.local_orig)
            .bool("local_resp", r.local_resp)
            .str("direction", r.direction);
        x.u64("payload_bytes_toserver", r.payload_bytes_toserver);
        x.u64("payload_bytes_toclient", r.payload_bytes_toclient);
        x.u64("outbound_payload_bytes", r.outbound_payload_bytes);
        x.bool("bytes_exact", r.bytes_exact);
        if let Some(p) = r.app_proto_expected {
            x.str("app_proto_expected", p);
        }
        if let Some(m) = r.port_mismatch {
            x.bool("port_mismatch", m);
        }
        if r.snapped {
            x.bool("snaplen_cut", true);
        }
        if let Some(p) = r.parent_flow_id {
            x.u64("parent_flow_id", p);
        }
        if let Some(s) = r.session_id {
            x.u64("session_id", s);
        }
        if let Some(s) = r.session_outbound_bytes {
            x.u64("session_outbound_payload_bytes", s);
        }
        if r.tls_upgraded {
            x.bool("tls_upgraded", true);
        }
        if r.linked_by_inference {
            x.bool("linked_by_inference", true);
        }
        if r.interim {
            x.bool("interim", true);
        }
        if !r.anomalies.is_empty() {
            x.str_array("anomalies", r.anomalies);
        }
    });
}

/// The fields every transaction or alert event starts with, as Suricata writes them.
#[derive(Clone, Copy, Debug, Default)]
pub struct EventHeader<'a> {
    pub ts_us: i64,
    pub flow_id: u64,
    pub src_ip: &'a str,
    pub src_port: u16,
    pub dest_ip: &'a str,
    pub dest_port: u16,
    pub proto: &'a str,
    pub vlan: u16,
    pub app_proto: Option<&'a str>,
    /// Community ID v1 of the flow (see [`crate::community_id_v1`]).
    pub community_id: Option<&'a str>,
    /// The capture interface the flow was first seen on (live capture only).
    pub in_iface: Option<&'a str>,
    /// The sensor's name (Suricata's `host`, its `sensor-name`).
    pub host: Option<&'a str>,
}

/// One event line: the header, then whatever `body` writes (the protocol object, `xfer`).
pub fn write_event(
    out: &mut String,
    h: &EventHeader<'_>,
    event_type: &str,
    body: impl FnOnce(&mut JsonObject<'_>),
) {
    let mut o = JsonObject::begin(out);
    o.ts("timestamp", h.ts_us);
    o.u64("flow_id", h.flow_id);
    if let Some(n) = h.host {
        o.str("host", n);
    }
    o.str("event_type", event_type);
    o.str("src_ip", h.src_ip).u64("src_port", h.src_port as u64);
    o.str("dest_ip", h.dest_ip)
        .u64("dest_port", h.dest_port as u64);
    o.str("proto", h.proto);
    if let Some(i) = h.in_iface {
        o.str("in_iface", i);
    }
    if let Some(c) = h.community_id {
        o.str("community_id", c);
    }
    if h.vlan != 0 {
        o.u64_array("vlan", &[h.vlan as u64]);
    }
    if let Some(p) = h.app_proto {
        o.str("app_proto", p);
    }
    body(&mut o);
    o.end();
}

/// End-of-run (and, in the daemon, periodic) statistics. Suricata's `stats` object has a fixed schema,
/// so its own fields carry what they can and the rest goes under `xfer`.
#[derive(Clone, Debug, Default)]
pub struct StatsRecord {
    pub ts_us: i64,
    /// The sensor's name (`host`).
    pub host: Option<String>,
    pub uptime_secs: i64,
    pub pkts: u64,
    pub bytes: u64,
    pub invalid: u64,
    pub ipv4: u64,
    pub ipv6: u64,
    pub tcp: u64,
    pub udp: u64,
    pub vlan: u64,
    pub fragments: u64,
    pub reassembled: u64,
    pub flows_active: u64,
    pub flows_total: u64,
    pub flows_tcp: u64,
    pub flows_udp: u64,
    pub flows_by_app_proto: Vec<(String, u64)>,
    pub decode_errors: Vec<(&'static str, u64)>,
    pub ended_by_reason: Vec<(&'static str, u64)>,
    pub extra: Vec<(&'static str, u64)>,
}

pub fn write_stats(out: &mut String, s: &StatsRecord) {
    let mut o = JsonObject::begin(out);
    o.ts("timestamp", s.ts_us);
    if let Some(n) = &s.host {
        o.str("host", n);
    }
    o.str("event_type", "stats");
    o.obj("stats", |st| {
        st.i64("uptime", s.uptime_secs);
        st.obj("decoder", |d| {
            d.u64("pkts", s.pkts)
                .u64("bytes", s.bytes)
                .u64("invalid", s.invalid);
            d.u64("ipv4", s.ipv4)
                .u64("ipv6", s.ipv6)
                .u64("tcp", s.tcp)
                .u64("udp", s.udp)
                .u64("vlan", s.vlan);
        });
        st.obj("defrag", |d| {
            d.obj("ipv4", |_| {}).obj("ipv6", |_| {});
        });
        st.obj("flow", |f| {
            f.u64("active", s.flows_active).u64("total", s.flows_total);
            f.u64("tcp", s.flows_tcp).u64("udp", s.flows_udp);
        });
    });
    o.obj("xfer", |x| {
        x.u64("ip_fragments", s.fragments)
            .u64("ip_reassembled", s.reassembled);
        x.obj("decode_errors", |d| {
            for (k, v) in &s.decode_errors {
                d.u64(k, *v);
            }
        });
        x.obj("flows_by_app_proto", |d| {
            for (k, v) in &s.flows_by_app_proto {
                d.u64(k, *v);
            }
        });
        x.obj("flows_ended", |d| {
            for (k, v) in &s.ended_by_reason {
                d.u64(k, *v);
            }
        });
        for (k, v) in &s.extra {
            x.u64(k, *v);
        }
    });
    o.end();
}
