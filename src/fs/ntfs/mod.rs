//! NTFS: the allocation map from `$Bitmap`, checked against the clusters
//! every MFT record's non-resident attributes use, as ntfsclone checks it.
//!
//! The ntfs crate validates the boot sector, reads `$Volume` (version,
//! dirty flag, label) and locates `$Bitmap`. The MFT walk is ours: it
//! reads the MFT in large reads, and decodes data runs itself, because the
//! crate reads a run at cluster 0 (`$Boot`'s) as sparse and cannot follow
//! a fragmented `$MFT`'s attribute list.
//!
//! Copied: the clusters `$Bitmap` or any file uses, minus the clusters
//! `$BadClus` lists, plus `$Boot` and the sectors after the last cluster,
//! where the backup boot sector is.

pub mod boot;
mod crate_io;
pub mod error;
pub mod mft;
pub mod record;
pub mod runs;
pub mod scrub;

use std::fmt::Write as _;

use boot::{BOOT_SECTOR_SIZE, BootSector};
use crate_io::CrateReader;
pub use error::NtfsError;
use mft::{Extents, Mft, Visit};
use record::AT_DATA;
use runs::Run;

use super::{Allocation, Filesystem, FsKind, Metadata, Unclean};
use crate::allocmap::AllocationMap;
use crate::error::{Error, Result};
use crate::source::Source;

/// Size of `$Boot`, always copied.
const BOOT_FILE_SIZE: u64 = 8192;
/// Bytes of `$Bitmap` read per step.
const BITMAP_READ: usize = 1 << 20;
/// Disagreeing cluster ranges named in a message.
const RANGES_SHOWN: usize = 5;
/// NTFS versions this program knows (those Windows NT 4 to 11 write).
const VERSIONS: [(u8, u8); 3] = [(1, 2), (3, 0), (3, 1)];
/// Records `$MFTMirr` keeps a copy of (`$MFT`, `$MFTMirr`, `$LogFile`,
/// `$Volume`).
const MIRRORED_RECORDS: u64 = 4;
/// `$Bitmap`.
const BITMAP_RECORD: u64 = 6;
/// `$MFTMirr`.
const MFTMIRR_RECORD: u64 = 1;
/// Attribute type of `$INDEX_ALLOCATION`.
const AT_INDEX_ALLOCATION: u32 = 0xA0;
/// `$BadClus`, whose `$Bad` stream maps the bad clusters.
const BADCLUS_RECORD: u64 = 8;
/// `$Volume` flag: a check is scheduled or the volume was not shut down
/// cleanly.
const VOLUME_IS_DIRTY: u16 = 0x0001;

/// What `$Volume` says.
#[derive(Clone, Debug)]
struct VolumeInfo {
    major: u8,
    minor: u8,
    /// `None` when `$Volume` could not be read.
    flags: Option<u16>,
    label: String,
}

/// An NTFS volume with its boot sector validated.
pub struct Ntfs {
    boot: BootSector,
    volume: VolumeInfo,
    /// Problems met while opening (a boot sector read from the backup).
    warnings: Vec<String>,
    /// The boot sector used, when it is the backup's.
    boot_override: Option<Vec<u8>>,
    rescue: bool,
    /// `-m --preserve-timestamps`: the scrubber keeps timestamps.
    keep_times: bool,
}

impl Ntfs {
    /// Whether `src` starts with an NTFS boot sector.
    pub fn probe(src: &dyn Source) -> Result<bool> {
        if src.size() < BOOT_SECTOR_SIZE as u64 {
            return Ok(false);
        }
        match src.read_vec(0, BOOT_SECTOR_SIZE) {
            Ok(b) => Ok(BootSector::probe(&b)),
            // An unreadable boot sector may have a readable backup.
            Err(Error::Read { .. }) => Ok(backup_boot(src).is_some()),
            Err(e) => Err(e),
        }
    }

    /// Reads and validates the boot sector (the backup's when the first
    /// sector cannot be read) and `$Volume`.
    pub fn open(src: &dyn Source) -> Result<Self> {
        if src.size() < BOOT_SECTOR_SIZE as u64 {
            return Err(Error::SourceTruncated {
                name: src.name().to_string(),
                needed: BOOT_SECTOR_SIZE as u64,
                actual: src.size(),
            });
        }
        let mut warnings = Vec::new();
        let (boot, boot_override) = match src.read_vec(0, BOOT_SECTOR_SIZE) {
            Ok(b) => (BootSector::from_bytes(&b)?, None),
            Err(e @ Error::Read { .. }) => {
                let Some((at, b)) = backup_boot(src) else {
                    return Err(e);
                };
                warnings.push(format!(
                    "the boot sector is unreadable; using the backup boot sector at byte {at}"
                ));
                (BootSector::from_bytes(&b)?, Some(b))
            }
            Err(e) => return Err(e),
        };
        if src.size() < boot.volume_size() {
            return Err(Error::SourceTruncated {
                name: src.name().to_string(),
                needed: boot.volume_size(),
                actual: src.size(),
            });
        }
        let mut io = CrateReader::new(src, boot.volume_size(), boot_override.as_deref());
        let ntfs = ntfs::Ntfs::new(&mut io).map_err(|e| io.error("the boot sector", e))?;
        let volume = read_volume(src, &boot, &ntfs, &mut io, &mut warnings)?;
        if volume.flags.is_some() && !VERSIONS.contains(&(volume.major, volume.minor)) {
            return Err(NtfsError::Version {
                major: volume.major,
                minor: volume.minor,
            }
            .into());
        }
        let label = match ntfs.volume_name(&mut io) {
            Some(Ok(n)) => n.name().to_string_lossy(),
            _ => volume.label.clone(),
        };
        Ok(Ntfs {
            boot,
            volume: VolumeInfo { label, ..volume },
            warnings,
            boot_override,
            rescue: false,
            keep_times: false,
        })
    }

    /// The boot sector.
    pub fn boot(&self) -> &BootSector {
        &self.boot
    }

    /// `$Bitmap`'s runs and length in bytes, from the ntfs crate.
    fn bitmap_location(&self, src: &dyn Source) -> Result<(Vec<Run>, u64)> {
        let cs = u64::from(self.boot.cluster_size);
        let mut io = CrateReader::new(src, self.boot.volume_size(), self.boot_override.as_deref());
        let what = "$Bitmap";
        let ntfs = ntfs::Ntfs::new(&mut io).map_err(|e| io.error(what, e))?;
        let file = ntfs
            .file(&mut io, ntfs::KnownNtfsFileRecordNumber::Bitmap as u64)
            .map_err(|e| io.error(what, e))?;
        let item = file
            .data(&mut io, "")
            .ok_or_else(|| NtfsError::Layout {
                what: "$Bitmap has no $DATA attribute".into(),
            })?
            .map_err(|e| io.error(what, e))?;
        let attr = item.to_attribute().map_err(|e| io.error(what, e))?;
        let len = attr.value_length();
        let value = attr.value(&mut io).map_err(|e| io.error(what, e))?;
        let ntfs::attribute_value::NtfsAttributeValue::NonResident(value) = value else {
            return Err(NtfsError::Layout {
                what: "$Bitmap's $DATA is not a non-resident attribute".into(),
            }
            .into());
        };
        let mut runs = Vec::new();
        let mut vcn = 0u64;
        for run in value.data_runs() {
            let run = run.map_err(|e| io.error(what, e))?;
            let clusters = run.allocated_size() / cs;
            let lcn = run.data_position().value().map(|p| p.get() / cs);
            runs.push(Run {
                vcn,
                lcn,
                len: clusters,
            });
            vcn += clusters;
        }
        Ok((runs, len))
    }
}

/// `$Volume`'s version, flags and label through the ntfs crate, or through
/// our own parser of record 3 when the crate fails (it reads record 0 only
/// from `$MFT`; ours falls back to `$MFTMirr`). An unreadable `$Volume`
/// leaves the dirty flag unknown.
fn read_volume(
    src: &dyn Source,
    boot: &BootSector,
    ntfs: &ntfs::Ntfs,
    io: &mut CrateReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<VolumeInfo> {
    Ok(match ntfs.volume_info(io) {
        Ok(v) => VolumeInfo {
            major: v.major_version(),
            minor: v.minor_version(),
            flags: Some(v.flags().bits()),
            label: String::new(),
        },
        // The crate reads record 0 only from $MFT: when it fails, our
        // own parser (which falls back to $MFTMirr) reads record 3.
        Err(e) => {
            let e = io.error("$Volume", e);
            match (e, volume_from_mft(src, boot)) {
                (e @ (Error::Ntfs(_) | Error::Read { .. }), Ok(v)) => {
                    warnings.push(format!(
                        "the ntfs crate cannot read $Volume ({e}); using MFT record 3"
                    ));
                    v
                }
                (_, Err(Error::Read { offset, .. })) => {
                    warnings.push(format!(
                        "$Volume is unreadable (at byte {offset}): its dirty flag is unknown"
                    ));
                    VolumeInfo {
                        major: 3,
                        minor: 1,
                        flags: None,
                        label: String::new(),
                    }
                }
                (Error::Ntfs(_) | Error::Read { .. }, Err(e)) | (e, _) => return Err(e),
            }
        }
    })
}

/// `$Volume`'s version, flags and label, read from MFT record 3 by our
/// own parser (for when the crate cannot read record 0 of `$MFT`).
fn volume_from_mft(src: &dyn Source, boot: &BootSector) -> Result<VolumeInfo> {
    const AT_VOLUME_NAME: u32 = 0x60;
    const AT_VOLUME_INFORMATION: u32 = 0x70;
    const VOLUME_RECORD: u64 = 3;
    let mft = Mft::locate(src, boot)?;
    let rs = u64::from(boot.record_size);
    let offset = mft.extents.offset_of(VOLUME_RECORD * rs).unwrap_or(0);
    let mut buf = vec![0u8; rs as usize];
    mft.extents
        .read(src, VOLUME_RECORD * rs, &mut buf, false, "$MFT")?;
    let corrupt = |problem: String| NtfsError::Record {
        record: VOLUME_RECORD,
        offset,
        problem,
    };
    record::fixup(&mut buf).map_err(corrupt)?;
    let rec = record::Record::new(&buf);
    let mut v = None;
    let mut label = String::new();
    for a in rec.attributes().map_err(corrupt)? {
        let value = a.value();
        match a.ty {
            AT_VOLUME_INFORMATION if value.len() >= 12 => {
                v = Some((value[8], value[9], crate::bytes::u16le(value, 10)));
            }
            AT_VOLUME_NAME => {
                let units: Vec<u16> = value
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                label = String::from_utf16_lossy(&units);
            }
            _ => {}
        }
    }
    let (major, minor, flags) =
        v.ok_or_else(|| corrupt("no $VOLUME_INFORMATION attribute".into()))?;
    Ok(VolumeInfo {
        major,
        minor,
        flags: Some(flags),
        label,
    })
}

/// The backup boot sector, if the last sector of the source (512 or
/// 4096 bytes) holds a valid one that places itself there.
fn backup_boot(src: &dyn Source) -> Option<(u64, Vec<u8>)> {
    [512u64, 4096].into_iter().find_map(|sector| {
        let at = src.size().checked_sub(sector)?;
        let b = src.read_vec(at, BOOT_SECTOR_SIZE).ok()?;
        let boot = BootSector::from_bytes(&b).ok()?;
        (boot.backup_offset() == at).then_some((at, b))
    })
}

/// Cluster ranges where the MFT and `$Bitmap` disagree, in one direction.
#[derive(Default)]
struct Disagreement {
    clusters: u64,
    ranges: Vec<(u64, u64)>,
    open: Option<(u64, u64)>,
}

impl Disagreement {
    fn add(&mut self, c: u64) {
        self.clusters += 1;
        match &mut self.open {
            Some((s, n)) if *s + *n == c => *n += 1,
            open => {
                if let Some(r) = open.take()
                    && self.ranges.len() < RANGES_SHOWN
                {
                    self.ranges.push(r);
                }
                *open = Some((c, 1));
            }
        }
    }

    fn finish(&mut self) {
        if let Some(r) = self.open.take()
            && self.ranges.len() < RANGES_SHOWN
        {
            self.ranges.push(r);
        }
    }

    fn describe(&self, what: &str) -> String {
        let mut s = format!("{} cluster(s) {what} (", self.clusters);
        for (i, &(first, n)) in self.ranges.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            if n == 1 {
                let _ = write!(s, "{first}");
            } else {
                let _ = write!(s, "{first}-{}", first + n - 1);
            }
        }
        if self.clusters > self.ranges.iter().map(|r| r.1).sum::<u64>() {
            s.push_str(", ...");
        }
        s.push(')');
        s
    }
}

/// The first problem of a kind, and how many there were.
#[derive(Default)]
struct FirstOf {
    first: Option<String>,
    count: u64,
}

impl FirstOf {
    fn note(&mut self, f: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(f());
        }
    }

    fn message(&self, more: &str) -> Option<String> {
        let mut s = self.first.clone()?;
        if self.count > 1 {
            let _ = write!(s, " (and {} more {more})", self.count - 1);
        }
        Some(s)
    }
}

/// What the MFT walk found.
#[derive(Default)]
struct Walk {
    in_use: u64,
    corrupt: FirstOf,
    twice: FirstOf,
    past_end: FirstOf,
    unreadable: FirstOf,
    /// Records 0-3 read from `$MFTMirr` because `$MFT`'s copy is corrupt.
    mirrored: FirstOf,
    bad: Vec<(u64, u64)>,
    /// `$Bitmap`'s runs and size as record 6 gives them.
    bitmap: Option<(Vec<Run>, u64)>,
    /// What a metadata-only copy takes, when asked for.
    meta: Option<MetaCollect>,
}

/// The metadata clusters and the `$I30` index allocations found by the
/// walk, for `-m`.
struct MetaCollect {
    map: AllocationMap,
    /// `$I30` index allocation runs, by base record.
    indexes: std::collections::BTreeMap<u64, Vec<Run>>,
    /// `$MFTMirr`'s runs.
    mirror: Vec<Run>,
}

impl MetaCollect {
    /// Marks what of attribute `a` of record `n` (base `base`) a metadata
    /// copy keeps, as ntfsclone --metadata does: every non-resident
    /// attribute of the system files but `$BadClus:$Bad` and most of
    /// `$LogFile`, and every other file's non-resident attributes but
    /// `$DATA`.
    fn keep(&mut self, base: u64, a: &record::Attribute<'_>, runs: &[Run], cs: u64, total: u64) {
        const LOGFILE_RECORD: u64 = 2;
        const LOGFILE_KEPT: u64 = 16 << 10;
        if a.ty == AT_DATA && (base >= scrub::FIRST_USER_RECORD || base == BADCLUS_RECORD) {
            return;
        }
        if base == MFTMIRR_RECORD && a.ty == AT_DATA && a.name_is("") {
            self.mirror.extend_from_slice(runs);
        }
        if a.ty == AT_INDEX_ALLOCATION && a.name_is("$I30") {
            self.indexes
                .entry(base)
                .or_default()
                .extend_from_slice(runs);
        }
        let logfile = base == LOGFILE_RECORD && a.ty == AT_DATA;
        for r in runs {
            let Some(lcn) = r.lcn else { continue };
            if lcn.saturating_add(r.len) > total {
                continue;
            }
            if !logfile {
                self.map.mark_used(lcn, r.len);
                continue;
            }
            // $LogFile: its first 16 KiB and the clusters at VCN 2^k.
            for i in 0..r.len {
                let vcn = r.vcn + i;
                if vcn * cs < LOGFILE_KEPT || vcn.is_power_of_two() {
                    self.map.mark_used(lcn + i, 1);
                }
            }
        }
    }
}

impl Ntfs {
    /// Marks every cluster the in-use MFT records use in `map`.
    fn walk(
        &self,
        src: &dyn Source,
        mft: &Mft,
        map: &mut AllocationMap,
        meta: bool,
    ) -> Result<Walk> {
        let mut w = Walk {
            meta: meta.then(|| MetaCollect {
                map: AllocationMap::new(self.boot.cluster_size, self.boot.volume_size()),
                indexes: Default::default(),
                mirror: Vec::new(),
            }),
            ..Walk::default()
        };
        let rs = self.boot.record_size as usize;
        let mut mirror = vec![0u8; rs];
        mft.walk(src, self.rescue, |n, offset, visit| {
            // `None`: unreadable (rescue mode).
            let problem = match visit {
                Visit::InUse(r) => {
                    self.visit(&mut w, map, n, offset, &r);
                    return Ok(());
                }
                Visit::Corrupt(p) => Some(p),
                Visit::Unreadable => None,
            };
            // Records 0-3 have a copy in $MFTMirr, which chkdsk would
            // restore them from.
            let at = self.boot.mftmirr_lcn * u64::from(self.boot.cluster_size) + n * rs as u64;
            let mirrored = n < MIRRORED_RECORDS
                && src.read_into(&mut mirror, at).is_ok()
                && record::fixup(&mut mirror) == Ok(record::Kind::File);
            if mirrored {
                // Record 0's fallback was reported when $MFT was located.
                if n != 0 {
                    let what = problem
                        .as_deref()
                        .map_or_else(|| "unreadable".to_string(), |p| format!("corrupt ({p})"));
                    w.mirrored.note(|| {
                        format!("MFT record {n} at byte {offset} is {what}; its copy in $MFTMirr at byte {at} is used")
                    });
                }
                let r = record::Record::new(&mirror);
                if r.in_use() {
                    self.visit(&mut w, map, n, offset, &r);
                }
            } else if let Some(p) = problem {
                w.corrupt
                    .note(|| format!("MFT record {n} at byte {offset} is corrupt: {p}"));
            } else {
                w.unreadable
                    .note(|| format!("MFT record {n} at byte {offset}"));
            }
            Ok(())
        })?;
        Ok(w)
    }

    /// Marks the clusters record `n` (at byte `offset`) uses.
    fn visit(
        &self,
        w: &mut Walk,
        map: &mut AllocationMap,
        n: u64,
        offset: u64,
        rec: &record::Record<'_>,
    ) {
        let total = self.boot.total_clusters();
        w.in_use += 1;
        let attrs = match rec.attributes() {
            Ok(a) => a,
            Err(p) => {
                w.corrupt
                    .note(|| format!("MFT record {n} at byte {offset} is corrupt: {p}"));
                return;
            }
        };
        for a in attrs.iter().filter(|a| a.non_resident()) {
            let runs = match mft::decode(a, n, offset) {
                Ok(r) => r,
                Err(e) => {
                    w.corrupt.note(|| e.to_string().replacen("ntfs: ", "", 1));
                    continue;
                }
            };
            if let Some(m) = &mut w.meta {
                let base = match rec.base_record() {
                    0 => n,
                    b => b,
                };
                m.keep(base, a, &runs, u64::from(self.boot.cluster_size), total);
            }
            let bad_list = n == BADCLUS_RECORD && a.ty == AT_DATA && a.name_is("$Bad");
            if n == BITMAP_RECORD && a.ty == AT_DATA && a.name_is("") {
                let (runs_so_far, size) = w.bitmap.get_or_insert_with(|| (Vec::new(), 0));
                runs_so_far.extend(runs.iter().copied());
                if a.lowest_vcn() == 0 {
                    *size = a.data_size();
                }
            }
            for r in runs {
                let Some(lcn) = r.lcn else { continue };
                if lcn.saturating_add(r.len) > total {
                    w.past_end.note(|| {
                        format!(
                            "MFT record {n} (attribute 0x{:x}) maps clusters {lcn}-{} past the last cluster {}",
                            a.ty,
                            lcn.saturating_add(r.len - 1),
                            total - 1
                        )
                    });
                    continue;
                }
                if bad_list {
                    w.bad.push((lcn, r.len));
                } else if map.count_used(lcn, r.len) > 0 {
                    let c = (lcn..lcn + r.len).find(|&c| map.is_used(c)).unwrap_or(lcn);
                    w.twice
                        .note(|| format!("cluster {c} is used twice (again by MFT record {n})"));
                }
                map.mark_used(lcn, r.len);
            }
        }
    }
}

impl Filesystem for Ntfs {
    fn set_rescue(&mut self, on: bool) {
        self.rescue = on;
    }

    fn set_keep_timestamps(&mut self, on: bool) {
        self.keep_times = on;
    }

    fn kind(&self) -> FsKind {
        FsKind::Ntfs
    }

    fn cluster_size(&self) -> u32 {
        self.boot.cluster_size
    }

    fn device_size(&self) -> u64 {
        self.boot.volume_size()
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let b = &self.boot;
        let v = &self.volume;
        vec![
            ("label", v.label.clone()),
            ("NTFS version", format!("{}.{}", v.major, v.minor)),
            ("serial number", format!("{:016X}", b.serial)),
            ("bytes per sector", b.bytes_per_sector.to_string()),
            ("NTFS cluster size", b.cluster_size.to_string()),
            ("NTFS clusters", b.total_clusters().to_string()),
            ("MFT record size", b.record_size.to_string()),
            ("$MFT at cluster", b.mft_lcn.to_string()),
            ("$MFTMirr at cluster", b.mftmirr_lcn.to_string()),
            ("backup boot sector at byte", b.backup_offset().to_string()),
            (
                "state",
                self.unclean()
                    .map_or_else(|| "clean".to_string(), |u| u.problem),
            ),
        ]
    }

    fn unclean(&self) -> Option<Unclean> {
        let hint = "boot Windows (or run chkdsk /f there)";
        match self.volume.flags {
            None => Some(Unclean {
                problem: "$Volume is unreadable, so whether the volume is dirty is unknown"
                    .to_string(),
                hint,
            }),
            Some(f) if f & VOLUME_IS_DIRTY != 0 => Some(Unclean {
                problem: "the NTFS volume is scheduled for a check or was shut down uncleanly (dirty flag in $Volume)".to_string(),
                hint,
            }),
            Some(_) => None,
        }
    }

    fn fsck_hint(&self) -> &'static str {
        "chkdsk /f on Windows (then reboot it twice)"
    }

    fn allocation(&self, src: &dyn Source) -> Result<Allocation> {
        Ok(self.scan(src, false)?.0)
    }

    fn metadata(&self, src: &dyn Source) -> Result<Metadata> {
        let (allocation, meta, mft) = self.scan(src, true)?;
        let mut meta = meta.expect("asked for");
        let b = &self.boot;
        // $Boot and the backup boot sector, as in a full copy.
        let total = b.total_clusters();
        let cs = u64::from(b.cluster_size);
        meta.map.mark_bytes_used(0, BOOT_FILE_SIZE.min(total * cs));
        meta.map
            .mark_bytes_used(total * cs, b.volume_size() - total * cs);
        let indexes = meta
            .indexes
            .into_values()
            .map(|runs| Extents::new(runs, b.cluster_size))
            .collect();
        let scrub = scrub::NtfsScrub::new(
            mft.extents,
            Extents::new(meta.mirror, b.cluster_size),
            mft.records,
            b.record_size,
            indexes,
            b.index_block_size,
            b.cluster_size,
            self.keep_times,
        );
        let mut details = allocation.details;
        details.push(("metadata clusters", meta.map.used_clusters().to_string()));
        Ok(Metadata {
            allocation: Allocation {
                map: meta.map,
                details,
                ..allocation
            },
            scrub: Some(Box::new(scrub)),
        })
    }
}

impl Ntfs {
    /// The allocation map, and with `meta` what a metadata-only copy
    /// takes; the located `$MFT`.
    fn scan(&self, src: &dyn Source, meta: bool) -> Result<(Allocation, Option<MetaCollect>, Mft)> {
        let b = &self.boot;
        let cs = u64::from(b.cluster_size);
        let total = b.total_clusters();
        let mut map = AllocationMap::new(b.cluster_size, b.volume_size());
        let mut inconsistencies = Vec::new();
        let mut warnings = self.warnings.clone();

        let mft = Mft::locate(src, b)?;
        warnings.extend(mft.warnings.iter().cloned());
        let mut w = self.walk(src, &mft, &mut map, meta)?;
        let walked = map.count_used(0, total);

        // $Bitmap, compared a byte (eight clusters) at a time with what the
        // walk found, then ORed in.
        // Where the ntfs crate says $Bitmap is; where record 6 says when
        // the crate cannot read it (it reads record 0 only from $MFT).
        let (runs, bitmap_len) = match (self.bitmap_location(src), w.bitmap.clone()) {
            (Ok(x), _) => (Some(x.0), x.1),
            (Err(e), Some((runs, len))) => {
                warnings.push(format!(
                    "the ntfs crate cannot locate $Bitmap ({e}); using MFT record 6"
                ));
                (Some(runs), len)
            }
            (Err(e @ Error::Read { .. }), None) if self.rescue => {
                warnings.push(format!(
                    "$Bitmap cannot be located ({e}): every cluster is copied"
                ));
                map.mark_used(0, total);
                (None, 0)
            }
            (Err(e), None) => return Err(e),
        };
        let mut missing = Disagreement::default();
        let mut extra = Disagreement::default();
        let mut bitmap_used = 0u64;
        let mut unreadable_bitmap = FirstOf::default();
        if let Some(runs) = runs {
            if bitmap_len.saturating_mul(8) < total {
                return Err(NtfsError::BitmapTooShort {
                    bits: bitmap_len * 8,
                    clusters: total,
                }
                .into());
            }
            let extents = Extents::new(runs, b.cluster_size);
            let need = total.div_ceil(8);
            let mut buf = vec![0u8; BITMAP_READ];
            let mut pos = 0u64;
            while pos < need {
                let n = (need - pos).min(BITMAP_READ as u64) as usize;
                let chunk = &mut buf[..n];
                let holes = extents.read(src, pos, chunk, self.rescue, "$Bitmap")?;
                for &(s, e) in &holes {
                    let at = extents.offset_of(pos + s as u64).unwrap_or(0);
                    unreadable_bitmap.note(|| at.to_string());
                    map.mark_used((pos + s as u64) * 8, (e - s) as u64 * 8);
                    chunk[s..e].fill(0);
                }
                // Clusters past the volume are not compared.
                if pos + n as u64 == need && !total.is_multiple_of(8) {
                    chunk[n - 1] &= (1u8 << (total % 8)) - 1;
                }
                for (i, &bits) in chunk.iter().enumerate() {
                    let c0 = (pos + i as u64) * 8;
                    bitmap_used += u64::from(bits.count_ones());
                    let walked = map.load_byte(c0)
                        & if c0 + 8 > total {
                            (1u8 << (total - c0)) - 1
                        } else {
                            0xFF
                        };
                    let diff = bits ^ walked;
                    if diff == 0 || holes.iter().any(|&(s, e)| s <= i && i < e) {
                        continue;
                    }
                    for k in 0..8 {
                        if diff & (1 << k) != 0 {
                            if bits & (1 << k) != 0 {
                                extra.add(c0 + k);
                            } else {
                                missing.add(c0 + k);
                            }
                        }
                    }
                }
                map.or_bitmap(pos * 8, chunk, (n as u64 * 8).min(total - pos * 8));
                pos += n as u64;
            }
        }
        missing.finish();
        extra.finish();

        // The bad clusters are in $Bitmap and the walk; they are not read.
        let bad: u64 = w.bad.iter().map(|r| r.1).sum();
        for &(lcn, len) in &w.bad {
            map.mark_bytes_free(lcn * cs, len * cs);
        }
        // $Boot (the walk finds it too, unless record 7 is damaged) and the
        // sectors after the last cluster, with the backup boot sector.
        map.mark_bytes_used(0, BOOT_FILE_SIZE.min(total * cs));
        map.mark_bytes_used(total * cs, b.volume_size() - total * cs);

        for f in [
            w.corrupt.message("corrupt records"),
            w.twice.message("clusters used twice"),
            w.past_end.message("runs like it"),
        ]
        .into_iter()
        .flatten()
        {
            inconsistencies.push(f);
        }
        if missing.clusters > 0 {
            inconsistencies.push(format!(
                "$Bitmap disagrees with the MFT: {}",
                missing.describe("used by files but free in $Bitmap")
            ));
        }
        if let Some(m) = w.mirrored.message("records") {
            warnings.push(m);
        }
        if let Some(first) = w.unreadable.message("records") {
            warnings.push(format!(
                "{} MFT record(s) are unreadable, the first {first}: the clusters $Bitmap marks are copied",
                w.unreadable.count
            ));
            if extra.clusters > 0 {
                warnings.push(format!(
                    "$Bitmap has {} used cluster(s) no readable MFT record uses; they are copied",
                    extra.clusters
                ));
            }
        } else if extra.clusters > 0 {
            inconsistencies.push(format!(
                "$Bitmap disagrees with the MFT: {}",
                extra.describe("marked used in $Bitmap but used by no file")
            ));
        }
        if unreadable_bitmap.count > 0 {
            warnings.push(format!(
                "{} $Bitmap sector(s) are unreadable (the first at byte {}): the clusters they describe are copied",
                unreadable_bitmap.count,
                unreadable_bitmap.first.as_deref().unwrap_or("?")
            ));
        }
        if bad > 0 {
            warnings.push(format!(
                "$BadClus lists {bad} bad cluster(s); they are not copied"
            ));
        }
        let used = map.count_used(0, total);
        let allocation = Allocation {
            map,
            inconsistencies,
            warnings,
            details: vec![
                ("NTFS clusters in use", used.to_string()),
                ("clusters used in $Bitmap", bitmap_used.to_string()),
                ("clusters used by MFT records", walked.to_string()),
                ("MFT records in use", w.in_use.to_string()),
                ("bad clusters", bad.to_string()),
            ],
        };
        Ok((allocation, w.meta.take(), mft))
    }
}
