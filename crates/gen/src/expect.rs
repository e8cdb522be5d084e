//! What the sensor should report for a generated file: the transfer sessions with their outbound
//! totals, and the alerts 1173001 (large outbound session), 1173002 (file-transfer protocol off
//! its port) and 1173003 (a well-known port carrying another protocol).

use crate::net::{Conn, NO_SESSION};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Large outbound transfer.
pub const SID_LARGE: u32 = 1_173_001;
/// File-transfer protocol on a port that is not its own.
pub const SID_FT_PORT: u32 = 1_173_002;
/// Well-known port carrying another protocol.
pub const SID_PORT_PROTO: u32 = 1_173_003;

/// The protocol the sensor's built-in port table expects on a server port.
pub fn port_proto(udp: bool, port: u16) -> Option<&'static str> {
    if udp {
        match port {
            69 => Some("tftp"),
            53 => Some("dns"),
            _ => None,
        }
    } else {
        match port {
            21 => Some("ftp"),
            139 | 445 => Some("smb"),
            80 | 8080 => Some("http"),
            443 => Some("tls"),
            22 => Some("ssh"),
            25 | 587 => Some("smtp"),
            53 => Some("dns"),
            _ => None,
        }
    }
}

/// The mismatch signature a flow of `proto` (identified by its bytes) on its server port
/// raises, if any.
pub fn mismatch_sid(proto: &str, udp: bool, port: u16) -> Option<u32> {
    let expected = port_proto(udp, port);
    if matches!(proto, "ftp" | "tftp" | "smb") {
        (expected != Some(proto)).then_some(SID_FT_PORT)
    } else {
        expected
            .is_some_and(|e| e != proto)
            .then_some(SID_PORT_PROTO)
    }
}

/// One flow of a transfer session.
#[derive(Clone, Debug)]
pub struct Flow {
    /// UDP (else TCP).
    pub udp: bool,
    /// Client address and port.
    pub src: (IpAddr, u16),
    /// Server address and port.
    pub dest: (IpAddr, u16),
    /// Expected app_proto.
    pub app: &'static str,
}

/// One transfer session.
#[derive(Clone, Debug)]
pub struct Session {
    /// ftp, tftp or smb.
    pub proto: &'static str,
    /// Internal end.
    pub internal: IpAddr,
    /// External end.
    pub external: IpAddr,
    /// Server port of the flow that starts the session.
    pub server_port: u16,
    /// The internal host sends the file.
    pub upload: bool,
    /// File bytes moved.
    pub file_bytes: u64,
    /// Files moved.
    pub files: u32,
    /// Payload the internal end sent in all the session's flows.
    pub outbound: u64,
    /// 1173001 expected.
    pub alerted: bool,
    /// The session's flows.
    pub flows: Vec<Flow>,
}

/// One expected alert.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Alert {
    /// Signature id.
    pub sid: u32,
    /// Internal end.
    pub internal: IpAddr,
    /// External end.
    pub external: IpAddr,
    /// Server port of the flow the alert is raised on.
    pub server_port: u16,
    /// app_proto of that flow.
    pub app: &'static str,
}

/// Everything expected of one generated file.
#[derive(Debug, Default)]
pub struct Expect {
    /// Threshold of 1173001.
    pub threshold: u64,
    /// Transfer sessions, in the order they started.
    pub sessions: Vec<Session>,
    /// Alerts, in the order they are raised (mismatch alerts when their session is planned).
    pub alerts: Vec<Alert>,
    /// Flows written.
    pub flows: u64,
    /// Flows by expected app_proto.
    pub by_app: BTreeMap<&'static str, u64>,
    /// Transfer sessions that had to reuse an (internal, external) host pair already used by
    /// another one (their totals then also feed the sensor's roll-up, 1173005).
    pub pair_reuse: u64,
}

fn ends(c: &Conn) -> (IpAddr, IpAddr) {
    if c.ep[1].internal && !c.ep[0].internal {
        (c.ep[1].addr(), c.ep[0].addr())
    } else {
        (c.ep[0].addr(), c.ep[1].addr())
    }
}

impl Expect {
    /// Expectations for `threshold`.
    pub fn new(threshold: u64) -> Expect {
        Expect {
            threshold,
            ..Expect::default()
        }
    }

    /// A new transfer session started by `c` (its first flow); returns its index.
    pub fn session(
        &mut self,
        proto: &'static str,
        c: &Conn,
        upload: bool,
        file_bytes: u64,
        files: u32,
    ) -> u32 {
        let (internal, external) = ends(c);
        self.sessions.push(Session {
            proto,
            internal,
            external,
            server_port: c.ep[1].port,
            upload,
            file_bytes,
            files,
            outbound: 0,
            alerted: false,
            flows: Vec::new(),
        });
        (self.sessions.len() - 1) as u32
    }

    /// Records a flow of session `sid`.
    pub fn flow(&mut self, sid: u32, c: &Conn) {
        self.sessions[sid as usize].flows.push(Flow {
            udp: c.udp,
            src: (c.ep[0].addr(), c.ep[0].port),
            dest: (c.ep[1].addr(), c.ep[1].port),
            app: c.app,
        });
    }

    /// A flow identified by its bytes as `c.app`: the mismatch alert it raises, if any.
    pub fn identified(&mut self, c: &Conn) {
        if let Some(sid) = mismatch_sid(c.app, c.udp, c.ep[1].port) {
            let (internal, external) = ends(c);
            self.alerts.push(Alert {
                sid,
                internal,
                external,
                server_port: c.ep[1].port,
                app: c.app,
            });
        }
    }

    /// A packet of `c` from `side` with `payload` bytes is written.
    #[inline]
    pub fn packet(&mut self, c: &mut Conn, side: usize, payload: usize) {
        if !c.started {
            c.started = true;
            self.flows += 1;
            *self.by_app.entry(c.app).or_default() += 1;
        }
        if payload == 0
            || c.session == NO_SESSION
            || !c.ep[side].internal
            || c.ep[1 - side].internal
        {
            return;
        }
        let s = &mut self.sessions[c.session as usize];
        s.outbound += payload as u64;
        if !s.alerted && s.outbound >= self.threshold {
            s.alerted = true;
            let (internal, external) = (s.internal, s.external);
            self.alerts.push(Alert {
                sid: SID_LARGE,
                internal,
                external,
                server_port: c.ep[1].port,
                app: c.app,
            });
        }
    }

    /// The JSON document (`totals`: packets, frame bytes, pcap file bytes, extra fields).
    pub fn to_json(&self, totals: Value) -> Value {
        let alerts: Vec<Value> = self
            .alerts
            .iter()
            .map(|a| {
                json!({
                    "signature_id": a.sid,
                    "internal_host": a.internal.to_string(),
                    "external_host": a.external.to_string(),
                    "server_port": a.server_port,
                    "app_proto": a.app,
                })
            })
            .collect();
        let sessions: Vec<Value> = self
            .sessions
            .iter()
            .map(|s| {
                json!({
                    "protocol": s.proto,
                    "internal_host": s.internal.to_string(),
                    "external_host": s.external.to_string(),
                    "server_port": s.server_port,
                    "upload": s.upload,
                    "files": s.files,
                    "file_bytes": s.file_bytes,
                    "outbound_payload_bytes": s.outbound,
                    "alert": s.alerted,
                    "flows": s.flows.iter().map(|f| json!({
                        "proto": if f.udp { "UDP" } else { "TCP" },
                        "src_ip": f.src.0.to_string(),
                        "src_port": f.src.1,
                        "dest_ip": f.dest.0.to_string(),
                        "dest_port": f.dest.1,
                        "app_proto": f.app,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut doc = json!({
            "threshold_bytes": self.threshold,
            "alerts": alerts,
            "sessions": sessions,
            "flows": self.flows,
            "flows_by_app_proto": self.by_app,
            "pair_reuse": self.pair_reuse,
        });
        if let (Value::Object(d), Value::Object(t)) = (&mut doc, totals) {
            for (k, v) in t {
                d.insert(k, v);
            }
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_rules() {
        assert_eq!(mismatch_sid("ftp", false, 21), None);
        assert_eq!(mismatch_sid("ftp", false, 80), Some(SID_FT_PORT));
        assert_eq!(mismatch_sid("ftp", false, 2121), Some(SID_FT_PORT));
        assert_eq!(mismatch_sid("smb", false, 443), Some(SID_FT_PORT));
        assert_eq!(mismatch_sid("smb", false, 139), None);
        assert_eq!(mismatch_sid("tftp", true, 53), Some(SID_FT_PORT));
        assert_eq!(mismatch_sid("tftp", true, 69), None);
        assert_eq!(mismatch_sid("http", false, 21), Some(SID_PORT_PROTO));
        assert_eq!(mismatch_sid("http", false, 8000), None);
        assert_eq!(mismatch_sid("tls", false, 443), None);
        assert_eq!(mismatch_sid("dns", true, 53), None);
    }
}
