//! The metrics endpoint, in process: `GET /metrics` answers with the catalogue and the process
//! metrics; every other path is 404; what is not HTTP is answered 400 and counted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

fn request(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics listener");
    s.write_all(raw).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let r = request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: test\r\n\r\n").as_bytes(),
    );
    let code = r
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {r:?}"));
    let body = r
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (code, body)
}

/// The value of an unlabelled sample.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn only_metrics_answers_with_process_metrics() {
    let addr = xferwatch::metrics::install("127.0.0.1:0".parse().unwrap(), &[]).unwrap();
    let (code, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    let rss =
        sample(&body, "process_resident_memory_bytes").expect("process_resident_memory_bytes");
    assert!(rss > 0.0, "resident memory {rss}");
    assert!(
        sample(&body, "process_open_fds").is_some_and(|v| v >= 3.0),
        "{body}"
    );
    let start = sample(&body, "process_start_time_seconds").expect("start time");
    assert!(start > 1.5e9, "start time {start}");
    assert!(
        sample(&body, "process_cpu_seconds_total").is_some(),
        "{body}"
    );
    assert!(
        body.contains("# TYPE process_cpu_seconds_total counter"),
        "{body}"
    );
    assert!(body.contains("xferwatch_build_info"), "{body}");
    for (name, ..) in xferwatch::metrics::CATALOGUE {
        if !name.starts_with("process_") || *name == "process_virtual_memory_max_bytes" {
            continue; // absent when RLIMIT_AS is unlimited
        }
        assert!(body.contains(&format!("\n{name} ")), "{name} missing");
    }
    // A query string is still /metrics.
    assert_eq!(get(addr, "/metrics?x=1").0, 200);
    for path in ["/", "/other", "/health", "/metrics/", "/metricsx"] {
        let (code, body) = get(addr, path);
        assert_eq!(code, 404, "{path}: {body}");
    }
    // Not HTTP: 400, and counted.
    let r = request(addr, b"NOT HTTP AT ALL \x01\x02\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400 "), "{r:?}");
    let r = request(addr, b"POST /metrics HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 405 "), "{r:?}");
    let (_, body) = get(addr, "/metrics");
    let errors = sample(&body, "xferwatch_metrics_listener_errors_total").unwrap();
    assert!(errors >= 1.0, "listener errors {errors}");
}
