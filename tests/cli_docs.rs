//! `fsimg man` and `fsimg completions`: the manual page in docs/man/ is
//! the one the binary prints, it names every option, command, example,
//! exit status and image format, groff renders it without a warning, and
//! the completion scripts load in their shells.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{have, run_ok, run_usage_err};

const REGENERATE: &str = "cargo run --release -- man > docs/man/fsimg.1";

fn man_page() -> String {
    String::from_utf8(run_ok(&["man"]).stdout).expect("the page is UTF-8")
}

/// Whether `tool` is on PATH, for the shells CI need not have: absent, the
/// check is skipped even with FSIMG_REQUIRE_TOOLS=1.
fn optional_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        eprintln!("skipping a check: {tool} is not installed");
    }
    found
}

#[test]
fn the_man_page_in_docs_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/man/fsimg.1");
    let kept = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} cannot be read ({e}); generate it with `{REGENERATE}`",
            path.display()
        )
    });
    let now = man_page();
    if kept != now {
        let line = kept
            .lines()
            .zip(now.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| kept.lines().count().min(now.lines().count()));
        panic!(
            "docs/man/fsimg.1 is not what `fsimg man` prints (first difference at line {}: \
             kept {:?}, printed {:?}); regenerate it with `{REGENERATE}`",
            line + 1,
            kept.lines().nth(line),
            now.lines().nth(line)
        );
    }
}

/// The `--long` options `fsimg [COMMAND] --help` lists.
fn long_options(help: &str) -> Vec<String> {
    let mut opts: Vec<String> = help
        .lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .filter_map(|l| {
            let i = l.find("--")?;
            let name: String = l[i + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect();
    opts.sort();
    opts.dedup();
    opts
}

#[test]
fn the_man_page_names_every_option_command_example_status_and_format() {
    let page = man_page();
    assert!(page.contains(".TH FSIMG 1 "), "{page}");
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "COMMANDS",
        "EXAMPLES",
        "\"EXIT STATUS\"",
        "\"IMAGE FORMATS\"",
        "\"SEE ALSO\"",
    ] {
        assert!(
            page.contains(&format!("\n.SH {section}\n")),
            "no {section} section"
        );
    }

    // Every option of the main command and of each command, in roff
    // (where `-` is written `\-`).
    let main_help = String::from_utf8(run_ok(&["--help"]).stdout).unwrap();
    let mut checked = 0;
    for command in ["info", "verify", "man", "completions"] {
        assert!(
            page.contains(&format!("\n.SS \"fsimg {command}\"\n")),
            "no section for fsimg {command}"
        );
        let help = String::from_utf8(run_ok(&[command, "--help"]).stdout).unwrap();
        for opt in long_options(&help) {
            let roff = format!("\\fB\\-\\-{}\\fR", opt.replace('-', "\\-"));
            assert!(page.contains(&roff), "fsimg {command} --{opt} missing");
            checked += 1;
        }
    }
    for opt in long_options(&main_help) {
        let roff = format!("\\fB\\-\\-{}\\fR", opt.replace('-', "\\-"));
        assert!(page.contains(&roff), "--{opt} missing");
        checked += 1;
    }
    assert!(checked > 25, "only {checked} options found in --help");

    // Every example --help shows, as a bold command.
    let examples: Vec<&str> = main_help
        .lines()
        .filter(|l| l.starts_with("  fsimg") || l.starts_with("  gunzip"))
        .collect();
    assert!(examples.len() >= 15, "{main_help}");
    for line in examples {
        let line = line.trim();
        let command = line
            .find("  ")
            .or_else(|| line.find(" ... "))
            .map_or(line, |i| &line[..i]);
        let roff = command
            .replace('-', "\\-")
            .replace(' ', "\\ ")
            .replace("|\\ ", "| ");
        assert!(page.contains(&format!("\\fB{roff}\\fR")), "{command}");
    }

    // The exit statuses main.rs and src/error.rs use.
    let status = &page[page.find(".SH \"EXIT STATUS\"").unwrap()..];
    for code in ["0", "1", "2", "3", "130"] {
        assert!(
            status.contains(&format!(".TP\n\\fB{code}\\fR\n")),
            "exit status {code}"
        );
    }
    let formats = &page[page.find(".SH \"IMAGE FORMATS\"").unwrap()..];
    for name in ["fsimg image", "ntfsclone", "partclone"] {
        assert!(
            formats.contains(&format!(".TP\n\\fB{name}\\fR\n")),
            "image format {name}"
        );
    }
}

#[test]
fn the_man_page_renders_without_warnings() {
    if !have("groff") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("fsimg.1");
    fs::write(&page, man_page()).unwrap();
    // -ww: every warning; the narrowest width a person might read it at,
    // and the default.
    for width in ["60n", "78n"] {
        let out = Command::new("groff")
            // -P-cbou: plain text, without overstriking or escapes.
            .args(["-man", "-Tutf8", "-ww", "-P-cbou", &format!("-rLL={width}")])
            .arg(&page)
            .output()
            .expect("groff runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.is_empty(), "groff: {err}");
        let text = String::from_utf8_lossy(&out.stdout);
        for heading in ["EXIT STATUS", "IMAGE FORMATS", "EXAMPLES", "COMMANDS"] {
            assert!(text.contains(heading), "{heading} not rendered: {text}");
        }
        assert!(!text.contains("\\f") && !text.contains(".TP"), "{text}");
    }
    if optional_tool("man") {
        let out = Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "80")
            .output()
            .expect("man runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.is_empty(), "man -l: {err}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("EXIT STATUS") && text.contains("udp-sender(1)"),
            "{text}"
        );
    }
}

fn fsimg_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fsimg"))
}

/// Runs `script` in bash with $FSIMG set to the binary; returns stdout.
fn bash(script: &str) -> String {
    let out = Command::new("bash")
        .args(["-c", script])
        .env("FSIMG", fsimg_path())
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash -c {script:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_bash_completions_load_and_complete() {
    assert!(have("bash"));
    let spec = bash("source <(\"$FSIMG\" completions bash); complete -p fsimg");
    assert!(
        spec.trim_end().ends_with(" fsimg") && spec.contains("-F _fsimg"),
        "{spec}"
    );
    // What a person gets pressing Tab after each line.
    let complete = |line: &str| -> Vec<String> {
        let script = format!(
            "source <(\"$FSIMG\" completions bash)
             COMP_LINE={line:?}; COMP_POINT=${{#COMP_LINE}}
             read -ra COMP_WORDS <<< \"$COMP_LINE\"
             [[ $COMP_LINE == *' ' ]] && COMP_WORDS+=('')
             COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
             _fsimg fsimg \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        bash(&script)
            .lines()
            .map(|l| l.trim().to_string())
            .collect()
    };
    assert_eq!(complete("fsimg ver"), ["verify"]);
    let values = |line: &str| -> Vec<String> {
        complete(line)
            .into_iter()
            .filter(|c| !c.starts_with('-'))
            .collect()
    };
    assert_eq!(values("fsimg completions "), ["bash", "zsh", "fish"]);
    assert_eq!(
        values("fsimg --fs-type "),
        ["auto", "ext", "fat", "ntfs", "exfat", "xfs", "btrfs", "raw"]
    );
    let opts = complete("fsimg --");
    for o in ["--save-image", "--restore-image", "--rescue", "--partition"] {
        assert!(opts.iter().any(|c| c == o), "{o} not offered: {opts:?}");
    }
    let cmds = complete("fsimg ");
    for c in ["info", "verify", "man", "completions"] {
        assert!(cmds.iter().any(|x| x == c), "{c} not offered: {cmds:?}");
    }
}

#[test]
fn the_zsh_and_fish_completions_parse() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [("zsh", "#compdef fsimg"), ("fish", "complete -c fsimg")] {
        let script = String::from_utf8(run_ok(&["completions", shell]).stdout).unwrap();
        assert!(script.contains(marker), "{shell}: {script}");
        for word in ["verify", "restore-image", "ntfsclone"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
        // zsh and fish are not required in CI: checked where installed.
        if optional_tool(shell) {
            let path = dir.path().join(format!("fsimg.{shell}"));
            fs::write(&path, &script).unwrap();
            let out = Command::new(shell).arg("-n").arg(&path).output().unwrap();
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "{shell} -n: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    if optional_tool("fish") {
        // Loaded, fish offers the commands.
        let out = Command::new("fish")
            .args([
                "--no-config",
                "-c",
                "\"$FSIMG\" completions fish | source; complete -C 'fsimg ver'",
            ])
            .env("FSIMG", fsimg_path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.lines().any(|l| l.starts_with("verify")), "{text}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let err = run_usage_err(&["completions", "tcsh"], "invalid value 'tcsh'");
    assert!(err.contains("bash, zsh, fish"), "{err}");
    run_usage_err(&["completions"], "<SHELL>");
    run_usage_err(&["man", "extra"], "unexpected argument");
}
