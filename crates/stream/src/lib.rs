//! Flows: the bidirectional flow table with per-state timeouts and a hard size limit, and per-direction
//! TCP sequence accounting (each byte of the stream counted once, holes detected).
//!
//! Owns: flow lifetime (creation, TCP state from flags, close/linger, timeout, eviction), orientation
//! (client = SYN sender, else first sender, re-orientable), packet/byte/payload counters.
//! Also: the table of expected flows (announced by a parser, matched on a flow's first packet).
//! Must not know: any application protocol, port meaning, network or threshold. Per-flow application
//! state is the caller's type parameter `A`.
//! Invariants: memory is bounded by `max_flows` flows of fixed size plus `A`; time is whatever the caller
//! says (packet time in replay), so the same input gives the same flows; nothing panics on packet data.

// Denied, not forbidden: one function (`table::prefetch`, a cache hint that reads nothing) allows it.
#![deny(unsafe_code)]

mod expect;
mod index;
mod reassembly;
mod seq;
mod table;

pub use expect::{Expect, ExpectLimits, ExpectStats, Expectations, ListenerIs};
pub use reassembly::{Budget, Reassembler, MAX_PENDING_SEGMENTS};
pub use seq::{SeqTracker, MAX_SEQ_RANGES};
pub use table::{
    Dir, Emergency, EndReason, Flow, FlowState, FlowTable, FlowTableConfig, TableStats, Timeouts,
    MAX_EXPIRED_PER_CALL,
};
