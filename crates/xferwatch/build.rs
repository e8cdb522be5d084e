//! Stamps the build into `--version`: the commit and its date from git, or SOURCE_DATE_EPOCH for
//! the date; "unknown" outside a git checkout.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    run("git", args)
}

/// What `program args` printed, trimmed; None when it failed or printed nothing.
fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // HEAD moves on checkout, the branch it names on commit (`--git-path` finds both in a
    // worktree too, where the git directory is not ./.git).
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(p) = git(&["rev-parse", "--git-path", &name]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let date = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|t| run("date", &["-u", "-d", &format!("@{t}"), "+%F"]))
        .or_else(|| git(&["log", "-1", "--format=%cs"]))
        .unwrap_or_else(|| "unknown".into());
    println!(
        "cargo:rustc-env=XFERWATCH_VERSION={} ({commit} {date})",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default()
    );
}
