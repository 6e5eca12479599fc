//! Refusals that keep fsimg from destroying data: a mounted or busy target,
//! a target that is the source, a source mounted read-write.

use std::fs::{self, File, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One line of /proc/self/mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Device number (major, minor) of the mounted filesystem.
    pub dev: (u32, u32),
    /// Where it is mounted.
    pub mountpoint: String,
    /// Whether it is mounted read-only.
    pub read_only: bool,
}

/// Parses the text of /proc/self/mountinfo.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let (maj, min) = f.get(2)?.split_once(':')?;
            Some(Mount {
                dev: (maj.parse().ok()?, min.parse().ok()?),
                mountpoint: unescape(f.get(4)?),
                read_only: f.get(5)?.split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts() -> Vec<Mount> {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

fn dev_of(rdev: u64) -> (u32, u32) {
    (rustix::fs::major(rdev), rustix::fs::minor(rdev))
}

/// The device numbers of the filesystems that live on `dev`: itself, its
/// partitions, and loop devices backed by `path` when it is a file.
fn devices_on(path: &Path, meta: &Metadata) -> Vec<((u32, u32), String)> {
    let mut out = Vec::new();
    if meta.file_type().is_block_device() {
        let d = dev_of(meta.rdev());
        out.push((d, path.display().to_string()));
        // Partitions: /sys/dev/block/M:m/<name>/dev for each child with a
        // "partition" file.
        let sys = PathBuf::from(format!("/sys/dev/block/{}:{}", d.0, d.1));
        if let Ok(entries) = fs::read_dir(&sys) {
            for e in entries.flatten() {
                let p = e.path();
                if p.join("partition").exists()
                    && let Some(pd) = read_dev(&p.join("dev"))
                {
                    out.push((pd, format!("partition {}", e.file_name().to_string_lossy())));
                }
            }
        }
    } else if meta.file_type().is_file() {
        let canon = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if let Ok(entries) = fs::read_dir("/sys/block") {
            for e in entries.flatten() {
                let p = e.path();
                let Ok(backing) = fs::read_to_string(p.join("loop/backing_file")) else {
                    continue;
                };
                if Path::new(backing.trim_end()) == canon
                    && let Some(d) = read_dev(&p.join("dev"))
                {
                    out.push((
                        d,
                        format!("loop device /dev/{}", e.file_name().to_string_lossy()),
                    ));
                }
            }
        }
    }
    out
}

fn read_dev(p: &Path) -> Option<(u32, u32)> {
    let s = fs::read_to_string(p).ok()?;
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Refuses a target that is mounted, holds a mounted partition, backs a
/// mounted loop device, or is held by another driver (LVM, RAID).
pub fn check_target_not_in_use(path: &Path, meta: &Metadata) -> Result<()> {
    let mounts = mounts();
    for (dev, what) in devices_on(path, meta) {
        if let Some(m) = mounts.iter().find(|m| m.dev == dev) {
            return Err(Error::TargetInUse {
                path: path.to_path_buf(),
                why: format!("{what} is mounted at {}", m.mountpoint),
            });
        }
    }
    if meta.file_type().is_block_device() {
        let d = dev_of(meta.rdev());
        let holders = PathBuf::from(format!("/sys/dev/block/{}:{}/holders", d.0, d.1));
        if let Some(h) = fs::read_dir(holders)
            .ok()
            .and_then(|mut it| it.next())
            .and_then(|e| e.ok())
        {
            return Err(Error::TargetInUse {
                path: path.to_path_buf(),
                why: format!("held by {}", h.file_name().to_string_lossy()),
            });
        }
    }
    Ok(())
}

/// Refuses a source mounted read-write: its copy would not be consistent.
pub fn check_source_not_mounted_rw(path: &Path, meta: &Metadata) -> Result<()> {
    let mounts = mounts();
    for (dev, _) in devices_on(path, meta) {
        if let Some(m) = mounts.iter().find(|m| m.dev == dev && !m.read_only) {
            return Err(Error::SourceMounted {
                path: path.to_path_buf(),
                mountpoint: m.mountpoint.clone(),
            });
        }
    }
    Ok(())
}

/// Refuses a target that is the source: the same file, the same device, or
/// a loop device and its backing file.
pub fn check_not_same(source: &File, target: &Metadata, target_path: &Path) -> Result<()> {
    let Ok(src) = source.metadata() else {
        return Ok(());
    };
    let same = |kind| {
        Err(Error::SameFile {
            kind,
            path: target_path.to_path_buf(),
        })
    };
    if src.file_type().is_block_device() && target.file_type().is_block_device() {
        if src.rdev() == target.rdev() {
            return same("device");
        }
    } else if src.dev() == target.dev() && src.ino() == target.ino() {
        return same("file");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let text = "36 35 98:0 /mnt1 /mnt\\040point rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 7:2 / /media/x ro,relatime - ext4 /dev/loop2 ro\n";
        let m = parse_mountinfo(text);
        assert_eq!(
            m,
            vec![
                Mount {
                    dev: (98, 0),
                    mountpoint: "/mnt point".into(),
                    read_only: false
                },
                Mount {
                    dev: (7, 2),
                    mountpoint: "/media/x".into(),
                    read_only: true
                },
            ]
        );
    }
}
