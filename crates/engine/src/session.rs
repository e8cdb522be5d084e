//! Transfer sessions: the flows of one transfer counted together. An FTP control channel and the data
//! channels it announced, a TFTP request and its transfer, one SMB connection. The session id is the
//! flow id of the flow that started it; the outbound total is kept live, packet by packet.
//!
//! A worker owns the sessions of its shard. Sharding by host keeps every flow of a session on one
//! worker, so no lock is needed and the order of events is the packet order.

use crate::counters::SessionStats;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use xferwatch_parsers::tftp::Request;
use xferwatch_policy::detect::Sid;
use xferwatch_wire::Addr;

/// Sessions kept at once per worker; beyond, new flows count on their own (counted).
pub const MAX_SESSIONS: usize = 262_144;
/// Transfer commands waiting for their data connection, and data connections waiting for their
/// command, per FTP session.
const MAX_QUEUED: usize = 16;

/// Files listed per session in volume alerts (`xfer.files`); beyond, counted.
pub const MAX_FILES: usize = 16;

/// A file a session moved, as a volume alert lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSummary {
    pub name: String,
    pub size: u64,
    /// Only when the whole file was seen.
    pub sha256: Option<String>,
}

impl Session {
    /// One more file the session moved.
    pub fn add_file(&mut self, f: FileSummary) {
        if self.files.len() < MAX_FILES {
            self.files.push(f);
        } else {
            self.files_more += 1;
        }
    }
}

/// An FTP transfer command.
#[derive(Clone, Debug)]
pub struct FtpCmd {
    pub command: &'static str,
    pub file: String,
    /// STOR/STOU/APPE: the control client sends.
    pub upload: bool,
    /// REST offset: the transfer starts there.
    pub offset: u64,
}
/// A flow in the worker's table: (handle, flow id), checked before use.
pub type FlowRef = (u32, u64);

#[derive(Debug)]
pub struct Session {
    pub proto: &'static str,
    /// The internal and external ends of the flow that started the session, when it crosses the
    /// boundary that way.
    pub internal: Option<Addr>,
    pub external: Option<Addr>,
    pub vlan: u16,
    /// Internal → external payload bytes of every flow of the session so far.
    pub outbound: u64,
    /// Signature ids already raised for this session.
    pub alerted: Vec<Sid>,
    /// Live flows and pending expectations that refer to the session.
    refs: u32,
    /// Live flows of the session (handle, flow id): how many are left, and where a session pcap
    /// finds their rings without a walk over the whole flow table.
    members: Vec<FlowRef>,
    /// The session's volume went to its host pair's roll-up.
    rolled_up: bool,
    /// Files the session moved so far (the first [`MAX_FILES`]), and how many more.
    pub files: Vec<FileSummary>,
    pub files_more: u64,
    /// FTP: transfer commands not yet given a data connection (command, file, upload).
    queued: VecDeque<FtpCmd>,
    /// FTP: data connections opened before their command (flow handle, flow id).
    waiting: VecDeque<FlowRef>,
}

#[derive(Default)]
pub struct Sessions {
    map: FxHashMap<u64, Session>,
    pub stats: SessionStats,
}

/// What an expectation carries until its flow arrives.
#[derive(Clone, Debug)]
pub struct Pending {
    pub session: u64,
    pub parent: u64,
    pub kind: PendingKind,
}

#[derive(Clone, Debug)]
pub enum PendingKind {
    FtpData {
        control_client: Addr,
        /// A standing expectation of an FTP channel gone TLS (no readable announcement).
        heuristic: bool,
        /// Not announced at all (the announcement was missed): inferred from the control
        /// channel's activity between the same two hosts.
        inferred: bool,
    },
    Tftp {
        request: Box<Request>,
        /// The request flow, to tell it the transfer moved on (handle, flow id).
        request_flow: (u32, u64),
    },
}

impl Sessions {
    /// Opens a session (or refers to an existing one) for one more flow or expectation. False when
    /// the table is full.
    pub fn start(
        &mut self,
        id: u64,
        proto: &'static str,
        internal: Option<Addr>,
        external: Option<Addr>,
        vlan: u16,
    ) -> bool {
        if let Some(s) = self.map.get_mut(&id) {
            s.refs += 1;
            return true;
        }
        if self.map.len() >= MAX_SESSIONS {
            self.stats.refused += 1;
            return false;
        }
        self.stats.created += 1;
        self.map.insert(
            id,
            Session {
                proto,
                internal,
                external,
                vlan,
                outbound: 0,
                alerted: Vec::new(),
                refs: 1,
                rolled_up: false,
                files: Vec::new(),
                files_more: 0,
                queued: VecDeque::new(),
                waiting: VecDeque::new(),
                members: Vec::new(),
            },
        );
        true
    }

    /// One more reference to an existing session.
    pub fn hold(&mut self, id: u64) -> bool {
        match self.map.get_mut(&id) {
            Some(s) => {
                s.refs += 1;
                true
            }
            None => false,
        }
    }

    /// A flow or expectation of the session went away; the session ends with its last reference
    /// and is returned.
    pub fn drop_ref(&mut self, id: u64) -> Option<Session> {
        let s = self.map.get_mut(&id)?;
        s.refs = s.refs.saturating_sub(1);
        if s.refs == 0 {
            return self.map.remove(&id);
        }
        None
    }

    /// A flow of the session ended. When it was the last live flow, the session's volume is final
    /// for the roll-up (announced flows that never came do not matter): true then, once.
    pub fn flow_ended(&mut self, id: u64, flow_id: u64) -> bool {
        let Some(s) = self.map.get_mut(&id) else {
            return false;
        };
        s.members.retain(|m| m.1 != flow_id);
        if s.members.is_empty() && !s.rolled_up {
            s.rolled_up = true;
            return true;
        }
        false
    }

    /// A flow joined the session.
    pub fn flow_joined(&mut self, id: u64, flow: FlowRef) {
        if let Some(s) = self.map.get_mut(&id) {
            s.members.push(flow);
        }
    }

    /// The live flows of session `id` (handle, flow id).
    pub fn members(&self, id: u64) -> &[FlowRef] {
        self.map.get(&id).map_or(&[], |s| &s.members)
    }

    pub fn get(&self, id: u64) -> Option<&Session> {
        self.map.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Session> {
        self.map.get_mut(&id)
    }

    /// An FTP transfer command: the data connection waiting for it, if one is, else queued.
    pub fn ftp_command(&mut self, id: u64, cmd: FtpCmd) -> Option<(FlowRef, FtpCmd)> {
        let s = self.map.get_mut(&id)?;
        if let Some(w) = s.waiting.pop_front() {
            return Some((w, cmd));
        }
        if s.queued.len() >= MAX_QUEUED {
            s.queued.pop_front();
            self.stats.queue_limit_hits += 1;
        }
        s.queued.push_back(cmd);
        None
    }

    /// A data connection linked after the fact (by inference): the command queued for it, if any;
    /// it does not wait for a later one (that one has a connection of its own).
    pub fn ftp_data_inferred(&mut self, id: u64) -> Option<FtpCmd> {
        self.map.get_mut(&id)?.queued.pop_front()
    }

    /// A data connection of the session opened: the command queued for it, if any, else it waits.
    pub fn ftp_data_opened(&mut self, id: u64, flow: FlowRef) -> Option<FtpCmd> {
        let s = self.map.get_mut(&id)?;
        if let Some(c) = s.queued.pop_front() {
            return Some(c);
        }
        if s.waiting.len() >= MAX_QUEUED {
            s.waiting.pop_front();
            self.stats.queue_limit_hits += 1;
        }
        s.waiting.push_back(flow);
        None
    }
}

/// How long an FTP control connection's word that a data connection is in use (a transfer command,
/// a 125/150/226 reply, an announcement that could not be read) links an unannounced connection
/// between the same two hosts, in packet time.
pub const INFER_WINDOW_US: i64 = 60_000_000;
/// Host pairs whose FTP activity is remembered, per worker; beyond, the stalest is forgotten
/// (counted).
pub const MAX_FTP_ACTIVITY: usize = 4096;
/// Unannounced, unidentified TCP connections waiting for FTP activity between their hosts, per
/// worker; beyond, the oldest is forgotten (counted).
pub const MAX_ORPHANS: usize = 4096;

/// Two hosts (in a fixed order) and the VLAN: what a control connection and its data connections
/// share whoever opened them.
pub type PairKey = (Addr, Addr, u16);

pub fn pair_key(a: Addr, b: Addr, vlan: u16) -> PairKey {
    if a <= b {
        (a, b, vlan)
    } else {
        (b, a, vlan)
    }
}

/// The latest data-connection activity an FTP control connection showed.
#[derive(Clone, Copy, Debug)]
pub struct Activity {
    pub session: u64,
    /// The control connection's flow id.
    pub parent: u64,
    pub control_client: Addr,
    pub at_us: i64,
}

/// Evidence for FTP data connections whose announcement was missed (the capture started after it,
/// or a short snap length cut the 227 reply): the control connections' activity by host pair, and
/// the unannounced connections no fingerprint placed, waiting for such activity. Both bounded.
#[derive(Default)]
pub struct Inference {
    activity: FxHashMap<PairKey, Activity>,
    orphans: VecDeque<(PairKey, FlowRef)>,
    /// Activity or waiting entries forgotten because their table was full.
    pub evicted: u64,
}

impl Inference {
    /// A control connection showed data-connection activity. Each entry holds one reference on
    /// its session (taken by the caller), so a data connection that ends after its control
    /// connection can still join it; the sessions of entries replaced or forgotten are pushed to
    /// `release` for the caller to drop.
    pub fn activity(&mut self, pair: PairKey, a: Activity, release: &mut Vec<u64>) {
        if !self.activity.contains_key(&pair) && self.activity.len() >= MAX_FTP_ACTIVITY {
            let now = a.at_us;
            self.activity.retain(|_, x| {
                let keep = now.saturating_sub(x.at_us) <= INFER_WINDOW_US;
                if !keep {
                    release.push(x.session);
                }
                keep
            });
            if self.activity.len() >= MAX_FTP_ACTIVITY {
                if let Some((&k, _)) = self.activity.iter().min_by_key(|(_, x)| x.at_us) {
                    if let Some(old) = self.activity.remove(&k) {
                        release.push(old.session);
                    }
                }
                self.evicted += 1;
            }
        }
        if let Some(old) = self.activity.insert(pair, a) {
            release.push(old.session);
        }
    }

    /// The activity between two hosts within the window around `now_us`, if any.
    pub fn recent(&self, pair: &PairKey, now_us: i64) -> Option<Activity> {
        self.activity
            .get(pair)
            .filter(|a| now_us.saturating_sub(a.at_us).abs() <= INFER_WINDOW_US)
            .copied()
    }

    /// An unannounced connection waits for activity between its hosts.
    pub fn orphan(&mut self, pair: PairKey, flow: FlowRef) {
        if self.orphans.len() >= MAX_ORPHANS {
            self.orphans.pop_front();
            self.evicted += 1;
        }
        self.orphans.push_back((pair, flow));
    }

    /// The connections waiting between these two hosts, taken out of the list.
    pub fn take_orphans(&mut self, pair: &PairKey, out: &mut Vec<FlowRef>) {
        if self.orphans.is_empty() {
            return;
        }
        self.orphans.retain(|(p, f)| {
            if p == pair {
                out.push(*f);
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(session: u64, at_us: i64) -> Activity {
        Activity {
            session,
            parent: session,
            control_client: Addr::v4([10, 0, 0, 1]),
            at_us,
        }
    }

    fn pair(n: u32) -> PairKey {
        pair_key(
            Addr::v4([10, 0, 0, 1]),
            Addr::v4(n.wrapping_add(0xc633_6400).to_be_bytes()),
            0,
        )
    }

    #[test]
    fn pair_key_ignores_who_opened() {
        let (a, b) = (Addr::v4([10, 0, 0, 1]), Addr::v4([198, 51, 100, 10]));
        assert_eq!(pair_key(a, b, 7), pair_key(b, a, 7));
        assert_ne!(pair_key(a, b, 7), pair_key(a, b, 8));
    }

    #[test]
    fn activity_is_recent_for_the_window_and_releases_what_it_replaces() {
        let mut inf = Inference::default();
        let mut release = Vec::new();
        inf.activity(pair(1), act(5, 1_000), &mut release);
        assert!(release.is_empty());
        assert_eq!(
            inf.recent(&pair(1), 1_000 + INFER_WINDOW_US)
                .unwrap()
                .session,
            5
        );
        assert!(inf.recent(&pair(1), 1_001 + INFER_WINDOW_US).is_none());
        assert!(inf.recent(&pair(2), 1_000).is_none());
        // Each entry holds one session reference: the one it replaces goes back.
        inf.activity(pair(1), act(5, 2_000), &mut release);
        assert_eq!(release, vec![5]);
    }

    #[test]
    fn tables_are_bounded_and_count_what_they_forget() {
        let mut inf = Inference::default();
        let mut release = Vec::new();
        for i in 0..MAX_FTP_ACTIVITY as u32 {
            inf.activity(pair(i), act(u64::from(i) + 1, 0), &mut release);
        }
        assert!(release.is_empty());
        // Full of entries still in their window: the stalest goes, counted, its session released.
        inf.activity(pair(u32::MAX), act(99_999, 1), &mut release);
        assert_eq!(release.len(), 1);
        assert_eq!(inf.evicted, 1);
        assert_eq!(inf.activity.len(), MAX_FTP_ACTIVITY);
        // Long after: every expired entry is swept at once.
        release.clear();
        inf.activity(
            pair(u32::MAX - 1),
            act(7, 10 * INFER_WINDOW_US),
            &mut release,
        );
        assert_eq!(release.len(), MAX_FTP_ACTIVITY);
        assert_eq!(inf.activity.len(), 1);

        for i in 0..=MAX_ORPHANS as u32 {
            inf.orphan(pair(i % 2), (i, u64::from(i)));
        }
        assert_eq!(inf.evicted, 2);
        let mut got = Vec::new();
        inf.take_orphans(&pair(1), &mut got);
        assert_eq!(got.len(), MAX_ORPHANS / 2);
        assert!(got.iter().all(|(h, _)| h % 2 == 1));
        got.clear();
        inf.take_orphans(&pair(1), &mut got);
        assert!(got.is_empty());
    }
}
