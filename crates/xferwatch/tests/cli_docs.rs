//! The manual page and the shell completions, generated through the binary
//! (`xferwatch generate …`), cover every command and every long option of the clap definition
//! (enumerated from `xferwatch::cli::Cli`, so this test follows the definition), the page has the
//! sections clap cannot write, renders without warnings where `man` is installed, and the scripts
//! parse where their shell is installed.

use clap::CommandFactory;
use std::path::{Path, PathBuf};
use std::process::Command;
use xferwatch::cli::Cli;

const BIN: &str = env!("CARGO_BIN_EXE_xferwatch");

/// The operator's commands (clap's own `help` command aside) with their long options, and the
/// top-level long options (`--help`, `--version`).
fn definition() -> (Vec<(String, Vec<String>)>, Vec<String>) {
    let mut cmd = Cli::command();
    cmd.build();
    let longs = |c: &clap::Command| -> Vec<String> {
        c.get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long().map(str::to_owned))
            .collect()
    };
    // Commands of commands too, named by their path: `fleet status`.
    fn walk(
        c: &clap::Command,
        path: &str,
        longs: &dyn Fn(&clap::Command) -> Vec<String>,
        out: &mut Vec<(String, Vec<String>)>,
    ) {
        for s in c
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            let name = format!("{path}{}", s.get_name());
            out.push((name.clone(), longs(s)));
            walk(s, &format!("{name} "), longs, out);
        }
    }
    let mut subs = Vec::new();
    walk(&cmd, "", &longs, &mut subs);
    let names: Vec<_> = subs.iter().map(|(n, _)| n.as_str()).collect();
    for expected in ["replay", "run", "check-config", "fleet", "fleet status"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    (subs, longs(&cmd))
}

fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn generate(args: &[&str], epoch: Option<&str>) {
    let mut c = Command::new(BIN);
    c.arg("generate").args(args);
    match epoch {
        Some(e) => c.env("SOURCE_DATE_EPOCH", e),
        None => c.env_remove("SOURCE_DATE_EPOCH"),
    };
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "xferwatch generate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} >/dev/null"))
        .status()
        .is_ok_and(|s| s.success())
}

/// The page's roff source with the escapes that matter here undone: `\-` is `-`, font changes
/// dropped, so `\fB\-\-config\fR` reads `--config`.
fn plain(roff: &str) -> String {
    roff.replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
        .replace("\\fP", "")
}

#[test]
fn man_page_covers_the_definition() {
    let dir = out_dir("cli_docs_man");
    generate(&["man", dir.to_str().unwrap()], Some("1704067200"));
    let page = std::fs::read_to_string(dir.join("xferwatch.1")).unwrap();
    let text = plain(&page);

    // Reproducible: the date is SOURCE_DATE_EPOCH's, and a second run writes the same bytes.
    assert!(
        text.contains("\n.TH xferwatch 1 2024-01-01 \"xferwatch "),
        "title line: {}",
        text.lines()
            .find(|l| l.starts_with(".TH"))
            .unwrap_or("none")
    );
    let again = out_dir("cli_docs_man_again");
    generate(&["man", again.to_str().unwrap()], Some("1704067200"));
    assert_eq!(
        page,
        std::fs::read_to_string(again.join("xferwatch.1")).unwrap()
    );

    let headings: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix(".SH "))
        .map(|h| h.trim_matches('"').to_owned())
        .collect();
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "COMMANDS",
        "EXIT STATUS",
        "SIGNALS",
        "FILES",
        "EXAMPLES",
        "VERSION",
    ] {
        assert!(
            headings.iter().any(|h| h == section),
            "no {section} section in {headings:?}"
        );
    }
    for path in [
        "/etc/xferwatch/sensor.toml",
        "/var/log/xferwatch/eve.json",
        "/var/lib/xferwatch/baseline.json",
        "/lib/systemd/system/xferwatch.service",
    ] {
        assert!(text.contains(path), "FILES lacks {path}");
    }
    for status in ["130", "143", "SIGHUP", "SIGTERM", "SIGINT"] {
        assert!(text.contains(status), "{status} missing");
    }

    // Every command has its subsection, holding every one of its long options.
    let (subs, top) = definition();
    for long in &top {
        assert!(text.contains(&format!("--{long}")), "--{long} missing");
    }
    for (name, longs) in &subs {
        let heading = format!(".SS \"xferwatch {name}\"");
        let start = text
            .find(&heading)
            .unwrap_or_else(|| panic!("no subsection {heading}"));
        let rest = &text[start + heading.len()..];
        let end = rest.find("\n.S").unwrap_or(rest.len());
        let body = &rest[..end];
        for long in longs {
            assert!(
                body.contains(&format!("--{long}")),
                "--{long} missing from the {name} subsection"
            );
        }
    }
    assert!(
        !text.contains("xferwatch generate"),
        "the hidden command is documented"
    );

    // Renders without a warning (groff's and man's), where man is installed.
    if have("man") && have("nroff") {
        let page_path = dir.join("xferwatch.1");
        let rendered = Command::new("man")
            .args(["-l"])
            .arg(&page_path)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "")
            .output()
            .unwrap();
        assert!(rendered.status.success(), "man -l failed");
        let shown = String::from_utf8_lossy(&rendered.stdout);
        assert!(shown.contains("EXIT STATUS"), "man -l shows: {shown}");
        let warnings = Command::new("sh")
            .arg("-c")
            .arg("MANWIDTH=80 man --warnings -l \"$1\" 2>&1 >/dev/null")
            .arg("sh")
            .arg(&page_path)
            .output()
            .unwrap();
        let warnings = String::from_utf8_lossy(&warnings.stdout);
        assert!(warnings.trim().is_empty(), "man --warnings: {warnings}");
    } else {
        {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: man -l rendering check (man or nroff not installed)"
            );
        }
    }
}

#[test]
fn completions_cover_the_definition() {
    let dir = out_dir("cli_docs_completions");
    for shell in ["bash", "zsh", "fish"] {
        generate(&["completions", shell, dir.to_str().unwrap()], None);
    }
    let (subs, top) = definition();
    for (file, shell) in [
        ("xferwatch.bash", "bash"),
        ("_xferwatch", "zsh"),
        ("xferwatch.fish", "fish"),
    ] {
        let path = dir.join(file);
        let script = std::fs::read_to_string(&path).unwrap();
        assert!(
            !script.contains("generate"),
            "{file}: the hidden command is offered"
        );
        // fish names a long option `-l NAME`, the others `--NAME`.
        let long_form = |long: &str| match shell {
            "fish" => format!(" -l {long}"),
            _ => format!("--{long}"),
        };
        for long in &top {
            assert!(
                script.contains(&long_form(long)),
                "{file}: --{long} missing"
            );
        }
        for (name, longs) in &subs {
            let last = name.rsplit(' ').next().unwrap_or(name);
            assert!(script.contains(last), "{file}: {name} missing");
            for long in longs {
                let found = if shell == "fish" {
                    // Offered after that command (`fleet status`: after fleet, then status).
                    let condition = match name.split_once(' ') {
                        Some((parent, child)) => format!(
                            "using_subcommand {parent}; and __fish_seen_subcommand_from {child}"
                        ),
                        // `fleet` itself: `using_subcommand fleet; and not …seen… status`.
                        None => format!("using_subcommand {name}"),
                    };
                    script.lines().any(|l| {
                        l.split_once(&condition).is_some_and(|(_, after)| {
                            after.starts_with('"') || after.starts_with("; and not")
                        }) && l.contains(&long_form(long))
                    })
                } else {
                    script.contains(&long_form(long))
                };
                assert!(found, "{file}: --{long} of {name} missing");
            }
        }
        // The script parses, where its shell is installed.
        let check: &[&str] = match shell {
            "fish" => &["--no-execute"],
            _ => &["-n"],
        };
        if have(shell) {
            let out = Command::new(shell).args(check).arg(&path).output().unwrap();
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "{shell} {check:?} {file}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "skipped: {shell} syntax check of {file} ({shell} not installed)"
                );
            }
        }
    }
}

/// Without DIR the script goes to standard output, the same bytes as the file.
#[test]
fn completions_to_standard_output() {
    let dir = out_dir("cli_docs_stdout");
    generate(&["completions", "bash", dir.to_str().unwrap()], None);
    let out = Command::new(BIN)
        .args(["generate", "completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        out.stdout,
        std::fs::read(dir.join("xferwatch.bash")).unwrap()
    );
}

/// `--version` names the build: `xferwatch 0.1.0 (abc1234 2026-12-05)`, "unknown" for what is not
/// known outside a git checkout.
#[test]
fn version_names_the_commit_and_date() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let prefix = format!("xferwatch {} (", env!("CARGO_PKG_VERSION"));
    let build = text
        .trim_end()
        .strip_prefix(&prefix)
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{text}"));
    let (commit, date) = build.split_once(' ').unwrap_or_else(|| panic!("{text}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{text}"
    );
    let digits = date.split('-').map(str::len).collect::<Vec<_>>();
    assert!(date == "unknown" || digits == [4, 2, 2], "{text}");
}
