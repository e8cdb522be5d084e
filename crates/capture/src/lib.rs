//! Packet sources and the road from a captured frame to a worker's queue.
//!
//! Owns: reading capture files (libpcap, pcap and pcapng) as one timeline; decoding each frame once
//! ([`Ingest`]); reassembling IP fragments before dispatch (the defragmenter lives here rather than in
//! the stream crate because non-first fragments carry no ports, so they can only be sent to the right
//! worker once whole); batching packets into bounded per-worker queues by symmetric flow hash
//! ([`Dispatcher`]); packet-time ticks that drive timeouts identically whatever the number of workers.
//! Must not know: flows' contents, protocols, networks.
//! Invariants: payload bytes are copied once into a reusable batch buffer; batches are recycled, so the
//! steady state allocates nothing per packet; every frame that makes no packet is counted by reason.

#![deny(unsafe_code)]

mod batch;
mod defrag;
mod dispatch;
mod ingest;
mod offline;

pub use batch::{Batch, FrameRef, Item, PacketRec};
pub use defrag::{Defrag, DefragLimits, DefragStats, DEFAULT_MAX_PER_SOURCE};
pub use dispatch::{shard_hash, Dispatcher, Mode, ShardFn};
pub use ingest::{Ingest, IngestStats};
pub mod live;
pub use offline::{
    first_packet_us, order_by_first_packet, read_files, read_files_progress, FileProblem,
    ReadOutcome, ReadProgress, MAX_TS_SECS, PROGRESS_EVERY,
};
