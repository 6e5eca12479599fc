//! NTFS files: directories from the `$I30` indexes, file contents from
//! `$DATA` attributes (resident, sparse, LZNT1-compressed), named streams,
//! and symlinks and junctions from reparse points.
//!
//! Everything is decoded with fsimg's own NTFS parsing
//! ([`crate::fs::ntfs`]: boot sector, MFT location, record fixups,
//! attribute headers, mapping pairs) rather than the ntfs crate, because
//! the crate falls short on hostile volumes and on what `ls`/`cat` need:
//! its index iterator follows sub-node pointers without any bound (a
//! corrupt B-tree whose node points to itself grows its stack forever
//! inside one `next()` call), it reads a run at cluster 0 as sparse, it
//! returns compressed data raw, and its `Read` does small reads. With our
//! own parsing every length read from disk is checked, nothing panics,
//! and no loop is unbounded.
//!
//! What is shown matches a read-only ntfs-3g mount: DOS 8.3 names and the
//! system files (records below 16, `$MFT`, `$Bitmap`…) are hidden; files
//! report the record header's hard link count, directories 1; times come
//! from `$STANDARD_INFORMATION`.

mod data;
mod file;
mod index;
pub mod lznt1;
mod reparse;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use data::StreamReader;
use file::{
    AT_REPARSE_POINT, FILE_ENCRYPTED, FILE_READONLY, FileRecord, ROOT_RECORD, StandardInfo, Value,
    Volume, corrupt, parent_of,
};
use index::NAMESPACE_DOS;

use super::walk::join;
use super::{DirEntry, FileError, FileRead, Kind, Meta, Stream, Time, Tree, dir_entry};
use crate::error::Result;
use crate::fs::ntfs::boot::{BOOT_SECTOR_SIZE, BootSector};
use crate::fs::ntfs::mft::Mft;
use crate::fs::ntfs::record::AT_DATA;
use crate::source::Source;

/// The first record of a user file: lower ones are system files, which
/// ntfs-3g hides (the root's own `.` entry among them).
const FIRST_USER_RECORD: u64 = 16;
/// Directory levels followed up to the root when making a link relative.
const MAX_DEPTH: usize = 4096;
/// Largest reparse point value (Windows caps them at 16 KiB).
const MAX_REPARSE: u64 = 64 << 10;
/// Bytes of an Interix magic (`IntxLNK\x01`, `IntxCHR\0`, `IntxBLK\0`).
const INTX_MAGIC: u64 = 8;
/// Largest Interix file ntfs-3g decodes: the magic and a 4096-character
/// target.
const INTX_MAX: u64 = INTX_MAGIC + 2 * 4096;
/// Size of an Interix device: the magic, major and minor (u64 each).
const INTX_DEVICE: u64 = 24;
/// File attribute: hidden.
const FILE_HIDDEN: u32 = 0x0002;
/// File attribute: system (marks ntfs-3g's Interix special files).
const FILE_SYSTEM: u32 = 0x0004;
/// NTFS time (100 ns since 1601) of the Unix epoch.
const NTFS_EPOCH_OFFSET: i128 = 116_444_736_000_000_000;

/// The files of an NTFS volume.
pub struct NtfsTree {
    vol: Volume,
}

impl NtfsTree {
    /// Opens the NTFS volume that is exactly `src`: reads the boot sector
    /// (the backup one at the end when the first is unusable), locates the
    /// MFT and checks the root directory's record.
    pub fn open(src: Arc<dyn Source>) -> Result<Self> {
        let boot = read_boot(&*src)?;
        let mft = Mft::locate(&*src, &boot)?;
        let cs = u64::from(boot.cluster_size);
        let total_clusters = boot.total_clusters();
        let mft_runs = mft.extents.runs().to_vec();
        file::check_runs(&mft_runs, cs, total_clusters)
            .map_err(|d| corrupt("/", 0, format!("$MFT's $DATA: {d}")))?;
        let vol = Volume {
            src,
            cluster_size: cs,
            total_clusters,
            record_size: mft.record_size,
            mft_runs,
            mft_records: mft.records,
        };
        let root = vol.read_file(ROOT_RECORD, "/")?;
        if !root.is_dir() {
            return Err(corrupt(
                "/",
                ROOT_RECORD,
                "the root directory's record is not a directory",
            ));
        }
        Ok(NtfsTree { vol })
    }

    /// The metadata of `file`, as ntfs-3g reports it.
    fn meta_of(&self, file: &FileRecord, path: &str) -> Result<Meta> {
        let si = StandardInfo::of(file, path)?;
        let class = self.classify(file, &si, path)?;
        let readonly = si.attributes & FILE_READONLY != 0;
        let mode = match (class.kind, readonly) {
            (Kind::Symlink, _) => 0o777,
            (Kind::Dir, false) => 0o755,
            (Kind::Dir, true) => 0o555,
            (_, false) => 0o644,
            (_, true) => 0o444,
        };
        Ok(Meta {
            id: file.number,
            kind: class.kind,
            mode,
            uid: 0,
            gid: 0,
            size: class.size,
            mtime: ntfs_time(si.mtime),
            atime: Some(ntfs_time(si.atime)),
            nlink: if class.kind == Kind::Dir {
                1
            } else {
                u32::from(file.link_count.max(1))
            },
            rdev: class.rdev,
        })
    }

    /// What `file` is: a directory, a symlink (reparse point or Interix),
    /// an Interix device, FIFO or socket, or a regular file.
    fn classify(&self, file: &FileRecord, si: &StandardInfo, path: &str) -> Result<Class> {
        let plain = |kind, size| Class {
            kind,
            size,
            target: None,
            rdev: None,
        };
        if let Some(target) = self.link_target(file, path)? {
            return Ok(Class {
                kind: Kind::Symlink,
                size: target.len() as u64,
                target: Some(target),
                rdev: None,
            });
        }
        if file.is_dir() {
            return Ok(plain(Kind::Dir, 0));
        }
        let data = file.find(AT_DATA, "");
        let size = data.map_or(0, |a| a.size());
        let special = si.attributes & (FILE_SYSTEM | FILE_ENCRYPTED) == FILE_SYSTEM;
        let Some(data) = data.filter(|_| special) else {
            return Ok(plain(Kind::File, size));
        };
        // ntfs-3g's Interix special files: system files with a magic.
        if si.attributes & FILE_HIDDEN == 0 {
            match size {
                0 => return Ok(plain(Kind::Fifo, 0)),
                1 => return Ok(plain(Kind::Socket, 0)),
                _ => {}
            }
        }
        if size <= INTX_MAGIC || size > INTX_MAX {
            return Ok(plain(Kind::File, size));
        }
        let mut bytes = vec![0u8; size as usize];
        let mut r = StreamReader::new(&self.vol, file.number, data, path)?;
        let mut done = 0;
        while done < bytes.len() {
            match r.read_at(done as u64, &mut bytes[done..])? {
                0 => break,
                n => done += n,
            }
        }
        let device = |kind| {
            let major = file::le64(&bytes, 8).unwrap_or(0);
            let minor = file::le64(&bytes, 16).unwrap_or(0);
            Class {
                kind,
                size: 0,
                target: None,
                rdev: Some((
                    u32::try_from(major).unwrap_or(u32::MAX),
                    u32::try_from(minor).unwrap_or(u32::MAX),
                )),
            }
        };
        Ok(match &bytes[..8] {
            b"IntxLNK\x01" => {
                let target = String::from_utf16_lossy(&file::utf16(&bytes[8..]));
                Class {
                    kind: Kind::Symlink,
                    size: target.len() as u64,
                    target: Some(target),
                    rdev: None,
                }
            }
            b"IntxBLK\0" if size == INTX_DEVICE => device(Kind::BlockDevice),
            b"IntxCHR\0" if size == INTX_DEVICE => device(Kind::CharDevice),
            _ => plain(Kind::File, size),
        })
    }

    /// The `$REPARSE_POINT` value of `file`, if it has one.
    fn reparse_value(&self, file: &FileRecord, path: &str) -> Result<Option<Vec<u8>>> {
        let Some(attr) = file.find(AT_REPARSE_POINT, "") else {
            return Ok(None);
        };
        match &attr.value {
            Value::Resident(v) => Ok(Some(v.clone())),
            Value::NonResident(nr) => {
                if nr.data_size > MAX_REPARSE {
                    return Err(corrupt(
                        path,
                        file.number,
                        format!("its reparse point claims {} bytes", nr.data_size),
                    ));
                }
                let mut v = vec![0u8; nr.data_size as usize];
                let bad = |d: String| corrupt(path, file.number, format!("$REPARSE_POINT: {d}"));
                self.vol.read_mapped(&nr.runs, 0, &mut v, false, &bad)?;
                Ok(Some(v))
            }
        }
    }

    /// The target of `file` if it is a symlink or junction.
    fn link_target(&self, file: &FileRecord, path: &str) -> Result<Option<String>> {
        let Some(value) = self.reparse_value(file, path)? else {
            return Ok(None);
        };
        if !matches!(
            reparse::tag(&value),
            Some(reparse::TAG_SYMLINK | reparse::TAG_MOUNT_POINT)
        ) {
            return Ok(None);
        }
        let depth = self.depth(file, path)?;
        reparse::link_target(&value, depth).map_err(|d| corrupt(path, file.number, d))
    }

    /// How many directories lie between `file`'s directory and the root.
    fn depth(&self, file: &FileRecord, path: &str) -> Result<usize> {
        let mut at =
            parent_of(file).ok_or_else(|| corrupt(path, file.number, "it has no $FILE_NAME"))?;
        let mut depth = 0;
        while at != ROOT_RECORD {
            if depth >= MAX_DEPTH {
                return Err(corrupt(
                    path,
                    file.number,
                    format!("its parent directories do not reach the root in {MAX_DEPTH} steps"),
                ));
            }
            let dir = self.vol.read_file(at, path)?;
            at = parent_of(&dir).ok_or_else(|| corrupt(path, at, "it has no $FILE_NAME"))?;
            depth += 1;
        }
        Ok(depth)
    }

    /// Refuses files whose data fsimg cannot decode: encrypted ones and
    /// reparse points other than links.
    fn check_readable(&self, file: &FileRecord, path: &str) -> Result<()> {
        let si = StandardInfo::of(file, path)?;
        if si.attributes & FILE_ENCRYPTED != 0 {
            return Err(FileError::Unsupported {
                path: path.to_string(),
                what: "an encrypted file".into(),
            }
            .into());
        }
        if let Some(value) = self.reparse_value(file, path)? {
            let what = match reparse::tag(&value) {
                Some(reparse::TAG_SYMLINK | reparse::TAG_MOUNT_POINT) => {
                    "a symbolic link as a file".to_string()
                }
                Some(tag) => format!("a reparse point of tag 0x{tag:08x}"),
                None => "a reparse point without a tag".to_string(),
            };
            return Err(FileError::Unsupported {
                path: path.to_string(),
                what,
            }
            .into());
        }
        Ok(())
    }
}

/// What a file is, with what its kind needs.
struct Class {
    kind: Kind,
    size: u64,
    /// A symlink's target.
    target: Option<String>,
    /// A device's major and minor numbers.
    rdev: Option<(u32, u32)>,
}

/// Reads and checks the boot sector; when it is unusable, the backup in
/// the volume's last sector (512 or 4096 bytes).
fn read_boot(src: &dyn Source) -> Result<BootSector> {
    let first = src
        .read_vec(0, BOOT_SECTOR_SIZE)
        .and_then(|b| BootSector::from_bytes(&b).map_err(Into::into));
    let Err(e) = first else {
        return first;
    };
    let size = src.size();
    for sector in [512u64, 4096] {
        if size < sector + BOOT_SECTOR_SIZE as u64 {
            continue;
        }
        let at = (size - sector) / sector * sector;
        if let Ok(b) = src.read_vec(at, BOOT_SECTOR_SIZE)
            && let Ok(boot) = BootSector::from_bytes(&b)
        {
            return Ok(boot);
        }
    }
    Err(e)
}

/// NTFS time (100 ns units since 1601-01-01) as a Unix time.
fn ntfs_time(t: u64) -> Time {
    let t = i128::from(t) - NTFS_EPOCH_OFFSET;
    Time {
        secs: t.div_euclid(10_000_000) as i64,
        nanos: (t.rem_euclid(10_000_000) * 100) as u32,
    }
}

impl Tree for NtfsTree {
    fn fs_name(&self) -> String {
        "NTFS".to_string()
    }

    fn root(&self) -> Result<Meta> {
        let root = self.vol.read_file(ROOT_RECORD, "/")?;
        self.meta_of(&root, "/")
    }

    fn read_dir(&self, dir: &Meta, path: &str) -> Result<Vec<DirEntry>> {
        let rec = self.vol.read_file(dir.id, path)?;
        if !rec.is_dir() {
            return Err(FileError::NotADirectory {
                path: path.to_string(),
            }
            .into());
        }
        let mut out = Vec::new();
        for e in index::entries(&self.vol, &rec, path)? {
            if e.namespace == NAMESPACE_DOS || e.record < FIRST_USER_RECORD {
                continue;
            }
            let name = String::from_utf16_lossy(&e.name).into_bytes();
            let child_path = join(path, &name);
            let meta = self
                .vol
                .read_file(e.record, &child_path)
                .and_then(|child| self.meta_of(&child, &child_path));
            out.push(dir_entry(path, name, meta));
        }
        Ok(out)
    }

    fn open<'a>(&'a self, file: &Meta, path: &str) -> Result<Box<dyn FileRead + 'a>> {
        let rec = self.vol.read_file(file.id, path)?;
        self.check_readable(&rec, path)?;
        let si = StandardInfo::of(&rec, path)?;
        let kind = self.classify(&rec, &si, path)?.kind;
        if kind != Kind::File {
            return Err(FileError::Unsupported {
                path: path.to_string(),
                what: format!("a {kind:?} as a regular file"),
            }
            .into());
        }
        let Some(attr) = rec.find(AT_DATA, "") else {
            return Err(corrupt(
                path,
                rec.number,
                "a file without an unnamed $DATA attribute",
            ));
        };
        Ok(Box::new(StreamReader::new(
            &self.vol, rec.number, attr, path,
        )?))
    }

    fn read_link(&self, link: &Meta, path: &str) -> Result<Vec<u8>> {
        let rec = self.vol.read_file(link.id, path)?;
        let si = StandardInfo::of(&rec, path)?;
        match self.classify(&rec, &si, path)?.target {
            Some(t) => Ok(t.into_bytes()),
            None => Err(FileError::Unsupported {
                path: path.to_string(),
                what: "a file that is not a symbolic link as a link".into(),
            }
            .into()),
        }
    }

    fn streams(&self, file: &Meta, path: &str) -> Result<Vec<Stream>> {
        let rec = self.vol.read_file(file.id, path)?;
        Ok(rec
            .attrs
            .iter()
            .filter(|a| a.ty == AT_DATA && !a.name.is_empty())
            .map(|a| Stream {
                name: String::from_utf16_lossy(&a.name),
                size: a.size(),
            })
            .collect())
    }

    fn open_stream<'a>(
        &'a self,
        file: &Meta,
        path: &str,
        stream: &str,
    ) -> Result<Box<dyn FileRead + 'a>> {
        let rec = self.vol.read_file(file.id, path)?;
        let full = format!("{path}:{stream}");
        let Some(attr) = rec.find(AT_DATA, stream).filter(|_| !stream.is_empty()) else {
            return Err(FileError::NotFound { path: full }.into());
        };
        let si = StandardInfo::of(&rec, path)?;
        if si.attributes & FILE_ENCRYPTED != 0 {
            return Err(FileError::Unsupported {
                path: full,
                what: "an encrypted file".into(),
            }
            .into());
        }
        Ok(Box::new(StreamReader::new(
            &self.vol, rec.number, attr, &full,
        )?))
    }
}
