//! The README's "Fleets" recipes, run as written with real tools on this
//! machine: an image streamed through a chain of pipes (as through ssh),
//! multicast with udpcast on the loopback interface, and sent to and read
//! back from "object storage" through a command that reads standard input
//! and one that writes standard output. Each restore is compared with a
//! direct clone of the source and checked by the filesystem's own fsck.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Loop, assert_e2fsck_clean, have, image, root, run_ok};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `script` in bash with `set -euo pipefail` (every stage of a pipe
/// must succeed), $FSIMG set to the binary and `cd` into `dir`; panics
/// with its stderr unless it succeeds. Returns stderr.
fn bash(dir: &Path, script: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new("bash")
        .args(["-c", &format!("set -euo pipefail\n{script}")])
        .current_dir(dir)
        .env("FSIMG", env!("CARGO_BIN_EXE_fsimg"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{script}\nexit {:?}\n{err}",
        out.status.code()
    );
    err
}

/// Writes testdata/KIND/NAME.img.zst decompressed to `dir/file` and a
/// direct clone of it (`fsimg -o`) to `dir/clone.img`; returns the clone.
fn source_and_clone(dir: &Path, kind: &str, name: &str, file: &str) -> Vec<u8> {
    fs::write(dir.join(file), image(kind, name)).unwrap();
    let clone = dir.join("clone.img");
    run_ok(&["-q", "-o", s(&clone), s(&dir.join(file))]);
    fs::read(clone).unwrap()
}

/// An empty file to restore onto with `-O` (fsimg extends it).
fn empty_target(dir: &Path, name: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(&p, b"").unwrap();
    p
}

#[test]
fn an_image_streams_through_ssh_style_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let clone = source_and_clone(d, "ext", "ext4-default", "sdb1.img");
    let target = empty_target(d, "target.img");
    // README: fsimg -s -z -o - /dev/sdb1 | ssh host 'fsimg -r -O /dev/sdc1 -'
    // with the ssh hop played by `cat`, twice (out of one host, into the
    // other), and a small pipe buffer in between (dd) so the image arrives
    // in pieces of odd sizes.
    bash(
        d,
        r#""$FSIMG" -q -s -z -o - sdb1.img | cat | dd bs=1000 status=none | cat | "$FSIMG" -q -r -O target.img -"#,
        &[],
    );
    assert!(fs::read(&target).unwrap() == clone, "restore differs");
    assert_e2fsck_clean(&target);

    // And the other way: pulling an image from a host onto this one.
    run_ok(&[
        "-q",
        "-s",
        "-o",
        s(&d.join("sdb1.fsimg")),
        s(&d.join("sdb1.img")),
    ]);
    let pulled = empty_target(d, "pulled.img");
    bash(
        d,
        r#"cat sdb1.fsimg | cat | "$FSIMG" -q -r -O pulled.img -"#,
        &[],
    );
    assert!(
        fs::read(&pulled).unwrap() == clone,
        "pulled restore differs"
    );

    // A connection dropped half way is an error that says so.
    empty_target(d, "cut.img");
    let out = Command::new("bash")
        .args([
            "-c",
            r#"set -o pipefail; head -c 300000 sdb1.fsimg | "$FSIMG" -q -r -O cut.img -"#,
        ])
        .current_dir(d)
        .env("FSIMG", env!("CARGO_BIN_EXE_fsimg"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("image is truncated"), "{err}");
}

/// An even UDP port base for udpcast (it uses PORT and PORT+1) that no
/// other test run on this machine is likely to use at the same moment.
fn portbase() -> u16 {
    20000 + 2 * (std::process::id() % 10000) as u16
}

/// Waits for `child` up to `limit`, killing it past that.
fn wait_for(child: &mut std::process::Child, what: &str, limit: Duration) -> std::process::Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = std::process::Output {
        status: child.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_end(&mut e, &mut out.stderr).unwrap();
    }
    out
}

#[test]
fn a_disk_image_multicast_with_udpcast_restores() {
    if !have("udp-sender") || !have("udp-receiver") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A Raspberry Pi SD card (MBR, FAT32 boot, ext4 root).
    let clone = source_and_clone(d, "disk", "rpi", "sd.img");
    run_ok(&[
        "-q",
        "-s",
        "-z",
        "-o",
        s(&d.join("sd.fsimg")),
        s(&d.join("sd.img")),
    ]);

    // The target: a loop device of the card's size when we may make one
    // (the recipe's /dev/sdX), else a file.
    let target_file = d.join("target.img");
    fs::write(&target_file, vec![0u8; clone.len()]).unwrap();
    let lo = (root() && have("losetup")).then(|| Loop::attach(&target_file, false));
    let target = lo
        .as_ref()
        .map_or(s(&target_file).to_string(), |l| l.dev.clone());

    let port = portbase().to_string();
    // --nopointopoint: with one receiver udpcast would otherwise send the
    // data unicast; this keeps it on the multicast path a fleet uses.
    let mut sender = Command::new("udp-sender")
        .args([
            "--file",
            "sd.fsimg",
            "--interface",
            "lo",
            "--portbase",
            &port,
        ])
        .args(["--min-receivers", "1", "--nopointopoint", "--nokbd"])
        .args(["--start-timeout", "60"])
        .current_dir(d)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("udp-sender starts");
    // README: udp-receiver --nokbd | fsimg -r -O /dev/sdX -
    let receive = format!(
        r#"udp-receiver --nokbd --interface lo --portbase {port} --start-timeout 60 \
            | "$FSIMG" -q -r -O {target} -"#
    );
    let mut receiver = Command::new("bash")
        .args(["-c", &format!("set -euo pipefail\n{receive}")])
        .current_dir(d)
        .env("FSIMG", env!("CARGO_BIN_EXE_fsimg"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the receiving pipe starts");
    let r = wait_for(
        &mut receiver,
        "udp-receiver | fsimg",
        Duration::from_secs(120),
    );
    let snd = wait_for(&mut sender, "udp-sender", Duration::from_secs(30));
    let r_err = String::from_utf8_lossy(&r.stderr);
    let s_err = String::from_utf8_lossy(&snd.stderr);
    assert!(r.status.success(), "receiver: {r_err}\nsender: {s_err}");
    assert!(snd.status.success(), "sender: {s_err}");
    assert!(r_err.contains("Transfer complete"), "{r_err}");
    drop(lo);

    let got = fs::read(&target_file).unwrap();
    assert!(got == clone, "the multicast restore differs from a clone");
    // Each partition checked by its own fsck (offsets from rpi.expected).
    let e = common::expected_in("disk", "rpi");
    let part = |n: u32| {
        let start = common::expected_u64(&e, &format!("p{n}_start")) as usize;
        let size = common::expected_u64(&e, &format!("p{n}_size")) as usize;
        &got[start..start + size]
    };
    let root_fs = d.join("p2.img");
    fs::write(&root_fs, part(2)).unwrap();
    assert_e2fsck_clean(&root_fs);
    if have("fsck.fat") {
        let boot = d.join("p1.img");
        fs::write(&boot, part(1)).unwrap();
        let out = Command::new("fsck.fat")
            .arg("-n")
            .arg(&boot)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fsck.fat -n: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn an_image_goes_to_object_storage_and_back_through_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("bucket")).unwrap();
    let clone = source_and_clone(d, "fat", "fat32", "esp.img");
    let target = empty_target(d, "target.img");
    // The stand-ins for `aws s3 cp - s3://bucket/KEY` (reads standard
    // input) and `aws s3 cp s3://bucket/KEY -` (writes standard output):
    // nothing here talks to a real object store.
    let store = "put() { cat > \"bucket/$1\"; }\nget() { cat \"bucket/$1\"; }\n";
    bash(
        d,
        &format!(
            "{store}\
             \"$FSIMG\" -q -s -z -o - esp.img | put esp.fsimg\n\
             get esp.fsimg | \"$FSIMG\" verify -\n\
             get esp.fsimg | \"$FSIMG\" -q -r -O target.img -"
        ),
        &[],
    );
    assert!(fs::read(&target).unwrap() == clone, "restore differs");
    if have("fsck.fat") {
        let out = Command::new("fsck.fat")
            .arg("-n")
            .arg(&target)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // An upload cut short is caught before anyone restores it.
    let object = d.join("bucket/esp.fsimg");
    let whole = fs::read(&object).unwrap();
    fs::write(&object, &whole[..whole.len() / 2]).unwrap();
    let out = Command::new("bash")
        .args(["-c", &format!("{store}get esp.fsimg | \"$FSIMG\" verify -")])
        .current_dir(d)
        .env("FSIMG", env!("CARGO_BIN_EXE_fsimg"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
