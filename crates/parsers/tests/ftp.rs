//! FTP control-channel parsing on lines as real servers and clients write them (vsftpd, ProFTPD,
//! Microsoft FTP Service; curl, Windows ftp.exe).

use xferwatch_parsers::ftp::{Announce, FtpConn, FtpEvent, FtpLimits, FtpTx};

fn run(limits: FtpLimits, lines: &[(bool, &[u8])]) -> Vec<FtpEvent> {
    let mut c = FtpConn::new(limits);
    let mut out = Vec::new();
    for (from_client, l) in lines {
        c.line(*from_client, l, &mut out);
    }
    c.finish(&mut out);
    out
}

fn txs(ev: &[FtpEvent]) -> Vec<&FtpTx> {
    ev.iter()
        .filter_map(|e| match e {
            FtpEvent::Tx(t) => Some(t),
            _ => None,
        })
        .collect()
}

#[test]
fn session_with_multiline_greeting_and_hidden_password() {
    let ev = run(
        FtpLimits::default(),
        &[
            (false, b"220-Microsoft FTP Service\r"),
            (false, b"220-Authorized users only.\r"),
            (false, b"220 Welcome\r"),
            (true, b"USER alice\r"),
            (false, b"331 Password required for alice.\r"),
            (true, b"PASS s3cret!\r"),
            (false, b"230 User logged in.\r"),
            (true, b"PASV\r"),
            (false, b"227 Entering Passive Mode (10,0,0,7,195,80).\r"),
            (true, b"STOR q3 report.xlsx\r"),
            (false, b"150 Opening BINARY mode data connection.\r"),
            (false, b"226 Transfer complete.\r"),
            (true, b"QUIT\r"),
        ],
    );
    let t = txs(&ev);
    assert_eq!(t[0].completion_code, vec!["220"]);
    assert_eq!(t[0].reply.len(), 3, "multi-line greeting kept whole");
    assert_eq!(t[2].command, "PASS");
    assert_eq!(t[2].command_data.as_deref(), Some("<hidden>"));
    assert_eq!(t[3].dynamic_port, Some(50000));
    assert_eq!(t[3].mode, Some("passive"));
    assert_eq!(t[4].completion_code, vec!["150", "226"]);
    assert!(ev.contains(&FtpEvent::Transfer {
        command: "STOR",
        file: "q3 report.xlsx".into(),
        upload: true,
        offset: 0
    }));
    assert!(ev.iter().any(|e| matches!(
        e,
        FtpEvent::Announce(Announce {
            client_listens: false,
            port: 50000,
            ..
        })
    )));
    // QUIT never answered: still reported.
    assert_eq!(t.last().unwrap().command, "QUIT");
    assert!(!t.last().unwrap().reply_received);
}

#[test]
fn credentials_shown_when_asked_or_anonymous() {
    let lines: &[(bool, &[u8])] = &[
        (false, b"220 ready\r"),
        (true, b"USER bob\r"),
        (false, b"331 ok\r"),
        (true, b"PASS hunter2\r"),
        (false, b"230 ok\r"),
    ];
    let ev = run(
        FtpLimits {
            log_credentials: true,
            ..FtpLimits::default()
        },
        lines,
    );
    assert_eq!(txs(&ev)[2].command_data.as_deref(), Some("hunter2"));
    let ev = run(
        FtpLimits::default(),
        &[
            (true, b"USER anonymous\r"),
            (false, b"331 ok\r"),
            (true, b"PASS guest@example.org\r"),
        ],
    );
    assert_eq!(
        txs(&ev)[1].command_data.as_deref(),
        Some("guest@example.org")
    );
}

#[test]
fn active_mode_telnet_padding_and_bad_announcements() {
    let ev = run(
        FtpLimits::default(),
        &[
            (true, b"\xff\xf4\xff\xf2PORT 192,168,1,5,234,10\r"),
            (false, b"200 PORT command successful.\r"),
            (true, b"EPRT |2|2001:db8::7|6275|\r"),
            (false, b"200 EPRT ok\r"),
            (true, b"PORT 300,1,1,1,1,1\r"),
            (false, b"501 Illegal PORT command.\r"),
            (true, b"PORT 1,2,3\r"),
            (false, b"227 Entering Passive Mode (garbage)\r"),
        ],
    );
    let ann: Vec<&Announce> = ev
        .iter()
        .filter_map(|e| match e {
            FtpEvent::Announce(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(ann.len(), 2);
    assert!(ann[0].client_listens && ann[0].port == 59914);
    assert_eq!(ann[0].addr.unwrap().to_string(), "192.168.1.5");
    assert_eq!(ann[1].addr.unwrap().to_string(), "2001:db8::7");
    assert_eq!(txs(&ev)[0].command, "PORT", "IAC sequences removed");
}

#[test]
fn auth_tls_stops_parsing_and_pipelining_is_capped() {
    let mut c = FtpConn::new(FtpLimits::default());
    let mut out = Vec::new();
    c.line(false, b"220 hi\r", &mut out);
    c.line(true, b"AUTH TLS\r", &mut out);
    c.line(false, b"234 Proceed with negotiation.\r", &mut out);
    assert!(out.contains(&FtpEvent::TlsStarted));
    let n = out.len();
    c.line(true, b"\x16\x03\x01\x02\x00garbage", &mut out);
    assert_eq!(out.len(), n, "nothing parsed after AUTH TLS");

    let mut c = FtpConn::new(FtpLimits::default());
    let mut out = Vec::new();
    for _ in 0..1000 {
        c.line(true, b"NOOP\r", &mut out);
    }
    assert!(c.pending() <= FtpLimits::default().max_pending);
    assert!(c.stats.limit_hits > 0);
    // Absurd input never panics.
    let long = vec![b'A'; 100_000];
    c.line(true, &long, &mut out);
    c.line(false, &long, &mut out);
    c.line(false, b"\xff", &mut out);
    c.line(true, b"\xff\xff\xff", &mut out);
    c.line(false, b"12", &mut out);
    c.line(false, b"229 Extended (|||99999|)", &mut out);
}

/// Regression (issue 12): a reply code followed directly by a multi-byte character (`331少`, a CJK
/// banner continuation) panicked the parser by slicing at byte 4, killing the worker thread.
#[test]
fn reply_code_followed_by_multibyte_character_does_not_panic() {
    let ev = run(
        FtpLimits::default(),
        &[
            (false, "220-欢迎\r".as_bytes()),
            (false, "220少".as_bytes()),
            (true, b"USER bob\r"),
            (false, "331少".as_bytes()),
            (true, b"PASS x\r"),
            (false, "230少少\r".as_bytes()),
        ],
    );
    let t = txs(&ev);
    assert_eq!(t[0].completion_code, vec!["220"]);
    assert_eq!(t[1].command, "USER");
    assert_eq!(t[1].completion_code, vec!["331"]);
    assert_eq!(t[1].reply, vec!["少"]);
    assert_eq!(t[2].completion_code, vec!["230"]);
}

/// Issue 12 (one-byte blinding): stray and invalid bytes in a banner or a user name are kept in the
/// text (invalid UTF-8 as U+FFFD, control bytes as they are, for the event writer to escape), not
/// a reason to cut the line at the first bad byte; a stray byte in front of a verb does not hide it.
#[test]
fn stray_bytes_are_kept_not_truncated() {
    let ev = run(
        FtpLimits::default(),
        &[
            (false, b"220 (vsFTPd\x1b3.0.3) \xc3\x28 caf\xc3\xa9\r"),
            (true, b"USER anon\xfe\xfdmous\tx\r"),
            (false, b"331 Please\x00specify the password.\r"),
            (true, b"\x1bSTOR report\x80.bin\r"),
            (false, b"150 Ok to send data.\r"),
            (false, b"226 Transfer complete.\r"),
        ],
    );
    let t = txs(&ev);
    assert_eq!(t[0].reply, vec!["(vsFTPd\u{1b}3.0.3) \u{FFFD}( café"]);
    assert_eq!(t[1].command, "USER");
    assert_eq!(
        t[1].command_data.as_deref(),
        Some("anon\u{FFFD}\u{FFFD}mous\tx")
    );
    assert_eq!(t[1].reply, vec!["Please\u{0}specify the password."]);
    assert_eq!(t[2].command, "STOR");
    assert_eq!(t[2].completion_code, vec!["150", "226"]);
    assert!(ev.iter().any(|e| matches!(
        e,
        FtpEvent::Transfer { command: "STOR", file, upload: true, .. } if file == "report\u{FFFD}.bin"
    )));
}

/// REST sets where the next transfer starts; the transfer after it starts at 0 again.
#[test]
fn rest_offset_applies_to_the_next_transfer_only() {
    let mut c = FtpConn::new(FtpLimits::default());
    let mut ev = Vec::new();
    c.line(true, b"REST 1048576\r", &mut ev);
    c.line(true, b"RETR big.iso\r", &mut ev);
    c.line(true, b"APPE log.txt\r", &mut ev);
    let t: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            FtpEvent::Transfer {
                command, offset, ..
            } => Some((*command, *offset)),
            _ => None,
        })
        .collect();
    assert_eq!(t, vec![("RETR", 1_048_576), ("APPE", 0)]);
}
