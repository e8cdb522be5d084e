//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "shared helpers: each test module uses only some")]

use crate::fixtures::*;
use xferwatch_fingerprint::{AppProto, Dgram, Identification, Observed, Transport};

/// Synthetic look-alikes for protocols without a capture in the corpus.
/// NNTP (RFC 3977 greeting + reader commands).
pub const NNTP_SYNTHETIC: TcpFixture = TcpFixture {
    name: "nntp_synthetic",
    owner: None,
    dir_known: true,
    segs: &[
        (
            false,
            b"200 news.example.net InterNetNews NNRP server INN 2.6.4 ready (posting ok)\r\n",
        ),
        (true, b"MODE READER\r\n"),
        (false, b"200 news.example.net ready (posting ok)\r\n"),
        (true, b"GROUP comp.lang.rust\r\n"),
        (false, b"211 1234 3000234 3002322 comp.lang.rust\r\n"),
    ],
};

/// NNTP without the server-software words, client speaking an FTP-shared verb.
pub const NNTP_PLAIN_SYNTHETIC: TcpFixture = TcpFixture {
    name: "nntp_plain_synthetic",
    owner: None,
    dir_known: true,
    segs: &[
        (false, b"201 reader.example ready\r\n"),
        (true, b"LIST\r\n"),
        (false, b"215 list of newsgroups follows\r\n"),
    ],
};

/// IMAP (RFC 9051 greeting + tagged LOGIN).
pub const IMAP_SYNTHETIC: TcpFixture = TcpFixture {
    name: "imap_synthetic",
    owner: None,
    dir_known: true,
    segs: &[
        (
            false,
            b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] Dovecot ready.\r\n",
        ),
        (true, b"a001 LOGIN alice secret\r\n"),
        (false, b"a001 OK Logged in\r\n"),
    ],
};

/// SMTP whose greeting hides the software (client EHLO decides).
pub const SMTP_PLAIN_SYNTHETIC: TcpFixture = TcpFixture {
    name: "smtp_plain_synthetic",
    owner: Some(AppProto::Smtp),
    dir_known: true,
    segs: &[
        (false, b"220 mail.example.org\r\n"),
        (true, b"EHLO client.example.org\r\n"),
        (false, b"250-mail.example.org\r\n250 PIPELINING\r\n"),
    ],
};

/// The vsftpd exchange of `FTP_VSFTPD` with hostile bytes a server operator or a client controls:
/// one stray byte must not hide FTP (issue: one-byte blinding).
pub const FTP_ESC_BANNER: TcpFixture = TcpFixture {
    name: "ftp_esc_banner",
    owner: Some(AppProto::Ftp),
    dir_known: true,
    segs: &[
        (false, b"220 (vsFTPd\x1b3.0.3)\r\n"),
        (true, b"USER anonymous\r\n"),
        (false, b"331 Please specify the password.\r\n"),
        (true, b"PASS ftp@example.com\r\n"),
        (false, b"230 Login successful.\r\n"),
    ],
};

/// TAB, byte 0xff (a TELNET IAC) and invalid UTF-8 in the banner, ANSI colours on a second line.
pub const FTP_BINARY_BANNER: TcpFixture = TcpFixture {
    name: "ftp_binary_banner",
    owner: Some(AppProto::Ftp),
    dir_known: true,
    segs: &[
        (
            false,
            b"220-(vsFTPd\t3.0.3)\xff\xc3\x28 \x80\r\n220 \x1b[1;31mno\x00entry\x1b[0m\r\n",
        ),
        (true, b"USER anonymous\r\n"),
        (false, b"331 Please specify the password.\r\n"),
    ],
};

/// ESC and invalid UTF-8 in the USER line, a stray ESC before the verb of the next one.
pub const FTP_ESC_USER: TcpFixture = TcpFixture {
    name: "ftp_esc_user",
    owner: Some(AppProto::Ftp),
    dir_known: true,
    segs: &[
        (false, b"220 (vsFTPd 3.0.3)\r\n"),
        (true, b"USER anon\x1bmous\xfe\xff\r\n"),
        (false, b"331 Please specify the password.\r\n"),
        (true, b"\x1bPASS ftp@example.com\r\n"),
        (false, b"230 Login successful.\r\n"),
    ],
};

/// A CJK banner and a reply whose text starts straight after the code (`331少`).
pub const FTP_CJK: TcpFixture = TcpFixture {
    name: "ftp_cjk",
    owner: Some(AppProto::Ftp),
    dir_known: true,
    segs: &[
        (
            false,
            "220-\u{6b22}\u{8fce}\u{5149}\u{4e34}\r\n220 \u{6587}\u{4ef6}\u{670d}\u{52a1}\r\n"
                .as_bytes(),
        ),
        (true, b"USER \xe5\xbc\xa0\xe4\xb8\x89\r\n"),
        (false, "331\u{5c11}\r\n".as_bytes()),
        (true, b"PASS x\r\n"),
        (false, b"230 OK\r\n"),
    ],
};

/// SMTP with an ESC in its greeting: still SMTP (else port 25 would raise "another protocol").
pub const SMTP_ESC_SYNTHETIC: TcpFixture = TcpFixture {
    name: "smtp_esc_synthetic",
    owner: Some(AppProto::Smtp),
    dir_known: true,
    segs: &[
        (false, b"220 mail.example.org\x1b ESMTP ready\r\n"),
        (true, b"EHLO client\x1b.example.org\r\n"),
        (false, b"250-mail.example.org\r\n250 PIPELINING\r\n"),
    ],
};

/// SSH whose server software version starts with a stray byte, and an HTTP request whose target
/// holds an ESC: still theirs.
pub const SSH_ESC_SYNTHETIC: TcpFixture = TcpFixture {
    name: "ssh_esc_synthetic",
    owner: Some(AppProto::Ssh),
    dir_known: false,
    segs: &[
        (false, b"SSH-2.0-\x1bOpenSSH_9.2\r\n"),
        (true, b"SSH-2.0-OpenSSH_9.2\r\n"),
    ],
};

pub const HTTP_ESC_SYNTHETIC: TcpFixture = TcpFixture {
    name: "http_esc_synthetic",
    owner: Some(AppProto::Http),
    dir_known: true,
    segs: &[
        (true, b"GET /report\x1b.bin HTTP/1.1\r\nHost: x\r\n\r\n"),
        (false, b"HTTP/1.1 404 Not Found\r\n\r\n"),
    ],
};

/// A TFTP write request whose file name is UTF-8 (with a stray ESC).
pub const TFTP_WRQ_UTF8_NAME: UdpFixture = UdpFixture {
    name: "tftp_wrq_utf8_name",
    owner: Some(AppProto::Tftp),
    dir_known: true,
    dgrams: &[(
        true,
        b"\x00\x02\xe6\x8a\xa5\xe5\x91\x8a\x1b.bin\x00octet\x00",
    )],
};

pub const TCP_FIXTURES: &[&TcpFixture] = &[
    &SSH_ESC_SYNTHETIC,
    &HTTP_ESC_SYNTHETIC,
    &SMTP_ESC_SYNTHETIC,
    &FTP_ESC_BANNER,
    &FTP_BINARY_BANNER,
    &FTP_ESC_USER,
    &FTP_CJK,
    &FTP_VSFTPD,
    &FTP_NETBSD,
    &FTP_FAILED,
    &FTP_AUTH_TLS,
    &FTP_UPLOAD_PASSIVE,
    &FTP_BRUTEFORCE,
    &SMTP_SENDMAIL,
    &SMTP_PLAIN_SYNTHETIC,
    &POP3,
    &IRC,
    &NNTP_SYNTHETIC,
    &NNTP_PLAIN_SYNTHETIC,
    &IMAP_SYNTHETIC,
    &SSH,
    &TLS_CURL,
    &HTTP_WGET,
    &HTTP_LOWER_CASE,
    &SMB1_NEGOTIATE,
    &SMB2_PETER,
    &SMB3_ENCRYPTED,
    &SMB_NBSS_139,
    &SMB1_MIDSTREAM,
    &SMB_PORT80,
    &DNS_TCP,
];

pub const UDP_FIXTURES: &[&UdpFixture] = &[
    &TFTP_WRQ_UTF8_NAME,
    &TFTP_RRQ_REQUEST,
    &TFTP_RRQ_TRANSFER,
    &TFTP_WRQ_REQUEST,
    &TFTP_WRQ_TRANSFER,
    &TFTP_OACK_REQUEST,
    &TFTP_OACK_TRANSFER,
    &TFTP_NDPI_MALFORMED,
    &DNS_UDP,
    &MDNS,
];

/// Known, documented ambiguity: a bare `220 host` greeting with a silent
/// client is a lone FTP greeting on a final flow (SMTP servers that hide their
/// software and whose client never speaks cannot be told apart).
pub fn bare_greeting_only(f: &TcpFixture, to_server: &[u8], to_client: &[u8]) -> bool {
    f.name == "smtp_plain_synthetic"
        && (to_server.is_empty() || to_client.is_empty())
        && [to_server, to_client]
            .iter()
            .all(|b| b.is_empty() || b.starts_with(b"220 mail.example.org\r\n"))
}

pub fn total_len(f: &TcpFixture) -> usize {
    f.segs.iter().map(|(_, b)| b.len()).sum()
}

/// The two direction buffers holding the first `n` bytes of the fixture (in
/// capture order). `swap`: the caller guessed the roles the wrong way round.
pub fn tcp_prefix(f: &TcpFixture, n: usize, swap: bool) -> (Vec<u8>, Vec<u8>) {
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    let mut left = n;
    for &(client_sent, bytes) in f.segs {
        let take = left.min(bytes.len());
        let dst = if client_sent != swap {
            &mut to_server
        } else {
            &mut to_client
        };
        dst.extend_from_slice(&bytes[..take]);
        left -= take;
        if left == 0 {
            break;
        }
    }
    (to_server, to_client)
}

pub fn tcp_obs<'a>(to_server: &'a [u8], to_client: &'a [u8], final_: bool) -> Observed<'a> {
    Observed {
        transport: Transport::Tcp,
        to_server,
        to_client,
        dgrams: &[],
        final_,
    }
}

/// The first `k` datagrams of the fixture.
pub fn udp_prefix<'a>(f: &'a UdpFixture, k: usize, swap: bool) -> Vec<Dgram<'a>> {
    f.dgrams
        .iter()
        .take(k)
        .map(|&(client_sent, data)| Dgram {
            to_server: client_sent != swap,
            data,
        })
        .collect()
}

pub fn udp_obs<'a>(dgrams: &'a [Dgram<'a>], final_: bool) -> Observed<'a> {
    Observed {
        transport: Transport::Udp,
        to_server: b"",
        to_client: b"",
        dgrams,
        final_,
    }
}

pub fn expected(owner: Option<AppProto>, dir_known: bool, swap: bool) -> Identification {
    match owner {
        Some(proto) => Identification::Found {
            proto,
            reversed: swap && dir_known,
        },
        None => Identification::Unknown,
    }
}

/// Deterministic xorshift64* generator.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}
