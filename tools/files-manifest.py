#!/usr/bin/env python3
"""Records the file tree under a directory (a read-only kernel or ntfs-3g
mount of a test volume) as the listing `fsimg extract` must reproduce.

One line per entry, sorted by path, tab-separated:
    PATH  TYPE  MODE  NLINK  UID  GID  SIZE  MTIME  CONTENT  LINK
TYPE is f, d, l, p, c, b or s; MODE is octal (permission bits only);
MTIME is seconds.nanoseconds since 1970 (UTC); CONTENT is the sha256 of a
file ("unreadable" for a file the mount cannot read: ntfs-3g refuses an
encrypted file with EIO), the target of a symlink, or "-"; LINK is, for a
file with several names, the first of its paths in sort order (hard
links), else "-".

Usage: files-manifest.py MOUNTPOINT > NAME.tree
"""
import hashlib
import os
import stat
import sys


def main():
    root = sys.argv[1]
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            entries.append(("/" + os.path.relpath(full, root), full))
    entries.sort()
    first_path = {}
    for rel, full in entries:
        st = os.lstat(full)
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            first_path.setdefault((st.st_dev, st.st_ino), rel)
    out = sys.stdout
    for rel, full in entries:
        st = os.lstat(full)
        m = st.st_mode
        kind = ("d" if stat.S_ISDIR(m) else "l" if stat.S_ISLNK(m) else "f" if stat.S_ISREG(m)
                else "p" if stat.S_ISFIFO(m) else "c" if stat.S_ISCHR(m)
                else "b" if stat.S_ISBLK(m) else "s")
        if kind == "f":
            h = hashlib.sha256()
            try:
                with open(full, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                content = h.hexdigest()
            except OSError:
                content = "unreadable"
        elif kind == "l":
            content = os.readlink(full)
        else:
            content = "-"
        link = first_path.get((st.st_dev, st.st_ino), "-") if kind == "f" and st.st_nlink > 1 else "-"
        size = st.st_size if kind in "fl" else 0
        mtime = f"{st.st_mtime_ns // 10**9}.{st.st_mtime_ns % 10**9:09d}"
        out.write("\t".join([rel, kind, f"{stat.S_IMODE(m):o}", str(st.st_nlink), str(st.st_uid),
                             str(st.st_gid), str(size), mtime, content, link]) + "\n")


if __name__ == "__main__":
    main()
