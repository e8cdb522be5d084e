//! Micro-benchmarks: each fingerprint on its own protocol's real bytes (the cost of a `Match`) and on
//! random bytes (the cost of a `NoMatch`, paid by every flow of another protocol), plus `identify`.
//! Run with `cargo bench -p xferwatch-fingerprint`.

#[path = "../tests/fingerprints/fixtures.rs"]
mod fixtures;

use divan::{black_box, Bencher};
use fixtures::*;
use xferwatch_fingerprint::{all, identify, AppProto, Dgram, Observed, Transport};

fn main() {
    divan::main();
}

const PROTOS: [&str; 8] = ["ftp", "tftp", "smb", "http", "tls", "ssh", "dns", "smtp"];

/// Owned bytes of one fixture: TCP directions concatenated, or UDP datagrams in order.
struct Sample {
    transport: Transport,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    dgrams: Vec<(bool, Vec<u8>)>,
}

fn tcp(f: &TcpFixture) -> Sample {
    let side = |c: bool| {
        f.segs
            .iter()
            .filter(|(s, _)| *s == c)
            .flat_map(|(_, b)| b.iter().copied())
            .collect()
    };
    Sample {
        transport: Transport::Tcp,
        to_server: side(true),
        to_client: side(false),
        dgrams: Vec::new(),
    }
}

fn udp(f: &UdpFixture) -> Sample {
    Sample {
        transport: Transport::Udp,
        to_server: Vec::new(),
        to_client: Vec::new(),
        dgrams: f.dgrams.iter().map(|(c, d)| (*c, d.to_vec())).collect(),
    }
}

fn sample(proto: &str) -> Sample {
    match proto {
        "ftp" => tcp(&FTP_VSFTPD),
        "tftp" => udp(&TFTP_RRQ_TRANSFER),
        "smb" => tcp(&SMB2_PETER),
        "http" => tcp(&HTTP_WGET),
        "tls" => tcp(&TLS_CURL),
        "ssh" => tcp(&SSH),
        "dns" => udp(&DNS_UDP),
        _ => tcp(&SMTP_SENDMAIL),
    }
}

/// 1460 bytes (one full segment) of deterministic noise, as TCP and as one datagram.
fn noise(transport: Transport) -> Sample {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..1460)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    match transport {
        Transport::Tcp => Sample {
            transport,
            to_server: bytes.clone(),
            to_client: bytes,
            dgrams: Vec::new(),
        },
        Transport::Udp => Sample {
            transport,
            to_server: Vec::new(),
            to_client: Vec::new(),
            dgrams: vec![(true, bytes)],
        },
    }
}

fn probe_with(b: Bencher, s: &Sample, f: impl Fn(&Observed<'_>) + Sync) {
    let dgrams: Vec<Dgram<'_>> = s
        .dgrams
        .iter()
        .map(|(c, d)| Dgram {
            to_server: *c,
            data: d,
        })
        .collect();
    let obs = Observed {
        transport: s.transport,
        to_server: &s.to_server,
        to_client: &s.to_client,
        dgrams: &dgrams,
        final_: false,
    };
    b.bench(|| f(black_box(&obs)));
}

fn fingerprint(name: &str) -> &'static dyn xferwatch_fingerprint::Fingerprint {
    let p = AppProto::from_name(name).expect("known protocol");
    *all()
        .iter()
        .find(|f| f.proto() == p)
        .expect("a fingerprint per protocol")
}

/// A fingerprint on bytes of its own protocol.
#[divan::bench(args = PROTOS)]
fn own_bytes(b: Bencher, proto: &str) {
    let fp = fingerprint(proto);
    probe_with(b, &sample(proto), |o| {
        black_box(fp.probe(o));
    });
}

/// A fingerprint on random bytes of its transport.
#[divan::bench(args = PROTOS)]
fn random_bytes(b: Bencher, proto: &str) {
    let fp = fingerprint(proto);
    let s = noise(sample(proto).transport);
    probe_with(b, &s, |o| {
        black_box(fp.probe(o));
    });
}

/// Every fingerprint in priority order, as the engine calls them.
#[divan::bench(args = PROTOS)]
fn identify_own_bytes(b: Bencher, proto: &str) {
    probe_with(b, &sample(proto), |o| {
        black_box(identify(o));
    });
}

#[divan::bench(args = ["tcp", "udp"])]
fn identify_random_bytes(b: Bencher, transport: &str) {
    let t = if transport == "tcp" {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    probe_with(b, &noise(t), |o| {
        black_box(identify(o));
    });
}
