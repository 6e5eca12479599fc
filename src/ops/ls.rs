//! `fsimg ls`: directories inside a volume, one line per entry like
//! `ls -ln --time-style=long-iso` in UTC: type and mode, links, owner and
//! group as numbers (the image's users are not this machine's), size,
//! modification time, name, `-> target` for a symlink. An NTFS file's
//! named streams follow it as `NAME:STREAM` lines.

use std::io::Write;

use crate::error::{Error, Result};
use crate::files::walk::{self, Found};
use crate::files::{Entry, Kind, Meta, Time, Tree};
use crate::report::Report;

/// Directory levels `-R` descends at most: deeper is a corrupt (cyclic)
/// tree, not a real one.
pub const MAX_DEPTH: usize = 4096;

/// What `ls` lists.
#[derive(Clone, Copy, Debug, Default)]
pub struct LsOptions {
    /// Recurse into subdirectories (`-R`).
    pub recursive: bool,
}

/// Lists `paths` of `tree` on `out`. Errors met in a subdirectory with
/// `-R` are reported and the listing goes on; returns how many there were.
pub fn ls(
    tree: &dyn Tree,
    paths: &[String],
    opts: LsOptions,
    out: &mut dyn Write,
    report: &dyn Report,
) -> Result<u32> {
    let mut failures = 0;
    let several = paths.len() > 1 || opts.recursive;
    for (i, path) in paths.iter().enumerate() {
        let found = match walk::resolve(tree, path, false) {
            Ok(f) => f,
            Err(e) => {
                report.error(&e.to_string());
                failures += 1;
                continue;
            }
        };
        if found.meta.kind != Kind::Dir {
            let line = entry_line(tree, &found.meta, path.as_bytes(), &found.path)?;
            write_out(out, &align(&line))?;
            continue;
        }
        if i > 0 {
            write_out(out, b"\n")?;
        }
        let mut ancestors = Vec::new();
        failures += list_dir(tree, &found, several, opts, &mut ancestors, out, report)?;
    }
    Ok(failures)
}

/// Lists one directory (and its subdirectories with `-R`).
fn list_dir(
    tree: &dyn Tree,
    dir: &Found,
    header: bool,
    opts: LsOptions,
    ancestors: &mut Vec<u64>,
    out: &mut dyn Write,
    report: &dyn Report,
) -> Result<u32> {
    if header {
        write_out(out, format!("{}:\n", dir.path).as_bytes())?;
    }
    let listing = match tree.read_dir(&dir.meta, &dir.path) {
        Ok(e) => e,
        Err(e) => {
            report.error(&e.to_string());
            return Ok(1);
        }
    };
    let mut failures = 0;
    let mut entries = Vec::with_capacity(listing.len());
    for slot in listing {
        match slot {
            Ok(e) => entries.push(e),
            Err(bad) => {
                report.error(&bad.error.to_string());
                failures += 1;
            }
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut text = Vec::new();
    for e in &entries {
        let path = walk::join(&dir.path, &e.name);
        match entry_line(tree, &e.meta, &e.name, &path) {
            Ok(line) => text.extend_from_slice(&line),
            Err(err) => {
                report.error(&err.to_string());
                failures += 1;
            }
        }
    }
    write_out(out, &align(&text))?;
    if !opts.recursive {
        return Ok(failures);
    }
    ancestors.push(dir.meta.id);
    for Entry { name, meta } in entries.into_iter().filter(|e| e.meta.kind == Kind::Dir) {
        let path = walk::join(&dir.path, &name);
        if ancestors.contains(&meta.id) || ancestors.len() >= MAX_DEPTH {
            report.error(&cycle(&path, meta.id).to_string());
            failures += 1;
            continue;
        }
        write_out(out, b"\n")?;
        let sub = Found {
            meta,
            path,
            stream: None,
        };
        failures += list_dir(tree, &sub, true, opts, ancestors, out, report)?;
    }
    ancestors.pop();
    Ok(failures)
}

/// The error for a directory that contains itself.
pub fn cycle(path: &str, id: u64) -> Error {
    crate::files::FileError::Corrupt {
        path: path.to_string(),
        what: "directory tree".into(),
        detail: format!("the directory (number {id}) is inside itself"),
    }
    .into()
}

/// One `ls -l` line, its fields separated by tabs until [`align`] pads
/// them; then a line per named stream.
fn entry_line(tree: &dyn Tree, m: &Meta, name: &[u8], path: &str) -> Result<Vec<u8>> {
    let mut line = Vec::new();
    let size = match m.rdev {
        Some((major, minor)) if matches!(m.kind, Kind::CharDevice | Kind::BlockDevice) => {
            format!("{major}, {minor}")
        }
        _ => m.size.to_string(),
    };
    line.extend_from_slice(
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t",
            mode_string(m.kind, m.mode),
            m.nlink,
            m.uid,
            m.gid,
            size,
            time_string(m.mtime)
        )
        .as_bytes(),
    );
    line.extend_from_slice(name);
    if m.kind == Kind::Symlink {
        line.extend_from_slice(b" -> ");
        line.extend_from_slice(&tree.read_link(m, path)?);
    }
    line.push(b'\n');
    if m.kind == Kind::File {
        for s in tree.streams(m, path)? {
            line.extend_from_slice(
                format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t",
                    mode_string(m.kind, m.mode),
                    1,
                    m.uid,
                    m.gid,
                    s.size,
                    time_string(m.mtime)
                )
                .as_bytes(),
            );
            line.extend_from_slice(name);
            line.push(b':');
            line.extend_from_slice(s.name.as_bytes());
            line.push(b'\n');
        }
    }
    Ok(line)
}

/// Pads the tab-separated columns of `text` (six before the name): the
/// mode left-aligned, the numbers right-aligned.
fn align(text: &[u8]) -> Vec<u8> {
    const COLS: usize = 6;
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut width = [0usize; COLS];
    let split = |l: &'_ [u8]| -> Vec<Vec<u8>> {
        l.splitn(COLS + 1, |&b| b == b'\t')
            .map(<[u8]>::to_vec)
            .collect()
    };
    for l in &lines {
        for (w, f) in width.iter_mut().zip(split(l)) {
            *w = (*w).max(f.len());
        }
    }
    let mut out = Vec::with_capacity(text.len() + lines.len() * 16);
    for l in lines {
        let fields = split(l);
        for (i, f) in fields.iter().enumerate() {
            if i == COLS || i >= width.len() {
                out.extend_from_slice(f);
                break;
            }
            let pad = width[i] - f.len();
            if i == 0 || i == 5 {
                out.extend_from_slice(f);
                out.resize(out.len() + pad, b' ');
            } else {
                out.resize(out.len() + pad, b' ');
                out.extend_from_slice(f);
            }
            out.push(b' ');
        }
        out.push(b'\n');
    }
    out
}

/// `-rwxr-xr-x`, with `s`/`S` and `t`/`T` as `ls` shows them.
pub fn mode_string(kind: Kind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(kind.letter());
    let bit = |b: u32, c: char| if mode & b != 0 { c } else { '-' };
    let special = |x: bool, special: bool, lower: char, upper: char| match (x, special) {
        (true, true) => lower,
        (false, true) => upper,
        (true, false) => 'x',
        (false, false) => '-',
    };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(mode & 0o100 != 0, mode & 0o4000 != 0, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(mode & 0o010 != 0, mode & 0o2000 != 0, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(mode & 0o001 != 0, mode & 0o1000 != 0, 't', 'T'));
    s
}

/// `YYYY-MM-DD HH:MM` in UTC.
pub fn time_string(t: Time) -> String {
    let days = t.secs.div_euclid(86_400);
    let rem = t.secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem / 60 % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Writes to the listing's output (standard output).
fn write_out(out: &mut dyn Write, bytes: &[u8]) -> Result<()> {
    out.write_all(bytes)
        .map_err(|e| Error::io("cannot write", "standard output", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_like_ls() {
        assert_eq!(mode_string(Kind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(Kind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(Kind::File, 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(Kind::Symlink, 0o777), "lrwxrwxrwx");
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(time_string(Time { secs: 0, nanos: 0 }), "1970-01-01 00:00");
        assert_eq!(
            time_string(Time {
                secs: 1_700_000_000,
                nanos: 0
            }),
            "2023-11-14 22:13"
        );
        assert_eq!(time_string(Time { secs: -1, nanos: 0 }), "1969-12-31 23:59");
        assert_eq!(
            time_string(Time {
                secs: 951_782_400,
                nanos: 0
            }),
            "2000-02-29 00:00"
        );
    }

    #[test]
    fn columns_align() {
        let t = b"drwxr-xr-x\t2\t0\t0\t4096\t2023-11-14 22:13\tdir\n-rw-r--r--\t1\t1000\t1000\t7\t2023-11-14 22:13\ta b\n";
        assert_eq!(
            String::from_utf8(align(t)).unwrap(),
            "drwxr-xr-x 2    0    0 4096 2023-11-14 22:13 dir\n-rw-r--r-- 1 1000 1000    7 2023-11-14 22:13 a b\n"
        );
    }
}
