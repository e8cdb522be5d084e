//! The floor of `make bench`: a bare libpcap read loop over capture files — every packet read and
//! its length summed, nothing else. Prints "packets bytes".

fn main() {
    let mut packets: u64 = 0;
    let mut bytes: u64 = 0;
    for path in std::env::args().skip(1) {
        let mut cap = match pcap::Capture::from_file(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(2);
            }
        };
        while let Ok(p) = cap.next_packet() {
            packets += 1;
            bytes += p.data.len() as u64;
        }
    }
    println!("{packets} {bytes}");
}
