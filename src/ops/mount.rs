//! `fsimg mount IMAGE DIR` and `fsimg umount DIR` (issue 18): an image's
//! volume, or a disk and its partitions, as read-only files in DIR
//! ([`crate::mount`] says which files and serves them).
//!
//! Like sshfs, `fsimg mount` returns once the mount is ready and serves it
//! in the background. A process with threads cannot safely `fork`, so the
//! command runs itself again as the server ([`background`] starts it with
//! `--server`; [`server`] is what it runs): in a session of its own, its
//! standard input and error on /dev/null and its standard output a pipe to
//! the waiting command, on which it sends one JSON object per line (a
//! warning, then `ready` or `fail`). The waiting command relays them and
//! exits 0 once the mount is ready, or with the server's message and
//! status. `-f` serves in the foreground instead ([`serve`]). Either way
//! the server ends when the mount is unmounted (`fsimg umount`, `umount`,
//! `fusermount3 -u`), and SIGTERM, SIGINT or SIGHUP unmount it first.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::human;
use crate::access::image::{CACHE_BYTES, not_seekable};
use crate::error::{Error, Result};
use crate::mount::fuse::{Options, Server, Stats};
use crate::mount::{self, MountError};
use crate::report::Report;

/// The cache of decoded records a mount keeps by default, in bytes.
pub const DEFAULT_CACHE: u64 = CACHE_BYTES;

/// The smallest `--cache-size`: two of the 2 MiB records `-z` writes
/// (a smaller cache would decode a record again for every read in it).
pub const MIN_CACHE: u64 = 4 << 20;

/// What to mount where.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// The image (or volume, disk, disk image).
    pub image: PathBuf,
    /// The empty directory to mount it on.
    pub dir: PathBuf,
    /// The cache of decoded records, in bytes.
    pub cache_bytes: u64,
}

/// One file of a ready mount.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountedFile {
    /// Its name: `volume`, `disk`, `p1`...
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A mount that is ready.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mounted {
    /// The image, as given.
    pub image: String,
    /// The mount point, as given.
    pub dir: String,
    /// The files in it.
    pub files: Vec<MountedFile>,
    /// The process serving it.
    pub pid: u32,
}

impl Mounted {
    /// The line `fsimg mount` prints: what is where, and how it ends.
    pub fn describe(&self, background: bool) -> String {
        let files: Vec<String> = self
            .files
            .iter()
            .map(|f| format!("{} ({})", f.name, human(f.size)))
            .collect();
        let end = if background {
            format!(
                "`fsimg umount {}` unmounts it (server pid {})",
                self.dir, self.pid
            )
        } else {
            format!("Ctrl-C or `fsimg umount {}` unmounts it", self.dir)
        };
        format!(
            "{} mounted on {}: {}; {end}",
            self.image,
            self.dir,
            files.join(", ")
        )
    }
}

/// The line `fsimg mount -f` prints when the mount ends.
pub fn describe_stats(dir: &Path, s: &Stats) -> String {
    format!(
        "{} unmounted: {} reads, {} served, {} records decoded, {} cache hits, {} read errors",
        dir.display(),
        s.reads,
        human(s.bytes),
        s.records_decoded,
        s.cache_hits,
        s.errors
    )
}

/// `--cache-size`: bytes, or a number with K, M or G (KiB, MiB, GiB;
/// `64M`, `64MiB`, `1G`), at least [`MIN_CACHE`].
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        _ => {
            return Err(format!(
                "{s} is not a size (bytes, or a number with K, M or G)"
            ));
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s} is not a size (bytes, or a number with K, M or G)"))?;
    let bytes = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s} is too large"))?;
    if bytes < MIN_CACHE {
        return Err(format!("the cache must be at least 4M ({MIN_CACHE} bytes)"));
    }
    Ok(bytes)
}

/// Whether the process runs as root.
fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// DIR must be an empty directory.
fn check_dir(dir: &Path) -> Result<()> {
    let mount_err = |e| MountError::Mount {
        dir: dir.to_path_buf(),
        source: e,
    };
    let meta = std::fs::metadata(dir).map_err(mount_err)?;
    if !meta.is_dir() {
        return Err(MountError::NotADirectory {
            dir: dir.to_path_buf(),
        }
        .into());
    }
    if std::fs::read_dir(dir).map_err(mount_err)?.next().is_some() {
        return Err(MountError::NotEmpty {
            dir: dir.to_path_buf(),
        }
        .into());
    }
    Ok(())
}

/// The kernel's FUSE device, and for a user other than root, fusermount3.
fn check_fuse() -> Result<()> {
    if std::fs::metadata("/dev/fuse").is_err() {
        return Err(MountError::NoFuseDevice.into());
    }
    if !is_root() && !fusermount_found() {
        return Err(MountError::NoFusermount.into());
    }
    Ok(())
}

/// Whether fusermount3 (or fuse 2's fusermount, which fuser falls back
/// to) is where fuser looks for it: `$FUSERMOUNT_PATH`, the PATH, /bin.
fn fusermount_found() -> bool {
    if std::env::var_os("FUSERMOUNT_PATH").is_some() {
        return true;
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/bin", "/sbin"].map(PathBuf::from));
    dirs.iter().any(|d| {
        ["fusermount3", "fusermount"]
            .iter()
            .any(|t| d.join(t).is_file())
    })
}

/// A pipe, a FIFO, a socket, a terminal or standard input cannot be read
/// at random; said before a server is started (which would not see the
/// caller's standard input or `<(...)`).
fn check_image_path(image: &Path) -> Result<()> {
    if image.as_os_str() == "-" {
        return Err(not_seekable("standard input"));
    }
    if let Ok(m) = std::fs::metadata(image) {
        let ft = m.file_type();
        if ft.is_fifo() || ft.is_socket() || ft.is_char_device() {
            return Err(not_seekable(&image.display().to_string()));
        }
    }
    Ok(())
}

/// Mounts `opts.image` on `opts.dir` and serves it here until it is
/// unmounted. `ready` hears of the mount once it is ready; if it returns
/// false (nobody wants the mount any more), the mount is undone at once.
/// Warnings and read errors go to `report`.
pub fn serve(
    opts: &MountOptions,
    report: Arc<dyn Report + Send + Sync>,
    ready: &mut dyn FnMut(&Mounted) -> bool,
) -> Result<Stats> {
    check_image_path(&opts.image)?;
    check_dir(&opts.dir)?;
    check_fuse()?;
    let layout = mount::open(&opts.image, opts.cache_bytes, report.as_ref())?;
    // Before the mount: a signal from here on unmounts it.
    let signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|e| MountError::Mount {
        dir: opts.dir.clone(),
        source: e,
    })?;
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let fsname = std::path::absolute(&opts.image).unwrap_or_else(|_| opts.image.clone());
    let options = Options {
        threads: (2 * cores).clamp(4, 16),
        prefetch_threads: cores.clamp(2, 8),
        cache_bytes: opts.cache_bytes,
        allow_root: is_root(),
        fsname: fsname.display().to_string(),
    };
    let server = Server::mount(layout, &opts.dir, &options, Arc::clone(&report))?;
    let mounted = Mounted {
        image: opts.image.display().to_string(),
        dir: opts.dir.display().to_string(),
        files: server
            .files()
            .iter()
            .map(|(name, size)| MountedFile {
                name: name.clone(),
                size: *size,
            })
            .collect(),
        pid: std::process::id(),
    };
    let wanted = ready(&mounted);
    server.run(signals, !wanted)
}

/// One line from the server to the waiting `fsimg mount`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Message {
    /// A warning, to relay.
    Warning(String),
    /// An error the server goes on after, to relay.
    Error(String),
    /// The mount is ready.
    Ready(Mounted),
    /// The server failed: its message and exit status.
    Fail { msg: String, code: i32 },
}

/// The report of the background server: to the waiting command until the
/// mount is ready, then to syslog (`/dev/log`, where there is one).
struct ServerReport {
    pipe: Mutex<Option<Box<dyn Write + Send>>>,
    syslog: Mutex<Option<UnixDatagram>>,
}

impl ServerReport {
    /// Sends `m` to the waiting command; false if it is not there.
    fn send(&self, m: &Message) -> bool {
        let mut pipe = self.pipe.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(w) = pipe.as_mut() else {
            return false;
        };
        let line = serde_json::to_string(m).unwrap_or_default();
        writeln!(w, "{line}").and_then(|()| w.flush()).is_ok()
    }

    /// Logs `msg` to syslog at `severity` (3 error, 4 warning).
    fn syslog(&self, severity: u8, msg: &str) {
        let mut s = self.syslog.lock().unwrap_or_else(PoisonError::into_inner);
        if s.is_none() {
            *s = UnixDatagram::unbound()
                .and_then(|u| {
                    u.connect("/dev/log")?;
                    u.set_nonblocking(true)?;
                    Ok(u)
                })
                .ok();
        }
        if let Some(u) = s.as_ref() {
            // Facility user (1).
            let line = format!("<{}>fsimg[{}]: {msg}", 8 + severity, std::process::id());
            let _ = u.send(line.as_bytes());
        }
    }

    /// Says the mount is ready, and stops using the pipe.
    fn ready(&self, m: &Mounted) -> bool {
        let heard = self.send(&Message::Ready(m.clone()));
        self.pipe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        heard
    }
}

impl Report for ServerReport {
    fn warn(&self, msg: &str) {
        if !self.send(&Message::Warning(msg.to_string())) {
            self.syslog(4, msg);
        }
    }

    fn error(&self, msg: &str) {
        if !self.send(&Message::Error(msg.to_string())) {
            self.syslog(3, msg);
        }
    }
}

/// What `fsimg mount --server` runs: [`serve`], speaking to the waiting
/// `fsimg mount` on `out`. Returns the exit status.
pub fn server(opts: &MountOptions, out: Box<dyn Write + Send>) -> i32 {
    // Out of the caller's session: its terminal's Ctrl-C and hangup are
    // not for the server.
    let _ = rustix::process::setsid();
    let report = Arc::new(ServerReport {
        pipe: Mutex::new(Some(out)),
        syslog: Mutex::new(None),
    });
    let r = Arc::clone(&report);
    let mut ready = |m: &Mounted| {
        let heard = r.ready(m);
        // Keep no directory of the caller's busy.
        let _ = std::env::set_current_dir("/");
        heard
    };
    match serve(opts, report.clone(), &mut ready) {
        Ok(_) => 0,
        Err(e) => {
            let code = e.exit_code();
            let msg = e.to_string();
            if !report.send(&Message::Fail {
                msg: msg.clone(),
                code,
            }) {
                report.syslog(3, &msg);
            }
            code
        }
    }
}

/// `fsimg mount` without `-f`: starts the server (`exe mount --server`)
/// and waits until it says the mount is ready, relaying its warnings to
/// `report`.
pub fn background(opts: &MountOptions, exe: &Path, report: &dyn Report) -> Result<Mounted> {
    check_image_path(&opts.image)?;
    // The server starts in this directory (and leaves it once mounted), so
    // its messages name the paths as they were given.
    let mut child = Command::new(exe)
        .arg("mount")
        .arg("--server")
        .arg("--cache-size")
        .arg(opts.cache_bytes.to_string())
        .arg("--")
        .arg(&opts.image)
        .arg(&opts.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::io("cannot start", exe, e))?;
    let out = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Message>(&line) {
            Ok(Message::Warning(m)) => report.warn(&m),
            Ok(Message::Error(m)) => report.error(&m),
            Ok(Message::Ready(m)) => return Ok(m),
            Ok(Message::Fail { msg, code }) => {
                let _ = child.wait();
                return Err(MountError::Server { msg, code }.into());
            }
            Err(_) => report.warn(&format!("the mount server said: {line}")),
        }
    }
    let status = child
        .wait()
        .map_or_else(|e| e.to_string(), |s| s.to_string());
    Err(MountError::ServerDied { status }.into())
}

/// `fsimg umount DIR`: unmounts the fsimg mount on DIR (as root with
/// umount(2), otherwise through `fusermount3 -u`); its server then ends.
pub fn umount(dir: &Path) -> Result<()> {
    // A mount whose server died cannot be looked at (ENOTCONN): its path
    // is taken as given.
    let abs = dir
        .canonicalize()
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf());
    if !is_fsimg_mount(&abs) {
        return Err(MountError::NotMounted {
            dir: dir.to_path_buf(),
        }
        .into());
    }
    let busy = || -> Error {
        MountError::Busy {
            dir: dir.to_path_buf(),
        }
        .into()
    };
    if is_root() {
        return rustix::mount::unmount(&abs, rustix::mount::UnmountFlags::empty()).map_err(|e| {
            if e == rustix::io::Errno::BUSY {
                busy()
            } else {
                MountError::Unmount {
                    dir: dir.to_path_buf(),
                    why: std::io::Error::from(e).to_string(),
                }
                .into()
            }
        });
    }
    let out = Command::new("fusermount3")
        .arg("-u")
        .arg("--")
        .arg(&abs)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| -> Error {
            if e.kind() == std::io::ErrorKind::NotFound {
                MountError::NoFusermount.into()
            } else {
                Error::io("cannot run fusermount3 for", dir, e)
            }
        })?;
    if out.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if why.contains("busy") {
        return Err(busy());
    }
    Err(MountError::Unmount {
        dir: dir.to_path_buf(),
        why,
    }
    .into())
}

/// Whether an fsimg mount (type `fuse.fsimg`) is on `dir`.
pub fn is_fsimg_mount(dir: &Path) -> bool {
    mount::fsimg_mounts().iter().any(|(p, _)| p == dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("8388608"), Ok(8 << 20));
        assert_eq!(parse_size("4096K"), Ok(4 << 20));
        assert!(parse_size("1M").unwrap_err().contains("at least 4M"));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(
            parse_size("99999999999G")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn messages_round_trip() {
        let m = Message::Fail {
            msg: "x".into(),
            code: 2,
        };
        let line = serde_json::to_string(&m).unwrap();
        assert!(matches!(
            serde_json::from_str::<Message>(&line).unwrap(),
            Message::Fail { code: 2, .. }
        ));
    }
}
