//! The `fsimg` command: parses flags into a plan and runs it.

mod docs;
mod progress;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use fsimg::error::Error;
use fsimg::foreign::ReadOptions;
use fsimg::fs::FsChoice;
use fsimg::ops::human;
use fsimg::ops::{self, Checks, DiskOptions, Output, ReadSummary, SaveFormat};
use fsimg::report::Report;
use progress::ProgressArg;

const EXAMPLES: &str = "\
Examples:
  fsimg -o clone.img /dev/sdb1              sparse clone: only used blocks written
  fsimg -O /dev/sdc1 /dev/sdb1              clone onto an existing partition
  fsimg -o - /dev/sdb1 | gzip -c > sdb1.gz  whole volume to stdout, unused space as zeros
  fsimg info /dev/sdb1                      filesystem, block size, used blocks, state
  fsimg -s -o - /dev/sda1 | gzip -c > sda1.img.gz
  gunzip -c sda1.img.gz | fsimg -r -O /dev/sda1 -
  fsimg -s -z -o sda1.fsimg /dev/sda1       special image, zstd-compressed on every core
  fsimg -r -o restored.img sda1.fsimg       restore to a new sparse file
  fsimg verify sda1.fsimg                   check every checksum and the trailer
  fsimg -r -O /dev/sda2 backup.ntfsclone    restore an ntfsclone image
  gunzip -c sda2.ntfs-ptcl-img.gz | fsimg -r -O /dev/sda2 -    ... or a partclone image
  fsimg -s --format ntfsclone -o - /dev/sda2 | ntfsclone -r -O /dev/sdb2 -

Whole disks (MBR or GPT: tables, boot gap, used blocks of each partition):
  fsimg info /dev/mmcblk0                   table, partitions, filesystems, used, offsets
  fsimg -o sd.img /dev/mmcblk0              sparse disk image, usable with losetup -P
  fsimg -s -z -o sd.fsimg /dev/mmcblk0      one image file for the whole disk
  fsimg -r -O /dev/sdc sd.fsimg             onto a disk of any size the partitions fit
  fsimg -r -O /dev/sdc --grow-last sd.fsimg ... with the last partition filling it
  fsimg -r -O /dev/sdc2 --partition 2 sd.fsimg   one partition out of a disk image

Images mounted read-only (FUSE), without restoring them:
  fsimg mount sd.fsimg /mnt/sd              /mnt/sd holds disk, p1, p2 (a volume image: volume)
  mount -o loop,ro /mnt/sd/p2 /mnt/root     the kernel mounts a partition from it
  fsimg umount /mnt/sd                      unmount (after the loop mounts)

Exit status: 0 success, 1 error, 2 bad command line, 3 finished with
unreadable sectors (--rescue), 130 interrupted.";

const MOUNT_EXAMPLES: &str = "\
Examples:
  fsimg mount sd.fsimg /mnt/sd              returns once mounted: /mnt/sd holds disk p1 p2
  mount -o loop,ro /mnt/sd/p2 /mnt/root     the root partition, no offset arithmetic
  e2fsck -fn /mnt/sd/p2                     check the backup without restoring it
  fsimg mount win.ntfsclone /mnt/win && ntfs-3g -o ro /mnt/win/volume /mnt/c
  umount /mnt/root; fsimg umount /mnt/sd    loop mounts first, then the image";

/// zstd level of `-z` without a level, and of metadata images.
const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Filesystem-aware disk imager: copies only the clusters a filesystem uses.
#[derive(Parser, Debug)]
#[command(
    name = "fsimg",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Write to a new FILE (refuses an existing one); `-` is standard output.
    #[arg(short = 'o', long, value_name = "FILE", conflicts_with = "overwrite")]
    output: Option<PathBuf>,

    /// Write to FILE or device, which may exist: only used clusters are written.
    #[arg(short = 'O', long, value_name = "FILE")]
    overwrite: Option<PathBuf>,

    /// Copy even if the filesystem is not clean or the source is mounted.
    #[arg(short = 'f', long)]
    force: bool,

    /// Copy even if the filesystem's counts disagree with its bitmaps.
    #[arg(long)]
    ignore_fs_check: bool,

    /// Go on past read errors: each unreadable sector is written as
    /// "BadSectoR\0" then "?", and every bad range is listed (exit status 3).
    #[arg(long, conflicts_with = "restore_image")]
    rescue: bool,

    /// Record the rescue in FILE (GNU ddrescue's mapfile format); a rerun
    /// with the same FILE and output skips what was copied.
    #[arg(
        long,
        value_name = "FILE",
        requires = "rescue",
        conflicts_with = "save_image"
    )]
    mapfile: Option<PathBuf>,

    /// Read the unreadable ranges again, up to N more passes.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        requires = "rescue",
        conflicts_with = "save_image"
    )]
    retries: u32,

    /// Copy only the filesystem's metadata (ext2/3/4, FAT, exFAT, NTFS,
    /// btrfs): the copy
    /// mounts and passes fsck, lists every file with its size, and every
    /// file reads as zeros.
    ///
    /// What such a copy still reveals: every file and directory name and
    /// symlink target, sizes, owners, modes, timestamps, extended attributes
    /// (ACLs, security labels, user.* values), names left in directory blocks
    /// by deleted files, the volume label and boot code, and a journal that
    /// needs recovery (copied whole, with -f). Wiped: data kept inside inodes
    /// (ext inline data, NTFS resident data), a clean ext journal's old log,
    /// and NTFS timestamps and unused record space. Names are not
    /// scrambled: ext's indexed directories place each entry by a hash of
    /// its name and metadata_csum checksums every directory block, so new
    /// names would fail e2fsck (as e2image -s images do). See README.md.
    ///
    /// btrfs tree blocks are copied as they are (their checksums cover
    /// them): files small enough to be stored inline keep their contents.
    /// XFS is refused (its metadata is found through every inode's extent
    /// tree): use xfs_metadump.
    #[arg(short = 'm', long, conflicts_with_all = ["restore_image", "rescue"])]
    metadata: bool,

    /// With -m: keep timestamps (by default NTFS timestamps are set to 1970).
    #[arg(short = 't', long, requires = "metadata")]
    preserve_timestamps: bool,

    /// No progress and no summary.
    #[arg(short = 'q', long)]
    quiet: bool,

    /// How progress is shown on standard error: `auto` (the bar on a
    /// terminal, nothing otherwise), `bar`, `plain` (lines for logs), `json`
    /// (one object per line, for frontends: docs/json.md), `none`.
    #[arg(long, value_enum, value_name = "HOW", default_value_t = ProgressArg::Auto, global = true)]
    progress: ProgressArg,

    /// Write the special image format instead of a volume.
    #[arg(short = 's', long, conflicts_with = "restore_image")]
    save_image: bool,

    /// SOURCE is an image (`-` for standard input) to restore: fsimg's own,
    /// ntfsclone's or partclone's, recognised from its first bytes.
    #[arg(short = 'r', long)]
    restore_image: bool,

    /// With -r: restore a partclone image whose checksums do not match,
    /// warning about each mismatch (partclone's -i/--ignore_crc).
    #[arg(
        long,
        visible_alias = "ignore-crc",
        alias = "ignore_crc",
        requires = "restore_image"
    )]
    ignore_checksums: bool,

    /// With -s: the image format to write. `ntfsclone` writes the
    /// ntfsclone 10.1 special image (NTFS volumes only), which `ntfsclone
    /// --restore-image` restores.
    #[arg(long, value_enum, default_value_t = FormatArg::Fsimg, requires = "save_image")]
    format: FormatArg,

    /// Compress the image's records with zstd at LEVEL (1-22; 3 if no LEVEL).
    /// Metadata images (-m -s) are compressed at level 3 without it.
    #[arg(short = 'z', long = "compress", value_name = "LEVEL", num_args = 0..=1,
          default_missing_value = "3", value_parser = clap::value_parser!(i32).range(1..=22),
          requires = "save_image")]
    compress: Option<i32>,

    /// Threads compressing or decompressing records (default: every core).
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,

    /// Filesystem of the source.
    #[arg(long, value_enum, default_value_t = FsTypeArg::Auto)]
    fs_type: FsTypeArg,

    /// Take partition N of a disk (a device, a disk image, or with -r an
    /// fsimg image of a whole disk) as the volume to copy or restore.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    partition: Option<u32>,

    /// Logical sector size of a disk image file (a device's is asked of the
    /// kernel; a file's is found from its GPT, else 512).
    #[arg(long, value_name = "BYTES", value_parser = sector_size)]
    sector_size: Option<u32>,

    /// Writing a whole disk onto a larger one: extend the partition that
    /// ends last to the end of the target (then grow its filesystem with
    /// the command fsimg prints).
    #[arg(long, conflicts_with_all = ["save_image", "partition"])]
    grow_last: bool,

    /// The volume to copy (a block device or a volume image), or with -r the
    /// image to restore (`-` for standard input).
    #[arg(value_name = "SOURCE")]
    source: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe a volume (filesystem, sizes, used clusters, state) or an
    /// image (format, writer, filesystem, sizes).
    Info {
        /// Filesystem of the source.
        #[arg(long, value_enum, default_value_t = FsTypeArg::Auto)]
        fs_type: FsTypeArg,
        /// Describe partition N of a disk or of an image of a whole disk.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        partition: Option<u32>,
        /// Logical sector size of a disk image file.
        #[arg(long, value_name = "BYTES", value_parser = sector_size)]
        sector_size: Option<u32>,
        /// Print one JSON document instead of text: every field, numbers as
        /// numbers (docs/json.md).
        #[arg(long)]
        json: bool,
        /// A block device, a volume image, or an fsimg, ntfsclone or
        /// partclone image (`-` for an image on standard input).
        path: PathBuf,
    },
    /// Read an image through and check all its format allows; exit 0 only
    /// if all is well.
    ///
    /// fsimg images: every checksum, the record order and the trailer.
    /// partclone images: the header, the bitmap and the data checksums.
    /// ntfsclone images (which have no checksums): the record stream and its
    /// length. The output says what could not be checked.
    Verify {
        /// Threads decompressing and checking (default: every core).
        #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// Go on past partclone checksum mismatches and list every one (the
        /// verdict is still a failure).
        #[arg(long, visible_alias = "ignore-crc", alias = "ignore_crc")]
        ignore_checksums: bool,
        /// Print one JSON document on standard output, on a failure too:
        /// the result, what was checked and what was not (docs/json.md).
        #[arg(long)]
        json: bool,
        /// The image (`-` for standard input).
        path: PathBuf,
    },
    /// List directories inside a volume or image, like `ls -ln` (times in
    /// UTC): type and mode, links, owner, group, size, mtime, name.
    ///
    /// No restore, no mount, no root: the image is read where the files
    /// are (fsimg images through their index; ntfsclone and partclone
    /// images; raw volumes, sparse clones, devices and disk images).
    Ls {
        /// Recurse into subdirectories.
        #[arg(short = 'R', long)]
        recursive: bool,
        #[command(flatten)]
        volume: VolumeArgs,
        /// Paths inside the volume (default: the root). NTFS streams are
        /// listed after their file as `NAME:STREAM`.
        #[arg(value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Write files inside a volume or image to standard output.
    ///
    /// Symlinks are followed inside the volume; `PATH:STREAM` reads an NTFS
    /// named stream. Only the parts of the image that hold the file are
    /// read.
    Cat {
        /// Say on standard error how many image records were read.
        #[arg(long)]
        stats: bool,
        #[command(flatten)]
        volume: VolumeArgs,
        /// Files inside the volume.
        #[arg(value_name = "PATH", required = true)]
        paths: Vec<String>,
    },
    /// Copy files and directories out of a volume or image into a
    /// directory, with their times and modes (owners too as root), hard
    /// links, symlinks and holes.
    ///
    /// `PATH` is extracted as DIR/NAME with all below it; `/` puts the
    /// whole volume into DIR. Nothing is written outside DIR. A file that
    /// cannot be read is named and skipped; the exit status is then 1.
    Extract {
        /// The directory to extract into (created if missing).
        #[arg(
            short = 'C',
            long = "directory",
            value_name = "DIR",
            default_value = "."
        )]
        directory: PathBuf,
        /// Replace existing files and symlinks (never directories).
        #[arg(long)]
        overwrite: bool,
        /// As root, leave extracted files owned by root instead of their
        /// owners in the volume.
        #[arg(long)]
        no_owners: bool,
        /// No summary.
        #[arg(short = 'q', long)]
        quiet: bool,
        #[command(flatten)]
        volume: VolumeArgs,
        /// Paths inside the volume (default: `/`, everything).
        #[arg(value_name = "PATH")]
        paths: Vec<String>,
    },
    /// Mount an image read-only, without restoring it: its volume, or a
    /// disk and each partition, as files in DIR (FUSE).
    ///
    /// DIR shows `volume` for an image of one volume; `disk` and `p1`..`pN`
    /// (numbered as in the partition table) for an image of a whole disk
    /// or a disk image. They are read-only files of the exact sizes,
    /// served from the image (unused space reads as zeros), for the
    /// kernel's own drivers to use: `mount -o loop,ro DIR/p2 /mnt`,
    /// `e2fsck -fn DIR/volume`, `ntfs-3g -o ro DIR/volume /mnt`. Any image
    /// fsimg reads works: fsimg's (plain or zstd), ntfsclone's,
    /// partclone's, raw volumes and sparse clones, disks and disk images.
    ///
    /// fsimg returns once the mount is ready and serves it in the
    /// background; `fsimg umount DIR` (or umount, fusermount3 -u), SIGTERM
    /// or SIGINT unmount it. As root the mount is made with allow_other,
    /// so that root's loop devices can read it; other users do not get in.
    /// A user other than root needs fusermount3 (package fuse3). A record
    /// that fails its checksum makes the reads of its bytes fail (EIO),
    /// logged once (to standard error with -f, else to syslog); the rest
    /// is served.
    #[command(after_help = MOUNT_EXAMPLES)]
    Mount {
        /// Stay in the foreground (print the reads served when unmounted).
        #[arg(short = 'f', long)]
        foreground: bool,
        /// Memory for decoded image records (fsimg images): bytes, or a
        /// number with K, M or G. At least 4M.
        #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = ops::mount::parse_size)]
        cache_size: u64,
        /// Say nothing once mounted.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Serve as the background server of an `fsimg mount` (internal).
        #[arg(long, hide = true)]
        server: bool,
        /// An fsimg, ntfsclone or partclone image, a volume, a sparse
        /// clone, a disk or a disk image; seekable (not a pipe).
        #[arg(value_name = "IMAGE")]
        image: PathBuf,
        /// An empty directory to mount it on.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Unmount an `fsimg mount` (root: umount(2); others: fusermount3 -u).
    Umount {
        /// Where it is mounted.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print the manual page, fsimg.1 (roff), to standard output.
    ///
    /// `fsimg man | man -l -` shows it; `fsimg man > fsimg.1` saves it.
    Man,
    /// Print a shell completion script (bash, zsh or fish) to standard
    /// output.
    ///
    /// Install it with, for instance: `fsimg completions bash | sudo tee
    /// /usr/share/bash-completion/completions/fsimg`; zsh: `_fsimg` in a
    /// directory on $fpath; fish: ~/.config/fish/completions/fsimg.fish.
    Completions {
        /// The shell the script is for.
        #[arg(value_enum)]
        shell: docs::Shell,
    },
}

/// Where the files are: an image or volume, and which partition.
#[derive(clap::Args, Debug)]
struct VolumeArgs {
    /// Filesystem of the volume (ext, fat or ntfs).
    #[arg(long, value_enum, default_value_t = FsTypeArg::Auto)]
    fs_type: FsTypeArg,
    /// Partition N of a disk image or disk.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    partition: Option<u32>,
    /// An fsimg, ntfsclone or partclone image, a volume, a sparse clone, a
    /// block device, or (with --partition) a disk or disk image. It must be
    /// seekable: not a pipe.
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// fsimg's own format: checksummed, indexed, optionally compressed.
    Fsimg,
    /// ntfsclone's special image, version 10.1 (NTFS only).
    Ntfsclone,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FsTypeArg {
    /// Recognise the filesystem.
    Auto,
    /// ext2, ext3 or ext4.
    Ext,
    /// FAT12, FAT16 or FAT32.
    Fat,
    /// NTFS.
    Ntfs,
    /// exFAT.
    Exfat,
    /// XFS (v4 and v5, internal log).
    Xfs,
    /// btrfs (one device).
    Btrfs,
    /// Copy every block (unknown filesystems, whole disks).
    Raw,
}

impl From<FsTypeArg> for FsChoice {
    fn from(a: FsTypeArg) -> Self {
        match a {
            FsTypeArg::Auto => FsChoice::Auto,
            FsTypeArg::Ext => FsChoice::Ext,
            FsTypeArg::Fat => FsChoice::Fat,
            FsTypeArg::Ntfs => FsChoice::Ntfs,
            FsTypeArg::Exfat => FsChoice::Exfat,
            FsTypeArg::Xfs => FsChoice::Xfs,
            FsTypeArg::Btrfs => FsChoice::Btrfs,
            FsTypeArg::Raw => FsChoice::Raw,
        }
    }
}

/// The summary's line for each partition of a disk.
fn print_parts(parts: &[ops::PartSummary]) {
    for p in parts {
        eprintln!(
            "fsimg: partition {}: {}, {} used of {}",
            p.number,
            p.fs,
            human(p.used_bytes),
            human(p.size)
        );
    }
}

/// `--sector-size`: 512, 1024, 2048 or 4096.
fn sector_size(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n @ (512 | 1024 | 2048 | 4096)) => Ok(n),
        _ => Err(format!(
            "{s} is not a sector size (512, 1024, 2048 or 4096)"
        )),
    }
}

fn thread_count(arg: Option<u16>) -> usize {
    arg.map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
}

/// Exit status of a rescue run that finished with unreadable sectors.
const EXIT_BAD_SECTORS: u8 = 3;

fn run(cli: Cli) -> Result<u8, Error> {
    let report = progress::Stderr::new(cli.progress, cli.quiet);
    report.set_phase(match &cli.command {
        Some(Command::Verify { .. }) => "verify",
        _ if cli.restore_image => "restore",
        _ if cli.save_image => "save",
        _ => "copy",
    });
    progress::set_left(left_behind(&cli));
    match cli.command {
        Some(Command::Info {
            fs_type,
            partition,
            sector_size,
            json,
            path,
        }) => {
            let dopts = DiskOptions {
                partition,
                sector_size,
                grow_last: false,
            };
            let info = ops::describe(&path, fs_type.into(), dopts)?;
            let mut out = std::io::stdout().lock();
            if json {
                let _ = out.write_all(info.to_json(&path.display().to_string()).as_bytes());
                return Ok(0);
            }
            let lines = info.lines();
            let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            for (k, v) in lines {
                let _ = writeln!(out, "{k:width$}  {v}");
            }
            return Ok(0);
        }
        Some(Command::Verify {
            threads,
            ignore_checksums,
            json,
            path,
        }) => {
            let read = ReadOptions { ignore_checksums };
            let v = ops::verification(&path, thread_count(threads), read, &report);
            report.clear_line();
            if json {
                let doc = v.to_json(&path.display().to_string());
                let _ = std::io::stdout().lock().write_all(doc.as_bytes());
            }
            let s = v.into_result()?;
            if json {
                return Ok(0);
            }
            match s {
                ReadSummary::Fsimg(s) => println!(
                    "{}: OK: {} records, {} used bytes of {}, {} bad ranges",
                    path.display(),
                    s.trailer.records,
                    s.trailer.used_bytes,
                    s.header.device_size,
                    s.trailer.bad_ranges.len()
                ),
                ReadSummary::Foreign(s) => {
                    println!(
                        "{}: OK: {} image of {}, {} used bytes of {}",
                        path.display(),
                        s.format,
                        s.fs,
                        s.used_bytes,
                        s.device_size
                    );
                    println!("  checked: {}", s.checked.what);
                    if let Some(u) = &s.checked.unchecked {
                        println!("  not checked: {u}");
                    }
                }
            }
            return Ok(0);
        }
        Some(Command::Ls {
            recursive,
            volume,
            paths,
        }) => {
            let (tree, _) = open_files(&volume, &report)?;
            let paths = if paths.is_empty() {
                vec!["/".to_string()]
            } else {
                paths
            };
            let opts = ops::ls::LsOptions { recursive };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let failures = ops::ls::ls(&*tree, &paths, opts, &mut out, &report);
            let flushed = out.flush();
            let failures = quiet_pipe(failures)?;
            quiet_pipe(flushed.map_err(|e| Error::io("cannot write", "standard output", e)))?;
            return Ok(u8::from(failures.unwrap_or(0) > 0));
        }
        Some(Command::Cat {
            stats,
            volume,
            paths,
        }) => {
            let (tree, vol) = open_files(&volume, &report)?;
            if vol.metadata_only {
                report.warn(METADATA_ONLY);
            }
            let mut out = std::io::stdout().lock();
            quiet_pipe(ops::cat::cat(&*tree, &paths, &mut out))?;
            if stats {
                eprintln!("fsimg: {}", records_read(&vol));
            }
            return Ok(0);
        }
        Some(Command::Extract {
            directory,
            overwrite,
            no_owners,
            quiet,
            volume,
            paths,
        }) => {
            let (tree, vol) = open_files(&volume, &report)?;
            if vol.metadata_only {
                report.warn(METADATA_ONLY);
            }
            let paths = if paths.is_empty() {
                vec!["/".to_string()]
            } else {
                paths
            };
            let prefetch = |at: u64, len: u64| vol.prefetch(at, len);
            let opts = ops::extract::ExtractOptions {
                overwrite,
                owners: !no_owners && ops::extract::is_root(),
                prefetch: vol
                    .image
                    .is_some()
                    .then_some(&prefetch as ops::extract::Prefetch),
            };
            let s = ops::extract::extract(&*tree, &paths, &directory, opts, &report)?;
            if !quiet && !cli.quiet {
                eprintln!(
                    "fsimg: extracted {} files, {} directories, {} symlinks, {} hard links, {} special files: {} bytes into {} ({})",
                    s.files,
                    s.dirs,
                    s.symlinks,
                    s.hard_links,
                    s.special,
                    s.bytes,
                    directory.display(),
                    records_read(&vol)
                );
            }
            if s.failures > 0 {
                eprintln!("fsimg: {} entries could not be extracted", s.failures);
                return Ok(1);
            }
            return Ok(0);
        }
        Some(Command::Mount {
            foreground,
            cache_size,
            quiet,
            server,
            image,
            dir,
        }) => {
            let opts = ops::mount::MountOptions {
                image,
                dir,
                cache_bytes: cache_size,
            };
            if server {
                let out = Box::new(std::io::stdout());
                return Ok(ops::mount::server(&opts, out).try_into().unwrap_or(1));
            }
            if !foreground {
                let exe = std::env::current_exe()
                    .map_err(|e| Error::io("cannot find", "the fsimg executable", e))?;
                let m = ops::mount::background(&opts, &exe, &report)?;
                if !quiet {
                    eprintln!("fsimg: {}", m.describe(true));
                }
                return Ok(0);
            }
            let report = std::sync::Arc::new(progress::Stderr::new(ProgressArg::None, quiet));
            let mut ready = |m: &ops::mount::Mounted| {
                if !quiet {
                    eprintln!("fsimg: {}", m.describe(false));
                }
                true
            };
            let stats = ops::mount::serve(&opts, report, &mut ready)?;
            if !quiet {
                eprintln!("fsimg: {}", ops::mount::describe_stats(&opts.dir, &stats));
            }
            return Ok(0);
        }
        Some(Command::Umount { dir }) => {
            ops::mount::umount(&dir)?;
            return Ok(0);
        }
        Some(Command::Man) => {
            let page = docs::man(<Cli as clap::CommandFactory>::command());
            docs::print(&page).map_err(|e| Error::io("cannot write", "standard output", e))?;
            return Ok(0);
        }
        Some(Command::Completions { shell }) => {
            let script = docs::completions(shell, <Cli as clap::CommandFactory>::command());
            docs::print(&script).map_err(|e| Error::io("cannot write", "standard output", e))?;
            return Ok(0);
        }
        None => {}
    }
    let source = cli
        .source
        .ok_or_else(|| Error::Usage("no SOURCE given (see fsimg --help)".into()))?;
    let output = match (cli.output, cli.overwrite) {
        (Some(p), None) if p.as_os_str() == "-" => Output::Stdout,
        (Some(p), None) => Output::New(p),
        (None, Some(p)) => Output::Overwrite(p),
        _ => {
            return Err(Error::Usage(
                "say where to write: -o FILE, -o - (standard output) or -O FILE_OR_DEVICE".into(),
            ));
        }
    };
    let checks = Checks {
        force: cli.force,
        ignore_fs_check: cli.ignore_fs_check,
        rescue: cli.rescue,
    };
    let dopts = DiskOptions {
        partition: cli.partition,
        sector_size: cli.sector_size,
        grow_last: cli.grow_last,
    };
    let threads = thread_count(cli.threads);
    let content = if cli.metadata {
        ops::Content::Metadata {
            keep_timestamps: cli.preserve_timestamps,
        }
    } else {
        ops::Content::Used
    };
    if cli.restore_image {
        let read = ReadOptions {
            ignore_checksums: cli.ignore_checksums,
        };
        let s = ops::restore(&source, &output, (threads, read, dopts), &report)?;
        report.clear_line();
        if !cli.quiet {
            if let ReadSummary::Fsimg(s) = &s {
                print_parts(&s.parts);
            }
            let from = match &s {
                ReadSummary::Fsimg(_) => String::new(),
                ReadSummary::Foreign(f) => format!(" ({} image)", f.format),
            };
            eprintln!(
                "fsimg: restored {} used of {}{from} in {:.1} s",
                human(s.used_bytes()),
                human(s.device_size()),
                report.start.elapsed().as_secs_f64()
            );
        }
        match &s {
            ReadSummary::Fsimg(s) if !s.trailer.bad_ranges.is_empty() => {
                report.warn(&format!(
                    "the image was made in rescue mode: {} unreadable range(s) hold the BadSectoR marker (fsimg info lists them)",
                    s.trailer.bad_ranges.len()
                ));
            }
            ReadSummary::Foreign(f) if f.checked.mismatches > 0 => {
                report.warn(&format!(
                    "{} checksum mismatch(es) ignored: the blocks they cover were restored corrupt",
                    f.checked.mismatches
                ));
            }
            _ => {}
        }
        return Ok(0);
    }
    let summary = if cli.save_image {
        let format = match cli.format {
            FormatArg::Fsimg => SaveFormat::Fsimg,
            FormatArg::Ntfsclone => SaveFormat::Ntfsclone,
        };
        if format == SaveFormat::Ntfsclone && cli.compress.is_some() {
            return Err(Error::Usage(
                "-z compresses fsimg images only; pipe an ntfsclone image through a compressor (fsimg -s --format ntfsclone -o - SRC | zstd)".into(),
            ));
        }
        // Metadata images are for sending: zstd by default, which removes
        // the zeros they keep (an ext journal, reserved GDT blocks, free
        // FAT entries) and shrinks them tenfold and more.
        let zstd_level = match (cli.compress, format, cli.metadata) {
            (None, SaveFormat::Fsimg, true) => Some(DEFAULT_ZSTD_LEVEL),
            (level, _, _) => level,
        };
        let opts = ops::SaveOptions {
            zstd_level,
            threads,
            content,
            format,
        };
        ops::save(
            &source,
            &output,
            (cli.fs_type.into(), checks, dopts),
            opts,
            &report,
        )?
    } else if cli.mapfile.is_some() || cli.retries > 0 {
        let resume = ops::Resume {
            mapfile: cli.mapfile,
            retries: cli.retries,
        };
        ops::rescue_clone(
            &source,
            &output,
            (cli.fs_type.into(), checks, dopts),
            &resume,
            &report,
        )?
    } else {
        ops::clone(
            &source,
            &output,
            (cli.fs_type.into(), checks, dopts),
            content,
            &report,
        )?
    };
    report.clear_line();
    if !cli.quiet {
        print_parts(&summary.parts);
        let secs = report.start.elapsed().as_secs_f64();
        eprintln!(
            "fsimg: {}: copied {} used of {} ({} of {} clusters of {} bytes) in {:.1} s, {}/s",
            summary.fs,
            human(summary.stats.bytes),
            human(summary.device_size),
            summary.used_clusters,
            summary.total_clusters,
            summary.cluster_size,
            secs,
            human((summary.stats.bytes as f64 / secs.max(1e-3)) as u64)
        );
    }
    let bad = &summary.stats.bad;
    if bad.is_empty() {
        return Ok(0);
    }
    // Always printed, even with -q: this is what was lost.
    let total: u64 = bad.iter().map(|e| e.len).sum();
    eprintln!(
        "fsimg: {} unreadable range(s), {} bytes, written as BadSectoR sectors:",
        bad.len(),
        total
    );
    for e in bad {
        eprintln!("  bytes {}..{} ({} bytes)", e.offset, e.end(), e.len);
    }
    Ok(EXIT_BAD_SECTORS)
}

/// What a run stopped by a signal leaves behind, for its message (README:
/// "Safety").
fn left_behind(cli: &Cli) -> String {
    if cli.command.is_some() {
        return String::new();
    }
    let resume = |p: &std::path::Path, how: &str| {
        format!(
            "{} and the mapfile are kept: rerun with {how} {} and the same --mapfile to resume",
            p.display(),
            p.display()
        )
    };
    match (&cli.output, &cli.overwrite) {
        (Some(p), None) if p.as_os_str() == "-" => {
            if cli.save_image {
                "the image on standard output has no trailer, so verify and -r refuse it".into()
            } else {
                "standard output got only part of the volume".into()
            }
        }
        (Some(p), None) if cli.mapfile.is_some() => resume(p, "-O"),
        (Some(p), None) => format!("{} is removed", p.display()),
        (None, Some(p)) if cli.mapfile.is_some() => resume(p, "-O"),
        (None, Some(p)) => match std::fs::metadata(p) {
            Err(_) => format!("{} is removed", p.display()),
            Ok(m) if cli.save_image && m.is_file() => format!("{} is removed", p.display()),
            Ok(_) if cli.save_image => format!(
                "the image on {} has no trailer, so verify and -r refuse it",
                p.display()
            ),
            Ok(_) => format!(
                "{} holds part of the copy: its first 64 KiB (superblock, boot sector, partition table) are written last and the old ones are zeroed, so it is not taken for a complete copy",
                p.display()
            ),
        },
        _ => String::new(),
    }
}

/// The warning for a metadata-only image read by `cat` or `extract`.
const METADATA_ONLY: &str =
    "this is a metadata-only image (-m): file contents were not saved and read as zeros";

/// Opens the files of the volume `v` names.
fn open_files(
    v: &VolumeArgs,
    report: &dyn Report,
) -> Result<(Box<dyn fsimg::files::Tree>, fsimg::access::Volume), Error> {
    let vol = fsimg::access::open_volume(&v.image, v.partition, report)?;
    let tree = fsimg::files::open(vol.source.clone(), v.fs_type.into())?;
    for w in tree.warnings() {
        report.warn(&w);
    }
    Ok((tree, vol))
}

/// "N image records read", or what else was read.
fn records_read(vol: &fsimg::access::Volume) -> String {
    match &vol.image {
        Some(img) => format!(
            "{} of the image's {} records read",
            img.records_decoded(),
            img.records()
        ),
        None => "read in place".to_string(),
    }
}

/// A closed standard output (`| head`) ends the run quietly, as it does
/// `ls` and `cat`: `Ok(None)`.
fn quiet_pipe<T>(r: Result<T, Error>) -> Result<Option<T>, Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // A mount handles its signals itself: they unmount it.
    if !matches!(cli.command, Some(Command::Mount { .. })) {
        progress::install_signals();
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // A run stopped by a signal may fail in other ways on its way
            // out (a write to a pipe whose reader was stopped too): the
            // signal is what the user needs to hear of.
            let (msg, code) = match progress::signal() {
                Some(sig) => progress::stopped(sig),
                None => (e.to_string(), e.exit_code() as u8),
            };
            let _ = writeln!(std::io::stderr(), "fsimg: {msg}");
            ExitCode::from(code)
        }
    }
}
