#!/usr/bin/env bash
# fsimg's test command (README.md): installs the system tools the tests
# check results with (when run as root on a Debian-like system), then runs
# every test. As root with the tools installed, the checks that need
# e2fsck, loop devices and mounts are required (FSIMG_REQUIRE_TOOLS=1):
# a missing tool fails the run instead of skipping a check.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(e2fsprogs dosfstools mtools ntfs-3g zstd util-linux mount diffutils partclone gddrescue fdisk gdisk groff-base udpcast fuse3 exfatprogs exfat-fuse xfsprogs btrfs-progs python3 g++)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=()
    for p in "${PKGS[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    export FSIMG_REQUIRE_TOOLS=${FSIMG_REQUIRE_TOOLS:-1}
fi

cargo test --release --all-targets

# The fuzz targets (fuzz/, their own workspace) must keep compiling against
# the library; running them needs nightly and cargo-fuzz (fuzz/README.md).
cargo check --manifest-path fuzz/Cargo.toml --bins

# e2fsprogs' own test images, where a developer or CI machine has them.
if [ -d ../shared/corpus/e2fsprogs ]; then
    tools/check-e2fsprogs-corpus.sh ../shared/corpus/e2fsprogs
fi
