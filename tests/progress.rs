//! `--progress`: JSON lines parsed while a copy runs, plain lines for logs,
//! silence by default off a terminal, and the terminal bar as a terminal
//! shows it (run under `script`): redrawn in place, never wider than the
//! terminal, ending with the summary line.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::{fsimg, have, run_ok, testdata};
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A sparse 16 GiB ext4 volume whose 4 GiB journal mke2fs never wrote: a
/// few MiB on disk, 4 GiB to copy, so that a copy draws several updates.
/// `None` without mkfs.ext4.
fn volume() -> Option<&'static Path> {
    static V: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    V.get_or_init(|| {
        if !have("mkfs.ext4") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ext4.img");
        let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
        ok(Command::new("truncate").args(["-s", "16G", s(&p)]));
        ok(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-J", "size=4096", "-E"])
            .arg("lazy_itable_init=1,lazy_journal_init=1,nodiscard")
            .arg(&p));
        Some((dir, p))
    })
    .as_ref()
    .map(|(_, p)| p.as_path())
}

/// A whole-disk test image (Raspberry Pi layout), decompressed.
fn disk() -> &'static Path {
    static D: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, p) = D.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rpi.img");
        let z = std::fs::read(testdata("disk/rpi.img.zst")).unwrap();
        std::fs::write(&p, zstd::decode_all(&z[..]).unwrap()).unwrap();
        (dir, p)
    });
    p
}

/// Runs fsimg with `args` and `--progress=json`, parsing each line of
/// standard error as it comes; returns the progress objects and the
/// warnings. Every line but the closing summary is JSON.
fn json_run(args: &[&str]) -> (Vec<Value>, Vec<String>) {
    // After the subcommand, if any (a flag before one is refused).
    let mut child = fsimg()
        .args(args)
        .arg("--progress=json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = BufReader::new(child.stderr.take().unwrap());
    let (mut progress, mut warnings) = (Vec::new(), Vec::new());
    for line in err.lines() {
        let line = line.unwrap();
        if !line.starts_with('{') {
            // The summary, after the last progress line.
            assert!(line.starts_with("fsimg: "), "{args:?}: {line:?}");
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{args:?}: {line:?} is not JSON: {e}"));
        if let Some(w) = v.get("warning") {
            warnings.push(w.as_str().expect("a warning is a string").to_string());
        } else {
            progress.push(v);
        }
    }
    assert!(child.wait().unwrap().success(), "{args:?}");
    (progress, warnings)
}

/// The fields of every progress line, their order over the run, and the
/// final 100 % line.
fn check_progress(lines: &[Value], phase: &str, what: &str) {
    assert!(!lines.is_empty(), "{what}: no progress line");
    let total = lines[0]["total"].as_u64().expect("total");
    let mut last_done = 0;
    for v in lines {
        assert_eq!(v["phase"], phase, "{what}: {v}");
        let done = v["done"].as_u64().expect("done");
        assert_eq!(v["total"].as_u64(), Some(total), "{what}: {v}");
        assert!(done >= last_done && done <= total, "{what}: {v}");
        last_done = done;
        let pct = v["percent"].as_f64().expect("percent");
        let want = (done as f64 * 1000.0 / total as f64).round() / 10.0;
        assert!((pct - want).abs() < 0.11, "{what}: {v}");
        assert!(v["rate"].is_u64(), "{what}: {v}");
        assert!(v["eta"].is_u64() || v["eta"].is_null(), "{what}: {v}");
        assert!(
            v["elapsed"].is_f64() || v["elapsed"].is_u64(),
            "{what}: {v}"
        );
    }
    let end = lines.last().unwrap();
    assert_eq!(end["done"].as_u64(), Some(total), "{what}: {end}");
    assert_eq!(end["percent"].as_f64(), Some(100.0), "{what}: {end}");
    // At most 4 lines a second: 250 ms apart, but for the final one.
    let times: Vec<f64> = lines[..lines.len() - 1]
        .iter()
        .map(|v| v["elapsed"].as_f64().unwrap())
        .collect();
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= 0.2 - 1e-9, "{what}: lines too close: {w:?}");
    }
}

#[test]
fn json_lines_while_a_copy_runs() {
    let Some(vol) = volume() else { return };
    let (lines, warnings) = json_run(&["-O", "/dev/null", s(vol)]);
    check_progress(&lines, "copy", "clone");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(lines.len() >= 2, "{lines:?}");
    assert!(lines[0]["partition"].is_null(), "a volume has no partition");
}

#[test]
fn json_phases_partitions_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let d = disk();
    // A disk: each line names the stretch being copied.
    let (lines, _) = json_run(&["-O", "/dev/null", s(d)]);
    check_progress(&lines, "copy", "disk clone");
    assert_eq!(
        lines.last().unwrap()["partition"],
        "partition 2 (ext4)",
        "{lines:?}"
    );
    // Save, verify, and the restore of a metadata image, which warns.
    let img = dir.path().join("meta.fsimg");
    let (lines, _) = json_run(&["-m", "-s", "-o", s(&img), s(d)]);
    check_progress(&lines, "save", "save");
    let (lines, _) = json_run(&["verify", s(&img)]);
    check_progress(&lines, "verify", "verify");
    let (lines, warnings) = json_run(&["-r", "-O", "/dev/null", s(&img)]);
    check_progress(&lines, "restore", "restore");
    assert!(
        warnings.iter().any(|w| w.contains("metadata-only")),
        "{warnings:?}"
    );
}

#[test]
fn plain_lines_and_silence() {
    let d = disk();
    let out = run_ok(&["--progress=plain", "-O", "/dev/null", s(d)]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err:?}");
    let progress: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("fsimg: copy: "))
        .collect();
    assert!(
        progress.last().is_some_and(|l| l.contains("(100.0%)")),
        "{err}"
    );
    assert!(err.lines().last().unwrap().contains("copied"), "{err}");
    // Off a terminal, the default shows no progress, only the summary;
    // -q shows nothing, --progress=json included.
    let out = run_ok(&["-O", "/dev/null", s(d)]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains('%') && err.contains("copied"), "{err}");
    let out = run_ok(&["-q", "--progress=json", "-O", "/dev/null", s(d)]);
    assert!(
        out.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `fsimg ARGS` on a terminal `cols` wide under script(1), and
/// returns what the terminal received.
fn on_terminal(args: &str, cols: u16) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("typescript");
    let cmd = format!(
        "stty cols {cols} rows 24; exec {} {args}",
        env!("CARGO_BIN_EXE_fsimg")
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, s(&log)])
        .env("COLUMNS", cols.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "script: {out:?}");
    let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    // script's own first and last lines ("Script started ...").
    text.lines()
        .filter(|l| !l.starts_with("Script started") && !l.starts_with("Script done"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What each redraw of the bar put on the screen: the text after each
/// "\r\x1b[K" up to the next carriage return or newline (but the lines
/// printed after the bar is cleared: the summary, which may wrap).
fn drawn(screen: &str) -> Vec<&str> {
    screen
        .split("\r\x1b[K")
        .skip(1)
        .map(|seg| seg.split(['\r', '\n']).next().unwrap_or(""))
        .filter(|seg| !seg.is_empty() && !seg.starts_with("fsimg: "))
        .collect()
}

#[test]
fn the_bar_redraws_in_place_within_the_terminal() {
    if !have("script") {
        return;
    }
    let mut cases = vec![(format!("-O /dev/null {}", s(disk())), 40u16)];
    if let Some(vol) = volume() {
        cases.push((format!("-O /dev/null {}", s(vol)), 60));
        cases.push((format!("-O /dev/null {}", s(vol)), 100));
    }
    for (args, cols) in cases {
        let screen = on_terminal(&args, cols);
        assert!(
            !screen.contains('\x1b') || screen.contains("\r\x1b[K"),
            "{screen:?}"
        );
        let segs = drawn(&screen);
        assert!(segs.len() >= 2, "{args}: {segs:?}");
        for seg in &segs {
            assert!(
                seg.chars().count() < usize::from(cols),
                "{args} at {cols} columns: a line of {} characters: {seg:?}",
                seg.chars().count()
            );
        }
        let draws = screen.matches("\r\x1b[K").count();
        assert!(draws >= 2, "{args}: {draws} draws: {screen:?}");
        // No drawn bar is ended by a newline (left on the screen): each is
        // replaced by the next, and the last is cleared before the summary,
        // which is the last line.
        let pieces: Vec<&str> = screen.split("\r\x1b[K").collect();
        for p in &pieces[1..pieces.len() - 1] {
            assert!(!p.contains('\n'), "{args}: a bar left on the screen: {p:?}");
        }
        let last = screen.trim_end().lines().last().unwrap();
        let last = last
            .rsplit(['\r', '\x1b'])
            .next()
            .unwrap()
            .trim_start_matches("[K");
        assert!(
            last.starts_with("fsimg: ") && last.contains("copied"),
            "{screen:?}"
        );
        if cols >= 100 {
            assert!(
                segs.iter().any(|s| s.contains("[=")),
                "no bar drawn: {segs:?}"
            );
        }
    }
}
