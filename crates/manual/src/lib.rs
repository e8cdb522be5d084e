//! xferwatch's manual page and shell completions, rendered from the command line's clap
//! definition (`xferwatch::cli::Cli::command()`, passed in as `cli`): `xferwatch generate man DIR`
//! and `xferwatch generate completions SHELL [DIR]` (`make man`). The prose clap cannot know
//! (exit status, signals, files, examples) lives here, beside the rendering.
//!
//! The page is `xferwatch(1)`, one page for every command: clap_mangen's NAME, SYNOPSIS,
//! DESCRIPTION and OPTIONS of `xferwatch`, then COMMANDS with the synopsis, description and
//! options of each command (clap_mangen's sections of that command, as subsections), then the
//! sections clap cannot know — EXIT STATUS, SIGNALS, ENVIRONMENT, FILES, EXAMPLES, SEE ALSO —
//! and VERSION.

use clap_complete::Shell;
use clap_mangen::Man;
use roff::{bold, italic, roman, Roff};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The command as documented: `cli`, without clap's `help` command (`--help` is documented) and
/// with the longer description the page opens with.
fn documented(cli: &clap::Command) -> clap::Command {
    let mut cmd = cli
        .clone()
        .disable_help_subcommand(true)
        .subcommand_help_heading("Commands")
        .subcommand_value_name("COMMAND")
        .long_about(
            "xferwatch watches network traffic passively and reports, as Suricata-style EVE JSON \
             lines, large outbound FTP, TFTP and SMB transfers, files on the move, and \
             applications talking on ports that are not theirs (MITRE ATT&CK AN1173).\n\
             \n\
             It reads capture files (replay) or captures live on network interfaces (run, as a \
             systemd service). check-config validates a configuration file. fleet status \
             lists the sensors of a fleet, sensors that share their state in Redis.",
        );
    cmd.build();
    cmd
}

/// The commands the page and the completions cover, in their order of definition; a command
/// with commands of its own (`fleet`) comes first, then each of them (`fleet status`).
pub fn documented_commands(cli: &clap::Command) -> Vec<clap::Command> {
    fn walk(cmd: &clap::Command, out: &mut Vec<clap::Command>) {
        for sub in cmd
            .get_subcommands()
            .filter(|c| !c.is_hide_set() && c.get_name() != "help")
        {
            out.push(sub.clone());
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&documented(cli), &mut out);
    out
}

/// Renders `xferwatch(1)` (roff) into `w`.
pub fn render_man(cli: &clap::Command, w: &mut dyn Write) -> io::Result<()> {
    let cmd = documented(cli);
    let man = Man::new(cmd.clone())
        .manual("xferwatch manual")
        .date(page_date());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let mut commands = Roff::new();
    commands.control("SH", ["COMMANDS"]);
    commands.to_writer(&mut out)?;
    for sub in documented_commands(cli) {
        let name = sub
            .get_bin_name()
            .unwrap_or_else(|| sub.get_name())
            .to_owned();
        let sub_man = Man::new(sub);
        let mut synopsis = Vec::new();
        sub_man.render_synopsis_section(&mut synopsis)?;
        let mut description = Vec::new();
        sub_man.render_description_section(&mut description)?;
        let mut options = Vec::new();
        sub_man.render_options_section(&mut options)?;
        let mut roff = Roff::new();
        roff.control("SS", [name.as_str()]);
        roff.to_writer(&mut out)?;
        out.extend(body(&synopsis));
        out.extend(b".PP\n");
        out.extend(body(&description));
        if !options.is_empty() {
            out.extend(b".PP\nOptions:\n");
            out.extend(body(&options));
        }
    }
    extra_sections(&mut out)?;
    man.render_version_section(&mut out)?;
    w.write_all(&dedup_preamble(&out))
}

/// The page's date, YYYY-MM-DD: that of `SOURCE_DATE_EPOCH` (seconds since 1970, as reproducible
/// builds set it; `make man` takes the last commit's), else today's (UTC). It must not be empty:
/// an empty date would shift the other `.TH` fields.
fn page_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
        });
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01); Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Writes `dir/xferwatch.1`; returns its path.
pub fn write_man(cli: &clap::Command, dir: &Path) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("xferwatch.1");
    let mut buf = Vec::new();
    render_man(cli, &mut buf)?;
    std::fs::write(&path, buf)?;
    Ok(path)
}

/// Writes the completion script for `shell` in `dir` (`xferwatch.bash`, `_xferwatch`,
/// `xferwatch.fish`, …) and returns its path, or writes it to standard output without `dir`.
pub fn write_completions(
    cli: &clap::Command,
    shell: Shell,
    dir: Option<&Path>,
) -> io::Result<Option<PathBuf>> {
    let mut cmd = cli.clone();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            clap_complete::generate_to(shell, &mut cmd, "xferwatch", dir).map(Some)
        }
        None => {
            let mut out = io::stdout().lock();
            clap_complete::generate(shell, &mut cmd, "xferwatch", &mut out);
            out.flush().map(|()| None)
        }
    }
}

/// The lines of one rendered clap_mangen section without the section heading (the first `.SH`
/// line) and without roff's preamble (kept once, at the top of the page).
fn body(rendered: &[u8]) -> Vec<u8> {
    let preamble = Roff::new().render();
    let text = String::from_utf8_lossy(rendered);
    let text = text.strip_prefix(preamble.as_str()).unwrap_or(&text);
    let mut out = String::new();
    let mut heading_seen = false;
    for line in text.lines() {
        if !heading_seen && line.starts_with(".SH") {
            heading_seen = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

/// Every rendered piece starts with roff's preamble (the definition of the apostrophe string);
/// the page needs it once.
fn dedup_preamble(page: &[u8]) -> Vec<u8> {
    let preamble = Roff::new().render();
    let text = String::from_utf8_lossy(page);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_ref();
    if let Some(after) = rest.strip_prefix(preamble.as_str()) {
        out.push_str(&preamble);
        rest = after;
    }
    out.push_str(&rest.replace(preamble.as_str(), ""));
    out.into_bytes()
}

/// A tagged paragraph: `tag` in bold (and `arg` in italics) on its own line, `text` indented.
fn item(roff: &mut Roff, tag: &str, arg: Option<&str>, text: &str) {
    roff.control("TP", []);
    match arg {
        Some(arg) => roff.text([bold(tag), roman(" "), italic(arg)]),
        None => roff.text([bold(tag)]),
    };
    roff.text([roman(text)]);
}

/// An example: what it does, then the command lines, unfilled and indented.
fn example(roff: &mut Roff, what: &str, lines: &[&str]) {
    roff.control("PP", []);
    roff.text([roman(what)]);
    roff.control("PP", []);
    roff.control("RS", ["4"]);
    roff.control("nf", []);
    for line in lines {
        roff.text([roman(*line)]);
    }
    roff.control("fi", []);
    roff.control("RE", []);
}

/// The sections clap cannot know: exit status, signals, environment, files, examples.
fn extra_sections(out: &mut Vec<u8>) -> io::Result<()> {
    let mut r = Roff::new();

    r.control("SH", ["EXIT STATUS"]);
    r.text([
        bold("replay"),
        roman(" (when several apply, the first listed wins):"),
    ]);
    item(
        &mut r,
        "130, 143",
        None,
        "Interrupted by SIGINT (130) or SIGTERM (143); every flow read so far was written.",
    );
    item(
        &mut r,
        "3",
        None,
        "Internal error: a panic was contained (its flow lost) or a worker died; the output is incomplete.",
    );
    item(
        &mut r,
        "2",
        None,
        "A capture file could not be read (the others were); or a usage error.",
    );
    item(
        &mut r,
        "1",
        None,
        "A configuration error, or the EVE file could not be created.",
    );
    item(&mut r, "0", None, "Every capture file was read.");
    r.control("PP", []);
    r.text([bold("check-config"), roman(":")]);
    item(&mut r, "0", None, "The file is valid.");
    item(
        &mut r,
        "1",
        None,
        "The file is invalid (the message names the key).",
    );
    item(&mut r, "2", None, "No file was given, or a usage error.");
    r.control("PP", []);
    r.text([bold("run"), roman(":")]);
    item(
        &mut r,
        "0",
        None,
        "After an orderly stop (SIGTERM or SIGINT).",
    );
    item(
        &mut r,
        "1",
        None,
        "It could not start: one line on standard error, prefixed \"xferwatch: \", names the key to look at.",
    );
    item(&mut r, "2", None, "A usage error.");
    r.control("PP", []);
    r.text([bold("fleet status"), roman(":")]);
    item(
        &mut r,
        "0",
        None,
        "The sensors were listed (none, if none has sent a heartbeat).",
    );
    item(
        &mut r,
        "1",
        None,
        "The configuration is not valid (the message names the key).",
    );
    item(
        &mut r,
        "2",
        None,
        "The configuration has no [fleet] redis or redis_cluster, or the fleet's Redis cannot be reached or read (the message names its address, never its password); or a usage error.",
    );

    r.control("SH", ["SIGNALS"]);
    r.text([bold("run"), roman(":")]);
    item(
        &mut r,
        "SIGTERM, SIGINT",
        None,
        "Stop: STOPPING=1 to systemd, capture stops, every queue is drained, every open flow is ended and written, the baselines are saved, the final stats event is written and flushed; exit 0. Further signals during the stop are ignored.",
    );
    item(
        &mut r,
        "SIGHUP",
        None,
        "Reopen the EVE file (after a rotation) and reload the [[allow]] entries and the thresholds ([detect.large_outbound], [detect.baseline], [detect.rollup]) from the configuration file; a file that is not valid is not applied and the running configuration stays. Other keys need a restart.",
    );
    r.control("PP", []);
    r.text([bold("replay"), roman(":")]);
    item(
        &mut r,
        "SIGINT, SIGTERM",
        None,
        "Stop reading; every flow read so far is written; exit 130 (SIGINT) or 143 (SIGTERM).",
    );

    r.control("SH", ["ENVIRONMENT"]);
    item(
        &mut r,
        "XFERWATCH__SECTION__KEY",
        None,
        "Sets or overrides a key of the configuration file, e.g. XFERWATCH__LIMITS__MAX_FLOWS=200000; list keys take comma-separated values. The environment wins over the file.",
    );
    item(
        &mut r,
        "RUST_LOG",
        None,
        "When set, the log filter, instead of [log] level.",
    );
    item(
        &mut r,
        "NOTIFY_SOCKET",
        None,
        "Set by systemd (Type=notify): run reports READY=1, STOPPING=1, WATCHDOG=1 and its status there.",
    );

    r.control("SH", ["FILES"]);
    item(
        &mut r,
        "/etc/xferwatch/sensor.toml",
        None,
        "The configuration of the service (root:xferwatch, mode 0640). Every key, with its default, is in sensor.toml.example.",
    );
    item(
        &mut r,
        "/var/log/xferwatch/eve.json",
        None,
        "The EVE JSON output of the service ([output] eve_path; rotated by /etc/logrotate.d/xferwatch, which sends SIGHUP).",
    );
    item(
        &mut r,
        "/var/lib/xferwatch/baseline.json",
        None,
        "The learnt per-host baselines ([detect.baseline] state_file), saved periodically and at stop.",
    );
    item(
        &mut r,
        "/lib/systemd/system/xferwatch.service",
        None,
        "The systemd unit (installed by make install as /etc/systemd/system/xferwatch.service). It runs xferwatch run -c /etc/xferwatch/sensor.toml as the user xferwatch with CAP_NET_RAW only; systemctl reload sends SIGHUP.",
    );
    item(
        &mut r,
        "eve.json",
        None,
        "Where replay writes, in the current directory, without --eve.",
    );

    r.control("SH", ["EXAMPLES"]);
    example(
        &mut r,
        "Replay the bundled captures with their configuration and show the first alert:",
        &[
            "xferwatch replay -c pcaps/demo.toml --eve out/demo-eve.json pcaps/*.pcap",
            "grep -m1 '\"signature_id\":1173001' out/demo-eve.json",
        ],
    );
    example(
        &mut r,
        "Replay a capture to standard output, without the summary:",
        &["xferwatch replay -q --eve - capture.pcapng | jq .event_type"],
    );
    example(
        &mut r,
        "Validate a configuration and print it with every default resolved:",
        &["xferwatch check-config /etc/xferwatch/sensor.toml"],
    );
    example(
        &mut r,
        "Run the live sensor under systemd, reload it, follow its log:",
        &[
            "systemctl enable --now xferwatch.service",
            "systemctl reload xferwatch     # SIGHUP",
            "journalctl -u xferwatch -f",
        ],
    );
    example(
        &mut r,
        "Run it in the foreground, overriding the interfaces:",
        &["XFERWATCH__CAPTURE__INTERFACES=eth1,eth2 xferwatch run -c sensor.toml"],
    );

    example(
        &mut r,
        "List the sensors of the fleet a configuration names, as a table, then as JSON:",
        &[
            "xferwatch fleet status -c /etc/xferwatch/sensor.toml",
            "xferwatch fleet status -c /etc/xferwatch/sensor.toml --json | jq '.[] | select(.stale)'",
        ],
    );

    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("systemctl"),
        roman("(1), "),
        bold("journalctl"),
        roman("(1), "),
        bold("logrotate"),
        roman("(8); docs/operations.md, docs/events.md and docs/fleet.md in the source."),
    ]);
    r.to_writer(out)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }
}
