//! Capture files with hostile headers, read through the real file readers.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use xferwatch_capture::{read_files, DefragLimits, Dispatcher, Ingest, Mode, MAX_TS_SECS};

/// An Ethernet + IPv4 + UDP frame, 42 bytes.
fn udp_frame() -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(&[
        0x45, 0, 0, 28, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4
        0x30, 0x39, 0x00, 0x45, 0, 8, 0, 0, // UDP 12345 -> 69, no payload
    ]);
    f
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let len = (12 + body.len()) as u32;
    let mut b = kind.to_le_bytes().to_vec();
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(body);
    b.extend_from_slice(&len.to_le_bytes());
    b
}

/// A little-endian pcapng file of Ethernet frames with the given 64-bit timestamps (microseconds).
fn pcapng(timestamps: &[u64]) -> Vec<u8> {
    let mut shb = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]); // version 1.0
    shb.extend_from_slice(&u64::MAX.to_le_bytes()); // section length unknown
    let mut out = block(0x0A0D_0D0A, &shb);
    let mut idb = 1u16.to_le_bytes().to_vec(); // LINKTYPE_ETHERNET
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend(block(1, &idb));
    let frame = udp_frame();
    for &ts in timestamps {
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&frame);
        while !epb.len().is_multiple_of(4) {
            epb.push(0);
        }
        out.extend(block(6, &epb));
    }
    out
}

/// Reads `bytes` as a capture file; the ingest is returned once every packet went through it.
fn read(bytes: &[u8]) -> Ingest {
    let dir = std::env::temp_dir().join(format!("xferwatch-capture-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("input.pcapng");
    std::fs::write(&path, bytes).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let (_recycle_tx, recycle) = crossbeam_channel::unbounded();
    let dispatcher = Dispatcher::new(Mode::Replay, Arc::new(|_, _, _| 0), vec![tx], recycle);
    let mut ingest = Ingest::new(dispatcher, DefragLimits::default());
    let outcome = read_files(&[&path], &mut ingest, &AtomicBool::new(false), |_| {});
    ingest.finish();
    drop(rx);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(outcome.files_read, 1, "{:?}", outcome.problems);
    ingest
}

/// Found by the `pipeline` fuzz target: a pcapng timestamp of 2^64-1 µs made the seconds × 10^6
/// product overflow (a panic with overflow checks, time -1 µs without).
#[test]
fn pcapng_timestamp_beyond_any_date_is_clamped_not_overflowed() {
    let ingest = read(&pcapng(&[1_700_000_000_000_000, u64::MAX]));
    assert_eq!(ingest.stats.frames, 2);
    assert_eq!(ingest.first_ts_us(), 1_700_000_000_000_000);
    // u64::MAX µs is 551,615 µs past a whole second.
    assert_eq!(ingest.last_ts_us(), MAX_TS_SECS * 1_000_000 + 551_615);
}

/// A classic little-endian pcap (microseconds) of the same frame at the given times (s, µs).
fn pcap(times: &[(u32, u32)]) -> Vec<u8> {
    let mut out = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let frame = udp_frame();
    for &(s, us) in times {
        for v in [s, us, frame.len() as u32, frame.len() as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&frame);
    }
    out
}

/// Files are ordered by their first packet, whatever their names and format; equal times keep
/// the order given; files with no first packet come first. Read in that order, no time is
/// clamped; read as named, the older file's packets are.
#[test]
fn files_are_ordered_by_their_first_packet() {
    use xferwatch_capture::{first_packet_us, order_by_first_packet};
    let dir = std::env::temp_dir().join(format!("xferwatch-order-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = [
        (
            "a-late.pcap",
            pcap(&[(1_700_000_300, 5), (1_700_000_301, 0)]),
        ),
        (
            "b-early.pcapng",
            pcapng(&[1_700_000_100_000_007, 1_700_000_100_000_007]),
        ),
        ("c-same-as-b.pcap", pcap(&[(1_700_000_100, 7)])),
        ("d-empty.pcap", pcap(&[])),
        ("e-text.pcap", b"not a capture at all, just text".to_vec()),
    ];
    let paths: Vec<std::path::PathBuf> = files
        .iter()
        .map(|(n, b)| {
            let p = dir.join(n);
            std::fs::write(&p, b).unwrap();
            p
        })
        .collect();
    assert_eq!(first_packet_us(&paths[0]), Some(1_700_000_300_000_005));
    assert_eq!(first_packet_us(&paths[1]), Some(1_700_000_100_000_007));
    assert_eq!(first_packet_us(&paths[3]), None);
    assert_eq!(first_packet_us(&paths[4]), None);
    assert_eq!(first_packet_us(&dir.join("missing.pcap")), None);
    let names = |v: &[std::path::PathBuf]| -> Vec<String> {
        v.iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let ordered = order_by_first_packet(&paths);
    assert_eq!(
        names(&ordered),
        [
            "d-empty.pcap",
            "e-text.pcap",
            "b-early.pcapng",
            "c-same-as-b.pcap",
            "a-late.pcap"
        ]
    );
    let mut swapped = paths.clone();
    swapped.swap(1, 2);
    assert_eq!(
        names(&order_by_first_packet(&swapped))[2..4],
        ["c-same-as-b.pcap", "b-early.pcapng"],
        "equal times keep the order given"
    );
    let clamped = |inputs: &[std::path::PathBuf]| {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (_recycle_tx, recycle) = crossbeam_channel::unbounded();
        let dispatcher = Dispatcher::new(Mode::Replay, Arc::new(|_, _, _| 0), vec![tx], recycle);
        let mut ingest = Ingest::new(dispatcher, DefragLimits::default());
        read_files(inputs, &mut ingest, &AtomicBool::new(false), |_| {});
        ingest.finish();
        drop(rx);
        (ingest.stats.frames, ingest.stats.time_clamped)
    };
    assert_eq!(clamped(&ordered), (5, 0));
    // As named, the three packets of b and c are older than a's.
    assert_eq!(clamped(&paths), (5, 3));
    let _ = std::fs::remove_dir_all(&dir);
}
