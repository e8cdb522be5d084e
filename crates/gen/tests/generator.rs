//! The generator on its own: determinism, pcap well-formedness, TCP sanity, and that its
//! expectations agree with the packets it wrote.

mod common;

use common::{decode, internal, Pkt};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::process::Command;
use xferwatch_gen::expect::{SID_FT_PORT, SID_LARGE, SID_PORT_PROTO};
use xferwatch_gen::{generate, Config, Outcome, Profile};

fn run(cfg: &Config) -> (Vec<u8>, Outcome) {
    generate(cfg, Vec::new()).expect("generate")
}

fn mixed(bytes: u64, seed: u64) -> Config {
    let mut c = Config::new(Profile::Mixed, bytes, seed);
    c.threshold = 1 << 20;
    c
}

fn many(bytes: u64, seed: u64, conc: usize) -> Config {
    let mut c = Config::new(Profile::ManyFlows, bytes, seed);
    c.concurrency = Some(conc);
    c.hosts = Some(400);
    c.threshold = 64 << 10;
    c
}

fn bulk(bytes: u64, seed: u64) -> Config {
    let mut c = Config::new(Profile::Bulk, bytes, seed);
    c.threshold = 2 << 20;
    c
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    for cfg in [
        mixed(4_000_000, 7),
        bulk(6_000_000, 7),
        many(3_000_000, 7, 3000),
    ] {
        let (a, oa) = run(&cfg);
        let (b, ob) = run(&cfg);
        assert!(a == b, "{:?}: same seed, different bytes", cfg.profile);
        assert_eq!(oa.json(&cfg), ob.json(&cfg));
        let mut other = cfg.clone();
        other.seed = 8;
        let (c, _) = run(&other);
        assert!(
            a != c,
            "{:?}: another seed gave the same bytes",
            cfg.profile
        );
    }
}

#[test]
fn cli_writes_identical_files() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gen-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let gen = |seed: &str, name: &str| {
        let pcap = dir.join(format!("{name}.pcap"));
        let json = dir.join(format!("{name}.json"));
        let st = Command::new(env!("CARGO_BIN_EXE_xferwatch-gen"))
            .args([
                "--profile",
                "mixed",
                "--bytes",
                "3MB",
                "--seed",
                seed,
                "--threshold",
                "1MiB",
                "-q",
            ])
            .arg("-o")
            .arg(&pcap)
            .arg("--expect")
            .arg(&json)
            .status()
            .expect("run xferwatch-gen");
        assert!(st.success());
        (std::fs::read(pcap).unwrap(), std::fs::read(json).unwrap())
    };
    let a = gen("11", "a");
    let b = gen("11", "b");
    let c = gen("12", "c");
    assert!(a.0 == b.0 && a.1 == b.1, "same seed, different output");
    assert!(a.0 != c.0, "different seeds, same capture");
    let doc: serde_json::Value = serde_json::from_slice(&a.1).unwrap();
    assert_eq!(doc["threshold_bytes"], 1 << 20);
    assert_eq!(doc["packets"].as_u64().unwrap(), {
        let pk = common::decode(&a.0, 0).unwrap();
        pk.len() as u64
    });
    // A bad size is refused.
    let st = Command::new(env!("CARGO_BIN_EXE_xferwatch-gen"))
        .args(["--bytes", "12 parsecs", "-o"])
        .arg(dir.join("x.pcap"))
        .output()
        .unwrap();
    assert!(!st.status.success());
}

/// A flow: (udp, lower endpoint, higher endpoint).
type Key = (bool, (IpAddr, u16), (IpAddr, u16));

/// Canonical key of a flow.
fn key(p: &Pkt) -> Key {
    let a = (p.src, p.sport);
    let b = (p.dst, p.dport);
    if a <= b {
        (p.udp, a, b)
    } else {
        (p.udp, b, a)
    }
}

fn well_formed(cfg: &Config) -> (Vec<Pkt>, Outcome) {
    let (buf, o) = run(cfg);
    let pk = decode(&buf, 64).unwrap_or_else(|e| panic!("{:?}: {e}", cfg.profile));
    assert_eq!(pk.len() as u64, o.packets);
    assert_eq!(
        pk.iter().map(|p| p.frame_len as u64).sum::<u64>(),
        o.frame_bytes
    );
    assert_eq!(buf.len() as u64, o.file_bytes);
    let flows: HashSet<_> = pk.iter().map(key).collect();
    assert_eq!(
        flows.len() as u64,
        o.expect.flows,
        "{:?}: flows",
        cfg.profile
    );
    assert_eq!(o.expect.by_app.values().sum::<u64>(), o.expect.flows);
    // Close to the size asked for.
    let want = cfg.bytes as f64;
    let got = o.file_bytes as f64;
    assert!(
        (got - want).abs() / want < 0.1,
        "{:?}: asked for {want} bytes, wrote {got}",
        cfg.profile
    );
    // Hosts in the documented ranges, some IPv6.
    for p in &pk {
        for a in [p.src, p.dst] {
            let ok = match a {
                IpAddr::V4(v) => {
                    let o = v.octets();
                    o[0] == 10 || o[..3] == [198, 51, 100] || o[..3] == [203, 0, 113]
                }
                IpAddr::V6(v) => {
                    let o = v.octets();
                    o[0] == 0xfd || o[..4] == [0x20, 0x01, 0x0d, 0xb8]
                }
            };
            assert!(ok, "address {a}");
        }
        assert!(
            internal(&p.src) != internal(&p.dst),
            "every flow crosses the boundary"
        );
    }
    (pk, o)
}

#[test]
fn pcap_is_well_formed() {
    let (pk, _) = well_formed(&mixed(8_000_000, 3));
    assert!(pk.iter().any(|p| p.v6), "some IPv6");
    assert!(pk.iter().any(|p| p.len == 1448), "MSS-sized segments");
    assert!(
        pk.iter().any(|p| !p.udp && p.len > 0 && p.len < 200),
        "small segments"
    );
    well_formed(&many(6_000_000, 3, 4000));
    well_formed(&bulk(12_000_000, 3));
}

/// Checks every TCP connection: handshake first, sequence and acknowledgement continuity, an
/// acknowledgement at least every second data segment, FIN teardown, no 4-tuple reused; and
/// that every TFTP transfer numbers its blocks in order.
fn tcp_sanity(pk: &[Pkt]) -> usize {
    struct T {
        client: (IpAddr, u16),
        next: [u32; 2],
        state: u8,
        fin: [bool; 2],
        unacked: [u32; 2],
    }
    let mut flows: HashMap<_, T> = HashMap::new();
    let mut blocks: HashMap<_, u16> = HashMap::new();
    for (n, p) in pk.iter().enumerate() {
        if p.udp {
            if p.head.len() >= 4 && p.head[0] == 0 && p.head[1] == 3 {
                let b = u16::from_be_bytes([p.head[2], p.head[3]]);
                let k = key(p);
                let prev = blocks.insert(k, b).unwrap_or(0);
                assert_eq!(
                    b,
                    prev.wrapping_add(1),
                    "packet {n}: TFTP block out of order"
                );
            }
            continue;
        }
        let k = key(p);
        let (syn, ack, fin) = (p.flags & 2 != 0, p.flags & 0x10 != 0, p.flags & 1 != 0);
        let t = match flows.get_mut(&k) {
            None => {
                assert!(
                    syn && !ack,
                    "packet {n}: connection does not start with a SYN"
                );
                flows.insert(
                    k,
                    T {
                        client: (p.src, p.sport),
                        next: [p.seq.wrapping_add(1), 0],
                        state: 0,
                        fin: [false; 2],
                        unacked: [0; 2],
                    },
                );
                continue;
            }
            Some(t) => t,
        };
        let side = usize::from((p.src, p.sport) != t.client);
        assert!(
            t.state < 4,
            "packet {n}: packet after the teardown (4-tuple reused?)"
        );
        match t.state {
            0 => {
                assert!(side == 1 && syn && ack, "packet {n}: expected SYN/ACK");
                assert_eq!(p.ack, t.next[0], "packet {n}: SYN/ACK acknowledgement");
                t.next[1] = p.seq.wrapping_add(1);
                t.state = 1;
                continue;
            }
            1 => {
                assert!(
                    side == 0 && ack && !syn && p.len == 0,
                    "packet {n}: expected the handshake's ACK"
                );
                assert_eq!(
                    (p.seq, p.ack),
                    (t.next[0], t.next[1]),
                    "packet {n}: handshake ACK numbers"
                );
                t.state = 2;
                continue;
            }
            _ => {}
        }
        assert!(!syn, "packet {n}: SYN inside a connection");
        assert!(ack, "packet {n}: no ACK flag");
        assert_eq!(p.seq, t.next[side], "packet {n}: sequence gap or overlap");
        assert_eq!(
            p.ack,
            t.next[1 - side],
            "packet {n}: acknowledgement number"
        );
        assert!(
            !(t.fin[side] && (p.len > 0 || fin)),
            "packet {n}: data after FIN"
        );
        if p.len > 0 {
            t.unacked[side] += 1;
            assert!(
                t.unacked[side] <= 2,
                "packet {n}: three segments without an ACK"
            );
        }
        t.unacked[1 - side] = 0;
        t.next[side] = t.next[side].wrapping_add(p.len as u32 + u32::from(fin));
        if fin {
            t.fin[side] = true;
        } else if t.fin == [true, true] {
            t.state = 4;
        }
    }
    for (k, t) in &flows {
        assert_eq!(t.state, 4, "{k:?}: not torn down");
    }
    flows.len()
}

#[test]
fn tcp_connections_are_sane() {
    let (pk, _) = well_formed(&mixed(8_000_000, 5));
    assert!(tcp_sanity(&pk) > 20);
    let (pk, _) = well_formed(&many(5_000_000, 5, 3000));
    assert!(tcp_sanity(&pk) > 300);
    let (pk, _) = well_formed(&bulk(10_000_000, 5));
    assert!(tcp_sanity(&pk) > 8);
}

/// The outbound totals of the expectation are what the packets carry from internal to external
/// hosts on the sessions' flows, and 1173001 is expected exactly for the sessions at or above the
/// threshold.
fn totals_agree(pk: &[Pkt], o: &Outcome) {
    let mut out: HashMap<Key, u64> = HashMap::new();
    for p in pk {
        if internal(&p.src) && !internal(&p.dst) {
            *out.entry(key(p)).or_default() += p.len as u64;
        }
    }
    let x = &o.expect;
    let mut large = 0;
    for s in &x.sessions {
        let sum: u64 = s
            .flows
            .iter()
            .map(|f| {
                let (a, b) = if f.src <= f.dest {
                    (f.src, f.dest)
                } else {
                    (f.dest, f.src)
                };
                out.get(&(f.udp, a, b)).copied().unwrap_or(0)
            })
            .sum();
        assert_eq!(
            sum, s.outbound,
            "{} session {} -> {}",
            s.proto, s.internal, s.external
        );
        assert_eq!(s.alerted, s.outbound >= x.threshold);
        if s.upload {
            assert!(s.outbound >= s.file_bytes);
        }
        large += usize::from(s.alerted);
    }
    assert_eq!(
        x.alerts.iter().filter(|a| a.sid == SID_LARGE).count(),
        large
    );
}

#[test]
fn expectation_matches_the_packets() {
    for cfg in [
        mixed(10_000_000, 9),
        many(4_000_000, 9, 2000),
        bulk(12_000_000, 9),
    ] {
        let (pk, o) = well_formed(&cfg);
        totals_agree(&pk, &o);
        assert_eq!(o.expect.pair_reuse, 0);
    }
}

#[test]
fn mixed_has_every_transfer_and_mismatch() {
    let (_, o) = run(&mixed(20_000_000, 7));
    let x = &o.expect;
    let has = |sid: u32, app: &str, port: u16| {
        x.alerts
            .iter()
            .any(|a| a.sid == sid && a.app == app && a.server_port == port)
    };
    assert!(has(SID_FT_PORT, "ftp", 80));
    assert!(has(SID_FT_PORT, "ftp", 2121));
    assert!(has(SID_FT_PORT, "smb", 443));
    assert!(has(SID_FT_PORT, "tftp", 53));
    assert!(has(SID_PORT_PROTO, "http", 21));
    for app in ["ftp-data", "smb", "tftp"] {
        assert!(
            x.alerts.iter().any(|a| a.sid == SID_LARGE && a.app == app),
            "1173001 on {app}"
        );
    }
    for app in [
        "ftp", "ftp-data", "tftp", "smb", "http", "tls", "dns", "ssh",
    ] {
        assert!(x.by_app.get(app).copied().unwrap_or(0) > 0, "no {app} flow");
    }
    assert!(x.sessions.iter().any(|s| !s.upload));
    assert!(x.sessions.iter().any(|s| s.internal.is_ipv6()));
}

#[test]
fn many_flows_keeps_the_concurrency() {
    let (pk, o) = well_formed(&many(8_000_000, 4, 500));
    assert_eq!(o.max_active, 500);
    // Open TCP connections at the busiest moment: close to the concurrency.
    let mut open: HashSet<_> = HashSet::new();
    let mut peak = 0;
    for p in &pk {
        if p.udp {
            continue;
        }
        if p.flags & 2 != 0 && p.flags & 0x10 == 0 {
            open.insert(key(p));
        } else if p.flags & 1 != 0 && p.len == 0 {
            open.remove(&key(p));
        }
        peak = peak.max(open.len());
    }
    assert!(peak >= 350, "peak of {peak} open connections");
    let pairs: HashSet<_> = pk.iter().map(|p| (p.src, p.dst)).collect();
    assert!(pairs.len() > 500, "{} host pairs", pairs.len());
}
