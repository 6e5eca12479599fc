//! What `fsimg info` and `fsimg verify` found, as typed values. The text
//! lines people read and the JSON scripts read (`--json`, docs/json.md)
//! are both rendered from these, so the two cannot disagree.
//!
//! A filesystem or a foreign image reader describes itself in (key, text)
//! facts ([`crate::fs::Filesystem::describe`],
//! [`crate::foreign::ForeignReader::describe`]). In JSON each fact's key is
//! its text key in snake_case, and its value is typed by [`fact_json`]:
//! counts and sizes are integers, names are strings, and the few texts
//! that carry two values are split into two fields.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

use super::{ReadSummary, human};
use crate::disk::table::{Partition, Table};
use crate::error::Error;
use crate::extent::Extent;

/// The version of the JSON documents: within version 1 fields are added,
/// never renamed or removed, and never change type.
pub const JSON_VERSION: u32 = 1;

/// Lines of `fsimg info`: key, value.
pub type Lines = Vec<(&'static str, String)>;

/// What `fsimg info` found on a path.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Info {
    /// A volume: a filesystem fsimg reads, or a raw one; or one partition
    /// of a disk (`--partition N`).
    Volume(VolumeInfo),
    /// An fsimg image: of a volume, of a whole disk, or one partition of
    /// an image of a whole disk.
    FsimgImage(ImageInfo),
    /// An ntfsclone special image.
    NtfscloneImage(ForeignInfo),
    /// A partclone image.
    PartcloneImage(ForeignInfo),
    /// A disk with an MBR or a GPT.
    Disk(DiskInfo),
}

impl Info {
    /// The lines `fsimg info` prints.
    pub fn lines(&self) -> Lines {
        match self {
            Info::Volume(v) => v.lines(),
            Info::FsimgImage(i) => i.lines(),
            Info::NtfscloneImage(f) | Info::PartcloneImage(f) => f.facts.0.clone(),
            Info::Disk(d) => d.lines(),
        }
    }

    /// The JSON document `fsimg info --json` prints: `version`, `path`,
    /// `kind`, then the fields of the kind.
    pub fn to_json(&self, path: &str) -> String {
        document(&Versioned {
            version: JSON_VERSION,
            path,
            body: self,
        })
    }
}

/// A JSON document, pretty-printed, with a final newline.
fn document<T: Serialize>(v: &T) -> String {
    // Serializing plain structs of strings and integers into a String
    // cannot fail (no I/O, no maps with non-string keys).
    let mut s = serde_json::to_string_pretty(v).expect("the info types serialize");
    s.push('\n');
    s
}

#[derive(Serialize)]
struct Versioned<'a, T: Serialize> {
    version: u32,
    path: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

/// Facts a filesystem or an image reader gives about itself, in the order
/// it gives them; in JSON, fields typed by [`fact_json`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts(pub Lines);

impl Serialize for Facts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in &self.0 {
            for (key, value) in fact_json(k, v) {
                map.serialize_entry(&key, &value)?;
            }
        }
        map.end()
    }
}

/// The JSON key of a text key: lower case, words joined by `_`, other
/// characters dropped ("$MFT at cluster" is `mft_at_cluster`).
pub fn snake(key: &str) -> String {
    let mut out = String::new();
    for c in key.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if c == ' ' && !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// Facts whose value is a count, a size or an offset: a JSON integer.
const INTEGER_FACTS: &[&str] = &[
    // ext
    "block size",
    "blocks",
    "block groups",
    // FAT
    "bytes per sector",
    "sectors per cluster",
    "FAT cluster size",
    "FAT clusters",
    "data starts at sector",
    "bad FAT clusters",
    // NTFS
    "NTFS cluster size",
    "NTFS clusters",
    "MFT record size",
    "$MFT at cluster",
    "$MFTMirr at cluster",
    "backup boot sector at byte",
    "NTFS clusters in use",
    "clusters used in $Bitmap",
    "clusters used by MFT records",
    "MFT records in use",
    "bad clusters",
    // metadata walks
    "metadata clusters",
    "inodes walked",
    "inline data wiped in inodes",
    "directories",
    "directory clusters",
    // ntfsclone and partclone
    "device size",
    "cluster size",
    "total clusters",
    "data offset",
    "total blocks",
    "superblock used blocks",
];

/// Facts whose text starts with a count, followed by words on it:
/// "6043 (superblock)", "1657 of 129022".
const LEADING_INTEGER_FACTS: &[&str] = &["free blocks", "used FAT clusters", "used clusters"];

/// The JSON fields of one fact. A text that does not have the form its
/// key always has is kept as a string (a test checks every form).
pub fn fact_json(key: &str, text: &str) -> Vec<(String, Value)> {
    typed_fact(key, text).unwrap_or_else(|| vec![(snake(key), Value::from(text))])
}

fn typed_fact(key: &str, text: &str) -> Option<Vec<(String, Value)>> {
    let int = |s: &str| s.parse::<u64>().ok().map(Value::from);
    let one = |v: Value| Some(vec![(snake(key), v)]);
    if INTEGER_FACTS.contains(&key) {
        return one(int(text)?);
    }
    if LEADING_INTEGER_FACTS.contains(&key) {
        let (n, _) = text.split_once(' ')?;
        return one(int(n)?);
    }
    match key {
        "format" => {
            let (_, version) = text.rsplit_once(' ')?;
            Some(vec![
                ("format".into(), text.into()),
                ("format_version".into(), version.into()),
            ])
        }
        // "2 of 1009 sectors"
        "FATs" => {
            let rest = text.strip_suffix(" sectors")?;
            let (n, size) = rest.split_once(" of ")?;
            Some(vec![
                ("fats".into(), int(n)?),
                ("fat_sectors".into(), int(size)?),
            ])
        }
        // "compat 0x3c, incompat 0x2c2, ro_compat 0x46b"
        "features" => {
            let mut obj = serde_json::Map::new();
            for part in text.split(", ") {
                let (name, hex) = part.split_once(" 0x")?;
                obj.insert(name.into(), u64::from_str_radix(hex, 16).ok()?.into());
            }
            (obj.len() == 3).then_some(())?;
            one(Value::Object(obj))
        }
        // "1664", or "1660 in the bitmap (1664 in the header)"
        "used blocks" => match text.split_once(" in the bitmap (") {
            None => one(int(text)?),
            Some((n, rest)) => Some(vec![
                ("used_blocks".into(), int(n)?),
                (
                    "header_used_blocks".into(),
                    int(rest.strip_suffix(" in the header)")?)?,
                ),
            ]),
        },
        // ntfsclone: "none (the format has none)"
        "checksums" if text.starts_with("none") => one("none".into()),
        // partclone: "none", "CRC32 of each block (0001: ...)",
        // "CRC32, every 1024 blocks", "..., not reseeded"
        "checksum" => {
            if text == "none" {
                return one("none".into());
            }
            if text.starts_with("CRC32 of each block") {
                return Some(vec![
                    ("checksum".into(), "CRC32_0001".into()),
                    ("blocks_per_checksum".into(), 1.into()),
                ]);
            }
            let (name, rest) = text.split_once(", every ")?;
            let (n, reseed) = match rest.strip_suffix(", not reseeded") {
                Some(r) => (r, false),
                None => (rest, true),
            };
            Some(vec![
                ("checksum".into(), name.into()),
                (
                    "blocks_per_checksum".into(),
                    int(n.strip_suffix(" blocks")?)?,
                ),
                ("reseed".into(), reseed.into()),
            ])
        }
        // "a 64-bit platform"
        "created on" => {
            let bits = text.strip_prefix("a ")?.strip_suffix("-bit platform")?;
            Some(vec![("platform_bits".into(), int(bits)?)])
        }
        _ => None,
    }
}

/// A volume.
#[derive(Clone, Debug, Serialize)]
pub struct VolumeInfo {
    /// "ext4", "fat32", "ntfs", "raw".
    pub filesystem: &'static str,
    /// Bytes.
    pub device_size: u64,
    /// fsimg's unit of allocation, bytes.
    pub cluster_size: u32,
    /// What the filesystem says of itself.
    #[serde(flatten)]
    pub facts: Facts,
    /// Whether the filesystem is clean (a copy needs no `--force`).
    pub clean: bool,
    /// Its allocation map, if it could be read.
    #[serde(flatten)]
    pub allocation: Option<AllocationInfo>,
    /// Why the allocation map could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocation_error: Option<String>,
    /// `--partition N`: the partition of the disk this volume is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionInfo>,
}

/// What a volume's allocation map says.
#[derive(Clone, Debug, Serialize)]
pub struct AllocationInfo {
    /// Clusters of `cluster_size` bytes in the volume.
    pub total_clusters: u64,
    /// Clusters a copy takes.
    pub used_clusters: u64,
    /// Bytes a copy takes.
    pub used_bytes: u64,
    /// Where the filesystem's counts disagree with its bitmaps.
    pub inconsistencies: Vec<String>,
    /// The filesystem's own counts.
    #[serde(flatten)]
    pub details: Facts,
    /// Warnings about the map.
    pub warnings: Vec<String>,
}

impl VolumeInfo {
    fn lines(&self) -> Lines {
        let mut lines = vec![
            ("filesystem", self.filesystem.to_string()),
            ("device size", self.device_size.to_string()),
            ("cluster size", self.cluster_size.to_string()),
        ];
        lines.extend(self.facts.0.iter().cloned());
        if let Some(a) = &self.allocation {
            lines.push(("total clusters", a.total_clusters.to_string()));
            lines.push(("used clusters", a.used_clusters.to_string()));
            lines.push(("used bytes", a.used_bytes.to_string()));
            lines.extend(
                a.inconsistencies
                    .iter()
                    .map(|i| ("inconsistency", i.clone())),
            );
            lines.extend(a.details.0.iter().cloned());
            lines.extend(a.warnings.iter().map(|w| ("warning", w.clone())));
        }
        if let Some(e) = &self.allocation_error {
            lines.push(("allocation map", format!("unreadable: {e}")));
        }
        lines
    }
}

/// A range of a volume: bytes `offset..offset + len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Range {
    /// Its first byte.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
}

impl From<&Extent> for Range {
    fn from(e: &Extent) -> Self {
        Range {
            offset: e.offset,
            len: e.len,
        }
    }
}

/// The flags of an fsimg image's header.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ImageFlags {
    /// `-m`: only the metadata; file contents read as zeros.
    pub metadata_only: bool,
    /// `--rescue`: unreadable ranges hold the BadSectoR marker.
    pub rescue: bool,
    /// An image of a whole disk.
    pub disk: bool,
}

/// An fsimg image.
#[derive(Clone, Debug, Serialize)]
pub struct ImageInfo {
    /// "fsimg image 1.1".
    pub format: String,
    /// "1.1".
    pub format_version: String,
    /// The program that wrote it ("fsimg 0.1.0").
    pub writer: String,
    /// "ext4", "whole disk", "unknown (N)".
    pub filesystem: String,
    /// Bytes of the volume or disk.
    pub device_size: u64,
    /// Bytes.
    pub cluster_size: u32,
    /// Clusters in the volume.
    pub total_clusters: u64,
    /// Clusters the image holds.
    pub used_clusters: u64,
    /// Bytes the image holds.
    pub used_bytes: u64,
    /// "none" or "zstd".
    pub compression: &'static str,
    /// The header's flags.
    pub flags: ImageFlags,
    /// Records, from the trailer (not read from standard input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Unreadable ranges of a rescue, from the trailer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bad_ranges: Option<Vec<Range>>,
    /// The table of an image of a whole disk.
    #[serde(flatten)]
    pub disk: Option<DiskTable>,
    /// `--partition N` of an image of a whole disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<PartitionInfo>,
}

impl ImageInfo {
    fn lines(&self) -> Lines {
        let mut flags = Vec::new();
        if self.flags.metadata_only {
            flags.push("metadata-only");
        }
        if self.flags.rescue {
            flags.push("rescue");
        }
        if self.flags.disk {
            flags.push("disk");
        }
        let mut lines = vec![
            ("format", self.format.clone()),
            ("writer", self.writer.clone()),
            ("filesystem", self.filesystem.clone()),
            ("device size", self.device_size.to_string()),
            ("cluster size", self.cluster_size.to_string()),
            ("total clusters", self.total_clusters.to_string()),
            ("used clusters", self.used_clusters.to_string()),
            ("used bytes", self.used_bytes.to_string()),
            ("compression", self.compression.to_string()),
            (
                "flags",
                if flags.is_empty() {
                    "none".into()
                } else {
                    flags.join(", ")
                },
            ),
        ];
        if let Some(r) = self.records {
            lines.push(("records", r.to_string()));
        }
        if let Some(bad) = &self.bad_ranges {
            lines.push(("bad ranges", bad.len().to_string()));
            for r in bad {
                lines.push((
                    "bad range",
                    format!("bytes {}..{} ({} bytes)", r.offset, r.offset + r.len, r.len),
                ));
            }
        }
        if let Some(p) = &self.partition {
            lines.push(("partition", p.row()));
        }
        if let Some(t) = &self.disk {
            lines.extend(t.lines());
        }
        lines
    }
}

/// An ntfsclone or partclone image: what its header says.
#[derive(Clone, Debug, Serialize)]
pub struct ForeignInfo {
    /// The header's fields, as the reader describes them.
    #[serde(flatten)]
    pub facts: Facts,
    /// Bytes of used blocks the image holds (what a restore writes).
    pub used_bytes: u64,
}

/// A partition table.
#[derive(Clone, Debug, Serialize)]
pub struct DiskTable {
    /// "mbr", "gpt" or "hybrid".
    pub partition_table: &'static str,
    /// The MBR's disk id ("0x5a8b3c1d") or the GPT's disk GUID.
    pub disk_id: String,
    /// Logical sector size, bytes.
    pub sector_size: u32,
    /// Bytes.
    pub disk_size: u64,
    /// What is wrong with the table but was survived (a damaged primary
    /// GPT, read from the backup).
    pub warnings: Vec<String>,
    /// Every partition, in table order.
    pub partitions: Vec<PartitionInfo>,
}

impl DiskTable {
    /// The table `t`, with its partitions described in `partitions`.
    pub fn new(t: &Table, partitions: Vec<PartitionInfo>) -> Self {
        DiskTable {
            partition_table: t.kind.name(),
            disk_id: t.disk_id.clone(),
            sector_size: t.sector_size,
            disk_size: t.disk_size,
            warnings: t.warnings.clone(),
            partitions,
        }
    }

    fn lines(&self) -> Lines {
        let mut lines = vec![
            ("partition table", self.partition_table.to_string()),
            ("disk id", self.disk_id.clone()),
            ("sector size", self.sector_size.to_string()),
            (
                "disk size",
                format!("{} ({})", self.disk_size, human(self.disk_size)),
            ),
            ("partitions", self.partitions.len().to_string()),
        ];
        lines.extend(self.warnings.iter().map(|w| ("warning", w.clone())));
        lines.extend(self.partitions.iter().map(|p| ("partition", p.row())));
        lines
    }
}

/// A disk with a partition table.
#[derive(Clone, Debug, Serialize)]
pub struct DiskInfo {
    /// Its table and partitions.
    #[serde(flatten)]
    pub table: DiskTable,
    /// Bytes of the tables and of the gap before the first partition (boot
    /// code, a bootloader), all copied.
    pub tables_and_boot_gap: u64,
    /// Bytes in no partition, not copied.
    pub unpartitioned: u64,
    /// Bytes a copy takes, about: `to_copy_in_partitions` plus
    /// `tables_and_boot_gap`.
    pub to_copy: u64,
    /// Bytes a copy takes of the partitions (all of a partition whose
    /// allocation map is unreadable).
    pub to_copy_in_partitions: u64,
}

impl DiskInfo {
    fn lines(&self) -> Lines {
        let mut lines = self.table.lines();
        lines.push((
            "tables and boot gap",
            format!("{} bytes", self.tables_and_boot_gap),
        ));
        lines.push((
            "unpartitioned",
            format!("{} bytes (not copied)", self.unpartitioned),
        ));
        lines.push((
            "to copy",
            format!(
                "about {} ({} bytes in partitions)",
                human(self.to_copy),
                self.to_copy_in_partitions
            ),
        ));
        lines
    }
}

/// One partition of a disk.
#[derive(Clone, Debug, Serialize)]
pub struct PartitionInfo {
    /// Its number as Linux names it (MBR logical partitions from 5).
    pub number: u32,
    /// Its first byte on the disk.
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
    /// Bytes.
    pub size: u64,
    /// Its first sector.
    pub first_sector: u64,
    /// Its last sector.
    pub last_sector: u64,
    /// "0x0c" (MBR) or the type GUID (GPT).
    pub type_id: String,
    /// The type's name, when fsimg knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
    /// The GPT partition name, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The GPT partition GUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// An MBR logical partition.
    pub logical: bool,
    /// "ext4", "fat32", "ntfs", "swap", "raw" (no filesystem fsimg knows:
    /// copied whole), "unknown".
    pub filesystem: String,
    /// Bytes a copy takes of it (unknown when the allocation map is
    /// unreadable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// Why its allocation map could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocation_error: Option<String>,
    /// `mount -o loop,offset=` of it: its first byte.
    pub offset: u64,
}

impl PartitionInfo {
    /// Partition `p` of table `t`, holding `filesystem`, of which `used.0`
    /// bytes are copied, or whose allocation map is unreadable (`used.1`).
    pub fn new(
        t: &Table,
        p: &Partition,
        filesystem: &str,
        used: (Option<u64>, Option<String>),
    ) -> Self {
        let ss = u64::from(t.sector_size);
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        PartitionInfo {
            number: p.number,
            start: p.start,
            end: p.start + p.len,
            size: p.len,
            first_sector: p.start / ss,
            last_sector: (p.start + p.len) / ss - 1,
            type_id: p.type_id.clone(),
            type_name: nonempty(p.type_name),
            name: nonempty(&p.name),
            uuid: p.guid.clone(),
            logical: p.logical,
            filesystem: filesystem.to_string(),
            used_bytes: used.0,
            allocation_error: used.1,
            offset: p.start,
        }
    }

    /// Its row in the text of `info`.
    pub fn row(&self) -> String {
        let ty = match &self.type_name {
            None => self.type_id.clone(),
            Some(n) => format!("{} ({n})", self.type_id),
        };
        let mut row = format!(
            "{}: sectors {}..{} ({}), type {ty}",
            self.number,
            self.first_sector,
            self.last_sector,
            human(self.size)
        );
        if let Some(n) = &self.name {
            row.push_str(&format!(", name \"{n}\""));
        }
        if let Some(g) = &self.uuid {
            row.push_str(&format!(", uuid {g}"));
        }
        match (self.filesystem.as_str(), &self.allocation_error) {
            (fs, Some(e)) => row.push_str(&format!(", {fs} (allocation map unreadable: {e})")),
            ("raw", None) => row.push_str(", no filesystem (copied whole)"),
            ("swap", None) => row.push_str(", swap (header page copied)"),
            (fs, None) => row.push_str(&format!(", {fs}")),
        }
        if let Some(u) = self.used_bytes {
            row.push_str(&format!(", used {}", human(u)));
        }
        row.push_str(&format!(", offset={}", self.offset));
        row
    }
}

/// What `fsimg verify` found: the verdict, what the image is, what was
/// checked and, on a failure, the error.
#[derive(Debug, Serialize)]
pub struct Verification {
    /// "ok" or "failed".
    pub result: &'static str,
    /// "fsimg-image", "ntfsclone-image" or "partclone-image"; absent when
    /// the image could not be opened or recognised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// "fsimg image 1.1", "partclone 0002", "ntfsclone 10.1".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The filesystem the header names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<String>,
    /// Bytes of the volume or disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_size: Option<u64>,
    /// Bytes of used blocks: read (ok), or announced by the header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// fsimg images: the records read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// fsimg images: the unreadable ranges of a rescue, from the trailer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bad_ranges: Option<Vec<Range>>,
    /// Data checksums verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksums: Option<u64>,
    /// Data checksums that did not match (partclone, `--ignore-checksums`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_mismatches: Option<u64>,
    /// What was checked, once the image was read through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked: Option<String>,
    /// What the format does not let fsimg check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_checked: Option<String>,
    /// Why the image failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the read found, when it succeeded.
    #[serde(skip)]
    pub summary: Option<ReadSummary>,
    /// The failure.
    #[serde(skip)]
    pub failure: Option<Error>,
}

impl Verification {
    /// Nothing known yet.
    pub fn new() -> Self {
        Verification {
            result: "ok",
            kind: None,
            format: None,
            filesystem: None,
            device_size: None,
            used_bytes: None,
            records: None,
            bad_ranges: None,
            checksums: None,
            checksum_mismatches: None,
            checked: None,
            not_checked: None,
            error: None,
            summary: None,
            failure: None,
        }
    }

    /// The verdict: failed with `e`.
    pub fn fail(mut self, e: Error) -> Self {
        self.result = "failed";
        self.error = Some(e.to_string());
        self.failure = Some(e);
        self
    }

    /// The JSON document `fsimg verify --json` prints.
    pub fn to_json(&self, path: &str) -> String {
        document(&Versioned {
            version: JSON_VERSION,
            path,
            body: self,
        })
    }

    /// The summary, or the error.
    pub fn into_result(self) -> crate::error::Result<ReadSummary> {
        match (self.failure, self.summary) {
            (Some(e), _) => Err(e),
            (None, Some(s)) => Ok(s),
            (None, None) => unreachable!("a verification ends with a summary or a failure"),
        }
    }
}

impl Default for Verification {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(key: &str, text: &str) -> String {
        let v: serde_json::Map<String, Value> = fact_json(key, text).into_iter().collect();
        Value::Object(v).to_string()
    }

    #[test]
    fn facts_are_typed() {
        assert_eq!(json("block size", "4096"), r#"{"block_size":4096}"#);
        assert_eq!(json("$MFT at cluster", "4"), r#"{"mft_at_cluster":4}"#);
        assert_eq!(
            json("free blocks", "6043 (superblock)"),
            r#"{"free_blocks":6043}"#
        );
        assert_eq!(
            json("FATs", "2 of 1009 sectors"),
            r#"{"fat_sectors":1009,"fats":2}"#
        );
        assert_eq!(
            json("features", "compat 0x3c, incompat 0x2c2, ro_compat 0x46b"),
            r#"{"features":{"compat":60,"incompat":706,"ro_compat":1131}}"#
        );
        assert_eq!(
            json("used blocks", "1660 in the bitmap (1664 in the header)"),
            r#"{"header_used_blocks":1664,"used_blocks":1660}"#
        );
        assert_eq!(
            json("checksum", "XXH64, every 7 blocks, not reseeded"),
            r#"{"blocks_per_checksum":7,"checksum":"XXH64","reseed":false}"#
        );
        assert_eq!(
            json("created on", "a 64-bit platform"),
            r#"{"platform_bits":64}"#
        );
        // Names stay strings, even when they look like numbers.
        assert_eq!(json("label", "2024"), r#"{"label":"2024"}"#);
        assert_eq!(
            json("serial number", "0000000000000123"),
            r#"{"serial_number":"0000000000000123"}"#
        );
        // A text not of its key's form is kept whole.
        assert_eq!(json("blocks", "many"), r#"{"blocks":"many"}"#);
        assert_eq!(json("free blocks", "6043"), r#"{"free_blocks":"6043"}"#);
    }

    #[test]
    fn snake_case_keys() {
        assert_eq!(snake("clusters used in $Bitmap"), "clusters_used_in_bitmap");
        assert_eq!(snake("NTFS version"), "ntfs_version");
        assert_eq!(snake("$MFTMirr at cluster"), "mftmirr_at_cluster");
    }
}
