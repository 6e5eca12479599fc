//! SIGINT, SIGTERM, SIGHUP and SIGPIPE in the middle of every mode: the run
//! exits 130 (1 for SIGPIPE) without a panic, a file it created is gone, a
//! partial image does not verify, an existing -O target does not pass for
//! a copy, and a rescue's mapfile resumes.
//!
//! The source is a sparse 64 GiB ext4 volume with a 16 GiB journal that
//! mke2fs never wrote (lazy_journal_init): a few MiB on disk, but 16 GiB
//! for fsimg to copy, so every run is stopped long before it could end.
//! Each run reports `--progress=json`, and is signalled once a line says
//! the copy has begun.

mod common;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, channel};
use std::thread;
use std::time::{Duration, Instant};

use common::{fsimg, have, run, run_ok};
use rustix::process::{Pid, Signal, kill_process};

/// Where the shared source volume and its image live.
struct Fixture {
    _dir: tempfile::TempDir,
    /// The 64 GiB sparse ext4 volume.
    ext: PathBuf,
    /// Its zstd image (about 1.3 MB, restoring to 16 GiB of writes).
    image: PathBuf,
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The volume, made once per test binary; `None` without mkfs.ext4.
fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        if !have("mkfs.ext4") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ext = dir.path().join("ext4.img");
        make_ext4(&ext, "64G", "16384");
        let image = dir.path().join("ext4.fsimg");
        run_ok(&["-q", "-s", "-z", "1", "-o", s(&image), s(&ext)]);
        Some(Fixture {
            _dir: dir,
            ext,
            image,
        })
    })
    .as_ref()
}

/// A sparse ext4 volume of `size` with a journal of `journal` MiB that
/// mke2fs leaves unwritten.
fn make_ext4(path: &Path, size: &str, journal: &str) {
    let st = std::process::Command::new("truncate")
        .args(["-s", size, s(path)])
        .status()
        .unwrap();
    assert!(st.success());
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-J"])
        .arg(format!("size={journal}"))
        .args(["-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mkfs.ext4: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a signalled run did.
struct Stopped {
    code: Option<i32>,
    stderr: String,
    /// What it wrote to standard output, if that was collected.
    stdout: Vec<u8>,
}

/// Standard error's lines, as they come.
fn lines(child: &mut Child) -> Receiver<String> {
    let (tx, rx) = channel();
    let err = child.stderr.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for a `--progress=json` line saying the copy has begun (bytes
/// done, not all): the run is then in the middle of its work.
fn wait_for_progress(rx: &Receiver<String>, seen: &mut Vec<String>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("{what}: no progress line ({e:?}); stderr: {seen:?}"));
        seen.push(line.clone());
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && let (Some(done), Some(total)) = (v["done"].as_u64(), v["total"].as_u64())
        {
            assert!(
                done < total,
                "{what}: the run ended before it could be stopped: {line}"
            );
            if done > 0 {
                return;
            }
        }
    }
}

/// Waits for the child to exit (it must, within a minute).
fn wait_exit(child: &mut Child, what: &str) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: fsimg did not exit after the signal");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs fsimg with `args` (and `--progress=json`), feeding `stdin` the
/// first `feed` bytes of a file if given (standard input stays open until
/// it exits), sends `sig` once the copy is under way, and returns what it
/// did.
fn stop(args: &[&str], sig: Signal, feed: Option<(&Path, usize)>) -> Stopped {
    let what = format!("{args:?} {sig:?}");
    let mut cmd = fsimg();
    cmd.arg("--progress=json")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if feed.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd.spawn().unwrap();
    // Standard output is drained (a clone to it must make progress).
    let mut out = child.stdout.take().unwrap();
    let drain = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let mut stdin: Option<ChildStdin> = None;
    if let Some((path, n)) = feed {
        let mut input = child.stdin.take().unwrap();
        let bytes = fs::read(path).unwrap();
        input.write_all(&bytes[..n.min(bytes.len())]).unwrap();
        stdin = Some(input);
    }
    let rx = lines(&mut child);
    let mut seen = Vec::new();
    wait_for_progress(&rx, &mut seen, &what);
    kill_process(Pid::from_child(&child), sig).unwrap();
    let code = wait_exit(&mut child, &what);
    drop(stdin);
    seen.extend(rx.iter());
    let stdout = drain.join().unwrap();
    let stderr = seen.join("\n");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    let (name, want) = match sig {
        Signal::INT => ("SIGINT", 130),
        Signal::TERM => ("SIGTERM", 130),
        Signal::HUP => ("SIGHUP", 130),
        Signal::PIPE => ("SIGPIPE", 1),
        _ => unreachable!(),
    };
    assert_eq!(code, Some(want), "{what}: {stderr}");
    assert!(
        stderr.contains(&format!("by {name}")),
        "{what}: the message names the signal: {stderr}"
    );
    Stopped {
        code,
        stderr,
        stdout,
    }
}

const SIGNALS: [Signal; 3] = [Signal::INT, Signal::TERM, Signal::PIPE];

/// `fsimg verify` refuses `image`.
fn assert_does_not_verify(image: &Path, what: &str) {
    let out = run(&["verify", s(image)]);
    assert!(
        !out.status.success(),
        "{what}: a partial image verifies: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_new_file_is_removed() {
    let Some(f) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let modes: [&[&str]; 5] = [
        &[],           // clone
        &["-s"],       // image
        &["-s", "-z"], // compressed image
        &["-m"],       // metadata clone
        &["--rescue"], // rescue clone without a mapfile
    ];
    for (i, mode) in modes.iter().enumerate() {
        let sig = SIGNALS[i % SIGNALS.len()];
        let mut args = mode.to_vec();
        args.extend(["-o", s(&out), s(&f.ext)]);
        let r = stop(&args, sig, None);
        assert!(
            !out.exists(),
            "{args:?} {sig:?}: the output is left: {}",
            r.stderr
        );
        assert!(r.stderr.contains("is removed"), "{}", r.stderr);
    }
    // A restore from a file, and from standard input that stalls after
    // part of the image (fsimg is then blocked reading it: the watchdog
    // ends the run).
    for sig in SIGNALS {
        let r = stop(&["-r", "-o", s(&out), s(&f.image)], sig, None);
        assert!(
            !out.exists(),
            "-r {sig:?}: the output is left: {}",
            r.stderr
        );
        let r = stop(&["-r", "-o", s(&out), "-"], sig, Some((&f.image, 300_000)));
        assert!(
            !out.exists(),
            "-r - {sig:?}: the output is left: {}",
            r.stderr
        );
    }
}

#[test]
fn a_partial_image_on_standard_output_does_not_verify() {
    let Some(f) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (args, sig) in [
        (vec!["-s", "-o", "-"], Signal::INT),
        (vec!["-s", "-z", "-o", "-"], Signal::TERM),
        (vec!["-m", "-s", "-o", "-"], Signal::HUP),
    ] {
        let mut a = args.clone();
        a.push(s(&f.ext));
        let r = stop(&a, sig, None);
        assert!(!r.stdout.is_empty(), "{a:?}: nothing was written");
        let part = dir.path().join("part.fsimg");
        fs::write(&part, &r.stdout).unwrap();
        assert_does_not_verify(&part, &format!("{a:?}"));
        let restored = dir.path().join("restored");
        let out = run(&["-r", "-o", s(&restored), s(&part)]);
        assert!(!out.status.success() && !restored.exists(), "{a:?}");
    }
    // A volume to standard output and a restore to it stop too.
    stop(&["-o", "-", s(&f.ext)], Signal::INT, None);
    stop(&["-r", "-o", "-", s(&f.image)], Signal::TERM, None);
}

/// A consumer that goes away: fsimg gets EPIPE (and SIGPIPE) and says so.
#[test]
fn a_reader_that_goes_away_stops_the_run() {
    let Some(f) = fixture() else { return };
    for args in [
        vec!["-s", "-o", "-", s(&f.ext)],
        vec!["-o", "-", s(&f.ext)],
        vec!["-r", "-o", "-", s(&f.image)],
    ] {
        let mut child = fsimg()
            .arg("-q")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        out.read_exact(&mut buf).unwrap();
        drop(out);
        let rx = lines(&mut child);
        let code = wait_exit(&mut child, &format!("{args:?}"));
        let err: Vec<String> = rx.iter().collect();
        let err = err.join("\n");
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("SIGPIPE"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// `-O` onto an existing file that holds a complete copy of the volume (a
/// backup being refreshed): the file stays, but an interrupted run leaves
/// it without the volume's first 64 KiB, so nothing takes it for a copy.
#[test]
fn an_existing_target_is_not_taken_for_a_copy() {
    let Some(f) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.img");
    let fresh = |target: &Path| {
        let st = std::process::Command::new("cp")
            .args(["--sparse=always", s(&f.ext), s(target)])
            .status()
            .unwrap();
        assert!(st.success());
        run_ok(&["info", s(target)]);
    };
    for (args, sig, feed) in [
        (vec!["-O", s(&target), s(&f.ext)], Signal::INT, None),
        (
            vec!["-r", "-O", s(&target), s(&f.image)],
            Signal::TERM,
            None,
        ),
        (
            vec!["-r", "-O", s(&target), "-"],
            Signal::INT,
            Some((f.image.as_path(), 300_000)),
        ),
    ] {
        fresh(&target);
        let r = stop(&args, sig, feed);
        assert!(target.exists(), "{args:?}: the target is gone");
        assert!(r.stderr.contains("written last"), "{}", r.stderr);
        let mut head = vec![0u8; 64 * 1024];
        File::open(&target).unwrap().read_exact(&mut head).unwrap();
        assert!(
            head[1024..2048].iter().all(|&b| b == 0),
            "{args:?}: the superblock is still there"
        );
        let out = run(&["info", s(&target)]);
        assert!(
            !out.status.success(),
            "{args:?}: the partial target passes for a volume: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // An image written over an existing file: the file is removed.
    fresh(&target);
    let r = stop(&["-s", "-O", s(&target), s(&f.ext)], Signal::TERM, None);
    assert!(!target.exists(), "-s -O: {}", r.stderr);
}

/// `--rescue --mapfile`: the output and the mapfile stay, the mapfile
/// records what was copied, and a rerun resumes to a complete copy.
#[test]
fn a_rescue_resumes_from_its_mapfile() {
    if fixture().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A smaller volume, for the rerun to finish: 1 GiB to copy.
    let src = dir.path().join("src.img");
    make_ext4(&src, "8G", "1024");
    let target = dir.path().join("rescued.img");
    let map = dir.path().join("rescued.map");
    for sig in [Signal::INT, Signal::TERM] {
        let _ = fs::remove_file(&target);
        let _ = fs::remove_file(&map);
        let args = ["--rescue", "--mapfile", s(&map), "-O", s(&target), s(&src)];
        let r = stop(&args, sig, None);
        assert!(r.code == Some(130) && target.exists(), "{}", r.stderr);
        assert!(r.stderr.contains("resume"), "{}", r.stderr);
        let text = fs::read_to_string(&map).unwrap();
        let copied: u64 = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3 && f[2] == "+")
                    .then(|| u64::from_str_radix(f[1].trim_start_matches("0x"), 16).unwrap())
            })
            .sum();
        assert!(copied > 0, "the mapfile records nothing copied:\n{text}");
        // The rerun copies the rest; the result is the clone.
        let out = run_ok(&["--rescue", "--mapfile", s(&map), "-O", s(&target), s(&src)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
    }
    let clone = dir.path().join("clone.img");
    run_ok(&["-q", "-o", s(&clone), s(&src)]);
    assert!(
        same_file(&clone, &target),
        "the resumed rescue differs from a clone"
    );
    common::assert_e2fsck_clean(&target);
}

/// Whether two files hold the same bytes, compared a block at a time.
fn same_file(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}
