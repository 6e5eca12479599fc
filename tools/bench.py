#!/usr/bin/env python3
"""Benchmark runner behind tools/bench.sh: fsimg against partclone, e2image
and the read limit on one volume image kept in RAM (/dev/shm).

Usage (normally through tools/bench.sh):
    bench.py --fsimg BIN --vol VOL --runs N --work DIR [--md FILE] [--label TEXT]

Every scenario runs each of its tools once untimed first (warm-up; its output
is checked for correctness), then N timed rounds, each round running every
tool once, in an order rotated from round to round.  Wall time is measured
around the whole command (all stages of a pipeline); peak RSS is what
/usr/bin/time prints (%M, ru_maxrss), summed over the stages of a pipeline.
partclone runs with tools/partclone-nosleep.c preloaded when --shim is given
(its progress thread otherwise rounds every run up to a multiple of 2 s).  Nothing is dropped from the page cache: the
volume lives in tmpfs.
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

MiB = 1 << 20
HERE = os.path.dirname(os.path.abspath(__file__))


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


def sh(argv, **kw):
    return subprocess.run(list(map(str, argv)), check=True, **kw)


def out_of(argv):
    r = subprocess.run(list(map(str, argv)), capture_output=True, text=True)
    return (r.stdout + r.stderr).strip()


def allocated(path):
    return os.stat(path).st_blocks * 512


def rm(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def files_equal(a, b):
    return subprocess.run(["cmp", "-s", a, b]).returncode == 0


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
                 env=None, inner=None):
        self.name = name
        self.cmd = cmd
        self.env = env          # extra environment (the partclone shim)
        self.inner = inner      # regex on stderr giving the time to use instead of wall
        self.setup = setup      # untimed, before each run
        self.output = output    # file the run makes; removed after each run
        self.size = size        # "file" (st_size), "alloc" (st_blocks), or None
        self.scale = scale      # multiply the wall time (dd of the whole volume)
        self.note = note
        self.times = []
        self.rss = []
        self.stage_rss = None
        self.out_size = None


class Scenario:
    def __init__(self, key, title, tools, verify=None):
        self.key = key
        self.title = title
        self.tools = tools
        self.verify = verify
        self.checks = []


def run_scenario(sc, runs, work):
    errlog = os.path.join(work, f"{sc.key}.stderr")
    log(f"== {sc.title}")
    # Warm-up, untimed; outputs kept for the correctness check.
    for t in sc.tools:
        if t.setup:
            t.setup()
        log(f"   warm-up {t.name}: {t.cmd}")
        run(t.cmd, errlog, t.env)
    if sc.verify:
        sc.checks = [c.replace(work + "/", "") for c in sc.verify()]
        for c in sc.checks:
            log(f"   check: {c}")
    for t in sc.tools:
        if t.output:
            rm(t.output)
    for r in range(runs):
        k = r % len(sc.tools)
        order = sc.tools[k:] + sc.tools[:k]
        for t in order:
            if t.setup:
                t.setup()
            wall, rss, stage_rss, err = run(t.cmd, errlog, t.env)
            if t.inner:
                wall = float(re.search(t.inner, err).group(1))
            t.times.append(wall * t.scale)
            t.rss.append(rss)
            t.stage_rss = stage_rss
            if t.output:
                if t.size == "alloc":
                    t.out_size = allocated(t.output)
                elif t.size == "file":
                    t.out_size = os.path.getsize(t.output)
                rm(t.output)
        log(f"   round {r + 1}/{runs}: " + ", ".join(
            f"{t.name} {t.times[-1]:.3f}s" for t in sc.tools))


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


def tool_versions(fsimg):
    v = {}
    v["fsimg"] = re.sub(r"^fsimg ", "", os.environ.get("FSIMG_DESC")
                        or out_of([fsimg, "--version"]).splitlines()[0])
    m = re.search(r"v[\d.]+", out_of(["partclone.extfs", "-v"]))
    v["partclone"] = m.group(0) if m else "?"
    m = re.search(r"e2image ([\d.]+)", out_of(["e2image"]))
    v["e2fsprogs"] = m.group(1) if m else "?"
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
            rows.append([
                sc.title, name, f"{med:.3f}",
                f"{min(t.times):.3f}–{max(t.times):.3f}",
                f"{used / MiB / med:,.0f}",
                f"{max(t.rss) / MiB:.1f} MiB" + (
                    " (" + " + ".join(f"{r / MiB:.1f}" for r in t.stage_rss) + ")"
                    if t.stage_rss and len(t.stage_rss) > 1 else ""),
                fmt_size(t.out_size), ratio,
            ])
    return head, rows, notes


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
    a = ap.parse_args()

    fsimg, vol, work = a.fsimg, a.vol, a.work
    os.makedirs(work, exist_ok=True)
    info = dict(re.split(r"\s{2,}", l.strip(), maxsplit=1)
                for l in out_of([fsimg, "info", vol]).splitlines() if l.strip())
    used = int(info["used bytes"])
    dev_size = int(info["device size"])
    log(f"volume {vol}: {dev_size / MiB:.0f} MiB, {used / MiB:.0f} MiB used "
        f"({100 * used / dev_size:.1f} %)")
    pclog = os.path.join(work, "partclone.log")
    W = lambda name: os.path.join(work, name)  # noqa: E731

    # References, made once, untimed.
    log("making reference images (untimed)")
    ref_clone, ref_img, ref_pc, ranges = W("ref.clone"), W("ref.fsimg"), W("ref.pc"), W("ranges.txt")
    for p in (ref_clone, ref_img, ref_pc):
        rm(p)
    sh([fsimg, "-q", "-o", ref_clone, vol])
    sh([fsimg, "-q", "-s", "-o", ref_img, vol])
    sh(["partclone.extfs", "-c", "-q", "-s", vol, "-o", ref_pc, "-L", pclog],
       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(ranges, "w") as f:
        sh(["python3", os.path.join(HERE, "bench-readused.py"), "ranges", vol], stdout=f)
    nranges = sum(1 for _ in open(ranges))

    def truncate(path):
        def f():
            rm(path)
            with open(path, "wb") as fh:
                fh.truncate(dev_size)
        return f

    def partclone(*args):
        return ["partclone.extfs", *args, "-q", "-L", pclog]

    pc_env = {"LD_PRELOAD": a.shim} if a.shim else None
    pc_note = "sleep shim" if a.shim else "stock: includes up to 2 s of progress-thread sleep"

    scenarios = []

    # 1. Save the image format to /dev/null.
    def verify_save():
        r = subprocess.run(f"'{fsimg}' -q -s -o - '{vol}' | '{fsimg}' verify -", shell=True,
                           capture_output=True, text=True)
        return [f"fsimg -s -o - | fsimg verify -: {(r.stdout + r.stderr).strip()} (rc {r.returncode})"]

    scenarios.append(Scenario("save", "save image to /dev/null", [
        Tool("fsimg -s", Cmd([fsimg, "-q", "-s", "-o", "-", vol])),
        Tool("partclone -c", Cmd(partclone("-c", "-s", vol, "-o", "-")), env=pc_env, note=pc_note),
        *([Tool("partclone -c, stock", Cmd(partclone("-c", "-s", vol, "-o", "-")),
                note="no shim: what a user waits")] if a.shim else []),
        Tool("e2image -ra", Cmd(["e2image", "-ra", vol, "-"]),
             note="raw to stdout: writes the whole volume, zeros for free blocks"),
    ], verify_save))

    # 2. Sparse clone to a file in /dev/shm.
    out_f, out_e, out_p = W("clone.fsimg"), W("clone.e2image"), W("clone.partclone")

    def verify_clone():
        c = []
        r = subprocess.run(["e2fsck", "-fn", out_f], capture_output=True, text=True)
        c.append(f"e2fsck -fn of fsimg's clone: rc {r.returncode}"
                 + (" (clean)" if r.returncode == 0 else "\n" + r.stdout + r.stderr))
        c.append(f"fsimg clone == partclone -b clone: {files_equal(out_f, out_p)}")
        c.append(f"fsimg clone == reference clone: {files_equal(out_f, ref_clone)}")
        bs = int(info.get("block size", 4096))
        diff = differing_blocks(out_f, out_e, bs)
        other = [b for b in diff if b not in ext_metadata_blocks(vol)]
        c.append(f"fsimg clone vs e2image clone: {len(diff)} blocks differ, {len(other)} of them "
                 "outside superblocks, descriptors and bitmaps (e2image -ra writes those from "
                 "its in-memory copy: backup superblocks, uninitialised bitmaps)"
                 + (f"; first others: {other[:10]}" if other else ""))
        return c

    def clone_setup(path):
        return lambda: rm(path)

    scenarios.append(Scenario("clone", "sparse clone to /dev/shm file", [
        Tool("fsimg -o", Cmd([fsimg, "-q", "-o", out_f, vol]), setup=clone_setup(out_f),
             output=out_f, size="alloc"),
        Tool("e2image -ra", Cmd(["e2image", "-ra", vol, out_e]), setup=clone_setup(out_e),
             output=out_e, size="alloc"),
        Tool("partclone -b", Cmd(partclone("-b", "-s", vol, "-O", out_p)), setup=truncate(out_p),
             output=out_p, size="alloc", env=pc_env,
             note=pc_note + "; target pre-sized with truncate, untimed"),
    ], verify_clone))

    # 3. Restore from an image.
    res_f, res_p = W("restore.fsimg"), W("restore.partclone")

    def verify_restore():
        return [f"fsimg -r == reference clone: {files_equal(res_f, ref_clone)}",
                f"partclone -r == reference clone: {files_equal(res_p, ref_clone)}"]

    scenarios.append(Scenario("restore", "restore image to /dev/shm file", [
        Tool("fsimg -r", Cmd([fsimg, "-q", "-r", "-o", res_f, ref_img]), setup=clone_setup(res_f),
             output=res_f, size="alloc"),
        Tool("partclone -r", Cmd(partclone("-r", "-s", ref_pc, "-O", res_p)), setup=truncate(res_p),
             output=res_p, size="alloc", env=pc_env,
             note=pc_note + "; target pre-sized with truncate, untimed"),
    ], verify_restore))

    # 4. Compressed save.
    z_f, z_p = W("save.fsimg.zst"), W("save.pc.zst")

    def verify_z():
        c = []
        r = subprocess.run([fsimg, "verify", z_f], capture_output=True, text=True)
        c.append(f"fsimg verify: {(r.stdout + r.stderr).strip()} (rc {r.returncode})")
        tmp = W("z.restored")
        rm(tmp)
        sh([fsimg, "-q", "-r", "-o", tmp, z_f])
        c.append(f"fsimg -r of the -z image == reference clone: {files_equal(tmp, ref_clone)}")
        rm(tmp)
        truncate(tmp)()
        r = subprocess.run(f"zstd -dc '{z_p}' | partclone.extfs -r -q -L '{pclog}' -s - -O '{tmp}'",
                           shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c.append(f"zstd -d | partclone -r == reference clone: "
                 f"{r.returncode == 0 and files_equal(tmp, ref_clone)}")
        rm(tmp)
        return c

    scenarios.append(Scenario("zstd", "compressed save (zstd -3) to /dev/shm file", [
        Tool("fsimg -s -z 3", Cmd([fsimg, "-q", "-s", "-z", "3", "-o", "-", vol], stdout=z_f),
             output=z_f, note=f"-j default = {os.cpu_count()} threads"),
        Tool("partclone -c | zstd -T0 -3",
             Cmd(partclone("-c", "-s", vol, "-o", "-"), ["zstd", "-q", "-T0", "-3"], stdout=z_p),
             output=z_p, env=pc_env, note=pc_note),
    ], verify_z))

    # 5. The read limit.
    frac = used / dev_size
    scenarios.append(Scenario("limit", "read limit", [
        Tool("fsimg -s", Cmd([fsimg, "-q", "-s", "-o", "-", vol]), note="same as row 1, for the ratio"),
        Tool("dd whole volume, scaled", Cmd(["dd", f"if={vol}", "of=/dev/null", "bs=4M", "status=none"]),
             scale=frac, note=f"dd bs=4M time x used fraction {frac:.3f}"),
        Tool("pread used ranges", Cmd(["python3", os.path.join(HERE, "bench-readused.py"), "read",
                                       vol, ranges]), inner=r" in ([\d.]+) s \(",
             note=f"{nranges} used ranges from dumpe2fs, 4 MiB preads; read loop time, "
                  "without interpreter start-up"),
    ]))

    only = set(filter(None, a.only.split(",")))
    scenarios = [s for s in scenarios if not only or s.key in only]
    load_start = open("/proc/loadavg").read().split()[:3]
    t_start = time.time()
    for sc in scenarios:
        run_scenario(sc, a.runs, work)
    elapsed = time.time() - t_start
    load_end = open("/proc/loadavg").read().split()[:3]

    head, rows, notes = build_table(scenarios, used)
    mach = machine_info()
    vers = tool_versions(fsimg)
    meta = ""
    if os.path.exists(vol + ".meta"):
        meta = open(vol + ".meta").read().strip()
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    checks = [c for sc in scenarios for c in sc.checks]

    print()
    print(text_table(head, rows))
    print()
    for i, n in enumerate(notes):
        print(f"[{i + 1}] {n}")
    for c in checks:
        print("check:", c)
    print(f"({a.runs} timed runs per tool, median; benchmark took {elapsed:.0f} s)")

    if a.md:
        md = []
        md.append(f"## {date}{' — ' + a.label if a.label else ''}")
        md.append("")
        md.append(f"- machine: {mach['cpus']} CPUs, {mach['cpu']}, {mach['ram']} RAM, "
                  f"Linux {mach['kernel']}; load average {' '.join(load_start)} at the start, "
                  f"{' '.join(load_end)} at the end (other work on the machine adds noise)")
        md.append("- tools: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
        md.append(f"- volume: `{os.path.basename(vol)}` in /dev/shm, ext4, "
                  f"{dev_size / MiB:.0f} MiB, {info.get('cluster size', '?')}-byte blocks, "
                  f"{used / MiB:.0f} MiB used ({100 * frac:.1f} %), {nranges} used ranges")
        if meta:
            md.append(f"- contents: {meta}")
        md.append(f"- {a.runs} timed runs per tool after one untimed warm-up, tools alternating "
                  "each round; median wall time; MiB/s = used bytes / median time; peak RSS = "
                  "max ru_maxrss over the runs (summed over pipeline stages); "
                  "fsimg/peer time > 1 means fsimg is slower; "
                  f"the benchmark took {elapsed:.0f} s")
        md.append("")
        md.append(md_table(head, rows))
        md.append("")
        for i, n in enumerate(notes):
            md.append(f"[{i + 1}] {n}  ")
        md.append("")
        for c in checks:
            md.append(f"- check: {c}")
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
