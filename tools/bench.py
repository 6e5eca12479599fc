#!/usr/bin/env python3
"""Benchmark runner behind tools/bench.sh: fsimg against its peers on one
volume image kept in RAM (/dev/shm).

Usage (normally through tools/bench.sh):
    bench.py --fsimg BIN --vol VOL --runs N --work DIR [--md FILE] [--label TEXT]
             [--only SCENARIOS] [--shim SO] [--pretouch MIB] [--no-settle]
    SCENARIOS: save,clone,restore,zstd,limit,files (files = cat,extract; a
    disk also has savefile)

The filesystem is what `fsimg info VOL` finds; the peers are partclone
(partclone.extfs, partclone.ntfs or partclone.fat32) everywhere, e2image for
ext4 and ntfsclone for NTFS.  When VOL is a whole MBR disk (fsimg info finds
a partition table; tools/make-bench-fs.sh --fs disk), the peers are dd (for
the sparse clone) and the Clonezilla way (sfdisk -d, dd of sector 0 and the
boot gap, partclone.vfat / partclone.extfs -c of each partition through a
loop device at its offset; its restore likewise), and the read limit is a
pread of the used ranges of the whole disk (see disk_main).

The scenarios cat and extract (`--only files` selects both) take files out
of an fsimg -s -z image of the volume (of a disk: its ext4 partition, with
--partition), with `fsimg cat` and `fsimg extract`, against the way users
do it today, the restore-and-copy way, timed as one bash script: fsimg -r
the image to a file, mount that read-only (loop; ntfs-3g for NTFS; FAT is
read by mtools, no mount), cp the file or cp -a the tree (umount and the
removal of the restored file untimed).  The image is saved once, untimed;
cat copies the file closest to 100 MiB; the records fsimg read are taken
from its --stats line or summary, and how many records hold the file's data
from its extents (FIEMAP, ntfsinfo's runlist, mshowfat) and the image's
record headers.  Outputs are checked against the volume's own tree
(tools/files-manifest.py of it mounted read-only, or copied out by mcopy).

Every scenario runs each of its tools once
untimed first (warm-up; its output is checked for correctness and the check
fails the run if it is wrong), then N timed rounds, each round running every
tool once, in a shuffled order (seeded, the same in every benchmark).
Wall time is measured around the whole command (all stages of a pipeline);
peak RSS is what /usr/bin/time prints (%M, ru_maxrss), summed over the
stages of a pipeline.
partclone runs with tools/partclone-nosleep.c preloaded when --shim is given
(its progress thread otherwise rounds every run up to a multiple of 2 s).
Nothing is dropped from the page cache: the volume lives in tmpfs.

Before every run (warm-up or timed) of a tool that writes a file, untimed,
the runner writes and frees about twice the used bytes of anonymous memory
(--pretouch MIB; 0 turns it off). On a virtual machine whose host takes back
the RAM the guest frees (free page reporting, ballooning), the first write
to each such page faults in the host, and runs that fill new tmpfs pages
(clone, restore) took 1x to 5x their time at random, whichever tool ran: a
1.6 GB pread+pwrite copy took 0.7 s to 4 s, and always 0.7-0.95 s right
after the memory was touched. The touch puts the pages back for every tool
alike; on bare metal it changes nothing. Runs that only read (saves to
/dev/null, the read limit) go without: right after a touch they were slower
(0.29-0.36 s instead of 0.21-0.27 s for fsimg's ext4 save), the guest still
busy with the freed pages.

And before every run, untimed, the runner waits for the guest to finish
handing freed memory back to the host (--no-settle turns it off): where the
kernel counts the memory it reported (/sys/module/page_reporting/parameters/
reported_kib), it waits until that count has grown by less than 96 MiB over
the last 2 s, then until two reads of the same 128 MiB of the volume in a
row take at most 1.3x the fastest such read seen (at most 20 s in all).
Reporting starts a second or two after a large free (an output removed, a
touch) and goes on for seconds, and the slowdown outlasts it a little; while
it lasted, fsimg's 0.20 s ext4 save took 0.56-0.92 s, almost all of it
system time, and so did every other tool.  Without the counter (bare metal,
other VMs) there is no wait.

Outputs are checked against fsimg's own sparse clone of the volume (the
reference clone: made once, untimed, its CRC kept, then removed to save RAM),
and removed as soon as they are checked, so that at most one output of a
scenario is in RAM at a time.  The restore scenario needs one image per tool;
when the memory available would not hold them all at once with a margin, each
image is made (untimed) before each run and removed after it ("lean" mode,
said in the report).  If any check fails, the table is printed, nothing is
appended to the markdown file, and the exit status is 1.
"""
import argparse
import atexit
import datetime
import fcntl
import hashlib
import json
import mmap
import os
import platform
import random
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time

MiB = 1 << 20
GiB = 1 << 30
HERE = os.path.dirname(os.path.abspath(__file__))

# Per filesystem: partclone's binary, the checker of a clone (exit 0 = clean).
FILESYSTEMS = {
    "ext4": {"partclone": "partclone.extfs", "fsck": ["e2fsck", "-fn"]},
    "ntfs": {"partclone": "partclone.ntfs", "fsck": ["ntfsfix", "-n"]},
    "fat32": {"partclone": "partclone.fat32", "fsck": ["fsck.fat", "-n"]},
    "exfat": {"partclone": "partclone.exfat", "fsck": ["fsck.exfat", "-n"]},
    "xfs": {"partclone": "partclone.xfs", "fsck": ["xfs_repair", "-n", "-f"]},
    "btrfs": {"partclone": "partclone.btrfs", "fsck": ["btrfs", "check", "--readonly"]},
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Running commands


class Cmd:
    """A pipeline: stages (argv lists), stdin from a file or nothing, stdout
    of the last stage to a file (default /dev/null)."""

    def __init__(self, *stages, stdin=None, stdout="/dev/null"):
        self.stages = [list(map(str, s)) for s in stages]
        self.stdin = stdin
        self.stdout = stdout

    def __str__(self):
        s = " | ".join(" ".join(st) for st in self.stages)
        if self.stdin:
            s += f" < {self.stdin}"
        return s + f" > {self.stdout}"


def run(cmd, errlog, env=None):
    """Runs cmd; returns (wall seconds, summed peak RSS in bytes, per-stage
    RSS, stderr text of this run).

    Each stage runs under `/usr/bin/time -f %M`: ru_maxrss of a process
    carries over the high-water mark of whoever forked it (execve keeps it),
    so the number must come from a small parent, not from this Python."""
    fin = open(cmd.stdin, "rb") if cmd.stdin else subprocess.DEVNULL
    fout = open(cmd.stdout, "wb")
    errfile = errlog + ".last"
    ferr = open(errfile, "wb")
    rssfiles = [f"{errlog}.rss{i}" for i in range(len(cmd.stages))]
    full_env = dict(os.environ, **(env or {}))
    procs = []
    t0 = time.perf_counter()
    try:
        prev = fin
        for i, argv in enumerate(cmd.stages):
            last = i == len(cmd.stages) - 1
            p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rssfiles[i], *argv],
                                 stdin=prev, stdout=fout if last else subprocess.PIPE,
                                 stderr=ferr, env=full_env)
            if i > 0 and prev is not None:
                prev.close()  # our copy of the pipe's read end
            prev = p.stdout if not last else None
            procs.append(p)
        status = [p.wait() for p in procs]
        wall = time.perf_counter() - t0
    finally:
        fout.close()
        ferr.close()
        if cmd.stdin:
            fin.close()
    with open(errfile, "rb") as f:
        err = f.read().decode(errors="replace")
    with open(errlog, "a") as f:
        f.write(f"$ {cmd}\n{err}")
    if any(status):
        raise RuntimeError(f"command failed with {status}: {cmd}\n{err[-2000:]}")
    rss = []
    for rf in rssfiles:
        with open(rf) as f:
            rss.append(int(f.read().split()[-1]) * 1024)
    return wall, sum(rss), rss, err


PRETOUCH = 0  # bytes written before each run (set in main)


SETTLE = True  # wait for free page reporting to end before each run (set in main)
REPORTED_KIB = "/sys/module/page_reporting/parameters/reported_kib"
SETTLE_WINDOW, SETTLE_QUIET, SETTLE_MAX = 2.0, 96 * 1024, 20.0  # s, KiB, s


def settle():
    """Waits until the guest has stopped reporting freed memory to the host
    (see the module docstring); returns the seconds waited."""
    if not SETTLE or not os.path.exists(REPORTED_KIB):
        return 0.0
    t0 = time.perf_counter()
    seen = []  # (time, reported KiB)
    while True:
        now = time.perf_counter()
        with open(REPORTED_KIB) as f:
            seen.append((now, int(f.read())))
        before = [kib for t, kib in seen if t <= now - SETTLE_WINDOW]
        if before and seen[-1][1] - before[-1] < SETTLE_QUIET:
            break
        if now - t0 > SETTLE_MAX:
            log(f"   settle: memory still being reported after {SETTLE_MAX:.0f} s; going on")
            return now - t0
        time.sleep(0.1)
    # Then until reading a stretch of the volume takes its usual time twice
    # in a row: the slowdown outlasts the reporting by a second or two.
    fast = 0
    while fast < 2 and time.perf_counter() - t0 <= SETTLE_MAX:
        took = probe()
        fast = fast + 1 if took <= 1.3 * PROBE_BEST[0] else 0
        if fast < 2:
            time.sleep(0.2)
    return time.perf_counter() - t0


PROBE_VOL = None  # the volume, read by probe() (set in main)
PROBE_AT = [(0, 128 * MiB)]  # what probe() reads of it: (offset, length) (a disk: used ranges)
PROBE_BEST = [float("inf")]
PROBE_BUF = bytearray(4 * MiB)


def probe():
    """Reads 128 MiB of the volume in 4 MiB preads (the first 128 MiB, or of
    a disk the first 128 MiB of its used ranges); returns the seconds it
    took (and keeps the fastest ever in PROBE_BEST)."""
    fd = os.open(PROBE_VOL, os.O_RDONLY)
    try:
        t = time.perf_counter()
        for at, n in PROBE_AT:
            for off in range(at, at + n, len(PROBE_BUF)):
                os.preadv(fd, [memoryview(PROBE_BUF)[:min(len(PROBE_BUF), at + n - off)]], off)
        took = time.perf_counter() - t
    finally:
        os.close(fd)
    PROBE_BEST[0] = min(PROBE_BEST[0], took)
    return took


def pretouch():
    """Writes PRETOUCH bytes of anonymous memory and frees them (see the
    module docstring)."""
    n = min(PRETOUCH, int(mem_available() * 0.6)) // MiB * MiB
    if n <= 0:
        return
    m = mmap.mmap(-1, n)
    block = b"\x01" * MiB
    for off in range(0, n, MiB):
        m[off:off + MiB] = block
    m.close()


def sh(argv, **kw):
    return subprocess.run(list(map(str, argv)), check=True, **kw)


def out_of(argv):
    r = subprocess.run(list(map(str, argv)), capture_output=True, text=True)
    return (r.stdout + r.stderr).strip()


def allocated(path):
    """Bytes allocated to a file, or to all files under a directory."""
    if os.path.isdir(path):
        return sum(allocated(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.stat(path).st_blocks * 512


def file_size(path):
    """st_size of a file, or the sum over all files under a directory."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def rm(path):
    """Removes a file, or a directory with all in it (the Clonezilla way's
    outputs)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def files_equal(a, b):
    return subprocess.run(["cmp", "-s", a, b]).returncode == 0


def crc(path):
    """CRC and size of a file, `cksum` (CRC-32, fast): to check an output
    against the reference clone without keeping the reference in RAM."""
    return subprocess.run(["cksum", path], capture_output=True, text=True,
                          check=True).stdout.split()[:2]


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def differing_blocks(a, b, bs=4096):
    """The numbers of the bs-byte blocks that differ between two files."""
    out = []
    base = 0
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(16 * MiB)
            y = fb.read(16 * MiB)
            if not x and not y:
                return out
            if x != y:
                for i in range(0, max(len(x), len(y)), bs):
                    if x[i:i + bs] != y[i:i + bs]:
                        out.append((base + i) // bs)
            base += len(x)


def ext_metadata_blocks(vol):
    """Superblocks, group descriptors, reserved GDT blocks and bitmaps, from dumpe2fs."""
    text = out_of(["dumpe2fs", vol])
    blocks = set()
    for m in re.finditer(r"(?:[Ss]uperblock|descriptors|GDT blocks|bitmap) at (\d+)(?:-(\d+))?", text):
        a = int(m.group(1))
        b = int(m.group(2) or a)
        blocks.update(range(a, b + 1))
    return blocks


# ---------------------------------------------------------------------------
# Scenarios


class Tool:
    def __init__(self, name, cmd, setup=None, output=None, size="file", scale=1.0, note="",
                 env=None, inner=None, check=None, inputs=(), after=None, stat=None, rate=None):
        self.name = name
        self.cmd = cmd
        self.env = env          # extra environment (the partclone shim)
        self.inner = inner      # regex on stderr giving the time to use instead of wall
        self.setup = setup      # untimed, before each run
        self.after = after      # untimed, after each run (and the warm-up's check)
        self.output = output    # file or directory the run makes; removed after each run
        self.size = size        # "file" (st_size), "alloc" (st_blocks), or None
        self.scale = scale      # multiply the wall time (dd of the whole volume)
        self.note = note
        self.check = check      # after the warm-up: [(ok, text)] about its output
        self.inputs = inputs    # [(path, make)]: made untimed when missing
        self.stat = stat        # regex on stderr: its groups kept from each timed run
        self.rate = rate        # bytes for the MiB/s column (default: the used bytes)
        self.stats = []
        self.times = []
        self.rss = []
        self.stage_rss = None
        self.out_size = None

    def prepare(self):
        for path, make in self.inputs:
            if not os.path.exists(path):
                make()
        if self.setup:
            self.setup()

    def drop_inputs(self):
        for path, _ in self.inputs:
            rm(path)


class Scenario:
    def __init__(self, key, title, tools, verify=None, before=None, after=None):
        self.key = key
        self.title = title
        self.tools = tools
        self.verify = verify    # after all warm-ups: [(ok, text)]
        self.before = before    # untimed, first: may set title and tools (files scenarios)
        self.after = after      # untimed, last
        self.checks = []        # [(ok, text)]
        self.lean = False       # inputs made before, removed after every run
        self.facts = {}         # what targets() needs beyond the times (files scenarios)


def run_scenario(sc, runs, work):
    errlog = os.path.join(work, f"{sc.key}.stderr")
    if sc.before:
        sc.before(sc)
    log(f"== {sc.title}" + (" (lean: inputs made before each run)" if sc.lean else ""))

    def add(checks, tool=None):
        for ok, text in checks:
            text = text.replace(work + "/", "")
            sc.checks.append((ok, text))
            log(f"   check{'' if ok else ' FAILED'}: {text}")

    # Warm-up, untimed; each output is checked, then removed.
    for t in sc.tools:
        t.prepare()
        log(f"   warm-up {t.name}: {t.cmd}")
        settle()
        if t.output:
            pretouch()
        run(t.cmd, errlog, t.env)
        if t.check:
            add(t.check())
        if t.after:
            t.after()
        if t.output:
            rm(t.output)
        if sc.lean:
            t.drop_inputs()
    if sc.verify:
        add(sc.verify())
    for r in range(runs):
        # Each round in its own shuffled order (the same in every
        # benchmark): a rotation keeps each tool behind the same one in
        # every round, and a run right after a tool that wrote and freed
        # 2 GB (the write limit) was up to 3x slower, whatever ran.
        order = list(sc.tools)
        random.Random(f"{sc.key}:{r}").shuffle(order)
        for t in order:
            t.prepare()
            settle()
            if t.output:
                pretouch()
            wall, rss, stage_rss, err = run(t.cmd, errlog, t.env)
            if t.inner:
                wall = float(re.search(t.inner, err).group(1))
            t.times.append(wall * t.scale)
            t.rss.append(rss)
            t.stage_rss = stage_rss
            if t.stat:
                m = re.search(t.stat, err)
                if not m:
                    raise RuntimeError(f"{t.name}: no /{t.stat}/ in its stderr: {err[-2000:]}")
                t.stats.append(m.groups())
            if t.after:
                t.after()
            if t.output:
                if t.size == "alloc":
                    t.out_size = allocated(t.output)
                elif t.size == "file":
                    t.out_size = file_size(t.output)
                rm(t.output)
            if sc.lean:
                t.drop_inputs()
        log(f"   round {r + 1}/{runs}: " + ", ".join(
            f"{t.name} {t.times[-1]:.3f}s" for t in sc.tools))
    for t in sc.tools:
        t.drop_inputs()
    if sc.after:
        sc.after()


# ---------------------------------------------------------------------------
# Report


def fmt_size(n):
    if n is None:
        return ""
    return f"{n / MiB:,.1f} MiB"


def machine_info():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "ram": mem,
        "kernel": platform.release(),
    }


def tool_versions(fsimg, fs, pc):
    v = {}
    v["fsimg"] = re.sub(r"^fsimg ", "", os.environ.get("FSIMG_DESC")
                        or out_of([fsimg, "--version"]).splitlines()[0])
    m = re.search(r"v[\d.]+", out_of([pc, "-v"]))
    v["partclone"] = m.group(0) if m else "?"
    if fs == "ext4":
        m = re.search(r"e2image ([\d.]+)", out_of(["e2image"]))
        v["e2fsprogs"] = m.group(1) if m else "?"
    if fs == "ntfs":
        m = re.search(r"ntfsclone v([\d.]+)", out_of(["ntfsclone", "-V"]))
        v["ntfs-3g"] = m.group(1) if m else "?"
    if fs == "fat32":
        m = re.search(r"fsck.fat ([\d.]+)", out_of(["fsck.fat", "-n", "/dev/null"]))
        v["dosfstools"] = m.group(1) if m else "?"
    if fs == "exfat":
        m = re.search(r"exfatprogs version : ([\d.]+)", out_of(["fsck.exfat", "-V"]))
        v["exfatprogs"] = m.group(1) if m else "?"
    if fs == "btrfs":
        m = re.search(r"v[\d.]+", out_of(["btrfs", "--version"]))
        v["btrfs-progs"] = m.group(0) if m else "?"
    m = re.search(r"v[\d.]+", out_of(["zstd", "--version"]))
    v["zstd"] = m.group(0) if m else "?"
    v["python"] = platform.python_version()
    return v


def build_table(scenarios, used):
    """Rows of the result table, and the notes on tools (footnotes)."""
    rows = []
    notes = []
    head = ["scenario", "tool", "median s", "min–max s", "MiB/s (used)", "peak RSS",
            "output", "fsimg/peer time"]
    for sc in scenarios:
        fs = next((t for t in sc.tools if t.name.startswith("fsimg")), None)
        for t in sc.tools:
            med = statistics.median(t.times)
            ratio = ""
            if fs is not None and t is not fs:
                ratio = f"{statistics.median(fs.times) / med:.2f}x"
            name = t.name
            if t.note:
                if t.note not in notes:
                    notes.append(t.note)
                name += f" [{notes.index(t.note) + 1}]"
            out = fmt_size(t.out_size)
            if t.stats:
                out += ("; " if out else "") + records_read(t.stats) + " records read"
            rows.append([
                sc.title, name, f"{med:.3f}",
                f"{min(t.times):.3f}–{max(t.times):.3f}",
                f"{(t.rate or used) / MiB / med:,.0f}",
                f"{max(t.rss) / MiB:.1f} MiB" + (
                    " (" + " + ".join(f"{r / MiB:.1f}" for r in t.stage_rss) + ")"
                    if t.stage_rss and len(t.stage_rss) > 1 else ""),
                out, ratio,
            ])
    return head, rows, notes


def records_read(stats):
    """"R of T" from a tool's (read, total) records of each run ("R1–R2
    of T" when the runs differ)."""
    got = sorted({int(r) for r, _ in stats})
    total = stats[-1][1]
    return (f"{got[0]}" if len(got) == 1 else f"{got[0]}–{got[-1]}") + f" of {total}"


def targets(scenarios):
    """The issue's targets, as lines saying met or missed: save and clone at
    most 0.5x the fastest peer and 1.5x the read limit; restore at most 0.5x
    the fastest peer; compressed save at most 0.6x the fastest peer with an
    output at most 2 % larger.  Files out of an image: cat at most 0.1x the
    restore-and-copy way, reading no more records than hold the file's
    data plus what finding a file in its directory reads; extract at most
    0.7x; fsimg's peak RSS within its record cache's bound + 32 MiB."""
    by = {sc.key: sc for sc in scenarios}

    def med(t):
        return statistics.median(t.times)

    def split(sc):
        fs = next(t for t in sc.tools if t.name.startswith("fsimg"))
        peers = [t for t in sc.tools if t is not fs]
        return fs, min(peers, key=med) if peers else None

    limit = limit_fs = copy = write = None
    if "limit" in by:
        copy = next((t for t in by["limit"].tools if "pread+pwrite" in t.name), None)
        write = next((t for t in by["limit"].tools if t.name.startswith("pwrite")), None)
        lim = [t for t in by["limit"].tools
               if not t.name.startswith("fsimg") and t not in (copy, write)]
        limit = min(lim, key=med)
        # fsimg's save runs again in the limit scenario, interleaved with
        # the reads: that is the time the save is held to the limit with.
        limit_fs = next(t for t in by["limit"].tools if t.name.startswith("fsimg"))
    out = []

    def line(ok, text):
        out.append(f"target {'met' if ok else 'MISSED'}: {text}")

    for key, what, peer_max, lim_max in (("save", "save to /dev/null", 0.5, 1.5),
                                         ("savefile", "save to a file", 0.5, None),
                                         ("clone", "sparse clone", 0.5, 1.5),
                                         ("restore", "restore", 0.5, None),
                                         ("zstd", "zstd save", 0.6, None)):
        if key not in by:
            continue
        fs, peer = split(by[key])
        r = med(fs) / med(peer)
        line(r <= peer_max, f"{what}: fsimg {med(fs):.3f} s = {r:.2f}x the fastest peer "
             f"({peer.name}, {med(peer):.3f} s; target <= {peer_max}x)")
        if lim_max and limit:
            t = limit_fs if key == "save" else fs
            r = med(t) / med(limit)
            line(r <= lim_max, f"{what}: fsimg {med(t):.3f} s"
                 + (" (its run in the read-limit rounds)" if t is limit_fs else "")
                 + f" = {r:.2f}x the read limit ({limit.name}, {med(limit):.3f} s; "
                 f"target <= {lim_max}x)")
        if key == "savefile" and copy:
            out.append(f"no target: save to a file: fsimg {med(fs):.3f} s = "
                       f"{med(fs) / med(copy):.2f}x the copy limit ({copy.name}, "
                       f"{med(copy):.3f} s)")
        if key == "clone" and copy:
            out.append(f"no target: sparse clone: fsimg {med(fs):.3f} s = "
                       f"{med(fs) / med(copy):.2f}x the copy limit ({copy.name}, "
                       f"{med(copy):.3f} s)")
        if key == "clone" and write:
            out.append(f"no target: sparse clone: fsimg {med(fs):.3f} s = "
                       f"{med(fs) / med(write):.2f}x the write limit ({write.name}, "
                       f"{med(write):.3f} s)")
        if key == "zstd" and fs.out_size and peer.out_size:
            g = 100.0 * (fs.out_size / peer.out_size - 1)
            line(g <= 2.0, f"zstd save: fsimg's output {fmt_size(fs.out_size)} is {g:+.1f} % "
                 f"of {peer.name}'s {fmt_size(peer.out_size)} (target <= +2 %)")

    out += pipe_targets(by, med, line)

    # Files out of an image: cat at most 0.1x the restore-and-copy way,
    # reading only the records that hold the file (and the metadata on its
    # path); extract at most 0.7x; memory bounded by the record cache.
    for key, what, peer_max in (("cat", "cat one file", 0.1), ("extract", "extract /", 0.7)):
        if key not in by:
            continue
        sc = by[key]
        fs, peer = split(sc)
        r = med(fs) / med(peer)
        line(r <= peer_max, f"{what}: fsimg {med(fs):.3f} s = {r:.2f}x the restore-and-copy way "
             f"({peer.name}, {med(peer):.3f} s; target <= {peer_max}x)")
        got, total = max(int(x) for x, _ in fs.stats), int(fs.stats[-1][1])
        held, sib = sc.facts.get("file_records"), sc.facts.get("sibling")
        if key == "cat" and (held is None or sib is None):
            out.append(f"no target checked: cat read {records_read(fs.stats)} records; "
                       + (f"which hold the file is unknown ({sc.facts.get('why')})"
                          if held is None else "the file has no sibling to measure the "
                          "cost of finding it"))
        elif key == "cat":
            bound = held + sib[2]
            line(got <= bound, f"cat reads only the records holding the file: {got} of {total} "
                 f"records read; its data lies in {held}, and finding it reads at most "
                 f"{sib[2]} (what cat reads for its smallest sibling, {sib[0]}, {sib[1]} bytes: "
                 "the metadata on the path and the sibling's own record); target <= "
                 f"{held} + {sib[2]} = {bound}")
        else:
            out.append(f"no target: extract / read {records_read(fs.stats)} records, "
                       f"{got / total:.2f}x the image's (a record is decoded again each time "
                       "it is needed after the cache evicted it)")
        cache = sc.facts.get("cache")
        if cache:
            rss, bound = max(fs.rss), cache[0] + cache[1] + 32 * MiB
            line(rss <= bound, f"{what}: fsimg's peak RSS {rss / MiB:.1f} MiB is bounded by its "
                 f"record cache ({cache[0] / MiB:.0f} MiB of decoded records and "
                 f"{cache[1] / MiB:.0f} MiB of record headers at most, src/access/image.rs; "
                 f"target: at most that + 32 MiB, {bound / MiB:.0f} MiB)")
    return out


def text_table(head, rows):
    w = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w[i]) for i, c in enumerate(head))]
    lines.append("  ".join("-" * x for x in w))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)))
    return "\n".join(lines)


def md_table(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)

# ---------------------------------------------------------------------------
# Files out of an image: fsimg cat and fsimg extract against the way users
# get files out of an image today, the restore-and-copy way (restore the
# image to a file, mount it read-only, cp; FAT through mtools)


FILES_KEYS = ("cat", "extract")   # `--only files` selects both
CAT_SIZE = 100 * MiB              # cat copies the file closest to this size
RECORDS_RE = r"(\d+) of the image's (\d+) records read"
MOUNTS = []                       # mount points used, unmounted at exit after a failure


@atexit.register
def unmount_all():
    for mnt in MOUNTS:
        if os.path.ismount(mnt):
            subprocess.run(["umount", mnt], stderr=subprocess.DEVNULL)


def wait_released(src, limit=10.0):
    """Waits until no loop device backs the file `src` and no process
    (ntfs-3g, which exits a moment after umount) has it open."""
    names = {src, os.path.realpath(src)}
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        held = False
        for d in os.listdir("/sys/block"):
            try:
                with open(f"/sys/block/{d}/loop/backing_file") as f:
                    held |= f.read().strip().removesuffix(" (deleted)") in names
            except OSError:
                pass
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                held |= any(os.readlink(f"/proc/{pid}/fd/{fd}") in names
                            for fd in os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                pass
        if not held:
            return
        time.sleep(0.05)
    log(f"   {src} still held {limit:.0f} s after umount; going on")


def mount_ro(fs, src, mnt, part=None):
    """Mounts the volume `src` (or partition `part` of the disk `src`)
    read-only on `mnt`: a loop mount, or ntfs-3g for NTFS."""
    os.makedirs(mnt, exist_ok=True)
    MOUNTS.append(mnt)
    if fs == "ntfs":
        sh(["ntfs-3g", "-o", "ro", src, mnt])
    else:
        opts = "loop,ro" + (f",offset={part['off']},sizelimit={part['bytes']}" if part else "")
        sh(["mount", "-o", opts, src, mnt])


def unmount(mnt, src):
    if os.path.ismount(mnt):
        sh(["umount", mnt])
    wait_released(src)


def manifest(root):
    """tools/files-manifest.py of a tree: {path: [type, mode, nlink, uid,
    gid, size, mtime, sha256 or target, hard link]}."""
    text = subprocess.run(["python3", os.path.join(HERE, "files-manifest.py"), root],
                          capture_output=True, text=True, check=True).stdout
    return {f[0]: f[1:] for f in (line.split("\t") for line in text.splitlines())}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 * MiB), b""):
            h.update(chunk)
    return h.hexdigest()


def fiemap(path):
    """[(physical byte offset, length)] of a file's extents (FS_IOC_FIEMAP)."""
    out, start, n = [], 0, 512
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            buf = bytearray(struct.pack("=QQIIII", start, (1 << 64) - 1, 1, 0, n, 0)
                            + bytes(56 * n))
            fcntl.ioctl(fd, 0xC020660B, buf)  # FS_IOC_FIEMAP, FIEMAP_FLAG_SYNC
            mapped = struct.unpack_from("=I", buf, 20)[0]
            last = False
            for i in range(mapped):
                logical, phys, length = struct.unpack_from("=QQQ", buf, 32 + 56 * i)
                flags = struct.unpack_from("=I", buf, 32 + 56 * i + 40)[0]
                out.append((phys, length))
                start = logical + length
                last = flags & 1  # FIEMAP_EXTENT_LAST
            if last or mapped == 0:
                return out
    finally:
        os.close(fd)


def ntfs_runs(vol, path, cluster):
    """[(byte offset, length)] of the unnamed $DATA runs of an NTFS file
    (ntfsinfo -v's runlist; holes left out)."""
    text = out_of(["ntfsinfo", "-v", "-F", path, vol])
    data = text.split("Dumping attribute $DATA", 1)[1].split("Dumping attribute", 1)[0]
    return [(int(lcn, 16) * cluster, int(n, 16) * cluster) for lcn, n in
            re.findall(r"^\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s*$", data, re.M)]


def fat_chain(vol, path, info):
    """[(byte offset, length)] of a FAT file's clusters (mtools' mshowfat)."""
    text = subprocess.run(["mshowfat", "-i", vol, "::" + path], capture_output=True, text=True,
                          check=True, env=dict(os.environ, MTOOLS_SKIP_CHECK="1")).stdout
    data = int(info["data starts at sector"]) * int(info["bytes per sector"])
    cs = int(info["FAT cluster size"])
    return [(data + (int(a) - 2) * cs, (int(b or a) - int(a) + 1) * cs)
            for a, b in re.findall(r"<(\d+)(?:-(\d+))?>", text)]


def image_records(img):
    """(cluster size, [(first cluster, end cluster)] of each record) of an
    fsimg image, from its record headers (formats/fsimg-image.md)."""
    spans = []
    with open(img, "rb") as f:
        head = f.read(128)
        hlen, flags, cs = (struct.unpack_from("<I", head, 12)[0],
                           struct.unpack_from("<H", head, 18)[0], struct.unpack_from("<I", head, 20)[0])
        pos = hlen
        if flags & 4:  # a disk block follows the header
            f.seek(pos + 4)
            pos += struct.unpack("<I", f.read(4))[0]
        while True:
            f.seek(pos)
            rec = f.read(36)
            if rec[:4] not in (b"DATA", b"DATZ"):
                return cs, spans
            n, first, tlen, _, stored = struct.unpack_from("<IQIII", rec, 4)
            table = f.read(tlen)
            vals, v, shift = [], 0, 0
            for b in table:
                v |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    vals.append(v)
                    v, shift = 0, 0
            end = first
            for skip, count in zip(vals[0::2], vals[1::2]):
                end += skip + count
            spans.append((first, end))
            pos += 36 + tlen + stored


def records_holding(img, ranges):
    """How many records of the image hold some byte of `ranges` ([(offset,
    length)] in the volume or disk)."""
    cs, spans = image_records(img)
    want = [(off // cs, (off + n - 1) // cs) for off, n in ranges if n]
    return sum(1 for a, b in spans if any(x < b and a <= y for x, y in want))


def record_cache():
    """(payload, header) bytes fsimg's record cache keeps at most, from
    src/access/image.rs, or None when the source is not there."""
    try:
        with open(os.path.join(HERE, "..", "src", "access", "image.rs")) as f:
            text = f.read()
    except OSError:
        return None
    got = [re.search(rf"pub const {name}: u64 = (\d+) << (\d+);", text)
           for name in ("CACHE_BYTES", "HEADER_CACHE_BYTES")]
    return tuple(int(m.group(1)) << int(m.group(2)) for m in got) if all(got) else None


def restore_copy_script(fs, fsimg, part=None):
    """The restore-and-copy way, a bash script (IMG RESTORED MNT OUT [PATH]):
    fsimg -r the image to a file, mount it read-only (loop, or ntfs-3g;
    FAT: mtools reads the file, the kernel here has no vfat), then cp PATH
    to OUT, or without PATH cp -a the whole tree into the new directory
    OUT.  Unmounting is left to the caller (untimed)."""
    if fs == "fat32":
        attach = "export MTOOLS_SKIP_CHECK=1"
        one = 'mcopy -n -i "$restored" "::$path" "$out"'
        tree = 'mkdir "$out"\n    mcopy -s -m -n -Q -i "$restored" "::/*" "$out/"'
    else:
        attach = ('ntfs-3g -o ro "$restored" "$mnt"' if fs == "ntfs" else
                  "mount -o loop,ro" + (f",offset={part['off']},sizelimit={part['bytes']}"
                                        if part else "") + ' "$restored" "$mnt"')
        one = 'cp "$mnt$path" "$out"'
        tree = 'cp -a "$mnt/." "$out"'
    return f"""set -euo pipefail
img=$1 restored=$2 mnt=$3 out=$4 path=${{5:-}}
'{fsimg}' -q -r -o "$restored" "$img"
{attach}
if [ -n "$path" ]; then
    {one}
else
    {tree}
fi
"""


def files_scenarios(fsimg, src, fs, info, W, part=None):
    """The scenarios cat and extract on the volume `src` (or partition
    `part`, {"n", "off", "bytes"}, of the disk `src`), and a function that
    removes their image.  The image (fsimg -s -z) and the reference tree
    (tools/files-manifest.py of the volume mounted read-only, or copied
    out with mcopy for FAT) are made untimed before the first of them runs;
    the file cat copies is the one closest to 100 MiB."""
    img, restored, mnt = W("files.img"), W("files.restored"), W("files.mnt")
    cat_f, cat_p, ext_f, ext_p = W("cat.fsimg"), W("cat.peer"), W("extract.fsimg"), W("extract.peer")
    script = W("restore-copy.sh")
    pargs = ["--partition", str(part["n"])] if part else []
    where = f"partition {part['n']}: " if part else ""
    # Of manifest()'s fields: type, (mode,) size, (mtime,) sha256.
    cols = [0, 1, 5, 6, 7] if fs == "ext4" else [0, 5, 7]
    compared = "types, sizes, sha256" + (", modes, mtimes" if fs == "ext4" else "")
    ref_what = ("the volume's, copied out with mcopy" if fs == "fat32" else
                (f"partition {part['n']}'s" if part else "the volume's") + ", mounted read-only"
                + (" with ntfs-3g" if fs == "ntfs" else ""))
    st = {}

    def prep():
        """The image, the reference tree, the file for cat and where it lies."""
        if st:
            return st
        log(f"files: fsimg -s -z -o {os.path.basename(img)} (untimed); reference tree of the volume")
        rm(img)
        sh([fsimg, "-q", "-s", "-z", "-o", img, src])
        with open(script, "w") as f:
            f.write(restore_copy_script(fs, fsimg, part))
        def pick(ref):
            return min((abs(int(v[5]) - CAT_SIZE), p) for p, v in ref.items() if v[0] == "f")[1]

        ref_dir, ranges = W("files.ref"), None
        if fs == "fat32":
            rm(ref_dir)
            os.makedirs(ref_dir)
            sh(["mcopy", "-s", "-m", "-n", "-Q", "-i", src, "::/*", ref_dir + "/"],
               env=dict(os.environ, MTOOLS_SKIP_CHECK="1"))
            try:
                ref = manifest(ref_dir)
            finally:
                rm(ref_dir)
        else:
            mount_ro(fs, src, mnt, part)
            try:
                ref = manifest(mnt)
                if fs == "ext4":
                    ranges = fiemap(mnt + pick(ref))
            finally:
                unmount(mnt, src)
        path = pick(ref)
        try:
            if fs == "ntfs":
                ranges = ntfs_runs(src, path, int(info["NTFS cluster size"]))
            elif fs == "fat32":
                ranges = fat_chain(src, path, info)
            held, why = records_holding(img, [(o + (part["off"] if part else 0), n)
                                              for o, n in ranges]), ""
        except Exception as e:  # noqa: BLE001 (a fact for the report, not a check)
            held, why = None, f"{type(e).__name__}: {e}"
        # What finding a file in that directory costs: the records cat reads
        # for its smallest sibling (the metadata on the path, and the one
        # record holding the sibling).
        sib = min(((int(v[5]), p) for p, v in ref.items() if v[0] == "f" and int(v[5]) > 0
                   and p != path and os.path.dirname(p) == os.path.dirname(path)), default=None)
        if sib:
            r = subprocess.run([fsimg, "cat", "--stats", *pargs, img, sib[1]],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               check=True)
            sib = (sib[1], sib[0], int(re.search(RECORDS_RE, r.stderr).group(1)))
        st.update(ref=ref, path=path, size=int(ref[path][5]), sha=ref[path][7], held=held,
                  why=why, sibling=sib,
                  tree_bytes=sum(int(v[5]) for v in ref.values() if v[0] == "f"),
                  nfiles=sum(1 for v in ref.values() if v[0] == "f"))
        log(f"files: cat {path} ({st['size'] / MiB:.1f} MiB; its data in "
            f"{held if held is not None else '? (' + why + ')'} records"
            + (f"; cat of {sib[0]} ({sib[1]} bytes) reads {sib[2]}" if sib else "")
            + f"); extract / ({st['nfiles']} files, {st['tree_bytes'] / MiB:.0f} MiB)")
        return st

    def fresh(*paths):
        def f():
            if os.path.ismount(mnt):
                unmount(mnt, restored)
            for p in paths:
                rm(p)
        return f

    def release():
        if fs != "fat32":
            unmount(mnt, restored)
        rm(restored)

    def same_file(out, what):
        def f():
            ok = sha256(out) == st["sha"]
            return [(ok, f"{what}: {st['path']} " + ("==" if ok else "DIFFERS from")
                     + f" {ref_what} (sha256)")]
        return f

    def same_tree(out, what):
        def f():
            got, ref = manifest(out), st["ref"]
            sel = lambda v: [v[i] for i in cols] if v else None  # noqa: E731
            diff = [p for p in sorted(set(got) | set(ref)) if sel(got.get(p)) != sel(ref.get(p))]
            if not diff:
                return [(True, f"{what}: the tree == {ref_what} ({len(ref)} entries: names, "
                         f"{compared})")]
            p = diff[0]
            return [(False, f"{what}: {len(diff)} of {len(ref)} entries differ from {ref_what} "
                     f"({compared}); first: {p}: {sel(got.get(p))} instead of {sel(ref.get(p))}")]
        return f

    how = {"ext4": "mount -o loop,ro"
           + (",offset=OFF,sizelimit=SIZE (the partition)" if part else ""),
           "ntfs": "ntfs-3g -o ro", "fat32": None}[fs]
    with open("/proc/filesystems") as f:
        vfat = "vfat" in f.read().split()
    way = ("the restore-and-copy way, one bash script: fsimg -r -o FILE IMG (every core), "
           + (f"{how} FILE MNT, " if how else "")
           + "{copy}"
           + ("; umount and removal of FILE untimed" if how else
              " (mtools, not a mount: " + ("this kernel has no vfat driver" if not vfat else
                                           "as where the kernel has no vfat driver")
              + "); removal of FILE untimed")
           + "; peak RSS is its largest process; MiB/s as for fsimg")
    peer = "restore + " + ({"ext4": "mount", "ntfs": "ntfs-3g", "fat32": "mcopy"}[fs])
    peer_cat, peer_extract = peer + (" + cp" if how else ""), peer + (" + cp -a" if how else " -s")

    def cat_before(sc):
        s = prep()
        sc.title = f"{where}cat one file ({s['path']}, {s['size'] / MiB:.1f} MiB)"
        sc.facts.update(file_records=s["held"], why=s["why"], sibling=s["sibling"],
                        cache=record_cache())
        sc.tools = [
            Tool("fsimg cat", Cmd([fsimg, "cat", "--stats", *pargs, img, s["path"]], stdout=cat_f),
                 setup=fresh(cat_f), output=cat_f, stat=RECORDS_RE, rate=s["size"],
                 note="fsimg cat --stats of an image saved once, untimed, with fsimg -s -z; "
                      "MiB/s of the file's bytes; records read as its --stats line says",
                 check=same_file(cat_f, "fsimg cat")),
            Tool(peer_cat,
                 Cmd(["bash", script, img, restored, mnt, cat_p, s["path"]]),
                 setup=fresh(cat_p, restored), after=release, output=cat_p, rate=s["size"],
                 note=way.format(copy="cp MNT/PATH OUT" if how else "mcopy -i FILE ::PATH OUT"),
                 check=same_file(cat_p, peer_cat)),
        ]

    def extract_before(sc):
        s = prep()
        sc.title = (f"{where}extract / ({s['nfiles']} files, {s['tree_bytes'] / MiB:.0f} MiB)")
        sc.facts.update(cache=record_cache())
        sc.tools = [
            Tool("fsimg extract", Cmd([fsimg, "extract", *pargs, img, "/", "-C", ext_f]),
                 setup=fresh(ext_f), output=ext_f, stat=RECORDS_RE, rate=s["tree_bytes"],
                 note="fsimg extract IMG / -C DIR of the same image (modes, mtimes and owners "
                      "kept); MiB/s of the files' bytes; records read as its summary line says",
                 check=same_tree(ext_f, "fsimg extract /")),
            Tool(peer_extract,
                 Cmd(["bash", script, img, restored, mnt, ext_p]),
                 setup=fresh(ext_p, restored), after=release, output=ext_p, rate=s["tree_bytes"],
                 note=way.format(copy="cp -a MNT/. DIR" if how else
                                 "mkdir DIR, mcopy -s -m -i FILE '::/*' DIR/"),
                 check=same_tree(ext_p, peer_extract)),
        ]

    def drop():
        rm(img)

    return [Scenario("cat", "cat one file", [], before=cat_before),
            Scenario("extract", "extract /", [], before=extract_before)], drop


def pick_scenarios(scenarios, only, drop_files):
    """The scenarios `--only` asks for (`files` is cat and extract); the
    last files scenario removes the image they share."""
    only = set(filter(None, only.split(",")))
    if "files" in only:
        only |= set(FILES_KEYS)
    scenarios = [s for s in scenarios if not only or s.key in only]
    files = [s for s in scenarios if s.key in FILES_KEYS]
    if files:
        files[-1].after = drop_files
    return scenarios


# ---------------------------------------------------------------------------
# A whole disk (tools/make-bench-fs.sh --fs disk): fsimg against dd and the
# Clonezilla way


# partclone for each filesystem, as Clonezilla picks it (partclone.vfat for
# FAT), and the checker of a partition of a clone.
DISK_FS = {
    "fat": {"partclone": "partclone.vfat", "fsck": ["fsck.fat", "-n"]},
    "ext": {"partclone": "partclone.extfs", "fsck": ["e2fsck", "-fn"]},
    "ntfs": {"partclone": "partclone.ntfs", "fsck": ["ntfsfix", "-n"]},
}


def limit_tools(src, ranges, W, what, copy_what):
    """The read, copy and write limits of `src` (a volume or a disk): its
    used ranges (`ranges`, described by `what`) read alone, read and
    written to a new file (`copy_what`), and only written."""
    readused = os.path.join(HERE, "bench-readused.py")

    def fresh(path):
        return lambda: rm(path)

    return [
        Tool("pread used ranges", Cmd(["python3", readused, "read", src, ranges]),
             inner=r" in ([\d.]+) s \(",
             note=f"{what}, 4 MiB preads; read loop time, without interpreter start-up"),
        Tool("pread+pwrite used ranges to a file",
             Cmd(["python3", readused, "copy", src, ranges, W("copy.limit")]),
             inner=r" in ([\d.]+) s \(",
             setup=fresh(W("copy.limit")), output=W("copy.limit"), size="alloc",
             note="the same reads, each pwritten to a new file in /dev/shm, on one thread: "
                  f"{copy_what}; open to close, without interpreter start-up"),
        Tool("pwrite used ranges to a file",
             Cmd(["python3", readused, "write", src, ranges, W("write.limit")]),
             inner=r" in ([\d.]+) s \(",
             setup=fresh(W("write.limit")), output=W("write.limit"), size="alloc",
             note="only the pwrites of the copy, from a buffer filled once: what filling the "
                  "new pages costs by itself, the floor for any sparse clone"),
    ]


def pipe_scenarios(fsimg, vol, fs, W, pc_tool, img_f, ref_clone):
    """Standard output through a pipe (issue 23): fsimg's streams and the
    peers' through `| cat`, `| zstd -T0 -3` and `| gzip -1`, beside the pipe
    floor: the same bytes (fsimg's image, and the zero-filled volume, which
    is the sparse clone read back) through `dd bs=N | cat` at N = 4 KiB,
    64 KiB and 1 MiB. `pc_tool(args, name)` makes a partclone Tool."""
    def make_img():
        sh([fsimg, "-q", "-s", "-o", img_f, vol])

    def make_clone():
        sh([fsimg, "-q", "-o", ref_clone, vol])

    def tool(name, role, cmd, **kw):
        t = Tool(name, cmd, **kw)
        t.role = role
        return t

    cat, zst, gz = ["cat"], ["zstd", "-q", "-T0", "-3"], ["gzip", "-1"]
    tools = [
        tool("fsimg -s | cat", "image", Cmd([fsimg, "-q", "-s", "-o", "-", vol], cat)),
        tool("fsimg -o - | cat", "raw", Cmd([fsimg, "-q", "-o", "-", vol], cat),
             note="zero-filled raw volume"),
        tool("fsimg -s -z 3 | cat", "imagez", Cmd([fsimg, "-q", "-s", "-z", "3", "-o", "-", vol], cat)),
        tool("fsimg -s | zstd -T0 -3", "imagezstd", Cmd([fsimg, "-q", "-s", "-o", "-", vol], zst)),
    ]
    if fs == "ntfs":
        tools.append(tool("ntfsclone -s | cat", "peer",
                          Cmd(["ntfsclone", "-q", "-s", "-o", "-", vol], cat)))
        tools.append(tool("ntfsclone -s | zstd -T0 -3", "peerzstd",
                          Cmd(["ntfsclone", "-q", "-s", "-o", "-", vol], zst)))
    tools.append(pc_tool(["-c", "-s", vol, "-o", "-"], [cat], "-c | cat", "peer"))
    tools.append(pc_tool(["-c", "-s", vol, "-o", "-"], [zst], "-c | zstd -T0 -3", "peerzstd"))
    if fs == "ext4":
        tools.append(tool("e2image -ra - | cat", "peerraw", Cmd(["e2image", "-ra", vol, "-"], cat),
                          note="raw, zero-filled: the bytes of fsimg -o -"))
    tools.append(tool("dd volume bs=4M | cat", "dd",
                      Cmd(["dd", f"if={vol}", "bs=4M", "status=none"], cat)))
    for n in ("4K", "64K", "1M"):
        tools.append(tool(f"dd image bs={n} | cat", "floorimage",
                          Cmd(["dd", f"if={img_f}", f"bs={n}", "status=none"], cat),
                          inputs=[(img_f, make_img)], note="pipe floor for fsimg -s's bytes"))
        tools.append(tool(f"dd clone bs={n} | cat", "floorraw",
                          Cmd(["dd", f"if={ref_clone}", f"bs={n}", "status=none"], cat),
                          inputs=[(ref_clone, make_clone)],
                          note="pipe floor for fsimg -o -'s bytes (the sparse clone read back)"))
    gzip = [tool("fsimg -s | gzip -1", "imagegzip", Cmd([fsimg, "-q", "-s", "-o", "-", vol], gz))]
    if fs == "ntfs":
        gzip.append(tool("ntfsclone -s | gzip -1", "peergzip",
                         Cmd(["ntfsclone", "-q", "-s", "-o", "-", vol], gz)))
    gzip.append(pc_tool(["-c", "-s", vol, "-o", "-"], [gz], "-c | gzip -1", "peergzip"))

    def cleanup():
        rm(img_f)
        rm(ref_clone)

    pipe = Scenario("pipe", "standard output through a pipe", tools, after=cleanup)
    return [pipe, Scenario("gzip", "standard output through gzip -1", gzip)]


def pipe_targets(by, med, line):
    """Issue 23's targets for the pipe rows."""
    out = []
    if "pipe" in by:
        ts = by["pipe"].tools

        def role(r):
            return [t for t in ts if getattr(t, "role", None) == r]

        img, raw = role("image")[0], role("raw")[0]
        peers = role("peer") + role("peerraw")
        best = min(peers, key=med)
        r = med(img) / med(best)
        line(r <= 0.5, f"pipe: fsimg -s | cat {med(img):.3f} s = {r:.2f}x the fastest peer stream "
             f"({best.name}, {med(best):.3f} s; target <= 0.5x)")
        floor = min(role("floorimage"), key=med)
        r = med(img) / med(floor)
        line(r <= 1.2, f"pipe: fsimg -s | cat {med(img):.3f} s = {r:.2f}x the pipe floor for its "
             f"bytes ({floor.name}, {med(floor):.3f} s; target <= 1.2x)")
        floor_raw = min(role("floorraw"), key=med)
        e2 = role("peerraw")
        if e2:
            r, rf = med(raw) / med(e2[0]), med(raw) / med(floor_raw)
            line(r <= 0.8 or rf <= 1.2,
                 f"pipe: fsimg -o - | cat {med(raw):.3f} s = {r:.2f}x {e2[0].name} "
                 f"({med(e2[0]):.3f} s; target <= 0.8x) and {rf:.2f}x the pipe floor for its "
                 f"bytes ({floor_raw.name}, {med(floor_raw):.3f} s; or <= 1.2x)")
        dd = role("dd")[0]
        r = med(raw) / med(dd)
        line(r <= 0.5, f"pipe: fsimg -o - | cat {med(raw):.3f} s = {r:.2f}x {dd.name} "
             f"({med(dd):.3f} s; target <= 0.5x)")
        for mine, theirs, what in (("imagez", None, "fsimg -s -z 3 | cat"),
                                   ("imagezstd", "peerzstd", "fsimg -s | zstd -T0 -3")):
            t = role(mine)[0]
            if theirs and role(theirs):
                p = min(role(theirs), key=med)
                out.append(f"no target: {what} {med(t):.3f} s = {med(t) / med(p):.2f}x "
                           f"{p.name} ({med(p):.3f} s)")
    if "gzip" in by:
        ts = by["gzip"].tools
        mine = next(t for t in ts if t.role == "imagegzip")
        p = min((t for t in ts if t is not mine), key=med)
        out.append(f"no target: fsimg -s | gzip -1 {med(mine):.3f} s = "
                   f"{med(mine) / med(p):.2f}x {p.name} ({med(p):.3f} s)")
    return out


def disk_layout(disk, text):
    """What `fsimg info DISK` (its output: text) and `sfdisk -J DISK` say:
    {"label", "id", "sector", "size", "gap", "used", "parts": [{"n", "start",
    "sectors", "off", "bytes", "fs", "fam", "used"}]}.  "gap" is what fsimg
    copies of the tables and the boot gap, "used" that plus the used bytes
    of the partitions: the bytes fsimg copies."""
    info = {}
    found = {}
    for line in text.splitlines():
        kv = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(kv) != 2:
            continue
        if kv[0] == "partition":
            m = re.match(r"(\d+): sectors (\d+)\.\.(\d+) .*\), (\w+), used ([\d.]+ \w+), offset=(\d+)$",
                         kv[1])
            if not m:
                sys.exit(f"bench: cannot read fsimg info's partition line: {kv[1]}")
            found[int(m.group(1))] = m
        else:
            info[kv[0]] = kv[1]
    pt = json.loads(out_of(["sfdisk", "-J", disk]))["partitiontable"]
    ss = int(pt.get("sectorsize", 512))
    parts = []
    for i, p in enumerate(pt["partitions"]):
        n = int(re.search(r"(\d+)$", p["node"]).group(1)) if "node" in p else i + 1
        m = found.get(n)
        if not m or int(m.group(2)) != p["start"]:
            sys.exit(f"bench: fsimg info and sfdisk disagree on partition {n}")
        fs = m.group(4)
        fam = next((k for k in DISK_FS if fs.startswith(k)), None)
        if fam is None:
            sys.exit(f"bench: no partclone known for partition {n}'s {fs}")
        parts.append({"n": n, "start": p["start"], "sectors": p["size"], "off": p["start"] * ss,
                      "bytes": p["size"] * ss, "fs": fs, "fam": fam, "used": m.group(5)})
    gap = int(re.match(r"(\d+)", info["tables and boot gap"]).group(1))
    in_parts = int(re.search(r"(\d+) bytes in partitions", info["to copy"]).group(1))
    return {"label": pt["label"], "id": pt.get("id", "?"), "sector": ss,
            "size": int(re.match(r"(\d+)", info["disk size"]).group(1)),
            "gap": gap, "used": gap + in_parts, "parts": parts}


def clonezilla_scripts(lay, pclog):
    """Two bash scripts, the Clonezilla way for this disk: save (DISK DIR
    file|null|zstd) and restore (DIR TARGET).  Save is Clonezilla's savedisk
    on an MBR disk: the table (sfdisk -d), sector 0 and the hidden data
    after it up to partition 1 (dd), then each partition through a loop
    device at its offset with partclone -c (into DIR/pN.img; to /dev/null;
    or through zstd -T0 -3 into DIR/pN.img.zst).  Restore is its
    restoredisk: sfdisk writes the table, dd puts back the boot code (446
    bytes) and the hidden data, and partclone -r writes each partition
    through a loop device."""
    ss = lay["sector"]
    first = min(p["start"] for p in lay["parts"])
    calls = "\n".join(f"part {p['n']} {p['off']} {p['bytes']} {DISK_FS[p['fam']]['partclone']}"
                      for p in lay["parts"])
    save = f"""set -euo pipefail
d=$1 o=$2 mode=$3
mkdir -p "$o"
sfdisk -d "$d" >"$o/pt.sf"
dd if="$d" of="$o/mbr" bs={ss} count=1 status=none
dd if="$d" of="$o/hidden-data-after-mbr" bs={ss} skip=1 count={first - 1} status=none
part() {{
    local l
    l=$(losetup -f --show -r -o "$2" --sizelimit "$3" "$d")
    case $mode in
        file) "$4" -c -q -L '{pclog}' -s "$l" -o "$o/p$1.img" ;;
        null) "$4" -c -q -L '{pclog}' -s "$l" -o - >/dev/null ;;
        zstd) "$4" -c -q -L '{pclog}' -s "$l" -o - | zstd -q -T0 -3 >"$o/p$1.img.zst" ;;
    esac || {{ losetup -d "$l"; exit 1; }}
    losetup -d "$l"
}}
{calls}
"""
    restore = f"""set -euo pipefail
i=$1 t=$2
sfdisk -q --no-reread --no-tell-kernel "$t" <"$i/pt.sf"
dd if="$i/mbr" of="$t" bs=446 count=1 conv=notrunc status=none
dd if="$i/hidden-data-after-mbr" of="$t" bs={ss} seek=1 conv=notrunc status=none
part() {{
    local l
    l=$(losetup -f --show -o "$2" --sizelimit "$3" "$t")
    if [ -e "$i/p$1.img.zst" ]; then
        zstd -dc "$i/p$1.img.zst" | "$4" -r -q -L '{pclog}' -s - -O "$l"
    else
        "$4" -r -q -L '{pclog}' -s "$i/p$1.img" -O "$l"
    fi || {{ losetup -d "$l"; exit 1; }}
    losetup -d "$l"
}}
{calls}
"""
    return save, restore


def disk_versions(fsimg, lay):
    v = tool_versions(fsimg, None, DISK_FS[lay["parts"][0]["fam"]]["partclone"])
    fams = {p["fam"] for p in lay["parts"]}
    if "ext" in fams:
        m = re.search(r"e2image ([\d.]+)", out_of(["e2image"]))
        v["e2fsprogs"] = m.group(1) if m else "?"
    if "fat" in fams:
        m = re.search(r"fsck.fat ([\d.]+)", out_of(["fsck.fat", "-n", "/dev/null"]))
        v["dosfstools"] = m.group(1) if m else "?"
    m = re.search(r"util-linux ([\d.]+)", out_of(["sfdisk", "--version"]))
    v["util-linux"] = m.group(1) if m else "?"
    m = re.search(r"\(GNU coreutils\) ([\d.]+)", out_of(["dd", "--version"]))
    v["coreutils"] = m.group(1) if m else "?"
    return v


def disk_main(a, text):
    global PRETOUCH
    fsimg, disk, work = a.fsimg, a.vol, a.work
    W = lambda name: os.path.join(work, name)  # noqa: E731
    lay = disk_layout(disk, text)
    if lay["label"] != "dos":
        sys.exit("bench: the Clonezilla way here knows MBR disks only")
    used, dev_size, parts = lay["used"], lay["size"], lay["parts"]
    PRETOUCH = (2 * used + 256 * MiB) if a.pretouch is None else a.pretouch * MiB
    layout = "; ".join(f"partition {p['n']} {p['fs']}, {p['bytes'] / MiB:.0f} MiB at sector "
                       f"{p['start']}, {p['used']} used" for p in parts)
    log(f"disk {disk}: MBR, {dev_size / MiB:.0f} MiB; {layout}; fsimg copies "
        f"{used / MiB:.0f} MiB ({100 * used / dev_size:.1f} %)")
    pclog = W("partclone.log")
    cz_save, cz_restore = W("clonezilla-save.sh"), W("clonezilla-restore.sh")
    for path, script in zip((cz_save, cz_restore), clonezilla_scripts(lay, pclog)):
        with open(path, "w") as f:
            f.write(script)

    # The reference: fsimg's sparse clone (as for a volume); its data
    # extents are the used ranges the read limit reads.
    log("making the reference clone (untimed)")
    ref_clone, ranges = W("ref.clone"), W("ranges.txt")
    rm(ref_clone)
    sh([fsimg, "-q", "-o", ref_clone, disk])
    with open(ranges, "w") as f:
        sh(["python3", os.path.join(HERE, "bench-readused.py"), "ranges", ref_clone], stdout=f)
    extents = [tuple(map(int, line.split())) for line in open(ranges)]
    nranges, range_bytes = len(extents), sum(n for _, n in extents)
    ref_crc = crc(ref_clone)
    rm(ref_clone)
    # The probe reads the first 128 MiB of the used ranges (most of the disk is holes).
    PROBE_AT[:] = []
    left = 128 * MiB
    for off, n in extents:
        if left <= 0:
            break
        PROBE_AT.append((off, min(n, left)))
        left -= min(n, left)
    log("CRC of the disk (untimed, for dd's clone)")
    disk_crc = crc(disk)

    def truncate(path):
        def f():
            rm(path)
            with open(path, "wb") as fh:
                fh.truncate(dev_size)
        return f

    def fresh(path):
        return lambda: rm(path)

    def same_as_ref(path, what):
        got = crc(path)
        if got == ref_crc:
            return [(True, f"{what} == reference clone")]
        sh([fsimg, "-q", "-o", ref_clone, disk])
        try:
            diff = differing_blocks(path, ref_clone)
        finally:
            rm(ref_clone)
        return [(False, f"{what} vs reference clone: {len(diff)} 4096-byte blocks differ"
                 + (f" (size {got[1]} vs {ref_crc[1]})" if got[1] != ref_crc[1] else "")
                 + f", first: {diff[:10]}")]

    def fsck_parts(path, what):
        """Each partition of the disk image `path` checked through a
        read-only loop device at its offset, and its table and boot gap
        compared with the disk's."""
        out = []
        for p in parts:
            loop = out_of(["losetup", "-f", "--show", "-r", "-o", p["off"], "--sizelimit",
                           p["bytes"], path])
            try:
                argv = DISK_FS[p["fam"]]["fsck"] + [loop]
                r = subprocess.run(argv, capture_output=True, text=True)
            finally:
                sh(["losetup", "-d", loop])
            out.append((r.returncode == 0, f"{' '.join(argv[:-1])} of partition {p['n']} of "
                        f"{what}: rc {r.returncode}"
                        + (" (clean)" if r.returncode == 0 else "\n" + r.stdout + r.stderr)))
        n = min(p["off"] for p in parts)
        with open(path, "rb") as x, open(disk, "rb") as y:
            same = x.read(n) == y.read(n)
        out.append((same, f"sector 0 and the boot gap ({n} bytes) of {what} "
                    + ("== the disk's" if same else "DIFFER from the disk's")))
        return out

    def cz_restored(src, what):
        """Restores the Clonezilla way's image directory `src` onto a new
        file and compares it with the reference clone."""
        def f():
            tmp = W("cz.restored")
            truncate(tmp)()
            r = subprocess.run(["bash", cz_restore, src, tmp], capture_output=True, text=True)
            if r.returncode != 0:
                rm(tmp)
                return [(False, f"{what}: rc {r.returncode}\n{r.stderr[-2000:]}")]
            c = same_as_ref(tmp, what)
            rm(tmp)
            return c
        return f

    def fsimg_restored(img, what):
        def f():
            c = []
            r = subprocess.run([fsimg, "verify", img], capture_output=True, text=True)
            c.append((r.returncode == 0, f"fsimg verify: {(r.stdout + r.stderr).strip()} "
                      f"(rc {r.returncode})"))
            tmp = W("f.restored")
            rm(tmp)
            sh([fsimg, "-q", "-r", "-o", tmp, img])
            c += same_as_ref(tmp, what)
            rm(tmp)
            return c
        return f

    pc_env = {"LD_PRELOAD": a.shim} if a.shim else None
    cz_note = ("the Clonezilla way, one bash script: sfdisk -d, dd of sector 0 and of the gap "
               "before partition 1, then for each partition losetup -f -r -o OFF --sizelimit "
               "SIZE (included in the time: about 4 ms each) and "
               + " / ".join(sorted({DISK_FS[p["fam"]]["partclone"] for p in parts}))
               + " -c -s LOOP; peak RSS is its largest process (pipeline stages not summed); "
               + ("partclone with the sleep shim" if a.shim else
                  "stock partclone: includes up to 2 s of progress-thread sleep per partition"))
    czr_note = ("Clonezilla's restore, one bash script: sfdisk of the saved table onto the "
                "target, dd of the boot code and the gap, then for each partition losetup at "
                "its offset in the target (timed) and partclone -r -O LOOP; target pre-sized "
                "with truncate, untimed; "
                + ("sleep shim" if a.shim else "stock partclone"))

    scenarios = []

    # 1. Save to /dev/null.
    def verify_save():
        r = subprocess.run(f"'{fsimg}' -q -s -o - '{disk}' | '{fsimg}' verify -", shell=True,
                           capture_output=True, text=True)
        return [(r.returncode == 0, "fsimg -s -o - | fsimg verify -: "
                 f"{(r.stdout + r.stderr).strip()} (rc {r.returncode})")]

    cz_null = W("cz.null")
    scenarios.append(Scenario("save", "save image to /dev/null", [
        Tool("fsimg -s", Cmd([fsimg, "-q", "-s", "-o", "-", disk])),
        Tool("Clonezilla way -c", Cmd(["bash", cz_save, disk, cz_null, "null"]),
             setup=fresh(cz_null), env=pc_env,
             note=cz_note + "; partclone -o - >/dev/null (the table, sector 0 and the gap "
                  "to small files)"),
    ], verify_save))

    # 2. Save to a file in /dev/shm.
    img_out, cz_out = W("save.fsimg"), W("save.cz")
    scenarios.append(Scenario("savefile", "save image to /dev/shm file", [
        Tool("fsimg -s", Cmd([fsimg, "-q", "-s", "-o", img_out, disk]), setup=fresh(img_out),
             output=img_out, check=fsimg_restored(img_out, "fsimg -r of fsimg -s's image")),
        Tool("Clonezilla way -c", Cmd(["bash", cz_save, disk, cz_out, "file"]),
             setup=fresh(cz_out), output=cz_out, env=pc_env,
             note=cz_note + "; into a directory: pt.sf, mbr, hidden-data-after-mbr, pN.img",
             check=cz_restored(cz_out, "Clonezilla's restore of its save")),
    ]))

    # 3. Sparse clone to a file.
    out_f, out_d = W("clone.fsimg"), W("clone.dd")

    def check_dd():
        got = crc(out_d)
        return [(got == disk_crc, "dd conv=sparse's clone " + (
            "== the disk" if got == disk_crc else f"DIFFERS from the disk ({got} vs {disk_crc})"))]

    scenarios.append(Scenario("clone", "sparse clone to /dev/shm file", [
        Tool("fsimg -o", Cmd([fsimg, "-q", "-o", out_f, disk]), setup=fresh(out_f),
             output=out_f, size="alloc",
             check=lambda: fsck_parts(out_f, "fsimg's clone") + same_as_ref(out_f, "fsimg -o")),
        Tool("dd conv=sparse", Cmd(["dd", f"if={disk}", f"of={out_d}", "bs=4M", "conv=sparse",
                                    "status=none"]),
             setup=fresh(out_d), output=out_d, size="alloc", check=check_dd,
             note="dd bs=4M conv=sparse: reads the whole disk (its holes too: the disk is a "
                  "sparse file, so free space that never held data reads as zeros and is "
                  "skipped), writes every non-zero 4 MiB block, deleted files' data included"),
    ]))

    # 4. Restore an image onto a file.  Each restores its own image, made untimed.
    img_f, img_c = W("img.fsimg"), W("img.cz")
    res_f, res_c = W("restore.fsimg"), W("restore.cz")
    restore = Scenario("restore", "restore image to /dev/shm file", [
        Tool("fsimg -r -O", Cmd([fsimg, "-q", "-r", "-O", res_f, img_f]), setup=truncate(res_f),
             output=res_f, size="alloc",
             note="target pre-sized with truncate, untimed",
             inputs=[(img_f, lambda: sh([fsimg, "-q", "-s", "-o", img_f, disk]))],
             check=lambda: same_as_ref(res_f, "fsimg -r -O")),
        Tool("Clonezilla way -r", Cmd(["bash", cz_restore, img_c, res_c]), setup=truncate(res_c),
             output=res_c, size="alloc", env=pc_env, note=czr_note,
             inputs=[(img_c, lambda: sh(["bash", cz_save, disk, img_c, "file"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))],
             check=lambda: same_as_ref(res_c, "Clonezilla way -r")),
    ])
    scenarios.append(restore)

    # 5. Compressed save.
    z_f, z_c = W("save.fsimg.zst"), W("save.cz.zst")
    scenarios.append(Scenario("zstd", "compressed save (zstd -3) to /dev/shm file", [
        Tool("fsimg -s -z 3", Cmd([fsimg, "-q", "-s", "-z", "3", "-o", z_f, disk]),
             setup=fresh(z_f), output=z_f, note=f"-j default = {os.cpu_count()} threads",
             check=fsimg_restored(z_f, "fsimg -r of the -z image")),
        Tool("Clonezilla way -c | zstd -T0 -3", Cmd(["bash", cz_save, disk, z_c, "zstd"]),
             setup=fresh(z_c), output=z_c, env=pc_env,
             note=cz_note + "; partclone -o - | zstd -T0 -3 > pN.img.zst (Clonezilla's -z9p)",
             check=cz_restored(z_c, "zstd -d | partclone -r (Clonezilla's restore)")),
    ]))

    # 6. The read limit.
    scenarios.append(Scenario("limit", "read limit", [
        Tool("fsimg -s", Cmd([fsimg, "-q", "-s", "-o", "-", disk]),
             note="same as row 1, for the ratio"),
        *limit_tools(disk, ranges, W,
                     f"{nranges} used ranges, {range_bytes / MiB:.1f} MiB (the data extents of "
                     "fsimg's sparse clone of the disk: sector 0, the boot gap and the used "
                     "blocks of each partition, at their offsets in the disk)",
                     "a plain copy of the used ranges"),
    ]))

    # 7. Files out of the image (fsimg cat, fsimg extract) against the
    # restore-and-copy way, on the ext4 partition (--partition N).
    ext = next((p for p in parts if p["fam"] == "ext"), None)
    files, drop_files = files_scenarios(fsimg, disk, "ext4", {}, W, ext) if ext else ([], None)
    scenarios += files

    scenarios = pick_scenarios(scenarios, a.only, drop_files)

    need = 3 * used * 1.05 + 2 * GiB
    if restore in scenarios and mem_available() < need:
        restore.lean = True
        log(f"restore: {mem_available() / GiB:.1f} GiB available, {need / GiB:.1f} GiB wanted "
            "for both images at once: each image is made before each run (lean)")

    load_start = open("/proc/loadavg").read().split()[:3]
    t_start = time.time()
    for sc in scenarios:
        run_scenario(sc, a.runs, work)
    elapsed = time.time() - t_start
    load_end = open("/proc/loadavg").read().split()[:3]

    fams = "+".join(p["fs"] for p in parts)
    name = os.path.basename(disk)
    report(a, scenarios, used, elapsed, load_start, load_end, disk,
           title=f"disk (MBR, {fams})",
           summary=f"disk: {name}, {dev_size / MiB:.0f} MiB, MBR; {layout}; fsimg copies "
                   f"{used / MiB:.0f} MiB",
           describe=f"- disk: `{name}` in /dev/shm, a sparse file of {dev_size / MiB:.0f} MiB, "
                    f"MBR (label-id {lay['id']}); {layout}; fsimg copies {used / MiB:.0f} MiB "
                    f"({100 * used / dev_size:.1f} %: sector 0, the {lay['gap'] // MiB} MiB "
                    f"before partition 1 and the used blocks), {nranges} used ranges",
           vers=disk_versions(fsimg, lay),
           lean=" restore in lean mode (each image made, untimed, before each run)"
           if restore.lean else "")


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fsimg", required=True)
    ap.add_argument("--vol", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", required=True)
    ap.add_argument("--md", default=None)
    ap.add_argument("--label", default="")
    ap.add_argument("--only", default="", help="comma-separated scenario keys")
    ap.add_argument("--shim", default="", help="partclone-nosleep.so to LD_PRELOAD")
    ap.add_argument("--pretouch", type=int, default=None,
                    help="MiB of memory written and freed before each run (default: twice "
                    "the used bytes plus 256 MiB; 0: none)")
    ap.add_argument("--no-settle", action="store_true",
                    help="do not wait for free page reporting to end before each run")
    a = ap.parse_args()
    global SETTLE, PROBE_VOL
    SETTLE = not a.no_settle and os.path.exists(REPORTED_KIB)
    PROBE_VOL = a.vol

    fsimg, vol, work = a.fsimg, a.vol, a.work
    os.makedirs(work, exist_ok=True)
    text = out_of([fsimg, "info", vol])
    if re.search(r"^partition table\s", text, re.M):
        return disk_main(a, text)
    info = dict(re.split(r"\s{2,}", l.strip(), maxsplit=1)
                for l in text.splitlines() if l.strip())
    fsname = info["filesystem"]
    fs = ("ext4" if fsname.startswith("ext") else "fat32" if fsname.startswith("fat")
          else fsname)
    if fs not in FILESYSTEMS:
        sys.exit(f"bench: no peers known for {fsname}")
    pcbin = FILESYSTEMS[fs]["partclone"]
    used = int(info["used bytes"])
    global PRETOUCH
    PRETOUCH = (2 * used + 256 * MiB) if a.pretouch is None else a.pretouch * MiB
    dev_size = int(info["device size"])
    log(f"volume {vol}: {fsname}, {dev_size / MiB:.0f} MiB, {used / MiB:.0f} MiB used "
        f"({100 * used / dev_size:.1f} %)")
    pclog = os.path.join(work, "partclone.log")
    W = lambda name: os.path.join(work, name)  # noqa: E731

    # The reference: fsimg's sparse clone, made once, untimed.  Its data
    # extents are the used ranges the read limit reads; its CRC is what every
    # clone and restore is checked against.  It is removed to save RAM and
    # made again only to say where an output differs.
    log("making the reference clone (untimed)")
    ref_clone, ranges = W("ref.clone"), W("ranges.txt")
    rm(ref_clone)
    sh([fsimg, "-q", "-o", ref_clone, vol])
    with open(ranges, "w") as f:
        sh(["python3", os.path.join(HERE, "bench-readused.py"), "ranges", ref_clone], stdout=f)
    nranges = sum(1 for _ in open(ranges))
    ref_crc = crc(ref_clone)
    rm(ref_clone)

    def truncate(path):
        def f():
            rm(path)
            with open(path, "wb") as fh:
                fh.truncate(dev_size)
        return f

    def fresh(path):
        return lambda: rm(path)

    def partclone(*args):
        return [pcbin, *args, "-q", "-L", pclog]

    # Where partclone's copy may differ from fsimg's, and why.  NTFS: the
    # device is larger than the volume (the backup boot sector sits in the
    # last sector, past the last cluster); ntfsclone and fsimg copy that tail,
    # partclone.ntfs does not.
    ntfs_end = None
    if fs == "ntfs":
        ntfs_end = int(info["NTFS clusters"]) * int(info["NTFS cluster size"])

    # exFAT: partclone.exfat's loop over the allocation bitmap stops before
    # the last two clusters; when they are used it does not copy them.
    exfat_tail = None
    if fs == "exfat":
        ecs = int(info["exFAT cluster size"])
        heap = int(info["cluster heap at sector"]) * int(info["bytes per sector"])
        exfat_tail = heap + (int(info["exFAT clusters"]) - 2) * ecs

    def allow_partclone(diff, bs):
        if exfat_tail is not None and diff and min(diff) * bs >= exfat_tail:
            return True, ("differs only in the last two clusters of the exFAT heap, which "
                          "partclone.exfat never copies")
        if fs == "btrfs":
            # partclone.btrfs (0.3.23 here) leaves out the first MiB but the
            # superblock and the second copy of DUP chunks, and copies stale
            # tree blocks (tests/btrfs.rs, used_count_against_partclone,
            # explains each on the test volumes): its copy is accepted when
            # btrfs check --readonly passes on it, with the count said.
            return True, ("partclone.btrfs's known differences (first MiB, DUP second copies, "
                          "stale tree blocks); its copy is checked with btrfs check --readonly")
        if ntfs_end is not None and diff and min(diff) * bs >= ntfs_end:
            return True, (f"differs only in the {dev_size - ntfs_end} bytes past the end of the "
                          "NTFS volume (the backup boot sector), which partclone.ntfs does not copy")
        return False, ""

    def allow_e2image(diff, bs):
        other = [b for b in diff if b not in ext_metadata_blocks(vol)]
        if other:
            return False, (f"{len(other)} of them outside superblocks, descriptors and bitmaps, "
                           f"first: {other[:10]}")
        return True, ("all superblocks, descriptors or bitmaps, which e2image -ra writes from its "
                      "in-memory copy (backup superblocks, uninitialised bitmaps)")

    def same_as_ref(path, what, allow=None):
        """[(ok, text)]: is `path` the reference clone, or does it differ
        only where `allow` accepts?"""
        got = crc(path)
        if got == ref_crc:
            return [(True, f"{what} == reference clone")]
        bs = 512 if fs == "ntfs" else int(info.get("cluster size", 4096))
        sh([fsimg, "-q", "-o", ref_clone, vol])
        try:
            diff = differing_blocks(path, ref_clone, bs)
        finally:
            rm(ref_clone)
        text = (f"{what} vs reference clone: {len(diff)} {bs}-byte blocks differ"
                + (f" (size {got[1]} vs {ref_crc[1]})" if got[1] != ref_crc[1] else ""))
        if allow:
            ok, why = allow(diff, bs)
            return [(ok, f"{text}; {why}" if why else text + f", first: {diff[:10]}")]
        return [(False, text + f", first: {diff[:10]}")]

    def fsck_of(path, what):
        argv = FILESYSTEMS[fs]["fsck"] + [path]
        r = subprocess.run(argv, capture_output=True, text=True)
        return [(r.returncode == 0, f"{' '.join(argv[:-1])} of {what}: rc {r.returncode}"
                 + (" (clean)" if r.returncode == 0 else "\n" + r.stdout + r.stderr))]

    pc_env = {"LD_PRELOAD": a.shim} if a.shim else None
    pc_note = "sleep shim" if a.shim else "stock: includes up to 2 s of progress-thread sleep"
    pc_name = pcbin + " "

    scenarios = []

    # 1. Save the image format to /dev/null.
    def verify_save():
        r = subprocess.run(f"'{fsimg}' -q -s -o - '{vol}' | '{fsimg}' verify -", shell=True,
                           capture_output=True, text=True)
        return [(r.returncode == 0, "fsimg -s -o - | fsimg verify -: "
                 f"{(r.stdout + r.stderr).strip()} (rc {r.returncode})")]

    save_tools = [Tool("fsimg -s", Cmd([fsimg, "-q", "-s", "-o", "-", vol]))]
    if fs == "ntfs":
        save_tools.append(Tool("ntfsclone -s", Cmd(["ntfsclone", "-q", "-s", "-o", "-", vol])))
    save_tools.append(Tool(pc_name + "-c", Cmd(partclone("-c", "-s", vol, "-o", "-")),
                           env=pc_env, note=pc_note))
    if a.shim:
        save_tools.append(Tool(pc_name + "-c, stock", Cmd(partclone("-c", "-s", vol, "-o", "-")),
                               note="no shim: what a user waits"))
    if fs == "ext4":
        save_tools.append(Tool("e2image -ra", Cmd(["e2image", "-ra", vol, "-"]),
                               note="raw to stdout: writes the whole volume, zeros for free blocks"))
    scenarios.append(Scenario("save", "save image to /dev/null", save_tools, verify_save))

    # 2. Sparse clone to a file in /dev/shm.
    out_f, out_n, out_e, out_p = W("clone.fsimg"), W("clone.ntfsclone"), W("clone.e2image"), \
        W("clone.partclone")
    clone_tools = [Tool("fsimg -o", Cmd([fsimg, "-q", "-o", out_f, vol]), setup=fresh(out_f),
                        output=out_f, size="alloc",
                        check=lambda: fsck_of(out_f, "fsimg's clone")
                        + same_as_ref(out_f, "fsimg -o"))]
    if fs == "ntfs":
        clone_tools.append(Tool("ntfsclone -o", Cmd(["ntfsclone", "-q", "-o", out_n, vol]),
                                setup=fresh(out_n), output=out_n, size="alloc",
                                check=lambda: same_as_ref(out_n, "ntfsclone -o")))
    if fs == "ext4":
        clone_tools.append(Tool("e2image -ra", Cmd(["e2image", "-ra", vol, out_e]),
                                setup=fresh(out_e), output=out_e, size="alloc",
                                check=lambda: same_as_ref(out_e, "e2image -ra", allow_e2image)))
    clone_tools.append(Tool(pc_name + "-b", Cmd(partclone("-b", "-s", vol, "-O", out_p)),
                            setup=truncate(out_p), output=out_p, size="alloc", env=pc_env,
                            note=pc_note + "; target pre-sized with truncate, untimed",
                            check=lambda: same_as_ref(out_p, pc_name + "-b", allow_partclone)
                            + (fsck_of(out_p, "partclone's clone") if fs == "btrfs" else [])))
    scenarios.append(Scenario("clone", "sparse clone to /dev/shm file", clone_tools))

    # 3. Restore from an image.  Each tool restores its own image, made untimed.
    img_f, img_n, img_p = W("img.fsimg"), W("img.ntfsclone"), W("img.partclone")
    res_f, res_n, res_p = W("restore.fsimg"), W("restore.ntfsclone"), W("restore.partclone")
    restore_tools = [Tool("fsimg -r", Cmd([fsimg, "-q", "-r", "-o", res_f, img_f]),
                          setup=fresh(res_f), output=res_f, size="alloc",
                          inputs=[(img_f, lambda: sh([fsimg, "-q", "-s", "-o", img_f, vol]))],
                          check=lambda: same_as_ref(res_f, "fsimg -r"))]
    if fs == "ntfs":
        restore_tools.append(Tool(
            "ntfsclone -r", Cmd(["ntfsclone", "-q", "-r", "-o", res_n, img_n]),
            setup=fresh(res_n), output=res_n, size="alloc",
            inputs=[(img_n, lambda: sh(["ntfsclone", "-q", "-s", "-o", img_n, vol],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))],
            check=lambda: same_as_ref(res_n, "ntfsclone -r")))
    restore_tools.append(Tool(
        pc_name + "-r", Cmd(partclone("-r", "-s", img_p, "-O", res_p)), setup=truncate(res_p),
        output=res_p, size="alloc", env=pc_env,
        note=pc_note + "; target pre-sized with truncate, untimed",
        inputs=[(img_p, lambda: sh(partclone("-c", "-s", vol, "-o", img_p),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))],
        check=lambda: same_as_ref(res_p, pc_name + "-r", allow_partclone)))
    restore = Scenario("restore", "restore image to /dev/shm file", restore_tools)
    scenarios.append(restore)

    # 4. Compressed save.
    z_f, z_n, z_p = W("save.fsimg.zst"), W("save.ntfsclone.zst"), W("save.pc.zst")

    def check_zf():
        c = []
        r = subprocess.run([fsimg, "verify", z_f], capture_output=True, text=True)
        c.append((r.returncode == 0, f"fsimg verify: {(r.stdout + r.stderr).strip()} "
                  f"(rc {r.returncode})"))
        tmp = W("z.restored")
        rm(tmp)
        sh([fsimg, "-q", "-r", "-o", tmp, z_f])
        c += same_as_ref(tmp, "fsimg -r of the -z image")
        rm(tmp)
        return c

    def check_zpipe(path, restore_cmd, what, allow=None, pre=None):
        def f():
            tmp = W("z.restored")
            rm(tmp)
            if pre:
                pre(tmp)
            r = subprocess.run(f"zstd -dc '{path}' | {restore_cmd(tmp)}", shell=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode != 0:
                rm(tmp)
                return [(False, f"{what}: rc {r.returncode}")]
            c = same_as_ref(tmp, what, allow)
            rm(tmp)
            return c
        return f

    zstd_tools = [Tool("fsimg -s -z 3", Cmd([fsimg, "-q", "-s", "-z", "3", "-o", "-", vol],
                                            stdout=z_f),
                       output=z_f, note=f"-j default = {os.cpu_count()} threads",
                       check=check_zf)]
    if fs == "ntfs":
        zstd_tools.append(Tool(
            "ntfsclone -s | zstd -T0 -3",
            Cmd(["ntfsclone", "-q", "-s", "-o", "-", vol], ["zstd", "-q", "-T0", "-3"], stdout=z_n),
            output=z_n,
            check=check_zpipe(z_n, lambda tmp: f"ntfsclone -q -r -o '{tmp}' -",
                              "zstd -d | ntfsclone -r")))
    zstd_tools.append(Tool(
        pc_name + "-c | zstd -T0 -3",
        Cmd(partclone("-c", "-s", vol, "-o", "-"), ["zstd", "-q", "-T0", "-3"], stdout=z_p),
        output=z_p, env=pc_env, note=pc_note,
        check=check_zpipe(z_p, lambda tmp: f"{pcbin} -r -q -L '{pclog}' -s - -O '{tmp}'",
                          f"zstd -d | {pc_name}-r", allow_partclone, pre=lambda t: truncate(t)())))
    scenarios.append(Scenario("zstd", "compressed save (zstd -3) to /dev/shm file", zstd_tools))

    # 5. The read limit.
    frac = used / dev_size
    scenarios.append(Scenario("limit", "read limit", [
        Tool("fsimg -s", Cmd([fsimg, "-q", "-s", "-o", "-", vol]), note="same as row 1, for the ratio"),
        Tool("dd whole volume, scaled", Cmd(["dd", f"if={vol}", "of=/dev/null", "bs=4M", "status=none"]),
             scale=frac, note=f"dd bs=4M time x used fraction {frac:.3f}"),
        *limit_tools(vol, ranges, W,
                     f"{nranges} used ranges (the data extents of fsimg's sparse clone)",
                     "a plain copy of the used ranges (a copy that overlaps reads and writes on "
                     "two threads can beat it)"),
    ]))

    # 6. Standard output through a pipe, beside the pipe floor.
    def pc_tool(args, after, what, role):
        t = Tool(pc_name + what, Cmd(partclone(*args), *after), env=pc_env, note=pc_note)
        t.role = role
        return t

    scenarios += pipe_scenarios(fsimg, vol, fs, W, pc_tool, W("pipe.fsimg"), W("pipe.clone"))

    # 7. Files out of the image (fsimg cat, fsimg extract) against the
    # restore-and-copy way.
    # (Not for exFAT, XFS or btrfs: fsimg ls/cat/extract do not read them.)
    if fs not in ("exfat", "xfs", "btrfs"):
        files, drop_files = files_scenarios(fsimg, vol, fs, info, W)
        scenarios += files
    else:
        drop_files = None

    scenarios = pick_scenarios(scenarios, a.only, drop_files)

    # The restore scenario holds one image per tool plus one output: lean
    # mode if that would leave less than 2 GiB of the memory available.
    nimg = len(restore.tools)
    need = (nimg + 1) * used * 1.05 + 2 * GiB
    if restore in scenarios and mem_available() < need:
        restore.lean = True
        log(f"restore: {mem_available() / GiB:.1f} GiB available, {need / GiB:.1f} GiB wanted "
            "for all images at once: each image is made before each run (lean)")

    load_start = open("/proc/loadavg").read().split()[:3]
    t_start = time.time()
    for sc in scenarios:
        run_scenario(sc, a.runs, work)
    elapsed = time.time() - t_start
    load_end = open("/proc/loadavg").read().split()[:3]

    lean = " restore in lean mode (each image made, untimed, before each run)" \
        if restore.lean else ""
    report(a, scenarios, used, elapsed, load_start, load_end, vol,
           title=fsname,
           summary=f"{fsname}: {os.path.basename(vol)}, {dev_size / MiB:.0f} MiB, "
                   f"{used / MiB:.0f} MiB used",
           describe=f"- volume: `{os.path.basename(vol)}` in /dev/shm, {fsname}, "
                    f"{dev_size / MiB:.0f} MiB, {info.get('cluster size', '?')}-byte clusters, "
                    f"{used / MiB:.0f} MiB used ({100 * frac:.1f} %), {nranges} used ranges",
           vers=tool_versions(fsimg, fs, pcbin), lean=lean)


def report(a, scenarios, used, elapsed, load_start, load_end, vol, title, summary, describe,
           vers, lean=""):
    """Prints the table, the checks and the targets; exits 1 if a check
    failed, else appends the entry to a.md (if given)."""
    head, rows, notes = build_table(scenarios, used)
    goals = targets(scenarios)
    mach = machine_info()
    meta = ""
    if os.path.exists(vol + ".meta"):
        meta = open(vol + ".meta").read().strip()
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    checks = [c for sc in scenarios for c in sc.checks]
    failed = [t for ok, t in checks if not ok]

    print()
    print(summary)
    print(text_table(head, rows))
    print()
    for i, n in enumerate(notes):
        print(f"[{i + 1}] {n}")
    for ok, c in checks:
        print("check:" if ok else "check FAILED:", c)
    for g in goals:
        print(g)
    print(f"({a.runs} timed runs per tool, median; benchmark took {elapsed:.0f} s; "
          f"load average {' '.join(load_start)} -> {' '.join(load_end)})")
    if failed:
        log(f"bench: {len(failed)} check(s) failed: nothing appended to the markdown file")
        sys.exit(1)

    if a.md:
        md = []
        md.append(f"## {date} — {title}{', ' + a.label if a.label else ''}")
        md.append("")
        md.append(f"- machine: {mach['cpus']} CPUs, {mach['cpu']}, {mach['ram']} RAM, "
                  f"Linux {mach['kernel']}; load average {' '.join(load_start)} at the start, "
                  f"{' '.join(load_end)} at the end (other work on the machine adds noise)")
        md.append("- tools: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
        md.append(describe)
        if meta:
            md.append(f"- contents: {meta}")
        md.append(f"- {a.runs} timed runs per tool after one untimed warm-up, each round running "
                  "every tool once in a seeded shuffled order; median wall time; "
                  "MiB/s = used bytes (of cat and extract: the bytes of the files they copy) "
                  "/ median time; "
                  "peak RSS = max ru_maxrss over the runs "
                  "(summed over pipeline stages); "
                  "fsimg/peer time > 1 means fsimg is slower; "
                  + (f"{PRETOUCH // MiB} MiB of memory written and freed before each run "
                     "that writes a file (VM page backing, see tools/bench.py); "
                     if PRETOUCH else "")
                  + ("each run started once the guest had stopped reporting freed memory to "
                     "the host (see tools/bench.py); " if SETTLE else "")
                  + 
                  f"the benchmark took {elapsed:.0f} s"
                  + (";" + lean if lean else ""))
        md.append("")
        md.append(md_table(head, rows))
        md.append("")
        for i, n in enumerate(notes):
            md.append(f"[{i + 1}] {n}  ")
        md.append("")
        for _, c in checks:
            md.append(f"- check: {c}")
        for g in goals:
            md.append(f"- {g}")
        md.append("")
        os.makedirs(os.path.dirname(os.path.abspath(a.md)), exist_ok=True)
        new = not os.path.exists(a.md)
        with open(a.md, "a") as f:
            if new:
                f.write("# Benchmarks\n\nAppended by `tools/bench.sh` (see the script for what "
                        "each scenario runs). Newest last.\n\n")
            f.write("\n".join(md) + "\n")
        log(f"appended to {a.md}")


if __name__ == "__main__":
    main()
