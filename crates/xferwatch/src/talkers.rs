//! The replay summary's top-talkers table: the EVE records, as they are written, summed per
//! (internal host, external host, protocol, server port) — payload sent outbound, files
//! (`fileinfo` records) and alerts — for the flows between an internal and an external host.
//!
//! Only `flow`, `fileinfo` and `alert` records are parsed (the others are told apart by a substring
//! first). A flow's files and alerts are written before its `flow` record, so they are held by
//! flow id until that record names the flow's hosts. Both tables are bounded: past
//! [`MAX_PAIRS`] rows, new pairs are summed into one "others" row; past [`MAX_PENDING`] flows
//! waiting for their `flow` record, further files and alerts are not attributed (and counted).

use serde_json::Value;
use std::collections::HashMap;

/// Rows kept (distinct internal host, external host, protocol, port).
pub const MAX_PAIRS: usize = 65_536;
/// Flows whose files or alerts wait for their `flow` record.
pub const MAX_PENDING: usize = 65_536;

/// What one row is about. `port` is the server port; None for a data connection opened by a
/// control connection (FTP data, TFTP transfers), whose ports are ephemeral.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    pub internal: String,
    pub external: String,
    pub proto: String,
    pub port: Option<u64>,
}

/// What was summed for one [`Pair`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Talk {
    /// Payload bytes the internal host sent to the external one.
    pub bytes: u64,
    pub files: u64,
    pub alerts: u64,
    pub flows: u64,
}

impl Talk {
    fn add(&mut self, o: &Talk) {
        self.bytes += o.bytes;
        self.files += o.files;
        self.alerts += o.alerts;
        self.flows += o.flows;
    }
}

#[derive(Debug, Default)]
pub struct TopTalkers {
    pending: HashMap<u64, Talk>,
    pairs: HashMap<Pair, Talk>,
    /// Pairs beyond [`MAX_PAIRS`], summed.
    pub others: Talk,
    /// Files and alerts not attributed ([`MAX_PENDING`] reached).
    pub unattributed: u64,
}

impl TopTalkers {
    /// Looks at one EVE record (one JSON line).
    pub fn event(&mut self, line: &str) {
        let kind = if line.contains("\"event_type\":\"flow\"") {
            0
        } else if line.contains("\"event_type\":\"fileinfo\"") {
            1
        } else if line.contains("\"event_type\":\"alert\"") {
            2
        } else {
            return;
        };
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let Some(id) = v["flow_id"].as_u64() else {
            return;
        };
        if kind == 0 {
            self.flow(id, &v);
            return;
        }
        if !self.pending.contains_key(&id) && self.pending.len() >= MAX_PENDING {
            self.unattributed += 1;
            return;
        }
        let t = self.pending.entry(id).or_default();
        if kind == 1 {
            t.files += 1;
        } else {
            t.alerts += 1;
        }
    }

    fn flow(&mut self, id: u64, v: &Value) {
        let mut talk = self.pending.remove(&id).unwrap_or_default();
        let x = &v["xfer"];
        let (src, dst) = (v["src_ip"].as_str(), v["dest_ip"].as_str());
        let (internal, external) = match (x["direction"].as_str(), src, dst) {
            (Some("outbound"), Some(s), Some(d)) => (s, d),
            (Some("inbound"), Some(s), Some(d)) => (d, s),
            // Between two internal (or two external) hosts: not a talker to the outside.
            _ => return,
        };
        talk.bytes = x["outbound_payload_bytes"].as_u64().unwrap_or(0);
        talk.flows = 1;
        let port = if x.get("parent_flow_id").is_some() {
            None
        } else {
            v["dest_port"].as_u64()
        };
        let proto = v["app_proto"]
            .as_str()
            .or(v["proto"].as_str())
            .unwrap_or("-")
            .to_ascii_lowercase();
        let pair = Pair {
            internal: internal.to_string(),
            external: external.to_string(),
            proto,
            port,
        };
        if let Some(row) = self.pairs.get_mut(&pair) {
            row.add(&talk);
        } else if self.pairs.len() < MAX_PAIRS {
            self.pairs.insert(pair, talk);
        } else {
            self.others.add(&talk);
        }
    }

    /// The `n` rows with the most bytes (then files, alerts), largest first.
    pub fn top(&self, n: usize) -> Vec<(&Pair, &Talk)> {
        let mut rows: Vec<(&Pair, &Talk)> = self.pairs.iter().collect();
        rows.sort_by(|a, b| {
            (b.1.bytes, b.1.files, b.1.alerts)
                .cmp(&(a.1.bytes, a.1.files, a.1.alerts))
                .then_with(|| a.0.cmp(b.0))
        });
        rows.truncate(n);
        rows
    }

    /// Rows in all.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(id: u64, src: &str, dst: &str, port: u16, dir: &str, out: u64, parent: bool) -> String {
        let parent = if parent { ",\"parent_flow_id\":1" } else { "" };
        format!(
            "{{\"flow_id\":{id},\"event_type\":\"flow\",\"src_ip\":\"{src}\",\"src_port\":5000,\
             \"dest_ip\":\"{dst}\",\"dest_port\":{port},\"proto\":\"TCP\",\"app_proto\":\"ftp\",\
             \"xfer\":{{\"direction\":\"{dir}\",\"outbound_payload_bytes\":{out}{parent}}}}}\n"
        )
    }

    #[test]
    fn sums_per_pair_largest_first() {
        let mut t = TopTalkers::default();
        t.event("{\"flow_id\":7,\"event_type\":\"alert\"}\n");
        t.event("{\"flow_id\":7,\"event_type\":\"fileinfo\"}\n");
        t.event("{\"flow_id\":7,\"event_type\":\"fileinfo\"}\n");
        t.event(&flow(7, "10.0.0.1", "8.8.8.8", 21, "outbound", 100, false));
        t.event(&flow(8, "10.0.0.1", "8.8.8.8", 21, "outbound", 50, false));
        // Inbound: the internal host is the server.
        t.event(&flow(9, "9.9.9.9", "10.0.0.2", 21, "inbound", 1000, false));
        // A data connection: no port of its own.
        t.event(&flow(
            10, "10.0.0.1", "8.8.8.8", 40000, "outbound", 10, true,
        ));
        // Internal to internal: not listed.
        t.event(&flow(
            11, "10.0.0.1", "10.0.0.3", 445, "internal", 5000, false,
        ));
        t.event("{\"event_type\":\"stats\"}\n");
        let top = t.top(10);
        assert_eq!(top.len(), 3);
        assert_eq!(
            (top[0].0.internal.as_str(), top[0].0.external.as_str()),
            ("10.0.0.2", "9.9.9.9")
        );
        assert_eq!(top[0].1.bytes, 1000);
        assert_eq!(top[1].0.port, Some(21));
        assert_eq!(
            *top[1].1,
            Talk {
                bytes: 150,
                files: 2,
                alerts: 1,
                flows: 2
            }
        );
        assert_eq!(top[2].0.port, None);
        assert_eq!(t.top(1).len(), 1);
        assert!(t.pending.is_empty());
    }

    #[test]
    fn bounded() {
        let mut t = TopTalkers::default();
        for i in 0..(MAX_PAIRS as u64 + 3) {
            let ext = format!("8.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            t.event(&flow(i, "10.0.0.1", &ext, 21, "outbound", 1, false));
        }
        assert_eq!(t.len(), MAX_PAIRS);
        assert_eq!(t.others.flows, 3);
        for i in 0..(MAX_PENDING as u64 + 2) {
            t.event(&format!("{{\"flow_id\":{i},\"event_type\":\"alert\"}}"));
        }
        assert_eq!(t.unattributed, 2);
    }
}
