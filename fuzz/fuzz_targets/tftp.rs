//! TFTP: the request parser on every datagram, and a transfer followed datagram by datagram in both
//! directions, started from the first datagram when it is a request (as a worker does), without
//! one otherwise (a transfer picked up in the middle).
//! Input: a record stream (bit 0 = from the requester).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xferwatch_fingerprint::is_tftp_request;
use xferwatch_parsers::tftp::{parse_request, Transfer};

fuzz_target!(|data: &[u8]| {
    let mut transfer: Option<Transfer> = None;
    for r in xferwatch_fuzz::records(data) {
        let req = parse_request(r.data);
        let _ = is_tftp_request(r.data);
        let t = transfer.get_or_insert_with(|| match &req {
            Some(q) => Transfer::new(q.write),
            None => Transfer::without_request(),
        });
        t.datagram(r.to_server(), r.data);
    }
});
