//! `fsimg man` and `fsimg completions`: the manual page and the shell
//! completion scripts, generated from the clap definitions in main.rs so
//! that they never disagree with `--help`.
//!
//! The repository keeps a generated copy of the page in docs/man/fsimg.1
//! (tests/cli_docs.rs checks it is current); after changing a flag or its
//! help, regenerate it with `cargo run --release -- man > docs/man/fsimg.1`.

use std::io::{self, Write};

use clap::ValueEnum;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

/// The shells `fsimg completions` writes a script for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// bash (bash-completion)
    Bash,
    /// zsh (a `_fsimg` file in a directory on $fpath)
    Zsh,
    /// fish
    Fish,
}

/// The completion script for `shell`.
pub fn completions(shell: Shell, mut cmd: clap::Command) -> Vec<u8> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    script
}

/// Writes `text` to standard output. A reader that closes the pipe early
/// (`fsimg man | head`) has all it wanted: that is not an error.
pub fn print(text: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// More of the DESCRIPTION than the one-line `about`.
const DESCRIPTION: &[&str] = &[
    "Where dd copies every block of a volume, fsimg reads the filesystem's own \
     allocation map and copies only the clusters in use: to a sparse file, onto \
     a device, to standard output (unused space as zeros), or into its own \
     streamable, checksummed, optionally compressed image format.",
    "It reads ext2, ext3 and ext4, FAT12, FAT16 and FAT32, and NTFS. Any other \
     volume is copied whole with --fs-type raw. Given a whole disk with an MBR \
     or a GPT, it copies the partition tables, the boot code before the first \
     partition and the used blocks of every partition, and restores onto a disk \
     of the same size, a larger one, or a smaller one the partitions fit.",
    "With -r it restores an image, from a file or standard input: its own, \
     ntfsclone's or partclone's, recognised from the first bytes. --rescue \
     copies a failing disk past its read errors; -m copies only the metadata.",
];

/// The EXIT STATUS section (src/error.rs maps errors to these).
const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "Success. For verify: the image was read through and every check it \
         allows passed.",
    ),
    (
        "1",
        "An error: the message on standard error names it. For verify: the \
         image is damaged, truncated or unreadable.",
    ),
    (
        "2",
        "A bad command line: an unknown option, a missing or inconsistent \
         argument.",
    ),
    (
        "3",
        "With --rescue: the copy finished, but some sectors could not be read; \
         they hold the BadSectoR marker and are listed on standard error.",
    ),
    (
        "130",
        "Interrupted (Ctrl-C); the output is not left looking complete.",
    ),
];

/// The IMAGE FORMATS section.
const IMAGE_FORMATS: &[(&str, &str)] = &[
    (
        "fsimg image",
        "fsimg's own format, written by -s and read by -r, verify and info: \
         a header, records of used clusters each with its checksum, optionally \
         zstd-compressed (-z), and a trailer that catches truncation. It can be \
         written to and read from a pipe. It holds a volume or a whole disk. \
         The format is described byte by byte in formats/fsimg-image.md in \
         fsimg's source.",
    ),
    (
        "ntfsclone",
        "ntfsclone's special image, versions 10.0 and 10.1, read by -r, \
         verify and info. With -s --format ntfsclone fsimg writes version 10.1 \
         of an NTFS volume, which ntfsclone --restore-image restores. It has no \
         checksums: verify checks its record stream and length.",
    ),
    (
        "partclone",
        "partclone's image, formats 0001 and 0002, of any filesystem \
         (Clonezilla's *-ptcl-img files included), read by -r, verify and \
         info. Its header, bitmap and data checksums (CRC32, XXH64, XXH128) \
         are checked while reading.",
    ),
    (
        "raw volume or disk",
        "With -o or -O and no -s, the output is the volume or disk itself \
         (sparse, or zero-filled on standard output), which mount, fsck, \
         losetup and every other tool read.",
    ),
];

const SEE_ALSO: &[(&str, &str)] = &[
    ("ntfsclone", "8"),
    ("partclone", "8"),
    ("e2image", "8"),
    ("ddrescue", "1"),
    ("udp-sender", "1"),
    ("udp-receiver", "1"),
];

/// The manual page fsimg.1 (roff) for `cmd`.
pub fn man(cmd: clap::Command) -> Vec<u8> {
    let mut page = Vec::new();
    write_man(cmd, &mut page).expect("writing to a Vec cannot fail");
    page
}

fn write_man(cmd: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = cmd
        .disable_help_subcommand(true)
        .subcommand_value_name("COMMAND");
    cmd.build();
    let page = Man::new(cmd.clone()).title("FSIMG");
    // Every command has -h, and the global options: the page lists them
    // once, under OPTIONS.
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| {
            let shared: Vec<String> = s
                .get_arguments()
                .filter(|a| a.is_global_set() || a.get_id() == "help")
                .map(|a| a.get_id().to_string())
                .collect();
            shared
                .iter()
                .fold(s.clone(), |s, id| s.mut_arg(id, |a| a.hide(true)))
        })
        .collect();
    // Every rendering starts with roff's apostrophe preamble (what an empty
    // page renders to); the page keeps the title's.
    let preamble = Roff::new().render().into_bytes();
    let body = |render: &dyn Fn(&mut dyn Write) -> io::Result<()>| -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        render(&mut v)?;
        Ok(v.strip_prefix(&preamble[..]).unwrap_or(&v).to_vec())
    };
    let mut title = Vec::new();
    page.render_title(&mut title)?;

    out.write_all(&title)?;
    out.write_all(&body(&|w| page.render_name_section(w))?)?;
    // Option names are not hyphenated (`--restore-im-age` would mislead)
    // and the lines are not justified.
    out.write_all(b".SH SYNOPSIS\n.nh\n.ad l\n")?;
    out.write_all(&without_heading(&body(&|w| {
        page.render_synopsis_section(w)
    })?))?;
    for sub in &subs {
        let sub_page = Man::new(sub.clone());
        out.write_all(b".br\n")?;
        out.write_all(&without_heading(&body(&|w| {
            sub_page.render_synopsis_section(w)
        })?))?;
    }
    out.write_all(b".ad\n.hy\n")?;
    // NAME has the one-line about; DESCRIPTION says more.
    let mut desc = Roff::new();
    desc.control("SH", ["DESCRIPTION"]);
    for (i, para) in DESCRIPTION.iter().enumerate() {
        if i > 0 {
            desc.control("PP", []);
        }
        desc.text([roman(*para)]);
    }
    out.write_all(&body(&|w| desc.to_writer(w))?)?;
    out.write_all(&body(&|w| page.render_options_section(w))?)?;

    out.write_all(b".SH COMMANDS\n")?;
    for sub in &subs {
        let bin = sub.get_bin_name().unwrap_or(sub.get_name()).to_string();
        let sub_page = Man::new(sub.clone());
        let mut head = Roff::new();
        head.control("SS", [bin.as_str()]);
        out.write_all(&body(&|w| head.to_writer(w))?)?;
        out.write_all(&without_heading(&body(&|w| {
            sub_page.render_synopsis_section(w)
        })?))?;
        out.write_all(b".PP\n")?;
        out.write_all(&without_heading(&body(&|w| {
            sub_page.render_description_section(w)
        })?))?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            out.write_all(&without_heading(&body(&|w| {
                sub_page.render_options_section(w)
            })?))?;
        }
    }

    out.write_all(examples(&cmd).as_bytes())?;
    let mut rest = Roff::new();
    rest.control("SH", ["EXIT STATUS"]);
    for (code, what) in EXIT_STATUS {
        rest.control("TP", []);
        rest.text([bold(*code)]);
        rest.text([roman(*what)]);
    }
    rest.control("SH", ["IMAGE FORMATS"]);
    for (name, what) in IMAGE_FORMATS {
        rest.control("TP", []);
        rest.text([bold(*name)]);
        rest.text([roman(*what)]);
    }
    rest.control("SH", ["SEE ALSO"]);
    let mut refs = Vec::new();
    for (i, (name, section)) in SEE_ALSO.iter().enumerate() {
        refs.push(bold(*name));
        let sep = if i + 1 == SEE_ALSO.len() { "" } else { "," };
        refs.push(roman(format!("({section}){sep} ")));
    }
    rest.text(refs);
    rest.control("PP", []);
    rest.text([roman(
        "README.md in fsimg's source has more examples: whole disks, rescue \
         runs with a ddrescue mapfile, metadata-only copies, and fleets \
         (ssh pipes, udpcast multicast, object storage).",
    )]);
    out.write_all(&body(&|w| rest.to_writer(w))?)?;
    if let Some(v) = cmd.get_version() {
        let mut ver = Roff::new();
        ver.control("SH", ["VERSION"]);
        ver.text([roman(format!("fsimg {v}"))]);
        out.write_all(&body(&|w| ver.to_writer(w))?)?;
    }
    out.flush()
}

/// A rendered section without its `.SH` line (for the parts of a
/// subcommand, which go under its `.SS`).
fn without_heading(roff: &[u8]) -> Vec<u8> {
    if roff.starts_with(b".SH ") {
        let nl = roff
            .iter()
            .position(|&b| b == b'\n')
            .map_or(roff.len(), |p| p + 1);
        roff[nl..].to_vec()
    } else {
        roff.to_vec()
    }
}

/// The EXAMPLES section, from the examples `--help` prints after the
/// options: a heading line becomes a paragraph, each indented line an
/// example (its command in bold, broken only after a `|`, then what it
/// does if the line says), and the exit-status paragraph is left to EXIT
/// STATUS.
fn examples(cmd: &clap::Command) -> String {
    let Some(text) = cmd.get_after_long_help().or(cmd.get_after_help()) else {
        return String::new();
    };
    // No hyphenation and no justification: the commands are to be typed
    // as they are.
    let mut roff = String::from(".SH EXAMPLES\n.nh\n.ad l\n");
    let text = text.to_string();
    for para in text.split("\n\n") {
        if para.trim_start().starts_with("Exit status:") {
            continue;
        }
        for line in para.lines() {
            if line.trim().is_empty() {
                continue;
            }
            if !line.starts_with(' ') {
                if line.trim() != "Examples:" {
                    roff.push_str(&format!(".PP\n\\&{}\n", escape(line.trim())));
                }
                continue;
            }
            let line = line.trim();
            // "COMMAND  what it does": the description follows two or more
            // spaces, or is a continuation starting with " ... ".
            let (command, what) = match line.find("  ").or_else(|| line.find(" ... ")) {
                Some(i) => (line[..i].trim_end(), Some(line[i..].trim_start())),
                None => (line, None),
            };
            roff.push_str(&format!(
                ".TP\n\\fB{}\\fR\n",
                // A long pipeline may break after a `|`, nowhere else.
                escape(command).replace(' ', "\\ ").replace("|\\ ", "| ")
            ));
            if let Some(what) = what {
                roff.push_str(&format!("\\&{}\n", escape(what)));
            }
        }
    }
    roff.push_str(".ad\n.hy\n");
    roff
}

/// `text` as roff text: backslashes, hyphens (which would otherwise be
/// typeset as hyphens, not minus signs) and apostrophes escaped.
fn escape(text: &str) -> String {
    text.replace('\\', "\\e")
        .replace('-', "\\-")
        .replace('\'', "\\*(Aq")
}
