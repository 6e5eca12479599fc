#!/usr/bin/env python3
"""Summarise an `strace -f -tt -T -s 0` log of a copy: syscall counts, the
sizes of reads and writes, and how much the reads overlap the writes in time.

Usage: bench-strace-summary.py STRACE_LOG
"""
import collections
import re
import sys

LINE = re.compile(r"^(\d+)\s+(\d+):(\d+):([\d.]+)\s+(.*)$")
CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+|\?)(?:.*<([\d.]+)>)?\s*$")
READS = {"read", "pread64", "preadv", "preadv2", "copy_file_range", "splice", "sendfile"}
WRITES = {"write", "pwrite64", "writev", "pwritev", "pwritev2"}


def parse(path):
    pending = {}
    calls = []
    for raw in open(path, errors="replace"):
        m = LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        pid = int(m.group(1))
        t = int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))
        text = m.group(5)
        if text.endswith("<unfinished ...>"):
            pending[pid] = (t, text[: -len("<unfinished ...>")].rstrip())
            continue
        r = re.match(r"^<\.\.\. (\w+) resumed>(.*)$", text)
        if r:
            if pid not in pending:
                continue
            t, head = pending.pop(pid)
            text = head + r.group(2)
        c = CALL.match(text)
        if not c:
            continue
        name, args, ret, dur = c.groups()
        calls.append((pid, t, float(dur or 0), name, args, ret))
    return calls


def union(intervals):
    out = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def overlap(u, v):
    i = j = 0
    tot = 0.0
    while i < len(u) and j < len(v):
        a = max(u[i][0], v[j][0])
        b = min(u[i][1], v[j][1])
        if b > a:
            tot += b - a
        if u[i][1] < v[j][1]:
            i += 1
        else:
            j += 1
    return tot


def size_hist(sizes):
    h = collections.Counter()
    for s in sizes:
        if s >= 1 << 20:
            h[f"{s / 2**20:g} MiB" if s % (1 << 20) == 0 else ">=1 MiB"] += 1
        elif s >= 64 << 10:
            h["64 KiB-1 MiB"] += 1
        elif s >= 4096:
            h["4-64 KiB"] += 1
        else:
            h["<4 KiB"] += 1
    return ", ".join(f"{k}: {v}" for k, v in h.most_common())


def main():
    calls = parse(sys.argv[1])
    counts = collections.Counter(c[3] for c in calls)
    by_pid = collections.defaultdict(collections.Counter)
    reads, writes = [], []
    rsizes, wsizes = [], []
    for pid, t, dur, name, args, ret in calls:
        by_pid[pid][name] += 1
        if ret in ("?",) or ret.startswith("-"):
            continue
        if name in READS:
            rsizes.append(int(ret))
            if int(ret) > 4096:
                reads.append((t, t + dur))
        elif name in WRITES:
            wsizes.append(int(ret))
            if int(ret) > 4096:
                writes.append((t, t + dur))
    print("syscalls:", ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    for pid, c in by_pid.items():
        print(f"  thread {pid}:", ", ".join(f"{k} {v}" for k, v in c.most_common()))
    per_name = collections.defaultdict(list)
    for pid, t, dur, name, args, ret in calls:
        if (name in READS or name in WRITES) and ret != "?" and not ret.startswith("-"):
            per_name[name].append(int(ret))
    for name, sizes in sorted(per_name.items()):
        print(f"{name}: {len(sizes)} calls, {sum(sizes) / 2**20:.1f} MiB, mean "
              f"{sum(sizes) / len(sizes) / 1024:.0f} KiB; sizes: {size_hist(sizes)}")
    ur, uw = union(reads), union(writes)
    tr = sum(b - a for a, b in ur)
    tw = sum(b - a for a, b in uw)
    if calls:
        span = max(c[1] + c[2] for c in calls) - min(c[1] for c in calls)
        ov = overlap(ur, uw)
        print(f"time in reads >4 KiB: {tr:.3f} s, in writes >4 KiB: {tw:.3f} s, both at once: "
              f"{ov:.3f} s ({100 * ov / min(tr, tw) if min(tr, tw) > 0 else 0:.0f} % of the "
              f"shorter); traced span {span:.3f} s (strace slows every syscall)")


if __name__ == "__main__":
    main()
