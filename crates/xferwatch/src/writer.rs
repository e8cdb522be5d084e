//! The writer: merges the workers' ordered event streams by [`OrderKey`](crate::worker::OrderKey) and
//! writes EVE lines. An event is written once no worker can still produce an earlier one, so the file
//! is identical for any number of workers and the writer holds only events not yet safe to write.

use crate::worker::{Ev, OrderKey, Out, WorkerTotals};
use crossbeam_channel::Receiver;
use std::collections::VecDeque;
use std::io::Write;

pub struct Merged {
    pub totals: Vec<WorkerTotals>,
    pub events: u64,
}

pub fn run(rx: Receiver<Out>, workers: usize, out: &mut dyn Write) -> std::io::Result<Merged> {
    let mut queues: Vec<VecDeque<(OrderKey, Ev)>> = (0..workers).map(|_| VecDeque::new()).collect();
    let mut marks = vec![0u64; workers];
    let mut totals: Vec<Option<WorkerTotals>> = vec![None; workers];
    let mut written = 0u64;
    let mut finished = 0usize;
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
            let Some((_, line)) = queues[i].pop_front() else {
                break;
            };
            out.write_all(line.as_bytes())?;
            written += 1;
        }
    }
    out.flush()?;
    Ok(Merged {
        totals: totals.into_iter().map(|t| t.unwrap_or_default()).collect(),
        events: written,
    })
}
