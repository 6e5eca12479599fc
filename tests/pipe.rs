//! Standard output through real pipes (src/pipe.rs): every stdout path
//! gives the bytes its file twin gives, whatever the consumer does: reads
//! slowly, or splices the pipe's pages on to another pipe and reads them
//! only after fsimg has exited (what `pv` does), which would expose any
//! page fsimg handed to the pipe and then reused.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

/// Runs `fsimg ARGS | CONSUMER` through a shell and returns what the
/// consumer wrote to its stdout.
fn through(args: &[&str], consumer: &str) -> Vec<u8> {
    let bin = env!("CARGO_BIN_EXE_fsimg");
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("set -e; '{bin}' {} | {consumer}", quoted.join(" ")))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fsimg {args:?} | {consumer}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A consumer that splices what it gets on into a ring of 16 pipes of
/// 1 MiB and reads each only when the ring comes round to it again: the
/// pages fsimg put into its pipe travel on unread while fsimg writes the
/// next 15 MiB, long after it could have reused any buffer they came from.
const SPLICER: &str = r#"python3 -c '
import os, sys, fcntl
ring = []
for _ in range(16):
    r, w = os.pipe()
    fcntl.fcntl(w, 1031, 1 << 20)
    ring.append([r, w, 0])
out = sys.stdout.buffer
def drain(p):
    while p[2]:
        b = os.read(p[0], p[2])
        out.write(b)
        p[2] -= len(b)
i = 0
while True:
    p = ring[i]
    drain(p)
    n = os.splice(0, p[1], 1 << 20)
    if n == 0:
        break
    p[2] = n
    i = (i + 1) % len(ring)
for k in range(len(ring)):
    drain(ring[(i + k) % len(ring)])
'"#;

/// A consumer that reads slowly at first (the pipe fills and fsimg waits).
const SLOW: &str = "(sleep 0.3; cat)";

fn ext_volume(dir: &Path) -> String {
    let src = dir.join("src.img");
    fs::write(&src, ext_image("ext4-default")).unwrap();
    src.to_str().unwrap().to_string()
}

#[test]
fn raw_stream_is_the_clone_whatever_the_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let src = ext_volume(dir.path());
    let clone = dir.path().join("clone.img");
    run_ok(&["-q", "-o", clone.to_str().unwrap(), &src]);
    let want = fs::read(&clone).unwrap();
    for consumer in ["cat", SLOW, SPLICER] {
        let got = through(&["-q", "-o", "-", &src], consumer);
        assert!(
            got == want,
            "fsimg -o - | {consumer}: differs from the clone"
        );
    }
}

#[test]
fn image_stream_is_the_image_file_whatever_the_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let src = ext_volume(dir.path());
    for z in [false, true] {
        let img = dir.path().join("img.fsimg");
        let mut args = vec!["-q", "-s"];
        if z {
            args.push("-z");
        }
        let file_args: Vec<&str> = args
            .iter()
            .copied()
            .chain(["-O", img.to_str().unwrap(), &src])
            .collect();
        run_ok(&file_args);
        let want = fs::read(&img).unwrap();
        let pipe_args: Vec<&str> = args.iter().copied().chain(["-o", "-", &src]).collect();
        for consumer in ["cat", SLOW, SPLICER] {
            let got = through(&pipe_args, consumer);
            assert!(
                got == want,
                "fsimg {pipe_args:?} | {consumer}: differs from the image file"
            );
        }
    }
}

#[test]
fn restore_and_metadata_streams_are_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = ext_volume(dir.path());
    let img = dir.path().join("img.fsimg");
    run_ok(&["-q", "-s", "-o", img.to_str().unwrap(), &src]);
    let restored = dir.path().join("restored.img");
    run_ok(&[
        "-q",
        "-r",
        "-o",
        restored.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    let want = fs::read(&restored).unwrap();
    let meta = dir.path().join("meta.img");
    run_ok(&["-q", "-m", "-o", meta.to_str().unwrap(), &src]);
    let want_meta = fs::read(&meta).unwrap();
    for consumer in ["cat", SPLICER] {
        let got = through(&["-q", "-r", "-o", "-", img.to_str().unwrap()], consumer);
        assert!(
            got == want,
            "fsimg -r -o - | {consumer}: differs from the restore"
        );
        let got = through(&["-q", "-m", "-o", "-", &src], consumer);
        assert!(got == want_meta, "fsimg -m -o - | {consumer}: differs");
    }
    // From standard input to standard output, both pipes.
    let bin = env!("CARGO_BIN_EXE_fsimg");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat '{}' | '{bin}' -q -r -o - - | cat",
            img.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout == want,
        "cat IMG | fsimg -r -o - - | cat: differs"
    );
}

#[test]
fn stdout_to_a_file_is_unchanged() {
    // Not a pipe: a regular file as standard output takes the plain path
    // and still gets every zero written.
    let dir = tempfile::tempdir().unwrap();
    let src = ext_volume(dir.path());
    let clone = dir.path().join("clone.img");
    run_ok(&["-q", "-o", clone.to_str().unwrap(), &src]);
    let out = dir.path().join("stdout.img");
    let f = fs::File::create(&out).unwrap();
    let st = fsimg()
        .args(["-q", "-o", "-", &src])
        .stdout(f)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(fs::read(&out).unwrap() == fs::read(&clone).unwrap());
}
