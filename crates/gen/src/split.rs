//! `xferwatch-split`: splits captures into N shares by IP pair, as a packet broker with symmetric
//! hashing feeds N sensors, so that fleet tests can give each sensor its share.
//!
//! Every packet goes to share `hash(min(src, dst), max(src, dst)) % N`: both directions of an
//! IP pair (and so an FTP control connection with its data connections, a TFTP transfer with its
//! new server port, every SMB session between two hosts) land in the same share. The hash is a
//! fixed function of the addresses (FNV-1a, then a 64-bit mixer), so a split is the same on every
//! run and machine. Packets that are not IPv4 or IPv6 (ARP, LLDP, truncated headers) go to
//! share 0.
//!
//! Inputs are classic pcap files (either byte order, microsecond or nanosecond timestamps); pcapng
//! is refused (convert it with `editcap -F pcap`). They must share one link type; the shares keep
//! it. Link types understood: Ethernet (with any number of 802.1Q / 802.1ad tags), raw IP (101,
//! 228, 229), Linux cooked (113, 276) and BSD loopback (0, 108); packets of other link types go to
//! share 0.
//!
//! The inputs are merged in timestamp order: the next packet written is the oldest of the next
//! packets of every input (ties: the earlier input on the command line). Each input's own order
//! is kept, even where its timestamps go backwards. Shares are little-endian classic pcap with
//! microsecond timestamps, or nanosecond ones when any input has them; their snap length is the
//! largest of the inputs'. A truncated last record ends its input with a warning.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Shares at most.
pub const MAX_SHARES: usize = 4096;

/// A record longer than this is taken as corruption, not allocated.
const MAX_RECORD: u32 = 64 << 20;

/// One input file, read record by record.
struct Input {
    path: PathBuf,
    r: BufReader<File>,
    big_endian: bool,
    nanos: bool,
    linktype: u32,
    snaplen: u32,
}

/// One packet: time in nanoseconds since 1970, bytes, original length.
struct Packet {
    ts_ns: u64,
    data: Vec<u8>,
    orig_len: u32,
}

/// Reads as much of `buf` as the file has; returns the number of bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Input {
    fn open(path: &Path) -> Result<Input, String> {
        let name = path.display();
        let f = File::open(path).map_err(|e| format!("{name}: {e}"))?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut h = [0u8; 24];
        let n = read_full(&mut r, &mut h).map_err(|e| format!("{name}: {e}"))?;
        if n < 24 {
            return Err(format!("{name}: too short for a pcap file header"));
        }
        let (big_endian, nanos) = match h[0..4] {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                return Err(format!(
                    "{name}: pcapng is not supported; convert it first (editcap -F pcap IN OUT)"
                ))
            }
            _ => return Err(format!("{name}: not a pcap file (magic {:02x?})", &h[0..4])),
        };
        let u32_at = |o: usize| {
            let b = [h[o], h[o + 1], h[o + 2], h[o + 3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        Ok(Input {
            path: path.to_path_buf(),
            r,
            big_endian,
            nanos,
            snaplen: u32_at(16),
            // The upper bits may hold FCS flags; the link type is the low 16.
            linktype: u32_at(20) & 0xffff,
        })
    }

    /// The next packet; `Ok(None)` at the end of the file, or at a truncated last record (after
    /// a warning).
    fn next(&mut self) -> Result<Option<Packet>, String> {
        let name = self.path.display();
        let mut h = [0u8; 16];
        let n = read_full(&mut self.r, &mut h).map_err(|e| format!("{name}: {e}"))?;
        if n == 0 {
            return Ok(None);
        }
        if n < 16 {
            eprintln!("xferwatch-split: {name}: truncated record header at the end; stopped there");
            return Ok(None);
        }
        let be = self.big_endian;
        let u32_at = |o: usize| {
            let b = [h[o], h[o + 1], h[o + 2], h[o + 3]];
            if be {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (sec, frac, incl, orig) = (u32_at(0), u32_at(4), u32_at(8), u32_at(12));
        if incl > MAX_RECORD {
            return Err(format!(
                "{name}: a record of {incl} bytes: the file is corrupt"
            ));
        }
        let mut data = vec![0u8; incl as usize];
        let got = read_full(&mut self.r, &mut data).map_err(|e| format!("{name}: {e}"))?;
        if got < data.len() {
            eprintln!("xferwatch-split: {name}: truncated last record; stopped there");
            return Ok(None);
        }
        let frac_ns = if self.nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1_000
        };
        Ok(Some(Packet {
            ts_ns: u64::from(sec) * 1_000_000_000 + frac_ns,
            data,
            orig_len: orig,
        }))
    }
}

/// The source and destination addresses of a frame of `linktype`, if it carries IPv4 or IPv6.
pub fn ip_pair(linktype: u32, frame: &[u8]) -> Option<(&[u8], &[u8])> {
    const ETH_IPV4: u16 = 0x0800;
    const ETH_IPV6: u16 = 0x86dd;
    let be16 = |o: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*frame.get(o)?, *frame.get(o + 1)?]))
    };
    // (ethertype or 0 for "look at the version", offset of the network header)
    let (mut ethertype, mut off) = match linktype {
        1 => (be16(12)?, 14),
        101 | 12 | 14 => (0, 0),
        228 => (ETH_IPV4, 0),
        229 => (ETH_IPV6, 0),
        113 => (be16(14)?, 16),
        276 => (be16(0)?, 20),
        0 | 108 => {
            let fam = frame.get(0..4)?;
            let le = u32::from_le_bytes([fam[0], fam[1], fam[2], fam[3]]);
            let be = u32::from_be_bytes([fam[0], fam[1], fam[2], fam[3]]);
            let t = match (le, be) {
                (2, _) | (_, 2) => ETH_IPV4,
                (24 | 28 | 30, _) | (_, 24 | 28 | 30) => ETH_IPV6,
                _ => return None,
            };
            (t, 4)
        }
        _ => return None,
    };
    // VLAN tags (802.1Q, 802.1ad, and the old QinQ 0x9100), as many as there are.
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
        ethertype = be16(off + 2)?;
        off += 4;
    }
    let ip = frame.get(off..)?;
    let version = ip.first()? >> 4;
    match (ethertype, version) {
        (ETH_IPV4 | 0, 4) => Some((ip.get(12..16)?, ip.get(16..20)?)),
        (ETH_IPV6 | 0, 6) => Some((ip.get(8..24)?, ip.get(24..40)?)),
        _ => None,
    }
}

/// The share of an IP pair: the same for (a, b) and (b, a).
pub fn share_of_pair(a: &[u8], b: &[u8], shares: usize) -> usize {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    // The length first: an IPv4 pair never hashes as the prefix of an IPv6 one.
    for &byte in std::iter::once(&(lo.len() as u8)).chain(lo).chain(hi) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finaliser: FNV's low bits alone spread poorly for small N.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h % shares.max(1) as u64) as usize
}

/// The share of a frame (0 when it is not IP).
pub fn share_of(linktype: u32, frame: &[u8], shares: usize) -> usize {
    ip_pair(linktype, frame).map_or(0, |(a, b)| share_of_pair(a, b, shares))
}

/// What a split wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitSummary {
    /// The share files, in share order.
    pub files: Vec<PathBuf>,
    /// Packets per share.
    pub packets: Vec<u64>,
    /// Packets that were not IP (in share 0).
    pub not_ip: u64,
    /// The link type of inputs and shares.
    pub linktype: u32,
}

/// `PREFIX-i.pcap`.
pub fn share_path(prefix: &Path, i: usize) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(format!("-{i}.pcap"));
    PathBuf::from(s)
}

/// Splits `inputs` into `shares` files `PREFIX-0.pcap` … (see the module's documentation).
pub fn split(inputs: &[PathBuf], shares: usize, prefix: &Path) -> Result<SplitSummary, String> {
    if shares == 0 || shares > MAX_SHARES {
        return Err(format!(
            "--shares: expected 1 to {MAX_SHARES}, not {shares}"
        ));
    }
    if inputs.is_empty() {
        return Err("no input file".into());
    }
    let mut ins = Vec::new();
    for p in inputs {
        ins.push(Input::open(p)?);
    }
    let linktype = ins[0].linktype;
    if let Some(other) = ins.iter().find(|i| i.linktype != linktype) {
        return Err(format!(
            "mixed link types: {} has {}, {} has {}; split each kind separately",
            ins[0].path.display(),
            linktype,
            other.path.display(),
            other.linktype
        ));
    }
    let nanos = ins.iter().any(|i| i.nanos);
    let snaplen = ins.iter().map(|i| i.snaplen).max().unwrap_or(65_535).max(1);

    let files: Vec<PathBuf> = (0..shares).map(|i| share_path(prefix, i)).collect();
    let mut outs = Vec::new();
    for f in &files {
        let mut w = BufWriter::with_capacity(
            1 << 18,
            File::create(f).map_err(|e| format!("{}: {e}", f.display()))?,
        );
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut h = Vec::with_capacity(24);
        h.extend(magic.to_le_bytes());
        h.extend(2u16.to_le_bytes());
        h.extend(4u16.to_le_bytes());
        h.extend([0u8; 8]);
        h.extend(snaplen.to_le_bytes());
        h.extend(linktype.to_le_bytes());
        w.write_all(&h)
            .map_err(|e| format!("{}: {e}", f.display()))?;
        outs.push(w);
    }

    let mut summary = SplitSummary {
        files: files.clone(),
        packets: vec![0; shares],
        not_ip: 0,
        linktype,
    };
    // The next packet of every input, oldest first; ties by input order.
    let mut heads: Vec<Option<Packet>> = Vec::with_capacity(ins.len());
    let mut heap = BinaryHeap::new();
    for (i, input) in ins.iter_mut().enumerate() {
        let p = input.next()?;
        if let Some(p) = &p {
            heap.push(Reverse((p.ts_ns, i)));
        }
        heads.push(p);
    }
    while let Some(Reverse((_, i))) = heap.pop() {
        let Some(p) = heads[i].take() else { continue };
        let share = match ip_pair(linktype, &p.data) {
            Some((a, b)) => share_of_pair(a, b, shares),
            None => {
                summary.not_ip += 1;
                0
            }
        };
        let (sec, frac) = (p.ts_ns / 1_000_000_000, p.ts_ns % 1_000_000_000);
        let frac = if nanos { frac } else { frac / 1_000 };
        let mut rec = Vec::with_capacity(16 + p.data.len());
        // sec came from a u32, frac is below 10^9: both fit.
        rec.extend(u32::try_from(sec).unwrap_or(u32::MAX).to_le_bytes());
        rec.extend(u32::try_from(frac).unwrap_or(0).to_le_bytes());
        rec.extend((p.data.len() as u32).to_le_bytes());
        rec.extend(p.orig_len.to_le_bytes());
        rec.extend(&p.data);
        outs[share]
            .write_all(&rec)
            .map_err(|e| format!("{}: {e}", files[share].display()))?;
        summary.packets[share] += 1;
        heads[i] = ins[i].next()?;
        if let Some(n) = &heads[i] {
            heap.push(Reverse((n.ts_ns, i)));
        }
    }
    for (w, f) in outs.iter_mut().zip(&files) {
        w.flush().map_err(|e| format!("{}: {e}", f.display()))?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype_and_rest: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend(ethertype_and_rest);
        f
    }

    fn ipv4(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0];
        h.extend(src);
        h.extend(dst);
        h
    }

    #[test]
    fn addresses_through_vlan_tags_and_link_types() {
        let ip = ipv4([10, 0, 0, 1], [8, 8, 8, 8]);
        let mut plain = vec![0x08, 0x00];
        plain.extend(&ip);
        let mut tagged = vec![0x88, 0xa8, 0, 5, 0x81, 0x00, 0, 7, 0x08, 0x00];
        tagged.extend(&ip);
        let want: Option<(&[u8], &[u8])> = Some((&[10, 0, 0, 1], &[8, 8, 8, 8]));
        assert_eq!(ip_pair(1, &eth(&plain)), want);
        assert_eq!(ip_pair(1, &eth(&tagged)), want);
        assert_eq!(ip_pair(101, &ip), want);
        assert_eq!(ip_pair(228, &ip), want);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend(&ip);
        assert_eq!(ip_pair(0, &null), want);
        let mut v6 = vec![0x60, 0, 0, 0, 0, 0, 17, 64];
        v6.extend([0xfd; 16]);
        v6.extend([0x20; 16]);
        let got = ip_pair(229, &v6).unwrap();
        assert_eq!((got.0.len(), got.1[0]), (16, 0x20));
        // Not IP, or cut short: none, never a panic.
        assert_eq!(ip_pair(1, &eth(&[0x08, 0x06, 0, 1])), None);
        assert_eq!(ip_pair(1, &eth(&[0x81, 0x00, 0])), None);
        assert_eq!(ip_pair(1, &eth(&[0x08, 0x00, 0x45, 0])), None);
        assert_eq!(ip_pair(147, &ip), None);
        for lt in [0, 1, 12, 14, 101, 108, 113, 228, 229, 276] {
            for len in 0..64 {
                let _ = ip_pair(lt, &vec![0x81; len]);
                let _ = ip_pair(lt, &tagged[..len.min(tagged.len())]);
            }
        }
    }

    #[test]
    fn shares_are_symmetric_and_spread() {
        let mut seen = [0u32; 3];
        for i in 0..=255u8 {
            let a = [10, 0, 0, i];
            let b = [198, 51, 100, 7];
            let s = share_of_pair(&a, &b, 3);
            assert_eq!(s, share_of_pair(&b, &a, 3));
            seen[s] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        assert_eq!(share_of_pair(&[1, 2, 3, 4], &[5, 6, 7, 8], 1), 0);
    }
}
