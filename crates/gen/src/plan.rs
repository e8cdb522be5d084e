//! What to generate: the profiles (which sessions, how large, in which order) and the builders
//! that turn one planned session into a script of packets.

use crate::expect::Expect;
use crate::net::{external_ep, internal_ep, Conn, Endpoint, EXTERNAL_HOSTS};
use crate::proto::{self, smb2, Hdr};
use crate::rng::{mix, Rng};
use crate::session::{Session, CONTENT_LEN};
use std::collections::{HashSet, VecDeque};

/// Traffic profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// A few large transfers.
    Bulk,
    /// Tens of thousands of concurrent short flows.
    ManyFlows,
    /// A realistic mix with every kind of transfer and mismatch.
    Mixed,
}

impl Profile {
    /// Parses `bulk`, `many-flows` or `mixed`.
    pub fn parse(s: &str) -> Option<Profile> {
        match s {
            "bulk" => Some(Profile::Bulk),
            "many-flows" | "many_flows" | "manyflows" => Some(Profile::ManyFlows),
            "mixed" => Some(Profile::Mixed),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Bulk => "bulk",
            Profile::ManyFlows => "many-flows",
            Profile::Mixed => "mixed",
        }
    }

    /// Default number of internal hosts.
    pub fn default_hosts(self) -> u32 {
        match self {
            Profile::Bulk => 8,
            Profile::ManyFlows => 5000,
            Profile::Mixed => 200,
        }
    }

    /// Default number of sessions running at once.
    pub fn default_concurrency(self) -> usize {
        match self {
            Profile::Bulk => 4,
            Profile::ManyFlows => 60_000,
            Profile::Mixed => 64,
        }
    }
}

/// How an FTP data connection is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FtpMode {
    /// PASV / 227.
    Pasv,
    /// EPSV / 229.
    Epsv,
    /// PORT / 200 (the server connects from port 20).
    Port,
    /// EPRT / 200.
    Eprt,
}

/// Kind of session.
#[allow(
    missing_docs,
    reason = "short fields, named in the variant's doc where they need it"
)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// FTP upload (STOR) with the control connection on `port`.
    FtpUp { mode: FtpMode, port: u16 },
    /// FTP download (RETR).
    FtpDown { mode: FtpMode, port: u16 },
    /// TFTP write request to `port`.
    TftpWrite { port: u16, opts: bool },
    /// TFTP read request.
    TftpRead { port: u16, opts: bool },
    /// SMB2/3 upload (WRITE) on `port`; `enc`: SMB3 encrypted; `big`: 1 MiB writes.
    SmbWrite { port: u16, enc: bool, big: bool },
    /// SMB2 download (READ).
    SmbRead { port: u16 },
    /// HTTP/1.1 GET (or POST) on `port`.
    Http { port: u16, post: bool },
    /// TLS 1.3 on `port`.
    Tls { port: u16 },
    /// DNS over UDP 53.
    Dns,
    /// SSH on 22.
    Ssh,
}

/// One planned session.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// What.
    pub kind: Kind,
    /// Payload bytes: the files of a transfer, the bodies of HTTP, the application data of TLS
    /// and SSH.
    pub size: u64,
    /// Files of a transfer session.
    pub files: u32,
    /// Over IPv6.
    pub v6: bool,
}

impl Spec {
    fn new(kind: Kind, size: u64) -> Spec {
        Spec {
            kind,
            size,
            files: 1,
            v6: false,
        }
    }
    fn files(mut self, n: u32) -> Spec {
        self.files = n;
        self
    }
    fn v6(mut self, v6: bool) -> Spec {
        self.v6 = v6;
        self
    }

    /// A transfer (FTP, TFTP, SMB) session.
    pub fn is_transfer(&self) -> bool {
        !matches!(
            self.kind,
            Kind::Http { .. } | Kind::Tls { .. } | Kind::Dns | Kind::Ssh
        )
    }
}

/// Packet time of the first packet: 2026-01-15 09:00:00 UTC.
pub const BASE_UNIX: u64 = 1_768_467_600;

/// Hosts and their port allocators.
pub struct World {
    hosts: u32,
    seed: u64,
    next_port: Vec<u16>,
    pairs: HashSet<(u32, u32, bool)>,
    /// Transfer sessions that reused a host pair.
    pub pair_reuse: u64,
}

const EPH_LO: u16 = 32768;
const EPH_HI: u16 = 60999;

impl World {
    /// `hosts` internal hosts.
    pub fn new(hosts: u32, seed: u64) -> World {
        let hosts = hosts.max(1);
        let next_port = (0..hosts)
            .map(|i| {
                EPH_LO
                    + (mix(seed ^ (u64::from(i) << 20) ^ 0xe9) % u64::from(EPH_HI - EPH_LO)) as u16
            })
            .collect();
        World {
            hosts,
            seed,
            next_port,
            pairs: HashSet::new(),
            pair_reuse: 0,
        }
    }

    /// The next ephemeral port of internal host `i`.
    pub fn eph(&mut self, i: u32) -> u16 {
        let p = &mut self.next_port[i as usize];
        let port = *p;
        *p = if port >= EPH_HI { EPH_LO } else { port + 1 };
        port
    }

    fn host(&self, r: &mut Rng) -> u32 {
        r.below(u64::from(self.hosts)) as u32
    }

    fn ext(r: &mut Rng) -> u32 {
        r.below(u64::from(EXTERNAL_HOSTS)) as u32
    }

    /// A host pair for a transfer session, not used by another transfer session if one can be
    /// found (so that the sensor's per-pair roll-up never adds two sessions together).
    fn transfer_pair(&mut self, r: &mut Rng, v6: bool) -> (u32, u32) {
        let mut last = (0, 0);
        for _ in 0..64 {
            let (i, j) = (self.host(r), World::ext(r));
            if self.pairs.insert((i, j, v6)) {
                return (i, j);
            }
            last = (i, j);
        }
        self.pair_reuse += 1;
        last
    }
}

fn filetime(r: &mut Rng) -> u64 {
    (BASE_UNIX - r.below(86400 * 400) + 11_644_473_600) * 10_000_000 + r.below(10_000_000)
}

fn rpos(r: &mut Rng) -> u32 {
    r.below(CONTENT_LEN as u64) as u32
}

/// Splits `total` into `n` positive parts.
fn split(total: u64, n: u32, r: &mut Rng) -> Vec<u64> {
    let n = u64::from(n.max(1)).min(total.max(1));
    let weights: Vec<u64> = (0..n).map(|_| 1 + r.below(100)).collect();
    let sum: u64 = weights.iter().sum();
    let mut parts: Vec<u64> = weights
        .iter()
        .map(|w| ((u128::from(total) * u128::from(*w)) / u128::from(sum)) as u64)
        .map(|p| p.max(1))
        .collect();
    let assigned: u64 = parts.iter().sum();
    if assigned < total {
        parts[0] += total - assigned;
    }
    parts
}

/// Builds the script of session number `idx`.
pub fn build(spec: &Spec, idx: u64, w: &mut World, x: &mut Expect) -> Session {
    let mut r = Rng::derive(w.seed, 1, idx);
    let mut s = Session::new();
    match spec.kind {
        Kind::FtpUp { mode, port } => ftp(&mut s, spec, true, mode, port, w, x, &mut r),
        Kind::FtpDown { mode, port } => ftp(&mut s, spec, false, mode, port, w, x, &mut r),
        Kind::TftpWrite { port, opts } => tftp(&mut s, spec, true, port, opts, w, x, &mut r),
        Kind::TftpRead { port, opts } => tftp(&mut s, spec, false, port, opts, w, x, &mut r),
        Kind::SmbWrite { port, enc, big } => smb(&mut s, spec, true, port, enc, big, w, x, &mut r),
        Kind::SmbRead { port } => smb(&mut s, spec, false, port, false, false, w, x, &mut r),
        Kind::Http { port, post } => http(&mut s, spec, port, post, w, x, &mut r),
        Kind::Tls { port } => tls(&mut s, spec, port, w, x, &mut r),
        Kind::Dns => dns(&mut s, spec, w, x, &mut r),
        Kind::Ssh => ssh(&mut s, spec, w, x, &mut r),
    }
    x.pair_reuse = w.pair_reuse;
    s
}

/// A client flow from a new port of internal host `i` to external host `j`.
#[allow(
    clippy::too_many_arguments,
    reason = "generator plumbing: world, rng and the flow's own parameters"
)]
fn client_flow(
    w: &mut World,
    i: u32,
    j: u32,
    v6: bool,
    port: u16,
    udp: bool,
    app: &'static str,
    r: &mut Rng,
) -> Conn {
    let cli = internal_ep(i, v6, w.eph(i));
    let srv = external_ep(j, v6, port);
    Conn::new(udp, cli, srv, app, r.next_u64())
}

// ---------------------------------------------------------------------------------------------
// FTP
// ---------------------------------------------------------------------------------------------

#[allow(
    clippy::too_many_arguments,
    reason = "generator plumbing: session, spec, world, expectations, rng, then the variant"
)]
fn ftp(
    s: &mut Session,
    spec: &Spec,
    upload: bool,
    mode: FtpMode,
    port: u16,
    w: &mut World,
    x: &mut Expect,
    r: &mut Rng,
) {
    let v6 = spec.v6;
    let mode = match (mode, v6) {
        (FtpMode::Pasv, true) => FtpMode::Epsv,
        (FtpMode::Port, true) => FtpMode::Eprt,
        (m, _) => m,
    };
    let (i, j) = w.transfer_pair(r, v6);
    let mut ctl = client_flow(w, i, j, v6, port, false, "ftp", r);
    let sizes = split(spec.size.max(1), spec.files, r);
    let sid = x.session("ftp", &ctl, upload, sizes.iter().sum(), sizes.len() as u32);
    ctl.session = sid;
    x.flow(sid, &ctl);
    x.identified(&ctl);
    let (cli, srv): (Endpoint, Endpoint) = (ctl.ep[0], ctl.ep[1]);
    let c0 = s.conn(ctl);
    let user = proto::user_name(r);
    s.open(c0);
    let greeting = match r.below(4) {
        0 => "220 (vsFTPd 3.0.3)\r\n".to_string(),
        1 => format!("220 ProFTPD Server (files) [{}]\r\n", srv.addr()),
        2 => "220-FileZilla Server 1.8.1\r\n220 Please visit https://filezilla-project.org/\r\n"
            .to_string(),
        _ => "220 Microsoft FTP Service\r\n".to_string(),
    };
    s.msg(c0, 1, greeting.as_bytes());
    s.msg(c0, 0, format!("USER {user}\r\n").as_bytes());
    s.msg(c0, 1, b"331 Please specify the password.\r\n");
    s.msg(
        c0,
        0,
        format!("PASS {}{}!\r\n", user, 1000 + r.below(9000)).as_bytes(),
    );
    s.msg(c0, 1, b"230 Login successful.\r\n");
    if r.chance(1, 2) {
        s.msg(c0, 0, b"SYST\r\n");
        s.msg(c0, 1, b"215 UNIX Type: L8\r\n");
    }
    if r.chance(1, 3) {
        s.msg(c0, 0, b"FEAT\r\n");
        s.msg(
            c0,
            1,
            b"211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n211 End\r\n",
        );
    }
    if r.chance(1, 3) {
        s.msg(c0, 0, b"PWD\r\n");
        s.msg(c0, 1, b"257 \"/home/ftp\" is the current directory\r\n");
        s.msg(c0, 0, b"CWD incoming\r\n");
        s.msg(c0, 1, b"250 Directory successfully changed.\r\n");
    }
    s.msg(c0, 0, b"TYPE I\r\n");
    s.msg(c0, 1, b"200 Switching to Binary mode.\r\n");
    for &size in &sizes {
        let name = proto::file_name(r);
        let passive = matches!(mode, FtpMode::Pasv | FtpMode::Epsv);
        let data = if passive {
            let pport = 40000 + r.below(10000) as u16;
            if mode == FtpMode::Pasv {
                s.msg(c0, 0, b"PASV\r\n");
                let a = srv.ip;
                s.msg(
                    c0,
                    1,
                    format!(
                        "227 Entering Passive Mode ({},{},{},{},{},{}).\r\n",
                        a[0],
                        a[1],
                        a[2],
                        a[3],
                        pport >> 8,
                        pport & 0xff
                    )
                    .as_bytes(),
                );
            } else {
                s.msg(c0, 0, b"EPSV\r\n");
                s.msg(
                    c0,
                    1,
                    format!("229 Entering Extended Passive Mode (|||{pport}|)\r\n").as_bytes(),
                );
            }
            let dcli = cli.with_port(w.eph(i));
            Conn::new(false, dcli, srv.with_port(pport), "ftp-data", r.next_u64())
        } else {
            let lport = w.eph(i);
            if mode == FtpMode::Port {
                let a = cli.ip;
                s.msg(
                    c0,
                    0,
                    format!(
                        "PORT {},{},{},{},{},{}\r\n",
                        a[0],
                        a[1],
                        a[2],
                        a[3],
                        lport >> 8,
                        lport & 0xff
                    )
                    .as_bytes(),
                );
                s.msg(
                    c0,
                    1,
                    b"200 PORT command successful. Consider using PASV.\r\n",
                );
            } else {
                let af = if v6 { 2 } else { 1 };
                s.msg(
                    c0,
                    0,
                    format!("EPRT |{af}|{}|{lport}|\r\n", cli.addr()).as_bytes(),
                );
                s.msg(
                    c0,
                    1,
                    b"200 EPRT command successful. Consider using EPSV.\r\n",
                );
            }
            Conn::new(
                false,
                srv.with_port(20),
                cli.with_port(lport),
                "ftp-data",
                r.next_u64(),
            )
        };
        let mut data = data;
        data.session = sid;
        x.flow(sid, &data);
        let d = s.conn(data);
        if passive {
            s.open(d);
        }
        let cmd = if upload { "STOR" } else { "RETR" };
        s.msg(c0, 0, format!("{cmd} {name}\r\n").as_bytes());
        if !passive {
            s.open(d);
        }
        if upload {
            s.msg(c0, 1, b"150 Ok to send data.\r\n");
        } else {
            s.msg(
                c0,
                1,
                format!("150 Opening BINARY mode data connection for {name} ({size} bytes).\r\n")
                    .as_bytes(),
            );
        }
        // The FTP client is the data connection's client in passive mode, its server in active.
        let ftp_client_side = if passive { 0 } else { 1 };
        let sender = if upload {
            ftp_client_side
        } else {
            1 - ftp_client_side
        };
        s.msg_rand(d, sender, &[], size, rpos(r));
        s.close(d, sender);
        s.msg(c0, 1, b"226 Transfer complete.\r\n");
    }
    s.msg(c0, 0, b"QUIT\r\n");
    s.msg(c0, 1, b"221 Goodbye.\r\n");
    s.close(c0, 1);
}

// ---------------------------------------------------------------------------------------------
// TFTP
// ---------------------------------------------------------------------------------------------

#[allow(
    clippy::too_many_arguments,
    reason = "generator plumbing: session, spec, world, expectations, rng, then the variant"
)]
fn tftp(
    s: &mut Session,
    spec: &Spec,
    write: bool,
    port: u16,
    opts: bool,
    w: &mut World,
    x: &mut Expect,
    r: &mut Rng,
) {
    let v6 = spec.v6;
    let size = spec.size.max(1);
    let (i, j) = w.transfer_pair(r, v6);
    let mut req = client_flow(w, i, j, v6, port, true, "tftp", r);
    let sid = x.session("tftp", &req, write, size, 1);
    req.session = sid;
    x.flow(sid, &req);
    x.identified(&req);
    let tid = EPH_LO + r.below(u64::from(EPH_HI - EPH_LO)) as u16;
    let mut xfer = Conn::new(
        true,
        req.ep[0],
        req.ep[1].with_port(tid),
        "tftp",
        r.next_u64(),
    );
    xfer.session = sid;
    x.flow(sid, &xfer);
    let name = proto::file_name(r);
    let (blksize, window, options) = if opts {
        let blk: u16 = if v6 {
            *r.pick(&[512u16, 1024, 1428])
        } else {
            *r.pick(&[512u16, 1024, 1428, 1468])
        };
        let win: u16 = *r.pick(&[1u16, 1, 4, 8]);
        let mut o = vec![
            ("blksize", blk.to_string()),
            ("tsize", if write { size.to_string() } else { "0".into() }),
        ];
        if win > 1 {
            o.push(("windowsize", win.to_string()));
        }
        (blk, win, o)
    } else {
        (512, 1, Vec::new())
    };
    let c0 = s.conn(req);
    let c1 = s.conn(xfer);
    s.dgram(c0, 0, &proto::tftp_request(write, &name, "octet", &options));
    let oack = (!options.is_empty()).then(|| {
        let acked: Vec<(&str, String)> = options
            .iter()
            .map(|(k, v)| {
                if *k == "tsize" {
                    (*k, size.to_string())
                } else {
                    (*k, v.clone())
                }
            })
            .collect();
        proto::tftp_oack(&acked)
    });
    s.tftp(c1, write, blksize, window, size, oack.as_deref(), rpos(r));
}

// ---------------------------------------------------------------------------------------------
// SMB
// ---------------------------------------------------------------------------------------------

struct Smb {
    c: u8,
    enc: bool,
    session_id: u64,
    tree_id: u32,
    msg_id: u64,
}

impl Smb {
    /// One message: the plain SMB2 message (header + body) followed by `data` bytes, wrapped in
    /// a transform header when encrypted.
    fn send(&self, s: &mut Session, r: &mut Rng, side: u8, h: &Hdr, body: &[u8], data: u64) {
        let mut plain = Vec::with_capacity(64 + body.len());
        proto::smb2_header(&mut plain, h, r);
        plain.extend_from_slice(body);
        let total = plain.len() as u64 + data;
        if self.enc {
            let mut head = proto::nbss(52 + total as usize).to_vec();
            proto::transform_header(&mut head, total as u32, self.session_id, r);
            let p = rpos(r);
            s.msg_rand(self.c, side, &head, total, p);
        } else {
            let mut head = proto::nbss(total as usize).to_vec();
            head.extend_from_slice(&plain);
            let p = rpos(r);
            s.msg_rand(self.c, side, &head, data, p);
        }
    }

    /// A request and its response.
    #[allow(
        clippy::too_many_arguments,
        reason = "one SMB request and response, each with its header fields and data size"
    )]
    fn rr(
        &mut self,
        s: &mut Session,
        r: &mut Rng,
        cmd: u16,
        req: &[u8],
        req_data: u64,
        status: u32,
        rsp: &[u8],
        rsp_data: u64,
        charge: u16,
    ) {
        let signed = self.session_id != 0 && !self.enc && cmd != smb2::SESSION_SETUP;
        let mut h = Hdr {
            cmd,
            resp: false,
            status: 0,
            charge,
            msg_id: self.msg_id,
            tree_id: self.tree_id,
            session_id: self.session_id,
            signed,
        };
        self.send(s, r, 0, &h, req, req_data);
        h.resp = true;
        h.status = status;
        self.send(s, r, 1, &h, rsp, rsp_data);
        self.msg_id += u64::from(charge.max(1));
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "generator plumbing: session, spec, world, expectations, rng, then the variant"
)]
fn smb(
    s: &mut Session,
    spec: &Spec,
    upload: bool,
    port: u16,
    enc: bool,
    big: bool,
    w: &mut World,
    x: &mut Expect,
    r: &mut Rng,
) {
    let v6 = spec.v6;
    let (i, j) = w.transfer_pair(r, v6);
    let mut conn = client_flow(w, i, j, v6, port, false, "smb", r);
    let sizes = split(spec.size.max(1), spec.files, r);
    let sid = x.session("smb", &conn, upload, sizes.iter().sum(), sizes.len() as u32);
    conn.session = sid;
    x.flow(sid, &conn);
    x.identified(&conn);
    let server = format!("FS{:03}", j);
    let workstation = format!("WS{:04}", i);
    let c = s.conn(conn);
    s.open(c);
    if port == 139 {
        s.msg(c, 0, &proto::nbss_session_request(&server, &workstation));
        s.msg(c, 1, &[0x82, 0, 0, 0]);
    }
    let dialect = if enc {
        *r.pick(&[0x0311u16, 0x0302])
    } else {
        *r.pick(&[0x0311u16, 0x0302, 0x0311])
    };
    let mut m = Smb {
        c,
        enc: false,
        session_id: 0,
        tree_id: 0,
        msg_id: 0,
    };
    let ft = filetime(r);
    let mut req = Vec::new();
    let mut rsp = Vec::new();
    proto::negotiate_req(&mut req, &[0x0202, 0x0210, 0x0300, 0x0302, 0x0311], r);
    proto::negotiate_rsp(&mut rsp, dialect, r, ft);
    m.rr(s, r, smb2::NEGOTIATE, &req, 0, 0, &rsp, 0, 1);
    // Session setup: NTLMSSP negotiate/challenge, then authenticate.
    let session_id = 0x0000_4000_0000_0000 | (r.next_u64() & 0xffff_ffff);
    req.clear();
    rsp.clear();
    proto::session_setup_req(&mut req, &proto::ntlm_negotiate());
    proto::session_setup_rsp(&mut rsp, &proto::ntlm_challenge(&server, r));
    {
        let mut h = Hdr {
            cmd: smb2::SESSION_SETUP,
            resp: false,
            status: 0,
            charge: 1,
            msg_id: m.msg_id,
            tree_id: 0,
            session_id: 0,
            signed: false,
        };
        m.send(s, r, 0, &h, &req, 0);
        h.resp = true;
        h.status = proto::STATUS_MORE_PROCESSING;
        h.session_id = session_id;
        m.send(s, r, 1, &h, &rsp, 0);
        m.msg_id += 1;
    }
    m.session_id = session_id;
    req.clear();
    rsp.clear();
    let user = proto::user_name(r);
    proto::session_setup_req(
        &mut req,
        &proto::ntlm_authenticate("CORP", &user, &workstation, r),
    );
    proto::session_setup_rsp(&mut rsp, &[]);
    m.rr(s, r, smb2::SESSION_SETUP, &req, 0, 0, &rsp, 0, 1);
    m.enc = enc;
    // Tree connect.
    let share = *r.pick(&["xfer", "data", "backup", "public", "projects", "scans"]);
    req.clear();
    rsp.clear();
    proto::tree_connect_req(
        &mut req,
        &format!("\\\\{}\\{}", srv_name(&server, r), share),
    );
    proto::tree_connect_rsp(&mut rsp, enc);
    let tree_id = 1 + r.below(0xffff_fff0) as u32;
    m.tree_id = tree_id;
    m.rr(s, r, smb2::TREE_CONNECT, &req, 0, 0, &rsp, 0, 1);
    let chunk: u64 = if big { 1 << 20 } else { 64 << 10 };
    for &size in &sizes {
        let name = proto::file_name(r);
        let mut fid = [0u8; 16];
        r.fill(&mut fid);
        req.clear();
        rsp.clear();
        let disp = if upload {
            proto::FILE_OVERWRITE_IF
        } else {
            proto::FILE_OPEN
        };
        proto::create_req(&mut req, &name, disp);
        proto::create_rsp(&mut rsp, upload, ft, if upload { 0 } else { size }, &fid);
        m.rr(s, r, smb2::CREATE, &req, 0, 0, &rsp, 0, 1);
        let mut off = 0u64;
        while off < size {
            let n = chunk.min(size - off);
            let charge = n.div_ceil(65536) as u16;
            req.clear();
            rsp.clear();
            if upload {
                proto::write_req(&mut req, n as u32, off, &fid);
                proto::write_rsp(&mut rsp, n as u32);
                m.rr(s, r, smb2::WRITE, &req, n, 0, &rsp, 0, charge);
            } else {
                proto::read_req(&mut req, n as u32, off, &fid);
                proto::read_rsp(&mut rsp, n as u32);
                m.rr(s, r, smb2::READ, &req, 0, 0, &rsp, n, charge);
            }
            off += n;
        }
        req.clear();
        rsp.clear();
        proto::close_req(&mut req, &fid);
        proto::close_rsp(&mut rsp, ft, size);
        m.rr(s, r, smb2::CLOSE, &req, 0, 0, &rsp, 0, 1);
    }
    req.clear();
    proto::small_body(&mut req);
    m.rr(s, r, smb2::TREE_DISCONNECT, &req, 0, 0, &req.clone(), 0, 1);
    m.tree_id = 0;
    m.rr(s, r, smb2::LOGOFF, &req, 0, 0, &req.clone(), 0, 1);
    s.close(c, 0);
}

fn srv_name(netbios: &str, r: &mut Rng) -> String {
    if r.chance(1, 2) {
        netbios.to_string()
    } else {
        format!("{}.corp.example.com", netbios.to_ascii_lowercase())
    }
}

// ---------------------------------------------------------------------------------------------
// Background: HTTP, TLS, DNS, SSH
// ---------------------------------------------------------------------------------------------

#[allow(
    clippy::too_many_arguments,
    reason = "generator plumbing: session, spec, world, expectations, rng and the flow's parameters"
)]
fn background_flow(
    s: &mut Session,
    spec: &Spec,
    port: u16,
    udp: bool,
    app: &'static str,
    w: &mut World,
    x: &mut Expect,
    r: &mut Rng,
) -> u8 {
    let i = w.host(r);
    let j = World::ext(r);
    let conn = client_flow(w, i, j, spec.v6, port, udp, app, r);
    x.identified(&conn);
    s.conn(conn)
}

fn http(
    s: &mut Session,
    spec: &Spec,
    port: u16,
    post: bool,
    w: &mut World,
    x: &mut Expect,
    r: &mut Rng,
) {
    let c = background_flow(s, spec, port, false, "http", w, x, r);
    let host = proto::host_name(r);
    let n = 1 + r.below(3) as u32;
    let sizes = split(spec.size.max(1), n, r);
    s.open(c);
    for (k, &size) in sizes.iter().enumerate() {
        if post && k == 0 {
            let head = proto::http_request("POST", "/upload", &host, Some(size), r);
            s.msg_rand(c, 0, &head, size, rpos(r));
            let body = b"{\"status\":\"ok\"}";
            let mut rsp =
                proto::http_response("201 Created", body.len() as u64, "application/json", r);
            rsp.extend_from_slice(body);
            s.msg(c, 1, &rsp);
        } else {
            let path = proto::url_path(r);
            s.msg(c, 0, &proto::http_request("GET", &path, &host, None, r));
            let ctype = *r.pick(&[
                "text/html; charset=utf-8",
                "application/octet-stream",
                "image/png",
                "application/javascript",
            ]);
            let head = proto::http_response("200 OK", size, ctype, r);
            s.msg_rand(c, 1, &head, size, rpos(r));
        }
    }
    s.close(c, if r.chance(1, 2) { 0 } else { 1 });
}

fn tls(s: &mut Session, spec: &Spec, port: u16, w: &mut World, x: &mut Expect, r: &mut Rng) {
    let c = background_flow(s, spec, port, false, "tls", w, x, r);
    let sni = proto::host_name(r);
    s.open(c);
    s.msg(c, 0, &proto::tls_client_hello(&sni, r));
    let mut flight = proto::tls_server_hello(r);
    let cert = 1800 + r.below(3000) as usize;
    flight.extend_from_slice(&proto::tls_app_header(cert));
    s.msg_rand(c, 1, &flight, cert as u64, rpos(r));
    let mut fin = vec![0x14, 0x03, 0x03, 0x00, 0x01, 0x01];
    fin.extend_from_slice(&proto::tls_app_header(53));
    s.msg_rand(c, 0, &fin, 53, rpos(r));
    let rounds = 1 + r.below(4) as u32;
    for size in split(spec.size.max(1), rounds, r) {
        let q = 80 + r.below(700) as usize;
        s.msg_rand(c, 0, &proto::tls_app_header(q), q as u64, rpos(r));
        let mut left = size;
        while left > 0 {
            let n = left.min(16401);
            s.msg_rand(c, 1, &proto::tls_app_header(n as usize), n, rpos(r));
            left -= n;
        }
    }
    // close_notify, then the teardown.
    s.msg_rand(c, 0, &proto::tls_app_header(19), 19, rpos(r));
    s.close(c, 0);
}

fn dns(s: &mut Session, spec: &Spec, w: &mut World, x: &mut Expect, r: &mut Rng) {
    let c = background_flow(s, spec, 53, true, "dns", w, x, r);
    let name = proto::host_name(r);
    let both = r.chance(1, 2);
    let types: &[u16] = if both { &[1, 28] } else { &[1] };
    for &qt in types {
        let id = 1 + r.below(65535) as u16;
        s.dgram(c, 0, &proto::dns_query(id, &name, qt));
        let answers = 1 + r.below(3) as u16;
        let rsp = proto::dns_response(id, &name, qt, answers, r);
        s.dgram(c, 1, &rsp);
    }
}

fn ssh(s: &mut Session, spec: &Spec, w: &mut World, x: &mut Expect, r: &mut Rng) {
    let c = background_flow(s, spec, 22, false, "ssh", w, x, r);
    s.open(c);
    let server = *r.pick(&[
        "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.10\r\n",
        "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n",
        "SSH-2.0-dropbear_2022.83\r\n",
    ]);
    s.msg(c, 1, server.as_bytes());
    s.msg(c, 0, b"SSH-2.0-OpenSSH_9.6\r\n");
    s.msg(c, 0, &proto::ssh_kexinit(false, r));
    s.msg(c, 1, &proto::ssh_kexinit(true, r));
    s.msg(c, 0, &proto::ssh_ecdh_init(r));
    s.msg(c, 1, &proto::ssh_ecdh_reply(r));
    s.msg(c, 0, &proto::ssh_newkeys(r));
    let rounds = 2 + r.below(6) as u32;
    for size in split(spec.size.max(1), rounds, r) {
        let q = 36 + r.below(200);
        s.msg_rand(c, 0, &[], q, rpos(r));
        s.msg_rand(c, 1, &[], size, rpos(r));
    }
    s.close(c, 0);
}

// ---------------------------------------------------------------------------------------------
// Profiles
// ---------------------------------------------------------------------------------------------

/// Decides which sessions come next, until the byte budget (or the session count) is used up.
pub struct Planner {
    profile: Profile,
    bytes: u64,
    r: Rng,
    charged: u64,
    /// Estimated bytes of planned sessions not yet built.
    reserved: u64,
    forced: VecDeque<(Spec, u64)>,
    sessions_left: Option<u64>,
    bg_since: u64,
    bg_every: u64,
    first_forced: usize,
    /// many-flows: percentage the drawn sizes are scaled by, so that a small budget still holds
    /// enough sessions to keep the concurrency.
    scale_pct: u64,
}

/// Frame bytes per payload byte of bulk TCP data (1448-byte segments, an ACK every second).
const TCP_FACTOR_NUM: u64 = 107;

fn est_bytes(spec: &Spec) -> u64 {
    spec.size * TCP_FACTOR_NUM / 100 + 4000
}

impl Planner {
    /// A planner for `bytes` frame bytes; `flows`: exact number of sessions; `concurrency`:
    /// sessions that will run at once.
    pub fn new(
        profile: Profile,
        bytes: u64,
        seed: u64,
        flows: Option<u64>,
        concurrency: usize,
    ) -> Planner {
        // An average many-flows session is about 11 KB of frames; plan at least one and a half
        // times the concurrency of them.
        let wanted = (concurrency as u64).saturating_mul(3) / 2 * 11_000;
        let scale_pct = (bytes.saturating_mul(100))
            .checked_div(wanted)
            .map_or(100, |p| p.clamp(2, 100));
        let mut p = Planner {
            profile,
            bytes,
            r: Rng::derive(seed, 2, 0),
            charged: 0,
            reserved: 0,
            forced: VecDeque::new(),
            sessions_left: None,
            bg_since: 0,
            bg_every: u64::MAX,
            first_forced: 0,
            scale_pct,
        };
        match profile {
            Profile::Bulk => p.plan_bulk(flows.unwrap_or(8).max(1)),
            Profile::Mixed => {
                p.plan_mixed();
                if let Some(f) = flows {
                    p.forced.truncate(f as usize);
                    p.sessions_left = Some(f.saturating_sub(p.forced.len() as u64));
                    if f as usize <= p.forced.len() {
                        p.fit_forced();
                    }
                }
                p.first_forced = p.forced.len();
            }
            Profile::ManyFlows => {
                p.plan_many_flows();
                if let Some(f) = flows {
                    p.forced.truncate(f as usize);
                    p.sessions_left = Some(f.saturating_sub(p.forced.len() as u64));
                    if f as usize <= p.forced.len() {
                        p.fit_forced();
                    }
                }
                p.first_forced = p.forced.len();
            }
        }
        p.reserved = p.forced.iter().map(|(_, e)| e).sum();
        p
    }

    fn push(&mut self, spec: Spec) {
        let e = est_bytes(&spec);
        self.forced.push_back((spec, e));
    }

    fn plan_bulk(&mut self, n: u64) {
        // (kind, share, files, v6)
        let list: [(Kind, u64, u32, bool); 8] = [
            (
                Kind::FtpUp {
                    mode: FtpMode::Pasv,
                    port: 21,
                },
                25,
                1,
                false,
            ),
            (
                Kind::SmbWrite {
                    port: 445,
                    enc: false,
                    big: true,
                },
                20,
                2,
                false,
            ),
            (
                Kind::TftpWrite {
                    port: 69,
                    opts: true,
                },
                10,
                1,
                false,
            ),
            (
                Kind::FtpDown {
                    mode: FtpMode::Epsv,
                    port: 21,
                },
                15,
                1,
                true,
            ),
            (
                Kind::SmbWrite {
                    port: 445,
                    enc: true,
                    big: true,
                },
                10,
                1,
                false,
            ),
            (
                Kind::FtpUp {
                    mode: FtpMode::Port,
                    port: 2121,
                },
                8,
                2,
                false,
            ),
            (
                Kind::TftpRead {
                    port: 69,
                    opts: true,
                },
                6,
                1,
                false,
            ),
            (Kind::SmbRead { port: 445 }, 6, 1, false),
        ];
        let chosen: Vec<_> = (0..n as usize).map(|k| list[k % list.len()]).collect();
        let shares: u64 = chosen.iter().map(|c| c.1).sum();
        let budget = self.bytes * 96 / 100;
        for (kind, share, files, v6) in chosen {
            let frame = (u128::from(budget) * u128::from(share) / u128::from(shares)) as u64;
            let size = (frame.saturating_sub(4000) * 100 / TCP_FACTOR_NUM).max(1);
            self.push(Spec::new(kind, size).files(files).v6(v6));
        }
        // Background sessions go between the transfers once three of them are running.
        self.first_forced = 3.min(self.forced.len());
        let bg_budget = self.bytes.saturating_sub(budget);
        let bg_count = (bg_budget / 30_000).max(1);
        let later = (self.forced.len() - self.first_forced) as u64;
        self.bg_every = if later == 0 {
            u64::MAX
        } else {
            (bg_count / (later + 1)).max(1)
        };
    }

    fn plan_mixed(&mut self) {
        let b = self.bytes;
        let big = (b / 10).max(64 << 10);
        let mid = (b / 40).max(16 << 10);
        let small = (b / 200).max(4 << 10);
        use FtpMode::*;
        let specs = [
            Spec::new(
                Kind::FtpUp {
                    mode: Pasv,
                    port: 21,
                },
                big,
            ),
            Spec::new(
                Kind::SmbWrite {
                    port: 445,
                    enc: false,
                    big: false,
                },
                big * 8 / 10,
            )
            .files(2),
            Spec::new(
                Kind::TftpWrite {
                    port: 69,
                    opts: true,
                },
                big * 8 / 10,
            ),
            Spec::new(
                Kind::SmbWrite {
                    port: 445,
                    enc: true,
                    big: true,
                },
                big,
            ),
            Spec::new(
                Kind::FtpUp {
                    mode: Epsv,
                    port: 21,
                },
                mid,
            )
            .v6(true),
            Spec::new(
                Kind::FtpUp {
                    mode: Port,
                    port: 21,
                },
                mid,
            )
            .files(2),
            Spec::new(
                Kind::FtpDown {
                    mode: Pasv,
                    port: 21,
                },
                mid,
            ),
            Spec::new(
                Kind::TftpRead {
                    port: 69,
                    opts: false,
                },
                small,
            ),
            Spec::new(
                Kind::TftpWrite {
                    port: 69,
                    opts: false,
                },
                small,
            ),
            Spec::new(Kind::SmbRead { port: 445 }, mid),
            Spec::new(
                Kind::SmbWrite {
                    port: 139,
                    enc: false,
                    big: false,
                },
                small,
            ),
            Spec::new(
                Kind::FtpUp {
                    mode: Pasv,
                    port: 80,
                },
                small,
            ),
            Spec::new(
                Kind::FtpDown {
                    mode: Eprt,
                    port: 2121,
                },
                small,
            )
            .v6(true),
            Spec::new(
                Kind::SmbWrite {
                    port: 443,
                    enc: false,
                    big: false,
                },
                small,
            ),
            Spec::new(
                Kind::TftpWrite {
                    port: 53,
                    opts: true,
                },
                small,
            ),
            Spec::new(
                Kind::Http {
                    port: 21,
                    post: false,
                },
                small,
            ),
            Spec::new(
                Kind::Http {
                    port: 8000,
                    post: false,
                },
                small,
            ),
            Spec::new(Kind::Tls { port: 8443 }, small),
            Spec::new(Kind::Dns, 0).v6(true),
            Spec::new(Kind::Tls { port: 443 }, small).v6(true),
        ];
        for s in specs {
            self.push(s);
        }
    }

    fn plan_many_flows(&mut self) {
        use FtpMode::*;
        let specs = [
            Spec::new(
                Kind::FtpUp {
                    mode: Pasv,
                    port: 80,
                },
                4096,
            ),
            Spec::new(
                Kind::FtpDown {
                    mode: Epsv,
                    port: 2121,
                },
                4096,
            ),
            Spec::new(
                Kind::SmbWrite {
                    port: 443,
                    enc: false,
                    big: false,
                },
                8192,
            ),
            Spec::new(
                Kind::TftpWrite {
                    port: 53,
                    opts: true,
                },
                4096,
            ),
            Spec::new(
                Kind::Http {
                    port: 21,
                    post: false,
                },
                2048,
            ),
        ];
        for s in specs {
            self.push(s);
        }
    }

    /// Scales the planned sessions so that they alone fill the budget (when `--flows` leaves
    /// no room for others).
    fn fit_forced(&mut self) {
        let est: u64 = self.forced.iter().map(|(_, e)| e).sum();
        let payload: u64 = self.forced.iter().map(|(s, _)| s.size).sum();
        if payload == 0 {
            return;
        }
        let fixed = est - payload * TCP_FACTOR_NUM / 100;
        let room = self.bytes.saturating_sub(fixed) * 100 / TCP_FACTOR_NUM;
        for (spec, e) in self.forced.iter_mut() {
            spec.size = ((u128::from(spec.size) * u128::from(room) / u128::from(payload)) as u64)
                .max(u64::from(spec.size > 0));
            *e = est_bytes(spec);
        }
    }

    /// Charges the estimate of a built session against the budget.
    pub fn charge(&mut self, est: u64) {
        self.charged += est;
    }

    fn remaining(&self) -> u64 {
        self.bytes.saturating_sub(self.charged + self.reserved)
    }

    fn pop_forced(&mut self) -> Option<Spec> {
        let (spec, e) = self.forced.pop_front()?;
        self.reserved -= e;
        self.bg_since = 0;
        if self.first_forced > 0 {
            self.first_forced -= 1;
        }
        Some(spec)
    }

    /// The next session, or `None` when the budget is used up.
    pub fn next_spec(&mut self) -> Option<Spec> {
        if self.first_forced > 0 {
            return self.pop_forced();
        }
        if self.profile == Profile::Bulk {
            if !self.forced.is_empty() && (self.bg_since >= self.bg_every || self.remaining() == 0)
            {
                return self.pop_forced();
            }
            if self.remaining() == 0 {
                return None;
            }
            self.bg_since += 1;
            return Some(self.background_small());
        }
        if let Some(left) = self.sessions_left {
            if left == 0 {
                return None;
            }
            self.sessions_left = Some(left - 1);
            let per = self.remaining() / left;
            let mut spec = self.random_spec();
            if !matches!(spec.kind, Kind::Dns) {
                spec.size = (per.saturating_sub(3000) * 100 / TCP_FACTOR_NUM
                    * (25 + self.r.below(150))
                    / 100)
                    .max(256);
            }
            return Some(spec);
        }
        if self.remaining() == 0 {
            return None;
        }
        let mut spec = self.random_spec();
        let cap = (self.remaining() * 100 / TCP_FACTOR_NUM).max(512);
        spec.size = spec.size.min(cap);
        Some(spec)
    }

    fn background_small(&mut self) -> Spec {
        let r = &mut self.r;
        match r.weighted(&[40, 25, 20, 5]) {
            0 => Spec::new(Kind::Dns, 0),
            1 => Spec::new(
                Kind::Http {
                    port: *r.pick(&[80, 80, 8080]),
                    post: r.chance(1, 5),
                },
                r.log_uniform(512, 256 << 10),
            ),
            2 => Spec::new(Kind::Tls { port: 443 }, r.log_uniform(2048, 256 << 10)),
            _ => Spec::new(Kind::Ssh, r.log_uniform(1024, 64 << 10)),
        }
    }

    fn random_spec(&mut self) -> Spec {
        match self.profile {
            Profile::Mixed => self.random_mixed(),
            _ => self.random_many(),
        }
    }

    fn ftp_mode(r: &mut Rng) -> FtpMode {
        *r.pick(&[
            FtpMode::Pasv,
            FtpMode::Pasv,
            FtpMode::Epsv,
            FtpMode::Port,
            FtpMode::Eprt,
        ])
    }

    fn random_mixed(&mut self) -> Spec {
        let b = self.bytes;
        let r = &mut self.r;
        let xfer_hi = (b / 64).max(64 << 10);
        let v6 = r.chance(1, 8);
        let weights = [5, 2, 3, 2, 4, 2, 28, 24, 24, 4, 1, 1, 1, 1, 1];
        match r.weighted(&weights) {
            0 => Spec::new(
                Kind::FtpUp {
                    mode: Self::ftp_mode(r),
                    port: 21,
                },
                r.log_uniform(8 << 10, xfer_hi),
            )
            .files(1 + r.below(3) as u32)
            .v6(v6),
            1 => Spec::new(
                Kind::FtpDown {
                    mode: Self::ftp_mode(r),
                    port: 21,
                },
                r.log_uniform(8 << 10, xfer_hi / 2),
            )
            .v6(v6),
            2 => Spec::new(
                Kind::TftpWrite {
                    port: 69,
                    opts: r.chance(2, 3),
                },
                r.log_uniform(4 << 10, xfer_hi / 2),
            )
            .v6(r.chance(1, 10)),
            3 => Spec::new(
                Kind::TftpRead {
                    port: 69,
                    opts: r.chance(1, 2),
                },
                r.log_uniform(4 << 10, xfer_hi / 4),
            ),
            4 => Spec::new(
                Kind::SmbWrite {
                    port: 445,
                    enc: r.chance(1, 3),
                    big: r.chance(1, 2),
                },
                r.log_uniform(16 << 10, xfer_hi),
            )
            .files(1 + r.below(2) as u32)
            .v6(v6),
            5 => Spec::new(
                Kind::SmbRead { port: 445 },
                r.log_uniform(16 << 10, xfer_hi / 2),
            ),
            6 => Spec::new(
                Kind::Http {
                    port: *r.pick(&[80, 80, 80, 8080, 8000]),
                    post: r.chance(1, 6),
                },
                r.log_uniform(256, (b / 100).clamp(4096, 2 << 20)),
            )
            .v6(v6),
            7 => Spec::new(
                Kind::Tls {
                    port: *r.pick(&[443, 443, 443, 443, 8443]),
                },
                r.log_uniform(1024, (b / 50).clamp(8192, 4 << 20)),
            )
            .v6(v6),
            8 => Spec::new(Kind::Dns, 0).v6(v6),
            9 => Spec::new(
                Kind::Ssh,
                r.log_uniform(1024, (b / 100).clamp(4096, 1 << 20)),
            ),
            10 => Spec::new(
                Kind::FtpUp {
                    mode: FtpMode::Pasv,
                    port: 80,
                },
                r.log_uniform(2048, (b / 100).max(4096)),
            ),
            11 => Spec::new(
                Kind::FtpUp {
                    mode: Self::ftp_mode(r),
                    port: 2121,
                },
                r.log_uniform(2048, (b / 100).max(4096)),
            ),
            12 => Spec::new(
                Kind::SmbWrite {
                    port: 443,
                    enc: false,
                    big: false,
                },
                r.log_uniform(2048, (b / 100).max(4096)),
            ),
            13 => Spec::new(
                Kind::TftpWrite {
                    port: 53,
                    opts: r.chance(1, 2),
                },
                r.log_uniform(1024, (b / 200).max(4096)),
            ),
            _ => Spec::new(
                Kind::Http {
                    port: 21,
                    post: false,
                },
                r.log_uniform(256, 16 << 10),
            ),
        }
    }

    fn random_many(&mut self) -> Spec {
        let mut spec = self.draw_many();
        spec.size = (spec.size * self.scale_pct / 100).max(64);
        spec
    }

    fn draw_many(&mut self) -> Spec {
        let r = &mut self.r;
        let v6 = r.chance(1, 20);
        let weights = [340, 300, 200, 30, 20, 10, 20, 10, 20, 10, 2, 2, 2, 2, 2];
        match r.weighted(&weights) {
            0 => Spec::new(
                Kind::Http {
                    port: *r.pick(&[80, 80, 80, 8080]),
                    post: r.chance(1, 10),
                },
                r.log_uniform(128, 24 << 10),
            )
            .v6(v6),
            1 => Spec::new(Kind::Tls { port: 443 }, r.log_uniform(1024, 32 << 10)).v6(v6),
            2 => Spec::new(Kind::Dns, 0).v6(v6),
            3 => Spec::new(Kind::Ssh, r.log_uniform(1024, 16 << 10)),
            4 => Spec::new(
                Kind::FtpUp {
                    mode: Self::ftp_mode(r),
                    port: 21,
                },
                r.log_uniform(512, 48 << 10),
            )
            .v6(v6),
            5 => Spec::new(
                Kind::FtpDown {
                    mode: Self::ftp_mode(r),
                    port: 21,
                },
                r.log_uniform(512, 48 << 10),
            ),
            6 => Spec::new(
                Kind::TftpWrite {
                    port: 69,
                    opts: r.chance(1, 2),
                },
                r.log_uniform(512, 24 << 10),
            ),
            7 => Spec::new(
                Kind::TftpRead {
                    port: 69,
                    opts: r.chance(1, 2),
                },
                r.log_uniform(512, 24 << 10),
            ),
            8 => Spec::new(
                Kind::SmbWrite {
                    port: 445,
                    enc: r.chance(1, 4),
                    big: false,
                },
                r.log_uniform(1024, 96 << 10),
            )
            .v6(v6),
            9 => Spec::new(Kind::SmbRead { port: 445 }, r.log_uniform(1024, 96 << 10)),
            10 => Spec::new(
                Kind::FtpUp {
                    mode: FtpMode::Pasv,
                    port: 80,
                },
                r.log_uniform(512, 16 << 10),
            ),
            11 => Spec::new(
                Kind::FtpUp {
                    mode: Self::ftp_mode(r),
                    port: 2121,
                },
                r.log_uniform(512, 16 << 10),
            ),
            12 => Spec::new(
                Kind::SmbWrite {
                    port: 443,
                    enc: false,
                    big: false,
                },
                r.log_uniform(1024, 16 << 10),
            ),
            13 => Spec::new(
                Kind::TftpWrite {
                    port: 53,
                    opts: true,
                },
                r.log_uniform(512, 8 << 10),
            ),
            _ => Spec::new(
                Kind::Http {
                    port: 21,
                    post: false,
                },
                r.log_uniform(128, 8 << 10),
            ),
        }
    }
}
