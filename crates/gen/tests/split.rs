//! `xferwatch-split` on the bundled captures: every packet lands in exactly one share, both
//! directions of every IP pair in the same one; the split is deterministic; bad inputs are
//! refused with a message, never a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use xferwatch_gen::pcap::Reader;
use xferwatch_gen::split::{ip_pair, share_path, split};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xferwatch-split-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bundled() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("pcaps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    assert!(v.len() >= 10, "{v:?}");
    v
}

/// (time µs, frame) of every record, with the link type.
fn records(path: &Path) -> (u32, Vec<(u64, Vec<u8>)>) {
    let buf = std::fs::read(path).unwrap();
    let mut r = Reader::new(&buf).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        out.push((rec.ts_us, rec.data.to_vec()));
    }
    (r.linktype, out)
}

/// An unordered pair of addresses.
type Pair = (Vec<u8>, Vec<u8>);

fn pair_key(frame: &[u8]) -> Option<Pair> {
    let (a, b) = ip_pair(1, frame)?;
    Some(if a <= b {
        (a.to_vec(), b.to_vec())
    } else {
        (b.to_vec(), a.to_vec())
    })
}

/// Splits `inputs` into `n` shares under `dir` and checks that every packet is in exactly one
/// share and every IP pair in one share; returns the packets per share and the number of pairs
/// seen in both directions.
fn check_split(inputs: &[PathBuf], n: usize, dir: &Path) -> (Vec<u64>, usize) {
    let mut want: BTreeMap<(u64, Vec<u8>), u32> = BTreeMap::new();
    let mut total = 0u64;
    for p in inputs {
        let (lt, recs) = records(p);
        assert_eq!(lt, 1);
        for r in recs {
            *want.entry(r).or_default() += 1;
            total += 1;
        }
    }
    let prefix = dir.join("share");
    let s = split(inputs, n, &prefix).unwrap();
    assert_eq!(s.packets.iter().sum::<u64>(), total);
    assert_eq!(s.files.len(), n);

    let mut got: BTreeMap<(u64, Vec<u8>), u32> = BTreeMap::new();
    let mut pair_shares: BTreeMap<Pair, BTreeSet<usize>> = BTreeMap::new();
    let mut directions: BTreeMap<Pair, BTreeSet<Vec<u8>>> = BTreeMap::new();
    for i in 0..n {
        let path = share_path(&prefix, i);
        assert_eq!(path, s.files[i]);
        let (lt, recs) = records(&path);
        assert_eq!(lt, 1, "the link type is kept");
        assert_eq!(recs.len() as u64, s.packets[i]);
        // The inputs' times are merged in order.
        assert!(
            recs.windows(2).all(|w| w[0].0 <= w[1].0),
            "share {i} out of order"
        );
        for (ts, frame) in recs {
            if let Some(k) = pair_key(&frame) {
                pair_shares.entry(k.clone()).or_default().insert(i);
                let src = ip_pair(1, &frame).unwrap().0.to_vec();
                directions.entry(k).or_default().insert(src);
            }
            *got.entry((ts, frame)).or_default() += 1;
        }
    }
    assert_eq!(got, want, "every packet exactly once");
    for (k, shares) in &pair_shares {
        assert_eq!(shares.len(), 1, "pair {k:?} in shares {shares:?}");
    }
    let both_ways = directions.values().filter(|d| d.len() == 2).count();
    (s.packets, both_ways)
}

#[test]
fn bundled_captures_into_three_shares() {
    let inputs = bundled();
    let dir = tmpdir("three");
    let (packets, both_ways) = check_split(&inputs, 3, &dir);
    // The bundled captures hold three IP pairs (one IPv6), each seen both ways.
    assert_eq!(both_ways, 3, "{packets:?}");
    assert!(
        packets.iter().filter(|&&n| n > 0).count() >= 2,
        "{packets:?}"
    );

    // The binary writes the same bytes: the split is deterministic.
    let prefix2 = dir.join("again");
    let out = Command::new(env!("CARGO_BIN_EXE_xferwatch-split"))
        .args(["--shares", "3", "-o"])
        .arg(&prefix2)
        .args(&inputs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..3 {
        assert_eq!(
            std::fs::read(share_path(&dir.join("share"), i)).unwrap(),
            std::fs::read(share_path(&prefix2, i)).unwrap()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A generated capture with many hosts spreads over every share.
#[test]
fn generated_capture_into_four_shares() {
    let dir = tmpdir("gen");
    let input = dir.join("mixed.pcap");
    let cfg = xferwatch_gen::Config {
        profile: xferwatch_gen::Profile::Mixed,
        bytes: 3_000_000,
        seed: 7,
        hosts: Some(40),
        flows: None,
        concurrency: None,
        threshold: xferwatch_gen::DEFAULT_THRESHOLD,
    };
    xferwatch_gen::generate(&cfg, std::fs::File::create(&input).unwrap()).unwrap();
    let (packets, both_ways) = check_split(&[input], 4, &dir);
    assert!(packets.iter().all(|&n| n > 0), "{packets:?}");
    assert!(both_ways >= 20, "{both_ways} pairs seen both ways");
    let _ = std::fs::remove_dir_all(&dir);
}

fn pcap_file(path: &Path, linktype: u32, records: &[&[u8]]) {
    let mut b = Vec::new();
    b.extend(0xa1b2_c3d4u32.to_le_bytes());
    b.extend([2, 0, 4, 0]);
    b.extend([0u8; 8]);
    b.extend(65_535u32.to_le_bytes());
    b.extend(linktype.to_le_bytes());
    for (i, r) in records.iter().enumerate() {
        b.extend((i as u32).to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend((r.len() as u32).to_le_bytes());
        b.extend((r.len() as u32).to_le_bytes());
        b.extend(*r);
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn bad_inputs_are_refused_with_a_message() {
    let dir = tmpdir("bad");
    let raw = dir.join("raw.pcap");
    let mut ip = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0];
    ip.extend([10, 0, 0, 1, 10, 0, 0, 2]);
    pcap_file(&raw, 101, &[&ip, &[1, 2, 3]]);
    let ether = root().join("pcaps/tftp-options.pcap");
    let e = split(&[ether.clone(), raw.clone()], 2, &dir.join("x")).unwrap_err();
    assert!(
        e.contains("mixed link types") && e.contains("raw.pcap"),
        "{e}"
    );

    // Raw IP alone is fine; the non-IP record goes to share 0.
    let s = split(std::slice::from_ref(&raw), 2, &dir.join("raw")).unwrap();
    assert_eq!(s.packets.iter().sum::<u64>(), 2);
    assert_eq!(s.not_ip, 1);
    assert_eq!(s.linktype, 101);

    let ng = dir.join("x.pcapng");
    std::fs::write(
        &ng,
        [
            0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    )
    .unwrap();
    assert!(split(&[ng], 2, &dir.join("x"))
        .unwrap_err()
        .contains("pcapng"));
    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"hello").unwrap();
    assert!(split(std::slice::from_ref(&junk), 2, &dir.join("x")).is_err());
    assert!(split(std::slice::from_ref(&ether), 0, &dir.join("x")).is_err());
    assert!(split(&[dir.join("missing.pcap")], 2, &dir.join("x")).is_err());

    // A truncated last record ends the input; what came before is kept.
    let mut cut = std::fs::read(&raw).unwrap();
    cut.truncate(cut.len() - 2);
    let cutp = dir.join("cut.pcap");
    std::fs::write(&cutp, cut).unwrap();
    let s = split(&[cutp], 2, &dir.join("cut")).unwrap();
    assert_eq!(s.packets.iter().sum::<u64>(), 1);

    // A huge record length is corruption, not an allocation.
    let mut big = std::fs::read(&raw).unwrap();
    big[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let bigp = dir.join("big.pcap");
    std::fs::write(&bigp, big).unwrap();
    assert!(split(&[bigp], 2, &dir.join("big"))
        .unwrap_err()
        .contains("corrupt"));

    let out = Command::new(env!("CARGO_BIN_EXE_xferwatch-split"))
        .args(["--shares", "2", "-o"])
        .arg(dir.join("y"))
        .arg(&ether)
        .arg(&raw)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mixed link types"));
    let _ = std::fs::remove_dir_all(&dir);
}
