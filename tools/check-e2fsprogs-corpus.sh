#!/usr/bin/env bash
# Sweep fsimg over the e2fsprogs test-suite images.
#
# Usage: tools/check-e2fsprogs-corpus.sh [CORPUS_DIR]
#        (default: ../shared/corpus/e2fsprogs, relative to the repository root)
#
# CORPUS_DIR holds NAME.img.gz images, most deliberately corrupt.  The images
# that must be cloned are listed in CORPUS_DIR-clean.txt beside it (one NAME a
# line; override with CLEAN_LIST=FILE).  The binary is $FSIMG, by default
# target/release/fsimg, built with `cargo build --release` when FSIMG is unset.
#
# For each image, `fsimg info IMG` (timeout 20 s) and `fsimg -q -o clone IMG`
# (timeout 60 s, no --force) run and are classified:
#   cloned    exit 0 (and the checks below pass; BADCOPY when they do not)
#   refused   exit 1 with a one-line message starting "fsimg: "
#   PANIC     exit 101 or "panicked" on stderr
#   HANG      timeout
#   BADEXIT   anything else (another exit status, a multi-line message)
# A cloned image is checked:
#   (a) `e2fsck -fn clone` exits like `e2fsck -fn IMG` (a clone must not be
#       more broken than its source);
#   (b) `fsimg -q -o - IMG` equals the clone byte for byte, and every block the
#       source's bitmaps mark in use (dumpe2fs "Free blocks:" ranges, or
#       debugfs testb when dumpe2fs stops early) is identical in both.
# A refused image is also copied with --force --ignore-fs-check, to run the
# code a refusal skips: a PANIC, HANG or BADEXIT there counts like one above.
#
# Clean-list images refused only for a reason the user may override (the
# state flags: not cleanly unmounted, errors, journal needs recovery, which
# `e2fsck -fn` does not count as errors; or a count/checksum inconsistency,
# which the kernel rejects but `e2fsck -n` declines to fix with exit 0) are
# shown as "override": the refusal is kept, and the copy made with the
# override must pass (a) and (b).  Set STRICT_CLEAN=1 to count them as
# failures instead.
#
# Exit status: 1 on any PANIC, HANG, BADEXIT or BADCOPY, or a clean-list image
# not cloned (overridable refusals excepted unless STRICT_CLEAN=1); else 0.
# 0 with a "skipped" message when CORPUS_DIR does not exist.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
corpus=${1:-$root/../shared/corpus/e2fsprogs}
corpus=${corpus%/}

if [[ ! -d $corpus ]]; then
    echo "check-e2fsprogs-corpus: skipped: $corpus does not exist"
    exit 0
fi
clean_list=${CLEAN_LIST:-$corpus-clean.txt}
strict_clean=${STRICT_CLEAN:-0}

export LC_ALL=C
for tool in e2fsck dumpe2fs debugfs gunzip python3 cmp timeout; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

if [[ -z ${FSIMG:-} ]]; then
    (cd "$root" && cargo build --release --quiet) || { echo "cargo build failed" >&2; exit 1; }
    FSIMG=$root/target/release/fsimg
fi
[[ -x $FSIMG ]] || { echo "fsimg binary not found: $FSIMG" >&2; exit 1; }

declare -A clean=()
if [[ -f $clean_list ]]; then
    while read -r name _; do
        [[ -z $name || $name == \#* ]] && continue
        clean[$name]=1
    done <"$clean_list"
else
    echo "warning: no clean list at $clean_list; no image is required to clone" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/fsimg-corpus.XXXXXX")
trap 'rm -rf "$work"' EXIT

# used_blocks_equal.py SRC CLONE: every block SRC's bitmaps mark in use (and
# the blocks before s_first_data_block) must be equal in CLONE.  Prints why
# not and exits non-zero otherwise.
cat >"$work/used_blocks_equal.py" <<'PY'
import re, subprocess, sys

src_path, clone_path = sys.argv[1:3]


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace").stdout


head = run(["dumpe2fs", "-h", src_path])


def header(field):
    m = re.search(r"^" + re.escape(field) + r":\s+(\d+)", head, re.M)
    if not m:
        sys.exit(f"dumpe2fs -h gave no '{field}'")
    return int(m.group(1))


bs = header("Block size")
blocks = header("Block count")
first = header("First block")
free = bytearray(blocks)
text = run(["dumpe2fs", src_path])
groups = re.findall(r"^Group \d+: \(Blocks ", text, re.M)
free_lines = re.findall(r"^\s+Free blocks:(.*)$", text, re.M)
if groups and len(free_lines) == len(groups):
    for line in free_lines:
        for part in line.split(","):
            part = part.strip()
            if not part:
                continue
            a, _, b = part.partition("-")
            a = int(a)
            b = int(b) if b else a
            free[a : min(b, blocks - 1) + 1] = b"\1" * (min(b, blocks - 1) + 1 - a)
else:
    # dumpe2fs stops before the groups on some journal errors: ask debugfs.
    out = run(["debugfs", "-R", f"testb {first} {blocks - first}", src_path])
    seen = 0
    for m in re.finditer(r"^Block (\d+) (marked in use|not in use)$", out, re.M):
        seen += 1
        if m.group(2) == "not in use":
            free[int(m.group(1))] = 1
    if seen != blocks - first:
        sys.exit(
            f"neither dumpe2fs nor debugfs gave the bitmaps ({seen} of {blocks - first} blocks)"
        )

bad = []
with open(src_path, "rb") as s, open(clone_path, "rb") as c:
    for blk in range(blocks):
        if free[blk]:
            continue
        s.seek(blk * bs)
        c.seek(blk * bs)
        if s.read(bs) != c.read(bs):
            bad.append(blk)
if bad:
    sys.exit(f"{len(bad)} in-use blocks differ (first: {bad[:5]})")
PY

# run_fsimg DIR TAG TIMEOUT ARGS...: runs fsimg, leaves DIR/TAG.err, and sets
# outcome (cloned/refused/PANIC/HANG/BADEXIT) and msg.
run_fsimg() {
    local dir=$1 tag=$2 limit=$3
    shift 3
    timeout "$limit" "$FSIMG" "$@" >"$dir/$tag.out" 2>"$dir/$tag.err"
    local rc=$? lines
    lines=$(wc -l <"$dir/$tag.err")
    msg=$(head -n1 "$dir/$tag.err")
    msg=${msg//"$dir/image"/IMG}
    if [[ $rc -eq 124 ]]; then
        outcome=HANG
        msg="timed out after $limit s"
    elif [[ $rc -eq 101 ]] || grep -q panicked "$dir/$tag.err"; then
        outcome=PANIC
        msg=$(grep -m1 -A1 panicked "$dir/$tag.err" | tr '\n' ' ')
    elif [[ $rc -eq 0 ]]; then
        outcome=cloned
    elif [[ $rc -eq 1 && $lines -eq 1 && $msg == "fsimg: "* ]]; then
        outcome=refused
    else
        outcome=BADEXIT
        msg="exit $rc, $lines stderr lines: $msg"
    fi
}

# verify DIR CLONE ARGS...: checks (a) and (b) for DIR/image and its clone made
# with fsimg ARGS; sets problems (empty when both hold) and src_fsck.
verify() {
    local dir=$1 clone=$2
    shift 2
    local img=$dir/image clone_fsck why
    problems=""
    timeout 120 e2fsck -fn "$img" >"$dir/fsck.src" 2>&1
    src_fsck=$?
    timeout 120 e2fsck -fn "$clone" >"$dir/fsck.clone" 2>&1
    clone_fsck=$?
    if [[ $src_fsck -ne $clone_fsck ]]; then
        problems+="(a) e2fsck -fn: source exit $src_fsck, clone exit $clone_fsck; "
    fi
    if ! timeout 60 "$FSIMG" -q "$@" -o - "$img" 2>"$dir/stdout.err" | cmp -s - "$clone"; then
        problems+="(b) fsimg -o - differs from the clone ($(head -n1 "$dir/stdout.err")); "
    fi
    if ! why=$(python3 "$work/used_blocks_equal.py" "$img" "$clone" 2>&1); then
        problems+="(b) used blocks: $why; "
    fi
    problems=${problems%; }
}

printf '%-40s %-8s %s\n' IMAGE OUTCOME MESSAGE
declare -A count=()
n_clean_ok=0 n_clean_override=0 n_clean_bad=0
failures=()
cloned_corrupt=()
overridden=()

for gz in "$corpus"/*.img.gz; do
    name=$(basename "$gz" .img.gz)
    d=$work/$name
    mkdir -p "$d"
    img=$d/image
    if ! gunzip -c "$gz" >"$img" 2>"$d/gunzip.err"; then
        printf '%-40s %-8s %s\n' "$name" SKIP "gunzip failed: $(head -n1 "$d/gunzip.err")"
        rm -rf "$d"
        continue
    fi
    is_clean=${clean[$name]:-}

    # info: only panics, hangs and odd exits matter.
    run_fsimg "$d" info 20 info "$img"
    info_outcome=$outcome info_msg=$msg

    run_fsimg "$d" clone 60 -q -o "$d/clone" "$img"
    if [[ $outcome == cloned ]]; then
        verify "$d" "$d/clone"
        if [[ -n $problems ]]; then
            outcome=BADCOPY
            msg=$problems
        else
            msg="e2fsck -fn exit $src_fsck on both"
            [[ -z $is_clean ]] && cloned_corrupt+=("$name")
        fi
    elif [[ $outcome == refused ]]; then
        refusal=$msg
        run_fsimg "$d" forced 60 -q --force --ignore-fs-check -o "$d/forced" "$img"
        forced_outcome=$outcome
        outcome=refused msg=$refusal
        case $forced_outcome in
            PANIC | HANG | BADEXIT)
                outcome=$forced_outcome
                msg="with --force --ignore-fs-check: $msg" ;;
        esac
        if [[ $outcome == refused && -n $is_clean ]] &&
            [[ $refusal == *"use --force"* || $refusal == *"use --ignore-fs-check"* ]]; then
            if [[ $forced_outcome == cloned ]]; then
                verify "$d" "$d/forced" --force --ignore-fs-check
                if [[ -n $problems ]]; then
                    outcome=BADCOPY
                    msg="with --force --ignore-fs-check: $problems"
                else
                    outcome=override
                    msg="$refusal [override copy verified, e2fsck -fn exit $src_fsck on both]"
                fi
            fi
        fi
    fi
    # A panic or hang in `info` is as bad as one in the copy.
    case $info_outcome in
        PANIC | HANG | BADEXIT)
            outcome=$info_outcome
            msg="fsimg info: $info_msg" ;;
    esac

    count[$outcome]=$(( ${count[$outcome]:-0} + 1 ))
    tag=""
    if [[ -n $is_clean ]]; then
        tag=" [clean]"
        case $outcome in
            cloned) n_clean_ok=$((n_clean_ok + 1)) ;;
            override)
                n_clean_override=$((n_clean_override + 1))
                overridden+=("$name")
                if [[ $strict_clean == 1 ]]; then
                    failures+=("$name: clean-list image refused: $msg")
                fi ;;
            *)
                n_clean_bad=$((n_clean_bad + 1))
                failures+=("$name: clean-list image $outcome: $msg") ;;
        esac
    fi
    case $outcome in
        PANIC | HANG | BADEXIT | BADCOPY)
            [[ -z $tag ]] && failures+=("$name: $outcome: $msg") ;;
    esac
    printf '%-40s %-8s %s\n' "$name$tag" "$outcome" "$msg"
    rm -rf "$d"
done

for name in "${!clean[@]}"; do
    if [[ ! -f $corpus/$name.img.gz ]]; then
        failures+=("$name: in the clean list but not in $corpus")
        n_clean_bad=$((n_clean_bad + 1))
    fi
done

echo
echo "summary: cloned ${count[cloned]:-0}, refused ${count[refused]:-0}," \
    "override ${count[override]:-0}, PANIC ${count[PANIC]:-0}, HANG ${count[HANG]:-0}," \
    "BADEXIT ${count[BADEXIT]:-0}, BADCOPY ${count[BADCOPY]:-0}"
echo "clean list: ${#clean[@]} images: $n_clean_ok cloned and verified," \
    "$n_clean_override refused for an overridable reason (override copy verified)," \
    "$n_clean_bad failed"
if [[ ${#overridden[@]} -gt 0 ]]; then
    echo "clean-list images needing --force/--ignore-fs-check: ${overridden[*]}"
fi
if [[ ${#cloned_corrupt[@]} -gt 0 ]]; then
    echo "cloned although not in the clean list (${#cloned_corrupt[@]}): ${cloned_corrupt[*]}"
fi
if [[ ${#failures[@]} -gt 0 ]]; then
    echo
    echo "FAILURES (${#failures[@]}):"
    printf '  %s\n' "${failures[@]}"
    exit 1
fi
echo "OK"
