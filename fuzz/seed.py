#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, cut from real captures (pcap or pcapng).

Usage: seed.py OUT_DIR CAPTURE_OR_DIR...

Writes OUT_DIR/<target>/<sha1> files in each target's input format (see src/lib.rs):
  decode       single frames: [link selector][snapped=0][frame]
  defrag       record streams of frames: the captures' own fragments, and real IPv4/IPv6 packets
               cut into fragments here (in order, reversed, with an overlapping copy)
  reassembly   one TCP direction as ops: SYN, then segments at their real sequence numbers
  fingerprint  TCP flows as record streams of payloads (mode 0), UDP flows as datagrams (mode 1)
  ftp, smb     TCP conversations of those protocols as record streams (bit 0 = client to server)
  tftp         UDP conversations between one host pair (bit 0 = from the requester)
  pipeline     each capture cut at a packet boundary to at most 64 KiB
Standard library only; deterministic (same captures, same seeds).
"""
import hashlib
import os
import struct
import sys

LINK_DLTS = [0, 1, 9, 50, 101, 104, 108, 113, 228, 229, 276]
DLT_ALIAS = {12: 101, 14: 101}
PIPELINE_MAX = 64 * 1024
STREAM_MAX = 64 * 1024
MAX_PER_TARGET = 400


def read_capture(data):
    """(dlt, [(ts_us, frame)], blocks) where blocks lets the capture be cut at a packet boundary:
    a list of (end offset, is_packet)."""
    if len(data) < 24:
        return None
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        dlt = struct.unpack(e + "I", data[20:24])[0] & 0xFFFF
        frames, ends, at = [], [], 24
        while at + 16 <= len(data):
            sec, frac, incl, _orig = struct.unpack(e + "IIII", data[at:at + 16])
            if at + 16 + incl > len(data):
                break
            frames.append((sec * 1_000_000 + frac, data[at + 16:at + 16 + incl]))
            at += 16 + incl
            ends.append(at)
        return dlt, frames, [(24, False)] + [(x, True) for x in ends]
    if magic == b"\x0a\x0d\x0d\x0a":
        e = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        dlts, frames, blocks, at = [], [], [], 0
        while at + 12 <= len(data):
            btype, blen = struct.unpack(e + "II", data[at:at + 8])
            if blen < 12 or at + blen > len(data):
                break
            body = data[at + 8:at + blen - 4]
            is_pkt = False
            if btype == 1 and len(body) >= 2:
                dlts.append(struct.unpack(e + "H", body[:2])[0])
            elif btype == 6 and len(body) >= 20:
                iface, hi, lo, cap, _orig = struct.unpack(e + "IIIII", body[:20])
                frames.append((((hi << 32) | lo), body[20:20 + cap]))
                is_pkt = True
            elif btype == 3 and len(body) >= 4:
                frames.append((0, body[4:]))
                is_pkt = True
            at += blen
            blocks.append((at, is_pkt))
        return (dlts[0] if dlts else 1), frames, blocks
    return None


def ip_of(dlt, frame):
    """(ip bytes, vlan) of a frame, or None."""
    if dlt == 1:
        at, etype, vlan = 14, None, 0
        if len(frame) < 14:
            return None
        etype = struct.unpack(">H", frame[12:14])[0]
        while etype in (0x8100, 0x88A8) and len(frame) >= at + 4:
            vlan = vlan or struct.unpack(">H", frame[at:at + 2])[0] & 0xFFF
            etype = struct.unpack(">H", frame[at + 2:at + 4])[0]
            at += 4
        return (frame[at:], vlan) if etype in (0x0800, 0x86DD) else None
    if dlt == 113 and len(frame) >= 16:
        return frame[16:], 0
    if dlt == 276 and len(frame) >= 20:
        return frame[20:], 0
    if dlt in (0, 108) and len(frame) >= 4:
        return frame[4:], 0
    if dlt in (12, 14, 101, 228, 229):
        return frame, 0
    return None


def l4_of(ip):
    """(proto, src, dst, l4 bytes, ipv4 header length or None, frag info) of an IP packet."""
    if len(ip) < 20:
        return None
    v = ip[0] >> 4
    if v == 4:
        ihl = (ip[0] & 15) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        fl = struct.unpack(">H", ip[6:8])[0]
        frag = (fl & 0x2000) or (fl & 0x1FFF)
        return ip[9], ip[12:16], ip[16:20], ip[ihl:max(ihl, min(total, len(ip)))], ihl, frag
    if v == 6 and len(ip) >= 40:
        nh, at = ip[6], 40
        frag = False
        while nh in (0, 43, 60, 44) and len(ip) >= at + 8:
            if nh == 44:
                frag = True
                nh, at = ip[at], at + 8
            else:
                nh, at = ip[at], at + (ip[at + 1] + 1) * 8
        plen = struct.unpack(">H", ip[4:6])[0]
        return nh, ip[8:24], ip[24:40], ip[at:40 + plen], None, frag
    return None


def packets(dlt, frames):
    """Decoded TCP/UDP packets: dicts with proto, endpoints, tcp fields and payload."""
    out = []
    for ts, frame in frames:
        r = ip_of(dlt, frame)
        if not r:
            continue
        l4 = l4_of(r[0])
        if not l4 or l4[5]:
            continue
        proto, src, dst, seg = l4[0], l4[1], l4[2], l4[3]
        if proto == 6 and len(seg) >= 20:
            sport, dport, seq, ack = struct.unpack(">HHII", seg[:12])
            off = (seg[12] >> 4) * 4
            flags = seg[13]
            out.append(dict(proto=6, src=(src, sport), dst=(dst, dport), seq=seq, ack=ack,
                            flags=flags, payload=seg[off:]))
        elif proto == 17 and len(seg) >= 8:
            sport, dport = struct.unpack(">HH", seg[:4])
            out.append(dict(proto=17, src=(src, sport), dst=(dst, dport), payload=seg[8:]))
    return out


def flows(pkts, by_hosts=False):
    """Packets grouped into conversations (both directions), in arrival order; the first sender
    (or the SYN's sender) is the client."""
    groups, order = {}, []
    for p in pkts:
        a, b = (p["src"][0], p["dst"][0]) if by_hosts else (p["src"], p["dst"])
        key = (p["proto"],) + tuple(sorted([a, b]))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(p)
    result = []
    for k in order:
        ps = groups[k]
        client = ps[0]["src"]
        for p in ps:
            if p["proto"] == 6 and p["flags"] & 0x12 == 0x02:
                client = p["src"]
                break
        if by_hosts:
            client = client[0]
        result.append((client, ps))
    return result


def rec(flags, data):
    return bytes([flags]) + struct.pack("<H", len(data)) + data


def stream_records(client, ps, by_hosts=False, limit=STREAM_MAX):
    out, total = bytearray(), 0
    for p in ps:
        d = p["payload"]
        if not d:
            continue
        sender = p["src"][0] if by_hosts else p["src"]
        out += rec(1 if sender == client else 0, d[:65535])
        total += len(d)
        if total >= limit:
            break
    return bytes(out)


def ipv4_fragments(ip, piece):
    """An IPv4 packet cut into fragments of `piece` bytes (a multiple of 8)."""
    ihl = (ip[0] & 15) * 4
    hdr, body = bytearray(ip[:ihl]), ip[ihl:]
    frags = []
    for off in range(0, len(body), piece):
        part = body[off:off + piece]
        h = bytearray(hdr)
        more = off + piece < len(body)
        struct.pack_into(">H", h, 2, ihl + len(part))
        struct.pack_into(">H", h, 6, (0x2000 if more else 0) | (off // 8))
        struct.pack_into(">H", h, 4, 0x4242)
        frags.append(bytes(h) + part)
    return frags


def ipv6_fragments(ip, piece):
    nh, body = ip[6], ip[40:]
    frags = []
    for off in range(0, len(body), piece):
        part = body[off:off + piece]
        more = off + piece < len(body)
        h = bytearray(ip[:40])
        h[6] = 44
        struct.pack_into(">H", h, 4, 8 + len(part))
        fh = bytes([nh, 0]) + struct.pack(">HI", off | (1 if more else 0), 0x4242)
        frags.append(bytes(h) + fh + part)
    return frags


ETH4 = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
ETH6 = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x86\xdd"


def main():
    out_dir, inputs = sys.argv[1], sys.argv[2:]
    paths = []
    for i in inputs:
        if os.path.isdir(i):
            paths += sorted(os.path.join(i, f) for f in os.listdir(i)
                            if f.endswith((".pcap", ".pcapng", ".cap")))
        elif os.path.isfile(i):
            paths.append(i)
    seeds = {t: [] for t in ("decode", "defrag", "reassembly", "fingerprint", "ftp", "smb",
                             "tftp", "pipeline")}

    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        cap = read_capture(data)
        if not cap:
            continue
        dlt, frames, blocks = cap
        # pipeline: the capture up to the last whole packet within PIPELINE_MAX.
        cut = 0
        for end, _ in blocks:
            if end > PIPELINE_MAX:
                break
            cut = end
        if cut:
            seeds["pipeline"].append(data[:cut])
        # decode: the first distinct frames.
        d = DLT_ALIAS.get(dlt, dlt)
        if d in LINK_DLTS:
            for _, fr in frames[:16]:
                seeds["decode"].append(bytes([LINK_DLTS.index(d), 0]) + fr)
        # defrag: the capture's own fragments, then real packets cut into fragments.
        own = bytearray()
        for _, fr in frames:
            r = ip_of(dlt, fr)
            l4 = r and l4_of(r[0])
            if l4 and l4[5] and dlt == 1:
                own += rec(0, fr)
        if own:
            seeds["defrag"].append(bytes(own[:STREAM_MAX]))
        cut_some = 0
        for _, fr in frames:
            r = ip_of(dlt, fr)
            if not r or cut_some >= 4:
                continue
            ip = r[0]
            l4 = l4_of(ip)
            if not l4 or l4[5] or len(l4[3]) < 40:
                continue
            if ip[0] >> 4 == 4:
                frs = [ETH4 + x for x in ipv4_fragments(ip, 16 + 8 * cut_some)]
            else:
                frs = [ETH6 + x for x in ipv6_fragments(ip, 16 + 8 * cut_some)]
            variants = [frs, frs[::-1], frs[:1] + frs + frs[-1:]]
            seeds["defrag"].append(b"".join(rec(0, x) for x in variants[cut_some % 3]))
            cut_some += 1

        pkts = packets(dlt, frames)
        for client, ps in flows(pkts):
            if ps[0]["proto"] == 6:
                records = stream_records(client, ps)
                if not records:
                    continue
                seeds["fingerprint"].append(b"\x00" + stream_records(client, ps, limit=8192))
                ports = {client[1]} | {p["dst"][1] for p in ps}
                payload = b"".join(p["payload"][:64] for p in ps[:40])
                if 21 in ports or payload.startswith(b"220") or b"\r\n220" in payload[:512]:
                    seeds["ftp"].append(records)
                if ports & {139, 445} or b"\xfeSMB" in payload or b"\xffSMB" in payload:
                    seeds["smb"].append(records)
                # reassembly: the client direction as ops.
                ops = bytearray([2, 2])
                n = 0
                for p in ps:
                    if p["src"] != client:
                        continue
                    if p["flags"] & 0x02:
                        ops += b"\x00" + struct.pack("<I", p["seq"])
                    elif p["payload"] and n < 64:
                        pl = p["payload"][:65535]
                        ops += b"\x01" + struct.pack("<IH", p["seq"], len(pl)) + pl
                        n += 1
                        if n % 8 == 0:
                            ops += b"\x06" + struct.pack("<H", 1024)
                if n:
                    seeds["reassembly"].append(bytes(ops))
            else:
                records = stream_records(client, ps[:16])
                if records:
                    seeds["fingerprint"].append(b"\x01" + records)
        # tftp: UDP conversations grouped by host pair (transfers move to new ports).
        udp = [p for p in pkts if p["proto"] == 17]
        for client, ps in flows(udp, by_hosts=True):
            if any(p["dst"][1] == 69 or p["payload"][:2] in (b"\x00\x01", b"\x00\x02") for p in ps[:2]):
                records = stream_records(client, ps, by_hosts=True)
                if records:
                    seeds["tftp"].append(records)

    for target, items in seeds.items():
        d = os.path.join(out_dir, target)
        os.makedirs(d, exist_ok=True)
        seen = set()
        for s in items:
            h = hashlib.sha1(s).hexdigest()
            if h in seen or len(seen) >= MAX_PER_TARGET:
                continue
            seen.add(h)
            with open(os.path.join(d, h), "wb") as f:
                f.write(s)
        print(f"{target}: {len(seen)} seeds")


if __name__ == "__main__":
    main()
