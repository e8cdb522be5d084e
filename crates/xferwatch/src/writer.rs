//! The writer: merges the workers' ordered event streams by [`OrderKey`](crate::worker::OrderKey) and
//! writes EVE lines. An event is written once no worker can still produce an earlier one, so the file
//! is identical for any number of workers and the writer holds only events not yet safe to write.
//!
//! It also keeps the table of FTP data connections announced by control channels. Control and data
//! flows usually live on different workers; matching here, in the merged packet order, makes the
//! link deterministic and needs no lock on the workers' hot path.

use crate::app::Expectation;
use crate::worker::{Ev, OrderKey, Out, WorkerTotals};
use crossbeam_channel::Receiver;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;

/// How long an announced data connection is expected, in packet time.
const EXPECT_TTL_US: i64 = 600_000_000;
/// A data connection may be seen a little before the line announcing it was parsed.
const EXPECT_EARLY_US: i64 = 60_000_000;
/// Most announcements remembered; the oldest are dropped (counted) beyond.
pub const MAX_EXPECTATIONS: usize = 65_536;

#[derive(Default)]
pub struct Expectations {
    by_port: HashMap<u16, VecDeque<Expectation>>,
    len: usize,
    pub created: u64,
    pub matched: u64,
    pub dropped: u64,
}

impl Expectations {
    fn insert(&mut self, x: Expectation) {
        let q = self.by_port.entry(x.port).or_default();
        // Expired announcements for this port go first.
        while q.front().is_some_and(|o| o.ts_us + EXPECT_TTL_US < x.ts_us) {
            q.pop_front();
            self.len -= 1;
        }
        q.push_back(x);
        self.len += 1;
        self.created += 1;
        if self.len > MAX_EXPECTATIONS {
            // Rare (an announcement flood): drop the port with the most announcements to stay bounded.
            if let Some(port) = self
                .by_port
                .iter()
                .max_by_key(|(_, q)| q.len())
                .map(|(p, _)| *p)
            {
                let n = self.by_port.remove(&port).map(|q| q.len()).unwrap_or(0);
                self.len -= n;
                self.dropped += n as u64;
            }
        }
    }

    fn find(&mut self, alt: &crate::worker::DataAlt) -> Option<u64> {
        let q = self.by_port.get(&alt.server.port)?;
        let hit = q.iter().rev().find(|e| {
            let pair = e.listener == alt.server.addr && e.peer == alt.client;
            let announced = e.announced == Some(alt.server.addr);
            (pair || announced)
                && alt.start_us + EXPECT_EARLY_US >= e.ts_us
                && alt.start_us <= e.ts_us + EXPECT_TTL_US
        })?;
        self.matched += 1;
        Some(hit.parent_flow_id)
    }
}

pub struct Merged {
    pub totals: Vec<WorkerTotals>,
    pub events: u64,
    /// Flows re-labelled as FTP data channels: +1 ftp-data, -1 the label the worker gave.
    pub proto_corrections: BTreeMap<&'static str, i64>,
    pub expectations: Expectations,
}

pub fn run(rx: Receiver<Out>, workers: usize, out: &mut dyn Write) -> std::io::Result<Merged> {
    let mut queues: Vec<VecDeque<(OrderKey, Ev)>> = (0..workers).map(|_| VecDeque::new()).collect();
    let mut marks = vec![0u64; workers];
    let mut totals: Vec<Option<WorkerTotals>> = vec![None; workers];
    let mut written = 0u64;
    let mut finished = 0usize;
    let mut expect = Expectations::default();
    let mut corrections: BTreeMap<&'static str, i64> = BTreeMap::new();
    while finished < workers {
        let Ok(msg) = rx.recv() else { break };
        let w = msg.worker;
        queues[w].extend(msg.events);
        marks[w] = marks[w].max(msg.watermark);
        if let Some(t) = msg.done {
            totals[w] = Some(t);
            marks[w] = u64::MAX;
            finished += 1;
        }
        loop {
            // The smallest head among workers…
            let mut best: Option<(OrderKey, usize)> = None;
            for (i, q) in queues.iter().enumerate() {
                if let Some((k, _)) = q.front() {
                    if best.is_none_or(|(bk, _)| *k < bk) {
                        best = Some((*k, i));
                    }
                }
            }
            let Some((key, i)) = best else { break };
            // …is safe once every worker with nothing queued has moved past its packet number.
            let safe = queues
                .iter()
                .zip(&marks)
                .all(|(q, m)| !q.is_empty() || key.0 <= *m);
            if !safe {
                break;
            }
            let Some((_, ev)) = queues[i].pop_front() else {
                break;
            };
            match ev {
                Ev::Expect(x) => expect.insert(x),
                Ev::Flow { line, alt } => {
                    let parent = alt.as_ref().and_then(|a| expect.find(a));
                    match (parent, alt) {
                        (Some(parent), Some(a)) => {
                            let fixed = a.line.replacen(
                                "\"parent_flow_id\":0",
                                &format!("\"parent_flow_id\":{parent}"),
                                1,
                            );
                            out.write_all(fixed.as_bytes())?;
                            *corrections.entry("ftp-data").or_default() += 1;
                            *corrections.entry(a.old_proto).or_default() -= 1;
                        }
                        _ => out.write_all(line.as_bytes())?,
                    }
                    written += 1;
                }
            }
        }
    }
    out.flush()?;
    Ok(Merged {
        totals: totals.into_iter().map(|t| t.unwrap_or_default()).collect(),
        events: written,
        proto_corrections: corrections,
        expectations: expect,
    })
}
