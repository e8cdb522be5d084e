//! The output contract: EVE JSON lines with Suricata's field names (everything xferwatch adds lives under
//! the `xfer` object), documented in `docs/events.md`.
//!
//! Owns: the shape of each event and its serialisation. Must not know: how facts were obtained.
//! Invariants: every line is one valid JSON object; strings are escaped (packet bytes may be anything);
//! numbers are integers; timestamps are packet time in Suricata's format (`…T…+0000`).
//! Serialisation writes into a caller's `String`, so a worker reuses one buffer.

#![forbid(unsafe_code)]

mod community_id;
mod json;
mod records;

pub use community_id::{community_id_v1, COMMUNITY_ID_V1_LEN};
pub use json::{civil_from_days, push_ip, push_u64, timestamp, JsonObject};
pub use records::{write_event, write_flow, write_stats, EventHeader, FlowRecord, StatsRecord};
