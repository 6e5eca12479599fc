//! What a run shows on standard error (a terminal bar, plain lines for
//! logs, or JSON lines for frontends: `--progress`), and the signals that
//! stop it.
//!
//! Why not indicatif: the three styles share one throttle, one rate and
//! ETA and the disk's partition names, and two of them are not bars
//! (JSON and plain lines). `progress` is called for every chunk from the
//! copy's hot loop, where this costs an uncontended lock and a clock
//! read, and four times a second one short write. indicatif would draw
//! only the bar, bring a ticker thread and several crates, and still
//! leave the other two styles to be written here.
//!
//! SIGINT, SIGTERM, SIGHUP and SIGPIPE set a flag the copier checks
//! between chunks, so a stopped run returns an error and its sinks remove
//! what it created. A run that cannot see the flag (blocked reading a
//! stalled pipe) is ended by a watchdog [`GRACE`] later, or at a second
//! SIGINT, SIGTERM or SIGHUP, after removing the same files.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use fsimg::ops::human;
use fsimg::report::Report;
use serde::Serialize;
use signal_hook::consts::{SIGHUP, SIGINT, SIGPIPE, SIGTERM};

/// `--progress`: how progress is shown on standard error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// The terminal bar when standard error is a terminal, nothing otherwise.
    Auto,
    /// A bar redrawn in place (percentage, rate, ETA, partition).
    Bar,
    /// One human line every 2 seconds and at the end, for logs.
    Plain,
    /// One JSON object per line, at most 4 a second and at the end.
    Json,
    /// No progress (the summary is still printed; -q removes both).
    None,
}

/// How progress is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Off,
    Bar,
    Plain,
    Json,
}

impl Style {
    /// Shortest time between two lines (the final one is always written).
    fn interval(self) -> Duration {
        match self {
            Style::Plain => Duration::from_secs(2),
            _ => Duration::from_millis(250),
        }
    }
}

/// The first signal received (0: none), set in the signal handler.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// After the first signal, how long a run has to stop by itself before the
/// watchdog removes its unfinished files and exits.
pub const GRACE: Duration = Duration::from_secs(2);

/// Whether a bar is on the screen, for [`abandon`] to clear it.
static BAR_ON: AtomicBool = AtomicBool::new(false);

/// What an interrupted run leaves, said when it stops (set by `main`).
static LEFT: OnceLock<String> = OnceLock::new();

/// Installs the handlers of SIGINT, SIGTERM, SIGHUP and SIGPIPE and the
/// watchdog. Call once, before anything is opened.
pub fn install_signals() {
    let signals = [SIGINT, SIGTERM, SIGHUP, SIGPIPE];
    for sig in signals {
        // SAFETY: the action only stores to an atomic, which is
        // async-signal-safe. If it cannot be installed the signal keeps its
        // default action: the run stops without cleanup, as any program's.
        let _ = unsafe {
            signal_hook::low_level::register(sig, move || {
                let _ = SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
            })
        };
    }
    let Ok(mut iter) = signal_hook::iterator::Signals::new(signals) else {
        return;
    };
    std::thread::spawn(move || {
        let mut stops = 0;
        let mut armed = false;
        for sig in iter.forever() {
            if sig != SIGPIPE {
                stops += 1;
            }
            if stops >= 2 {
                abandon();
            }
            if !armed {
                armed = true;
                std::thread::spawn(|| {
                    std::thread::sleep(GRACE);
                    abandon();
                });
            }
        }
    });
}

/// The signal that stopped the run, if any.
pub fn signal() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Sets what an interrupted run leaves (said in the message).
pub fn set_left(what: String) {
    let _ = LEFT.set(what);
}

/// The message and exit status of a run stopped by `sig`.
pub fn stopped(sig: i32) -> (String, u8) {
    let left = LEFT.get().map(String::as_str).unwrap_or("");
    let sep = if left.is_empty() { "" } else { "; " };
    if sig == SIGPIPE {
        (
            format!(
                "stopped by SIGPIPE (the reader of a pipe fsimg writes to went away): the output is incomplete{sep}{left}"
            ),
            1,
        )
    } else {
        let name = match sig {
            SIGINT => "SIGINT",
            SIGTERM => "SIGTERM",
            SIGHUP => "SIGHUP",
            _ => "a signal",
        };
        (
            format!("interrupted by {name}: the output is incomplete{sep}{left}"),
            130,
        )
    }
}

/// Ends a run that did not stop by itself: removes the files its sinks
/// created and exits, without waiting for the thread that is stuck.
fn abandon() -> ! {
    fsimg::sink::remove_unfinished();
    let (msg, code) = stopped(signal().unwrap_or(SIGINT));
    // Straight to the descriptor: the stuck thread may hold std's lock.
    let start = if BAR_ON.load(Ordering::Relaxed) {
        "\r\x1b[K"
    } else {
        ""
    };
    let _ = rustix::io::write(
        std::io::stderr(),
        format!("{start}fsimg: {msg}\n").as_bytes(),
    );
    std::process::exit(i32::from(code));
}

/// What was last drawn.
#[derive(Default)]
struct Drawn {
    /// When the last line was written.
    at: Option<Instant>,
    /// `(done, total)` of the last line.
    last: Option<(u64, u64)>,
    /// The latest `(done, total)` seen, drawn or not.
    seen: Option<(u64, u64)>,
    /// Whether a bar is on the screen (to be cleared).
    bar_shown: bool,
}

/// Progress and warnings on standard error, and the stop flag the copier
/// checks.
pub struct Stderr {
    style: Style,
    /// What is being done: "copy", "save", "restore", "verify".
    phase: Mutex<&'static str>,
    /// When the run started.
    pub start: Instant,
    drawn: Mutex<Drawn>,
    bad: AtomicU64,
    /// Named stretches of the progress (a disk's partitions).
    stages: Mutex<Vec<(u64, String)>>,
}

/// One `--progress=json` line (docs/json.md).
#[derive(Serialize)]
struct JsonLine<'a> {
    phase: &'a str,
    done: u64,
    total: u64,
    percent: f64,
    rate: u64,
    eta: Option<u64>,
    elapsed: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    partition: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unreadable: Option<u64>,
}

impl Stderr {
    /// A reporter for `--progress=arg` (`quiet`: none at all).
    pub fn new(arg: ProgressArg, quiet: bool) -> Self {
        let style = match arg {
            _ if quiet => Style::Off,
            ProgressArg::Auto if std::io::stderr().is_terminal() => Style::Bar,
            ProgressArg::Auto | ProgressArg::None => Style::Off,
            ProgressArg::Bar => Style::Bar,
            ProgressArg::Plain => Style::Plain,
            ProgressArg::Json => Style::Json,
        };
        Stderr {
            style,
            phase: Mutex::new("copy"),
            start: Instant::now(),
            drawn: Mutex::new(Drawn::default()),
            bad: AtomicU64::new(0),
            stages: Mutex::new(Vec::new()),
        }
    }

    /// Names what the run does, for the lines: "copy", "save", "restore",
    /// "verify".
    pub fn set_phase(&self, phase: &'static str) {
        if let Ok(mut p) = self.phase.lock() {
            *p = phase;
        }
    }

    /// The operation is done: the last line says 100 % (plain, JSON) and a
    /// bar is cleared, so that the summary follows on a clean line.
    pub fn clear_line(&self) {
        let Ok(mut d) = self.drawn.lock() else {
            return;
        };
        if matches!(self.style, Style::Plain | Style::Json)
            && let Some((_, total)) = d.seen
            && d.last != Some((total, total))
        {
            self.draw(&mut d, total, total);
        }
        clear_bar(&mut d);
    }

    /// Writes one line for `done` of `total`.
    fn draw(&self, d: &mut Drawn, done: u64, total: u64) {
        let now = Instant::now();
        d.at = Some(now);
        d.last = Some((done, total));
        let secs = (now - self.start).as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let pct = if total > 0 {
            (done as f64 * 100.0 / total as f64).min(100.0)
        } else {
            100.0
        };
        let eta = (rate > 0.0).then(|| (total.saturating_sub(done) as f64 / rate).round() as u64);
        let stage = self.stages.lock().ok().and_then(|st| {
            st.iter()
                .find(|(end, _)| done < *end)
                .or(st.last())
                .map(|(_, name)| name.clone())
        });
        let bad = self.bad.load(Ordering::Relaxed);
        let phase = self.phase.lock().map(|p| *p).unwrap_or("copy");
        let eta_text = eta.map_or_else(|| "-:--:--".to_string(), hms);
        let line = match self.style {
            Style::Off => return,
            Style::Json => {
                let line = JsonLine {
                    phase,
                    done,
                    total,
                    percent: (pct * 10.0).round() / 10.0,
                    rate: rate as u64,
                    eta,
                    elapsed: (secs * 10.0).round() / 10.0,
                    partition: stage.as_deref(),
                    unreadable: (bad > 0).then_some(bad),
                };
                match serde_json::to_string(&line) {
                    Ok(s) => s + "\n",
                    Err(_) => return,
                }
            }
            Style::Plain => {
                let mut s = format!(
                    "fsimg: {phase}: {} of {} ({pct:.1}%), {}/s, ETA {eta_text}",
                    human(done),
                    human(total),
                    human(rate as u64),
                );
                if let Some(st) = &stage {
                    s += &format!(", {st}");
                }
                if bad > 0 {
                    s += &format!(", {} unreadable", human(bad));
                }
                s + "\n"
            }
            Style::Bar => {
                let mut text = format!(
                    "{} of {} ({pct:.1}%)  {}/s  ETA {eta_text}",
                    human(done),
                    human(total),
                    human(rate as u64),
                );
                if bad > 0 {
                    text += &format!("  {} unreadable", human(bad));
                }
                let stage = stage.map(|s| format!("{s}  ")).unwrap_or_default();
                let line = bar_line(&stage, &text, pct, terminal_width());
                d.bar_shown = true;
                BAR_ON.store(true, Ordering::Relaxed);
                format!("\r\x1b[K{line}")
            }
        };
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
    }
}

/// Takes the bar off the screen, if it is on.
fn clear_bar(d: &mut Drawn) {
    if d.bar_shown {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(b"\r\x1b[K");
        let _ = err.flush();
        d.bar_shown = false;
        BAR_ON.store(false, Ordering::Relaxed);
    }
}

impl Drop for Stderr {
    /// A run that fails leaves no bar before its error message.
    fn drop(&mut self) {
        if let Ok(d) = self.drawn.get_mut() {
            clear_bar(d);
        }
    }
}

/// The bar's line, at most `width - 1` characters (a line as wide as the
/// terminal would leave the cursor at its edge and wrap on some
/// terminals): `stage [=====>     ] text`, the bar left out when it does not
/// fit, and the rest cut.
fn bar_line(stage: &str, text: &str, pct: f64, width: usize) -> String {
    let room = width.saturating_sub(1);
    let used = stage.chars().count() + text.chars().count();
    // A bar of 10 to 30 cells, with its brackets and a space after.
    let cells = room.saturating_sub(used + 3).min(30);
    let line = if cells >= 10 {
        let full = ((pct / 100.0) * cells as f64).floor() as usize;
        let full = full.min(cells);
        let mut bar = "=".repeat(full);
        if full < cells {
            bar.push('>');
            bar += &" ".repeat(cells - full - 1);
        }
        format!("{stage}[{bar}] {text}")
    } else {
        format!("{stage}{text}")
    };
    line.chars().take(room).collect()
}

/// Columns of the terminal on standard error: asked of the terminal each
/// time (it may be resized), else `$COLUMNS`, else 80.
fn terminal_width() -> usize {
    if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stderr())
        && ws.ws_col > 0
    {
        return usize::from(ws.ws_col);
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|&c: &usize| c > 0)
        .unwrap_or(80)
}

impl Report for Stderr {
    fn progress(&self, done: u64, total: u64) {
        if self.style == Style::Off {
            return;
        }
        let Ok(mut d) = self.drawn.lock() else {
            return;
        };
        d.seen = Some((done, total));
        let now = Instant::now();
        let due = match d.at {
            None => true,
            Some(at) => now - at >= self.style.interval(),
        };
        // The last line of a pass is always written, once.
        let end = done >= total && d.last != Some((done, total));
        if due || end {
            self.draw(&mut d, done, total);
        }
    }

    fn stages(&self, stages: Vec<(u64, String)>) {
        if let Ok(mut st) = self.stages.lock() {
            *st = stages;
        }
    }

    fn warn(&self, msg: &str) {
        let mut d = self.drawn.lock().ok();
        let mut err = std::io::stderr().lock();
        if self.style == Style::Json {
            let line = serde_json::json!({ "warning": msg }).to_string();
            let _ = writeln!(err, "{line}");
        } else {
            if let Some(d) = d.as_mut() {
                // The bar is drawn again at the next update.
                clear_bar(d);
            }
            let _ = writeln!(err, "fsimg: warning: {msg}");
        }
        let _ = err.flush();
    }

    fn error(&self, msg: &str) {
        let mut d = self.drawn.lock().ok();
        let mut err = std::io::stderr().lock();
        if self.style == Style::Json {
            let line = serde_json::json!({ "error": msg }).to_string();
            let _ = writeln!(err, "{line}");
        } else {
            if let Some(d) = d.as_mut() {
                clear_bar(d);
            }
            let _ = writeln!(err, "fsimg: {msg}");
        }
        let _ = err.flush();
    }

    fn bad(&self, bytes: u64) {
        self.bad.store(bytes, Ordering::Relaxed);
    }

    fn cancelled(&self) -> bool {
        signal().is_some()
    }
}

fn hms(secs: u64) -> String {
    format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fits_its_width() {
        for width in [1, 10, 40, 60, 80, 200] {
            for stage in ["", "partition 2 (ext4)  "] {
                let line = bar_line(
                    stage,
                    "1.2 GiB of 3.4 GiB (35.2%)  120.3 MiB/s  ETA 0:00:18",
                    35.2,
                    width,
                );
                assert!(line.chars().count() < width.max(2), "{width}: {line}");
            }
        }
        let line = bar_line("", "x", 50.0, 80);
        assert!(
            line.starts_with(&format!("[{}>{}] x", "=".repeat(15), " ".repeat(14))),
            "{line}"
        );
        let line = bar_line("", "x", 100.0, 80);
        assert!(line.starts_with(&format!("[{}]", "=".repeat(30))), "{line}");
    }
}
