//! The baseline state file: every (internal host, VLAN, protocol) baseline, saved at shutdown (and
//! periodically by the daemon) and loaded at start, so a restart forgets nothing. Written to a
//! fresh, randomly named file in the same directory (created with O_CREAT|O_EXCL, so a symlink or
//! file planted there is never followed or overwritten), synced, then renamed over the state file,
//! so a crash never leaves half a file. A file that cannot be read is
//! reported and set aside (renamed `*.corrupt`); the sensor starts learning afresh.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use xferwatch_policy::detect::{proto_name, HostBaseline, HostKey};
use xferwatch_wire::Addr;

pub type Saved = Vec<(HostKey, HostBaseline)>;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    window_secs: u64,
    hosts: Vec<Host>,
}

#[derive(Serialize, Deserialize)]
struct Host {
    host: std::net::IpAddr,
    vlan: u16,
    proto: String,
    window_start_us: i64,
    current: u64,
    mean: f64,
    dev: f64,
    windows: u32,
}

fn proto_key(p: &str) -> Option<u8> {
    (0..3u8).find(|k| proto_name(*k) == p)
}

/// Loads the state file. Missing: empty. Unreadable or from another window length: reported, the
/// file is renamed aside, empty.
pub fn load(path: &Path, window_secs: u64) -> Saved {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(
                "{}: cannot read the baseline state ({e}); starting afresh",
                path.display()
            );
            return Vec::new();
        }
    };
    let parsed: Result<File, String> = serde_json::from_str::<File>(&text)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            if f.version != 1 {
                Err(format!("version {} (expected 1)", f.version))
            } else if f.window_secs != window_secs {
                Err(format!(
                    "window of {} s, but detect.baseline.window is {} s",
                    f.window_secs, window_secs
                ))
            } else {
                Ok(f)
            }
        });
    match parsed {
        Ok(f) => f
            .hosts
            .into_iter()
            .filter(|h| h.mean.is_finite() && h.dev.is_finite() && h.mean >= 0.0)
            .filter_map(|h| {
                let k = proto_key(&h.proto)?;
                Some((
                    (Addr::from(h.host), h.vlan, k),
                    HostBaseline::new(h.window_start_us, h.current, h.mean, h.dev, h.windows),
                ))
            })
            .collect(),
        Err(why) => {
            let aside = path.with_extension("corrupt");
            let moved = std::fs::rename(path, &aside).is_ok();
            tracing::warn!(
                "{}: baseline state not usable ({why}); {}starting afresh",
                path.display(),
                if moved {
                    format!("moved to {}, ", aside.display())
                } else {
                    String::new()
                }
            );
            Vec::new()
        }
    }
}

/// Saves every baseline, sorted (the same state gives the same file).
pub fn save(path: &Path, window_secs: u64, mut all: Saved) -> Result<()> {
    all.sort_by(|a, b| (a.0 .0.octets(), a.0 .1, a.0 .2).cmp(&(b.0 .0.octets(), b.0 .1, b.0 .2)));
    let f = File {
        version: 1,
        window_secs,
        hosts: all
            .into_iter()
            .map(|((addr, vlan, k), b)| Host {
                host: addr.to_ip(),
                vlan,
                proto: proto_name(k).to_string(),
                window_start_us: b.window_start_us,
                current: b.current,
                mean: b.mean,
                dev: b.dev,
                windows: b.windows,
            })
            .collect(),
    };
    let text = serde_json::to_string_pretty(&f).context("cannot encode the baseline state")?;
    write_replace(path, (text + "\n").as_bytes())
        .with_context(|| format!("{}: cannot save the baseline state", path.display()))
}

/// The baseline state's mode: only its owner reads and writes it (the state names internal hosts
/// and their traffic volumes). Stated here rather than left to the temporary-file library.
pub const STATE_MODE: u32 = 0o600;

fn state_permissions() -> std::fs::Permissions {
    std::os::unix::fs::PermissionsExt::from_mode(STATE_MODE)
}

/// Replaces `path` with `bytes` atomically: a new file with a random name next to it (exclusive
/// creation, mode 0600 ([`STATE_MODE`]): nothing already at that name, link or not, is opened), written, synced,
/// renamed over `path` (rename replaces a symlink at `path` itself, never its target), and the
/// directory synced so the rename survives a power cut. On any error the temporary file is removed.
fn write_replace(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(state_permissions())
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("{}: cannot write", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .context("cannot rename the new file into place")?;
    // Best effort: some file systems cannot sync a directory; the data itself is already synced.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh directory holding a file `victim` ("precious") and a symlink to it at `link_name`;
    /// returns the directory, the victim and the state path `baselines.json`.
    fn planted(tag: &str, link_name: &str) -> (PathBuf, PathBuf, PathBuf) {
        let d =
            std::env::temp_dir().join(format!("xferwatch-baseline-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let victim = d.join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        std::os::unix::fs::symlink(&victim, d.join(link_name)).unwrap();
        let state = d.join("baselines.json");
        (d, victim, state)
    }

    fn one_host() -> Saved {
        vec![(
            (Addr::from(std::net::IpAddr::from([10, 0, 0, 5])), 0, 0),
            HostBaseline::new(1_000_000, 42, 1000.0, 10.0, 3),
        )]
    }

    /// Regression: the state was written through the fixed path `<state>.tmp`, following a symlink
    /// planted there, so whoever could write the state directory could make the sensor overwrite
    /// any file it may write.
    #[test]
    fn a_symlink_at_the_old_temporary_path_is_not_followed() {
        let (d, victim, state) = planted("symlink", "baselines.tmp");
        save(&state, 3600, one_host()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(std::fs::symlink_metadata(d.join("baselines.tmp"))
            .unwrap()
            .file_type()
            .is_symlink());
        let back = load(&state, 3600);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].1.current, 42);
        // Nothing else is left behind: the victim, the planted link and the state file.
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["baselines.json", "baselines.tmp", "victim"]);
        std::fs::remove_dir_all(&d).ok();
    }

    /// A symlink at the state path itself is replaced by the new file, its target left alone.
    #[test]
    fn a_symlink_at_the_state_path_is_replaced_not_written_through() {
        let (d, victim, state) = planted("statelink", "baselines.json");
        save(&state, 3600, one_host()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(std::fs::symlink_metadata(&state)
            .unwrap()
            .file_type()
            .is_file());
        assert_eq!(load(&state, 3600).len(), 1);
        std::fs::remove_dir_all(&d).ok();
    }

    /// The state is readable by its owner only: mode 0600, whatever the umask (which can only
    /// remove bits).
    #[test]
    fn the_state_file_is_not_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let d =
            std::env::temp_dir().join(format!("xferwatch-baseline-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let state = d.join("baselines.json");
        save(&state, 3600, one_host()).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "world bits set: {mode:o}");
        assert_eq!(mode & !STATE_MODE, 0, "more than {STATE_MODE:o}: {mode:o}");
        assert_eq!(mode & 0o600, 0o600, "owner cannot read and write: {mode:o}");
        // Saving again over an existing file keeps the mode (the new file replaces it).
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o644)).unwrap();
        save(&state, 3600, one_host()).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "after a second save: {mode:o}");
        std::fs::remove_dir_all(&d).ok();
    }

    /// A directory that cannot be written: an error naming the state file, and nothing written.
    #[test]
    fn an_unwritable_directory_is_an_error() {
        let state = Path::new("/nonexistent-xferwatch-dir/baselines.json");
        let e = format!("{:#}", save(state, 3600, one_host()).unwrap_err());
        assert!(e.contains("baselines.json"), "{e}");
    }
}
