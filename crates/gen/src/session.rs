//! A session is a script of operations over one or more flows (an FTP control connection and its
//! data connections, a TFTP request and its transfer, one SMB or HTTP connection, ...). The
//! scheduler asks it for one packet at a time, so many sessions interleave packet by packet.
//!
//! Operations: a TCP handshake, a message from one side (cut into MSS-sized segments, the
//! receiver acknowledging every second segment and at the end unless it answers at once), a
//! TCP teardown (FIN/ACK, FIN/ACK, ACK), a UDP datagram, and a TFTP transfer (DATA blocks and
//! ACKs in windows).

use crate::net::{Conn, ACK, FIN, PSH, SYN};

/// Bytes of random content the bulk data is drawn from (it repeats beyond that).
pub const CONTENT_LEN: usize = 4 << 20;
/// Extra bytes after the content (a copy of its start) so any slice up to this long is
/// contiguous.
pub const CONTENT_TAIL: usize = 65536 + 1024;

/// The shared random content.
pub struct Content(Vec<u8>);

impl Content {
    /// Content drawn from `seed`.
    pub fn new(seed: u64) -> Content {
        let mut v = vec![0u8; CONTENT_LEN + CONTENT_TAIL];
        crate::rng::Rng::derive(seed, 0xc0, 0).fill(&mut v[..CONTENT_LEN]);
        v.copy_within(..CONTENT_TAIL, CONTENT_LEN);
        Content(v)
    }

    /// `len` (≤ [`CONTENT_TAIL`]) bytes at stream position `pos`.
    #[inline]
    pub fn at(&self, pos: u64, len: usize) -> &[u8] {
        let p = (pos % CONTENT_LEN as u64) as usize;
        &self.0[p..p + len]
    }
}

/// One operation of a session script.
#[allow(
    missing_docs,
    reason = "short fields, named in the variant's doc where they need it"
)]
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// TCP handshake of flow `c`.
    Open { c: u8 },
    /// A message from `side` on TCP flow `c`: `hl` bytes of the arena at `h0`, then `rand`
    /// random bytes starting at content position `rpos`.
    Msg {
        c: u8,
        side: u8,
        h0: u32,
        hl: u32,
        rand: u64,
        rpos: u32,
    },
    /// TCP teardown of flow `c`, `first` sending the first FIN.
    Close { c: u8, first: u8 },
    /// One UDP datagram from `side` on flow `c`.
    Dgram {
        c: u8,
        side: u8,
        h0: u32,
        hl: u32,
        rand: u32,
        rpos: u32,
    },
    /// A TFTP transfer on UDP flow `c` (side 0 the requester, side 1 the server's new port).
    Tftp {
        c: u8,
        write: bool,
        blksize: u16,
        window: u16,
        size: u64,
        /// OACK in the arena (`ol` 0: none).
        o0: u32,
        ol: u32,
        rpos: u32,
    },
}

#[derive(Clone, Copy, Debug, Default)]
struct St {
    step: u32,
    off: u64,
    segs: u32,
    ack_due: bool,
    block: u64,
    inwin: u32,
}

/// What one step produced: a TCP segment or UDP datagram from `side` of flow `c`, whose payload
/// is `a` (a range of the arena, or the TFTP header scratch when `hdr`) followed by `b`.
#[derive(Clone, Copy, Debug)]
pub struct Emit {
    /// Flow index.
    pub c: usize,
    /// Sending side.
    pub side: usize,
    /// UDP datagram (else TCP segment).
    pub udp: bool,
    /// TCP flags.
    pub flags: u8,
    /// Arena range of the first part of the payload.
    pub a: (u32, u32),
    /// The first part is the TFTP header scratch instead.
    pub hdr: bool,
    /// Random part of the payload.
    pub b: Rnd,
}

impl Emit {
    fn tcp(c: usize, side: usize, flags: u8) -> Emit {
        Emit {
            c,
            side,
            udp: false,
            flags,
            a: (0, 0),
            hdr: false,
            b: Rnd::default(),
        }
    }
    fn udp(c: usize, side: usize) -> Emit {
        Emit {
            c,
            side,
            udp: true,
            flags: 0,
            a: (0, 0),
            hdr: false,
            b: Rnd::default(),
        }
    }
    fn arena(mut self, a: (u32, u32)) -> Emit {
        self.a = a;
        self
    }
    fn header(mut self) -> Emit {
        self.hdr = true;
        self
    }
    fn rnd(mut self, b: Rnd) -> Emit {
        self.b = b;
        self
    }
}

/// Random payload bytes: `len` bytes at content position `pos` (or a TFTP header + data).
#[derive(Clone, Copy, Debug, Default)]
pub struct Rnd {
    /// Content position.
    pub pos: u64,
    /// Length.
    pub len: usize,
}

/// A running session.
pub struct Session {
    /// Its flows.
    pub conns: Vec<Conn>,
    /// Its script.
    pub ops: Vec<Op>,
    /// Message bytes the script refers to.
    pub arena: Vec<u8>,
    pc: usize,
    st: St,
    /// Scratch for TFTP headers.
    pub hdr: [u8; 4],
}

impl Session {
    /// An empty session.
    pub fn new() -> Session {
        Session {
            conns: Vec::with_capacity(2),
            ops: Vec::with_capacity(8),
            arena: Vec::new(),
            pc: 0,
            st: St::default(),
            hdr: [0; 4],
        }
    }

    /// All operations done.
    pub fn done(&self) -> bool {
        self.pc >= self.ops.len()
    }

    fn advance(&mut self) {
        self.pc += 1;
        self.st = St::default();
    }

    /// Whether the next operation is a message on the same flow from `side`.
    fn next_msg_from(&self, c: u8, side: u8) -> bool {
        matches!(self.ops.get(self.pc + 1), Some(Op::Msg { c: c2, side: s2, .. }) if *c2 == c && *s2 == side)
    }

    /// Computes the next packet. The caller writes it (see [`Emit`]) and calls again until
    /// [`Session::done`].
    pub fn step(&mut self) -> Emit {
        let op = self.ops[self.pc];
        match op {
            Op::Open { c } => {
                let s = self.st.step;
                self.st.step += 1;
                if s == 2 {
                    self.advance();
                }
                let (side, flags) = match s {
                    0 => (0, SYN),
                    1 => (1, SYN | ACK),
                    _ => (0, ACK),
                };
                Emit::tcp(c as usize, side, flags)
            }
            Op::Close { c, first } => {
                let s = self.st.step;
                self.st.step += 1;
                if s == 2 {
                    self.advance();
                }
                let first = first as usize;
                let (side, flags) = match s {
                    0 => (first, FIN | ACK),
                    1 => (1 - first, FIN | ACK),
                    _ => (first, ACK),
                };
                Emit::tcp(c as usize, side, flags)
            }
            Op::Msg {
                c,
                side,
                h0,
                hl,
                rand,
                rpos,
            } => {
                let total = u64::from(hl) + rand;
                if self.st.ack_due {
                    self.st.ack_due = false;
                    self.st.segs = 0;
                    if self.st.off >= total {
                        self.advance();
                    }
                    return Emit::tcp(c as usize, 1 - side as usize, ACK);
                }
                let mss = self.conns[c as usize].mss() as u64;
                let off = self.st.off;
                let len = mss.min(total - off);
                let end = off + len;
                let hl64 = u64::from(hl);
                let a = if off < hl64 {
                    (h0 + off as u32, h0 + end.min(hl64) as u32)
                } else {
                    (0, 0)
                };
                let b = if end > hl64 {
                    let start = off.max(hl64) - hl64;
                    Rnd {
                        pos: u64::from(rpos) + start,
                        len: (end - off.max(hl64)) as usize,
                    }
                } else {
                    Rnd::default()
                };
                self.st.off = end;
                self.st.segs += 1;
                let mut flags = ACK;
                if end == total {
                    flags |= PSH;
                    if self.next_msg_from(c, 1 - side) {
                        // The answer carries the acknowledgement.
                        self.advance();
                    } else if self.next_msg_from(c, side) {
                        // More from the same side: the receiver keeps acknowledging every
                        // second segment across messages.
                        let segs = self.st.segs;
                        if segs >= 2 {
                            self.st.ack_due = true;
                        } else {
                            self.advance();
                            self.st.segs = segs;
                        }
                    } else {
                        self.st.ack_due = true;
                    }
                } else if self.st.segs >= 2 {
                    self.st.ack_due = true;
                }
                Emit::tcp(c as usize, side as usize, flags).arena(a).rnd(b)
            }
            Op::Dgram {
                c,
                side,
                h0,
                hl,
                rand,
                rpos,
            } => {
                self.advance();
                Emit::udp(c as usize, side as usize)
                    .arena((h0, h0 + hl))
                    .rnd(Rnd {
                        pos: u64::from(rpos),
                        len: rand as usize,
                    })
            }
            Op::Tftp {
                c,
                write,
                blksize,
                window,
                size,
                o0,
                ol,
                rpos,
            } => self.tftp_step(c, write, blksize, window, size, o0, ol, rpos),
        }
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the state of one TFTP transfer step, passed by value"
    )]
    fn tftp_step(
        &mut self,
        c: u8,
        write: bool,
        blksize: u16,
        window: u16,
        size: u64,
        o0: u32,
        ol: u32,
        rpos: u32,
    ) -> Emit {
        let c = c as usize;
        let data_side = if write { 0 } else { 1 };
        let blk = u64::from(blksize);
        let blocks = size / blk + 1;
        // step 0: the server's first answer (OACK, or ACK 0 to a write); step 1: the
        // requester's ACK 0 after an OACK to a read; step 2: DATA and ACKs.
        if self.st.step == 0 {
            self.st.block = 1;
            if ol > 0 {
                self.st.step = if write { 2 } else { 1 };
                return Emit::udp(c, 1).arena((o0, o0 + ol));
            }
            self.st.step = 2;
            if write {
                self.hdr = [0, 4, 0, 0];
                return Emit::udp(c, 1).header();
            }
        }
        if self.st.step == 1 {
            self.st.step = 2;
            self.hdr = [0, 4, 0, 0];
            return Emit::udp(c, 0).header();
        }
        if self.st.ack_due {
            self.st.ack_due = false;
            self.st.inwin = 0;
            let acked = (self.st.block - 1) as u16;
            if self.st.block > blocks {
                self.advance();
            }
            self.hdr = [0, 4, (acked >> 8) as u8, acked as u8];
            return Emit::udp(c, 1 - data_side).header();
        }
        let n = self.st.block;
        let len = if n == blocks {
            size - (n - 1) * blk
        } else {
            blk
        };
        let wire_block = n as u16;
        self.hdr = [0, 3, (wire_block >> 8) as u8, wire_block as u8];
        self.st.block += 1;
        self.st.inwin += 1;
        if self.st.inwin >= u32::from(window) || self.st.block > blocks {
            self.st.ack_due = true;
        }
        Emit::udp(c, data_side).header().rnd(Rnd {
            pos: u64::from(rpos) + (n - 1) * blk,
            len: len as usize,
        })
    }

    /// The first part of an emitted payload.
    pub fn head(&self, e: &Emit) -> &[u8] {
        if e.hdr {
            &self.hdr
        } else {
            &self.arena[e.a.0 as usize..e.a.1 as usize]
        }
    }

    /// Estimated frame bytes of the whole script.
    pub fn estimate(&self) -> u64 {
        let mut total = 0u64;
        for (k, op) in self.ops.iter().enumerate() {
            total += match *op {
                Op::Open { c } | Op::Close { c, .. } => {
                    3 * (66 + 16 + if self.conns[c as usize].v6() { 20 } else { 0 })
                }
                Op::Msg {
                    c, side, hl, rand, ..
                } => {
                    let conn = &self.conns[c as usize];
                    let hdr = 66 + if conn.v6() { 20 } else { 0 };
                    let len = u64::from(hl) + rand;
                    let segs = len.div_ceil(conn.mss() as u64);
                    let answered = matches!(self.ops.get(k + 1), Some(Op::Msg { c: c2, side: s2, .. }) if *c2 == c && *s2 != side);
                    let acks = segs.saturating_sub(1) / 2 + u64::from(!answered);
                    len + segs * hdr + acks * hdr + segs * 16
                }
                Op::Dgram { c, hl, rand, .. } => {
                    let hdr = 42 + if self.conns[c as usize].v6() { 20 } else { 0 };
                    u64::from(hl) + u64::from(rand) + hdr + 16
                }
                Op::Tftp {
                    c,
                    blksize,
                    window,
                    size,
                    ..
                } => {
                    let hdr = 46 + if self.conns[c as usize].v6() { 20 } else { 0 };
                    let blocks = size / u64::from(blksize) + 1;
                    size + blocks * (hdr + 16) + (blocks / u64::from(window) + 2) * (hdr + 16)
                }
            };
        }
        total
    }

    // -------------------------------------------------------------------------------------
    // Building
    // -------------------------------------------------------------------------------------

    /// Adds a flow; returns its index.
    pub fn conn(&mut self, c: Conn) -> u8 {
        self.conns.push(c);
        (self.conns.len() - 1) as u8
    }

    fn put(&mut self, bytes: &[u8]) -> (u32, u32) {
        let at = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        (at, bytes.len() as u32)
    }

    /// TCP handshake.
    pub fn open(&mut self, c: u8) {
        self.ops.push(Op::Open { c });
    }

    /// TCP teardown.
    pub fn close(&mut self, c: u8, first: u8) {
        self.ops.push(Op::Close { c, first });
    }

    /// A message of `head` followed by `rand` random bytes from content position `rpos`.
    pub fn msg_rand(&mut self, c: u8, side: u8, head: &[u8], rand: u64, rpos: u32) {
        debug_assert!(!head.is_empty() || rand > 0);
        let (h0, hl) = self.put(head);
        self.ops.push(Op::Msg {
            c,
            side,
            h0,
            hl,
            rand,
            rpos,
        });
    }

    /// A message.
    pub fn msg(&mut self, c: u8, side: u8, bytes: &[u8]) {
        self.msg_rand(c, side, bytes, 0, 0);
    }

    /// A UDP datagram.
    pub fn dgram(&mut self, c: u8, side: u8, bytes: &[u8]) {
        let (h0, hl) = self.put(bytes);
        self.ops.push(Op::Dgram {
            c,
            side,
            h0,
            hl,
            rand: 0,
            rpos: 0,
        });
    }

    /// A TFTP transfer.
    #[allow(
        clippy::too_many_arguments,
        reason = "the parameters of one TFTP transfer (block size, window, size, options)"
    )]
    pub fn tftp(
        &mut self,
        c: u8,
        write: bool,
        blksize: u16,
        window: u16,
        size: u64,
        oack: Option<&[u8]>,
        rpos: u32,
    ) {
        let (o0, ol) = match oack {
            Some(o) => self.put(o),
            None => (0, 0),
        };
        self.ops.push(Op::Tftp {
            c,
            write,
            blksize,
            window,
            size,
            o0,
            ol,
            rpos,
        });
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}
