//! End-to-end tests: the real binary on the bundled captures of real client/server software, on the
//! public labelled corpus (when `../shared` is present), and on bad input.

use serde_json::Value;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Says that a check was skipped for want of `../shared`. Written to stderr directly, past the test
/// harness's output capture, so that it shows in `cargo test`'s output and in the summary of
/// skipped checks at the end of `make test`.
fn report_skip(what: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP: {what}");
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xferwatch"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xferwatch-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn replay(args: &[&str], pcaps: &[PathBuf], eve: &Path) -> Output {
    let mut c = bin();
    c.arg("replay")
        .arg("-q")
        .arg("--force")
        .arg("--eve")
        .arg(eve)
        .args(args)
        .args(pcaps);
    // Ignore a developer's environment overrides.
    for (k, _) in std::env::vars() {
        if k.starts_with("XFERWATCH__") {
            c.env_remove(k);
        }
    }
    c.output().unwrap()
}

fn events(eve: &Path) -> Vec<Value> {
    std::fs::read_to_string(eve)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

type Key = (String, (String, u64), (String, u64));

fn key(proto: &str, a: &str, ap: u64, b: &str, bp: u64) -> Key {
    let x = (a.to_string(), ap);
    let y = (b.to_string(), bp);
    let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
    (proto.to_ascii_lowercase(), lo, hi)
}

fn flows_by_key(ev: &[Value]) -> HashMap<Key, Vec<&Value>> {
    let mut m: HashMap<Key, Vec<&Value>> = HashMap::new();
    for e in ev.iter().filter(|e| e["event_type"] == "flow") {
        let k = key(
            e["proto"].as_str().unwrap(),
            e["src_ip"].as_str().unwrap(),
            e["src_port"].as_u64().unwrap(),
            e["dest_ip"].as_str().unwrap(),
            e["dest_port"].as_u64().unwrap(),
        );
        m.entry(k).or_default().push(e);
    }
    m
}

fn pcaps_dir() -> PathBuf {
    root().join("pcaps")
}

fn bundled() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(pcaps_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    v
}

/// Every flow listed in pcaps/expected.json appears once, oriented client → server, with the exact
/// payload bytes, its direction and its app_proto; FTP data channels name their control connection.
#[test]
fn bundled_captures_give_expected_flows() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(pcaps_dir().join("expected.json")).unwrap())
            .unwrap();
    let dir = tmpdir("bundled");
    for (name, exp) in expected.as_object().unwrap() {
        let eve = dir.join(format!("{name}.json"));
        let out = replay(&["--workers", "2"], &[pcaps_dir().join(name)], &eve);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ev = events(&eve);
        let flows = flows_by_key(&ev);
        let want = exp["flows"].as_array().unwrap();
        assert_eq!(
            flows.values().map(|v| v.len()).sum::<usize>(),
            want.len(),
            "{name}: flow count"
        );
        for f in want {
            let k = key(
                f["transport"].as_str().unwrap(),
                f["client_ip"].as_str().unwrap(),
                f["client_port"].as_u64().unwrap(),
                f["server_ip"].as_str().unwrap(),
                f["server_port"].as_u64().unwrap(),
            );
            let got = flows
                .get(&k)
                .unwrap_or_else(|| panic!("{name}: no flow {k:?}"));
            assert_eq!(got.len(), 1, "{name}: {k:?} written more than once");
            let e = got[0];
            assert_eq!(e["src_ip"], f["client_ip"], "{name}: {k:?} orientation");
            assert_eq!(e["src_port"], f["client_port"], "{name}: {k:?} orientation");
            assert_eq!(
                e["xfer"]["payload_bytes_toserver"], f["payload_bytes_c2s"],
                "{name}: {k:?} bytes to server"
            );
            assert_eq!(
                e["xfer"]["payload_bytes_toclient"], f["payload_bytes_s2c"],
                "{name}: {k:?} bytes to client"
            );
            assert_eq!(e["xfer"]["bytes_exact"], true, "{name}: {k:?}");
            assert_eq!(
                e["xfer"]["direction"], f["direction"],
                "{name}: {k:?} direction"
            );
            let want_proto = f["app_proto"].as_str().unwrap();
            assert_eq!(e["app_proto"], want_proto, "{name}: {k:?} app_proto");
            if want_proto == "ftp-data" {
                // Linked to the control connection that announced it.
                let parent = e["xfer"]["parent_flow_id"]
                    .as_u64()
                    .expect("parent_flow_id");
                let control = ev
                    .iter()
                    .find(|c| c["flow_id"].as_u64() == Some(parent))
                    .expect("parent flow record");
                assert_eq!(
                    control["app_proto"], "ftp",
                    "{name}: parent is the control channel"
                );
                assert_eq!(
                    e["xfer"]["port_mismatch"], false,
                    "{name}: data channels never mismatch"
                );
            }
        }
        // The mismatch cases of the brief, by bytes, whatever the port.
        let mismatched: Vec<(&str, u64)> = ev
            .iter()
            .filter(|e| e["event_type"] == "flow" && e["xfer"]["port_mismatch"] == true)
            .map(|e| {
                (
                    e["app_proto"].as_str().unwrap(),
                    e["dest_port"].as_u64().unwrap(),
                )
            })
            .collect();
        let want_mismatch: &[(&str, u64)] = match name.as_str() {
            "ftp-port80.pcap" => &[("ftp", 80)],
            "smb-port443.pcap" => &[("smb", 443)],
            "tftp-port53.pcap" => &[("tftp", 53)],
            "http-port21.pcap" => &[("http", 21)],
            _ => &[],
        };
        assert_eq!(mismatched, want_mismatch, "{name}: port mismatches");
        assert_eq!(
            ev.last().unwrap()["event_type"],
            "stats",
            "{name}: stats event last"
        );
    }
}

/// The same input gives byte-identical output whatever the number of workers.
#[test]
fn output_does_not_depend_on_worker_count() {
    let dir = tmpdir("determinism");
    let mut inputs = bundled();
    let corpus = root().join("../shared/corpus/public/pcaps");
    let public = [
        "surv__output-eve-ftp-data.pcap",
        "zeek__ftp-bruteforce.pcap",
        "ndpi__dns_fragmented.pcap",
    ];
    for n in public {
        if corpus.join(n).exists() {
            inputs.push(corpus.join(n));
        }
    }
    if public.iter().any(|n| !corpus.join(n).exists()) {
        report_skip("public captures in the worker-count test: not all in ../shared/corpus/public");
    }
    let mut outs = Vec::new();
    for w in ["1", "2", "5"] {
        let eve = dir.join(format!("w{w}.json"));
        let out = replay(&["--workers", w], &inputs, &eve);
        assert!(out.status.success());
        outs.push(std::fs::read(&eve).unwrap());
    }
    assert!(outs[0].len() > 1000);
    assert_eq!(outs[0], outs[1], "1 vs 2 workers");
    assert_eq!(outs[0], outs[2], "1 vs 5 workers");
}

fn shared_corpus() -> Option<PathBuf> {
    let c = root().join("../shared/corpus/public");
    if c.join("labels").is_dir() {
        Some(c)
    } else {
        report_skip("public corpus replay tests: ../shared/corpus/public is absent");
        None
    }
}

fn bytes_judged(t: &Value) -> bool {
    ["c2s", "s2c"].iter().all(|d| {
        let retrans = t
            .get(format!("tcp_retransmitted_segments_{d}"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let span = t.get(format!("tcp_seq_span_{d}"));
        retrans == 0 && span.is_none_or(|s| s.is_null() || *s == t[format!("payload_bytes_{d}")])
    })
}

/// Every public capture replays cleanly; every labelled flow appears exactly once, oriented where the
/// label knows the client, with exact payload bytes where the label's counts can be exact, and
/// FTP control, TFTP and SMB flows are named so.
#[test]
fn public_corpus_flows() {
    let Some(corpus) = shared_corpus() else {
        return;
    };
    let dir = tmpdir("corpus");
    let mut labels: Vec<PathBuf> = std::fs::read_dir(corpus.join("labels"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".json"))
        .collect();
    labels.sort();
    let (mut checked, mut fp_known, mut fp_right) = (0, 0, 0);
    for lab in labels {
        let truth: Value = serde_json::from_str(&std::fs::read_to_string(&lab).unwrap()).unwrap();
        let name = truth["file"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                lab.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches(".json")
                    .to_string()
            });
        let pcap = corpus.join("pcaps").join(&name);
        let eve = dir.join("eve.json");
        let out = replay(&[], &[pcap], &eve);
        assert!(
            out.status.success(),
            "{name}: exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let ev = events(&eve);
        if truth["judge"] == "robustness" {
            continue;
        }
        let flows = flows_by_key(&ev);
        for t in truth["flows"].as_array().unwrap() {
            let want = t["app_proto_truth"].as_str().unwrap_or("");
            let k = key(
                t["transport"].as_str().unwrap(),
                t["client_ip"].as_str().unwrap(),
                t["client_port"].as_u64().unwrap_or(0),
                t["server_ip"].as_str().unwrap(),
                t["server_port"].as_u64().unwrap_or(0),
            );
            // Addresses as the labels write them (IPv6 may be written differently): compare parsed.
            let got = flows
                .iter()
                .find(|(fk, _)| same_key(fk, &k))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{name}: no flow record for {k:?}"));
            assert_eq!(got.len(), 1, "{name}: {k:?} appears {} times", got.len());
            let e = got[0];
            checked += 1;
            let basis = t["client_side_basis"]
                .as_str()
                .unwrap_or("sender of the SYN");
            let oriented = same_ip(
                e["src_ip"].as_str().unwrap(),
                t["client_ip"].as_str().unwrap(),
            ) && e["src_port"] == t["client_port"];
            if [
                "sender of the SYN",
                "receiver of the SYN+ACK",
                "sender of the TFTP request",
            ]
            .contains(&basis)
            {
                assert!(oriented, "{name}: {k:?} oriented server → client");
            }
            if bytes_judged(t) {
                let (ts, tc) = if oriented {
                    ("c2s", "s2c")
                } else {
                    ("s2c", "c2s")
                };
                assert_eq!(
                    e["xfer"]["payload_bytes_toserver"],
                    t[format!("payload_bytes_{ts}")],
                    "{name}: {k:?}"
                );
                assert_eq!(
                    e["xfer"]["payload_bytes_toclient"],
                    t[format!("payload_bytes_{tc}")],
                    "{name}: {k:?}"
                );
            }
            // Flows a fingerprint alone can know (ambiguous ones, such as SMB mailslots in NetBIOS
            // datagrams, list other acceptable answers and are not counted).
            if ["ftp", "ftp-data", "tftp", "smb"].contains(&want)
                && t["app_proto_acceptable"].is_null()
            {
                fp_known += 1;
                if e["app_proto"] == want {
                    fp_right += 1;
                }
            }
            if let Some(p) = e["app_proto"].as_str() {
                if ["ftp", "tftp", "smb"].contains(&p) && p != want {
                    let ok = t["app_proto_acceptable"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x == p));
                    assert!(ok, "{name}: {k:?} is {want}, called {p}");
                }
            }
        }
    }
    assert!(checked > 400, "{checked} labelled flows checked");
    assert!(
        fp_right * 100 >= fp_known * 98,
        "ftp/ftp-data/tftp/smb named right on {fp_right}/{fp_known}"
    );
}

fn same_ip(a: &str, b: &str) -> bool {
    match (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn same_key(a: &Key, b: &Key) -> bool {
    let ep = |x: &(String, u64), y: &(String, u64)| x.1 == y.1 && same_ip(&x.0, &y.0);
    a.0 == b.0 && ((ep(&a.1, &b.1) && ep(&a.2, &b.2)) || (ep(&a.1, &b.2) && ep(&a.2, &b.1)))
}

/// A file that cannot be opened and one that is not a capture: errors naming them, exit 2, and the
/// good file is still processed.
#[test]
fn unreadable_files_are_reported_and_others_processed() {
    let dir = tmpdir("badfiles");
    let text = dir.join("notes.txt");
    std::fs::write(&text, "this is not a capture\n").unwrap();
    let missing = dir.join("missing.pcap");
    let good = pcaps_dir().join("http-port21.pcap");
    let eve = dir.join("eve.json");
    let out = replay(&[], &[missing.clone(), text.clone(), good], &eve);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing.pcap") && err.contains("notes.txt"),
        "{err}"
    );
    assert!(events(&eve)
        .iter()
        .any(|e| e["event_type"] == "flow" && e["app_proto"] == "http"));
}

/// No input readable at all: exit 2, a message, and no EVE output (an existing file, even with
/// --force, is left as it was; none is created).
#[test]
fn nothing_readable_writes_nothing() {
    let dir = tmpdir("nothing-readable");
    let text = dir.join("notes.txt");
    std::fs::write(&text, "this is not a capture\n").unwrap();
    let eve = dir.join("eve.json");
    for input in [dir.join("missing.pcap"), text] {
        let out = replay(&[], std::slice::from_ref(&input), &eve);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("could be read") && err.contains("eve.json"),
            "{err}"
        );
        assert!(!eve.exists(), "{}: created", eve.display());
    }
    std::fs::write(&eve, "kept\n").unwrap();
    let out = replay(&[], &[dir.join("missing.pcap")], &eve);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&eve).unwrap(), "kept\n");
}

/// A truncated capture: a warning naming the file and the packet, what was read is kept, exit 0.
#[test]
fn truncated_capture_keeps_what_was_read() {
    let dir = tmpdir("truncated");
    let src = std::fs::read(pcaps_dir().join("ftp-passive-upload.pcap")).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &src[..src.len() / 2 + 7]).unwrap();
    let eve = dir.join("eve.json");
    let out = replay(&[], &[cut], &eve);
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut.pcap") && err.contains("packet"), "{err}");
    let ev = events(&eve);
    assert!(ev
        .iter()
        .any(|e| e["event_type"] == "flow" && e["app_proto"] == "ftp"));
}

/// An existing EVE file is never overwritten without --force: refused with its name, kept intact.
#[test]
fn existing_eve_file_is_kept_unless_forced() {
    let dir = tmpdir("existing-eve");
    let eve = dir.join("eve.json");
    std::fs::write(&eve, "precious\n").unwrap();
    let good = pcaps_dir().join("http-port21.pcap");
    let out = bin()
        .current_dir(&dir)
        .args(["replay", "-q"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("eve.json") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&eve).unwrap(), "precious\n");
    let out = bin()
        .current_dir(&dir)
        .args(["replay", "-q", "--force"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(events(&eve).iter().any(|e| e["event_type"] == "stats"));
    // Not a regular file: written as before.
    let out = bin()
        .args(["replay", "-q", "--eve", "/dev/null"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn no_files_is_a_usage_error() {
    let out = bin().arg("replay").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .to_lowercase()
        .contains("usage"));
}

/// Bad configuration: errors that name the file and the key; nothing runs.
#[test]
fn bad_config_names_the_key() {
    let dir = tmpdir("config");
    let cases = [
        ("[limits]\nmax_flowz = 5\n", "max_flowz"),
        ("[network]\ninternal = [\"10.0.0.0/33\"]\n", "internal"),
        (
            "[detect.large_outbound]\nthreshold_bytes = \"lots\"\n",
            "threshold_bytes",
        ),
        (
            "[detect.large_outbound]\nthreshold_bytes = -5\n",
            "threshold_bytes",
        ),
        (
            "[[allow]]\nsignatures = [42]\nreason = \"x\"\n",
            "allow[0].signatures",
        ),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let cfg = dir.join(format!("bad{i}.toml"));
        std::fs::write(&cfg, text).unwrap();
        let out = bin().arg("check-config").arg(&cfg).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(needle) && err.contains(&format!("bad{i}.toml")),
            "{text} → {err}"
        );
        let out = replay(
            &["--config", cfg.to_str().unwrap()],
            &[pcaps_dir().join("http-port21.pcap")],
            &dir.join("x.json"),
        );
        assert_eq!(out.status.code(), Some(1), "replay must refuse {text}");
    }
}

#[test]
fn example_config_is_valid_and_env_overrides_apply() {
    let example = root().join("sensor.toml.example");
    let out = bin().arg("check-config").arg(&example).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bin()
        .arg("check-config")
        .arg(&example)
        .env("XFERWATCH__LIMITS__MAX_FLOWS", "1234")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("max_flows = 1234"));
    let out = bin()
        .arg("check-config")
        .arg(&example)
        .env("XFERWATCH__LIMITS__MAX_FLOWS", "many")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// With room for two flows, the longest idle flows are evicted, recorded with reason "evicted".
#[test]
fn flow_limit_evicts_and_records() {
    let dir = tmpdir("evict");
    let cfg = dir.join("small.toml");
    std::fs::write(&cfg, "[limits]\nmax_flows = 2\n").unwrap();
    let eve = dir.join("eve.json");
    let inputs = vec![
        pcaps_dir().join("tftp-rrq-wrq.pcap"),
        pcaps_dir().join("ftp-active-download.pcap"),
    ];
    let out = replay(
        &["--config", cfg.to_str().unwrap(), "--workers", "1"],
        &inputs,
        &eve,
    );
    assert!(out.status.success());
    let ev = events(&eve);
    let evicted = ev
        .iter()
        .filter(|e| e["flow"]["reason"] == "evicted")
        .count();
    assert!(evicted >= 1, "no eviction recorded");
    let stats = ev.last().unwrap();
    assert_eq!(
        stats["xfer"]["flows_ended"]["evicted"].as_u64().unwrap() as usize,
        evicted
    );
}

/// Each direction identified on its own: an HTTP client talking to an SSH server is recorded with
/// Suricata's app_proto_ts/app_proto_tc; flows whose sides agree carry neither.
#[test]
fn directions_that_disagree_are_recorded() {
    let Some(corpus) = shared_corpus() else {
        return;
    };
    let dir = tmpdir("split");
    let eve = dir.join("eve.json");
    let out = replay(
        &[],
        &[corpus.join("pcaps/zeek__http-get-to-ssh-server.pcap")],
        &eve,
    );
    assert!(out.status.success());
    let ev = events(&eve);
    let f = ev
        .iter()
        .find(|e| e["event_type"] == "flow" && e["dest_port"] == 22)
        .expect("flow to port 22");
    assert_eq!(f["app_proto_ts"], "http");
    assert_eq!(f["app_proto_tc"], "ssh");
    let out = replay(&[], &bundled(), &eve);
    assert!(out.status.success());
    assert!(
        events(&eve).iter().all(|e| e.get("app_proto_ts").is_none()),
        "bundled flows agree both ways"
    );
}

/// `run` takes its configuration as `FILE` like `check-config`, or as `-c FILE`; not both.
#[test]
fn run_takes_the_configuration_positionally() {
    let dir = tmpdir("run-positional");
    let cfg = dir.join("sensor.toml");
    std::fs::write(&cfg, "[limits]\nmax_flowz = 5\n").unwrap();
    for args in [vec!["run"], vec!["run", "-c"]] {
        let out = bin().args(&args).arg(&cfg).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // Parsed, then refused by the configuration check (1), not a usage error (2).
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("max_flowz"), "{err}");
    }
    let out = bin()
        .arg("run")
        .arg(&cfg)
        .arg("-c")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = bin().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `check-config` compiles `[capture] bpf` as `run` will, and names the key when it does not.
#[test]
fn check_config_compiles_the_bpf_filter() {
    let dir = tmpdir("bpf");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[capture]\nbpf = \"tcp prot 21\"\n").unwrap();
    let out = bin().arg("check-config").arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("capture.bpf") && err.contains("bad.toml"),
        "{err}"
    );
    let good = dir.join("good.toml");
    std::fs::write(&good, "[capture]\nbpf = \"tcp port 21 or udp\"\n").unwrap();
    let out = bin().arg("check-config").arg(&good).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The bundled captures in the order of their first packet's time.
fn bundled_by_time() -> Vec<PathBuf> {
    let first = |p: &PathBuf| {
        let b = std::fs::read(p).unwrap();
        assert_eq!(
            &b[..4],
            &[0xd4, 0xc3, 0xb2, 0xa1],
            "{}: not a little-endian pcap",
            p.display()
        );
        let sec = u32::from_le_bytes([b[24], b[25], b[26], b[27]]);
        let usec = u32::from_le_bytes([b[28], b[29], b[30], b[31]]);
        (sec, usec)
    };
    let mut v = bundled();
    v.sort_by_key(first);
    v
}

/// A replay that prints its summary (no -q); standard error is a pipe, never a terminal.
fn replay_with_summary(pcaps: &[PathBuf], eve: &Path) -> Output {
    let mut c = bin();
    c.args(["replay", "--force", "-c"])
        .arg(root().join("pcaps/demo.toml"))
        .arg("--eve")
        .arg(eve)
        .args(pcaps);
    for (k, _) in std::env::vars() {
        if k.starts_with("XFERWATCH__") {
            c.env_remove(k);
        }
    }
    c.output().unwrap()
}

/// Files named out of time order (the bundled ones are: ftp-active-download.pcap was captured after
/// ftp-passive-upload.pcap) are read in the order of their first packet: the same events, byte for
/// byte, whatever the order given, and no packet's time was clamped.
#[test]
fn input_order_does_not_change_the_events() {
    let dir = tmpdir("input-order");
    let cfg = root().join("pcaps/demo.toml");
    let cfg = cfg.to_str().unwrap();
    let by_time = bundled_by_time();
    let by_name = bundled();
    assert_ne!(
        by_time, by_name,
        "the bundled captures' names are not in time order"
    );
    let mut reversed = by_name.clone();
    reversed.reverse();
    let mut outs = Vec::new();
    for (name, inputs) in [
        ("time", &by_time),
        ("name", &by_name),
        ("reversed", &reversed),
    ] {
        let eve = dir.join(format!("{name}.json"));
        let out = replay(&["-c", cfg], inputs, &eve);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        outs.push(std::fs::read_to_string(&eve).unwrap());
    }
    assert!(outs[0].lines().count() > 100);
    assert_eq!(outs[0], outs[1], "time order vs name order");
    assert_eq!(outs[0], outs[2], "time order vs reversed name order");
    let ev = events(&dir.join("reversed.json"));
    let stats = ev.iter().find(|e| e["event_type"] == "stats").unwrap();
    assert!(stats["xfer"].get("time_clamped").is_none(), "{stats}");
}

/// Packets older than the newest time seen (here: the same file given twice) are counted, in the
/// summary and in the stats record.
#[test]
fn clamped_times_are_counted() {
    let dir = tmpdir("clamped");
    let f = pcaps_dir().join("http-upload.pcap");
    let eve = dir.join("eve.json");
    let out = replay_with_summary(&[f.clone(), f], &eve);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let ev = events(&eve);
    let stats = ev.iter().find(|e| e["event_type"] == "stats").unwrap();
    let n = stats["xfer"]["time_clamped"].as_u64().unwrap_or(0);
    assert!(n > 0, "{stats}");
    assert!(
        err.contains(&format!("time went backwards: {n} packet(s)")),
        "{err}"
    );
}

/// Without a terminal on standard error there is no progress bar: no carriage return, no escape
/// sequence, only the summary's lines.
#[test]
fn no_progress_bar_without_a_terminal() {
    let dir = tmpdir("no-bar");
    let out = replay_with_summary(&bundled(), &dir.join("eve.json"));
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    assert!(
        err.starts_with("xferwatch replay: 17 file(s) read, 0 problem(s)\n"),
        "{err}"
    );
    for l in err.lines().skip(1) {
        assert!(l.starts_with("  "), "not a summary line: {l:?}");
    }
    assert!(
        err.contains("input order: read in the order of their first packet"),
        "{err}"
    );
    // With -q, nothing at all.
    let out = replay(
        &["-c", root().join("pcaps/demo.toml").to_str().unwrap()],
        &bundled(),
        &dir.join("quiet.json"),
    );
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// The summary's top talkers: internal → external pairs by payload sent out, largest first, at
/// most 10, each with the files and alerts of its flows, as the EVE records say.
#[test]
fn summary_lists_top_talkers() {
    let dir = tmpdir("talkers");
    let eve = dir.join("eve.json");
    let out = replay_with_summary(&bundled(), &eve);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let ev = events(&eve);
    // The expected table, from the records: per (internal, external, app_proto, port).
    // (internal, external, app_proto, port) -> (bytes, files, alerts)
    type Row = (String, String, String, String);
    let mut want: HashMap<Row, (u64, u64, u64)> = HashMap::new();
    let mut per_flow: HashMap<u64, (u64, u64)> = HashMap::new();
    for e in &ev {
        let id = e["flow_id"].as_u64().unwrap_or(0);
        match e["event_type"].as_str().unwrap() {
            "fileinfo" => per_flow.entry(id).or_default().0 += 1,
            "alert" => per_flow.entry(id).or_default().1 += 1,
            _ => {}
        }
    }
    for e in ev.iter().filter(|e| e["event_type"] == "flow") {
        let x = &e["xfer"];
        let (s, d) = (
            e["src_ip"].as_str().unwrap(),
            e["dest_ip"].as_str().unwrap(),
        );
        let (i, o) = match x["direction"].as_str().unwrap() {
            "outbound" => (s, d),
            "inbound" => (d, s),
            _ => continue,
        };
        let port = if x.get("parent_flow_id").is_some() {
            "data".to_string()
        } else {
            e["dest_port"].to_string()
        };
        let proto = e["app_proto"].as_str().unwrap_or("tcp").to_string();
        let (files, alerts) = per_flow
            .get(&e["flow_id"].as_u64().unwrap())
            .copied()
            .unwrap_or_default();
        let w = want.entry((i.into(), o.into(), proto, port)).or_default();
        w.0 += x["outbound_payload_bytes"].as_u64().unwrap();
        w.1 += files;
        w.2 += alerts;
    }
    let head = err
        .lines()
        .position(|l| l.starts_with("  top talkers, internal -> external"))
        .unwrap_or_else(|| panic!("no top-talkers table in:\n{err}"));
    let rows: Vec<Vec<&str>> = err
        .lines()
        .skip(head + 2)
        .take_while(|l| l.starts_with("    ") && l.contains(" -> "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), want.len().min(10), "{err}");
    let mut prev = u64::MAX;
    for r in &rows {
        // internal -> external proto port bytes files alerts
        assert_eq!(r.len(), 8, "{r:?}");
        let k = (
            r[0].to_string(),
            r[2].to_string(),
            r[3].to_string(),
            r[4].to_string(),
        );
        let got: (u64, u64, u64) = (
            r[5].parse().unwrap(),
            r[6].parse().unwrap(),
            r[7].parse().unwrap(),
        );
        assert_eq!(want.get(&k), Some(&got), "row {r:?}");
        assert!(got.0 <= prev, "not largest first: {err}");
        prev = got.0;
    }
    let mut sizes: Vec<u64> = want.values().map(|v| v.0).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let shown: Vec<u64> = rows.iter().map(|r| r[5].parse().unwrap()).collect();
    assert_eq!(shown, sizes[..shown.len()], "the largest are shown");
    assert!(
        rows.iter().any(|r| r[6] != "0"),
        "some row has files: {err}"
    );
    assert!(
        rows.iter().any(|r| r[7] != "0"),
        "some row has alerts: {err}"
    );
}
