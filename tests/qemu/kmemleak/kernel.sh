#!/usr/bin/env bash
# TEST ONLY: build the kmemleak kernel of the QEMU test from Debian's linux-source-6.1.
#
#   kernel.sh <cache dir>      e.g. kernel.sh build/qemu-kmemleak/kernel
#
# `make ARCH=arm tinyconfig`, then kmemleak.config (next to this script) merged with the
# tree's own scripts/kconfig/merge_config.sh, olddefconfig, a check that every line of the
# fragment stuck, and `make zImage modules` (niced; JOBS, default 2). The tree is kept in
# <cache dir>/<key>, key = a hash of the fragment, RECIPE below, the source package's
# version and the cross compiler's, so a second run reuses it and a changed fragment
# builds afresh (older keys are removed). The build's CPU time (user+sys) and wall time
# go to <key>/build-cost.txt. Prints the tree's path; the kernel is arch/arm/boot/zImage.
# Exit 77: the source package or a tool is missing.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
cache=$1
CROSS=${CROSS_COMPILE:-arm-linux-gnueabihf-}
JOBS=${JOBS:-2}
tarball=/usr/src/linux-source-6.1.tar.xz
frag=$HERE/kmemleak.config

missing() { echo "kernel.sh: missing: $*" >&2; exit 77; }
[ -f "$tarball" ] || missing "$tarball (apt-get install linux-source-6.1)"
command -v "${CROSS}gcc" >/dev/null || missing "${CROSS}gcc (apt-get install gcc-arm-linux-gnueabihf)"
for t in flex bison bc perl; do
	command -v $t >/dev/null || missing "$t (apt-get install $t)"
done
# Bump when the steps below change what they build.
RECIPE=1

pkgver=$(dpkg-query -W -f '${Version}' linux-source-6.1 2>/dev/null ||
	 stat -c '%s %Y' "$tarball")
key=$( { cat "$frag"; echo "recipe $RECIPE $pkgver"; "${CROSS}gcc" --version | head -n 1; } |
       sha256sum | cut -c1-16)
dir=$cache/$key
if [ -f "$dir/.waferq-stamp" ]; then
	echo "$dir"
	exit 0
fi

mkdir -p "$cache"
for old in "$cache"/*; do
	[ "$old" != "$dir" ] && [ -d "$old" ] && rm -rf "$old"
done
rm -rf "$dir"
mkdir -p "$dir"
top=linux-source-6.1
excl=()
for a in alpha arc arm64 csky hexagon ia64 loongarch m68k microblaze mips nios2 \
	 openrisc parisc powerpc riscv s390 sh sparc um x86 xtensa; do
	# Kconfig still sources some of their Kconfig files
	excl+=(--exclude="$top/arch/$a/*.[chS]" --exclude="$top/arch/$a/boot")
done
excl+=(--exclude="$top/Documentation/*/*" --exclude="$top/tools/testing"
       --exclude="$top/tools/perf" --exclude="$top/LICENSES" --exclude="*.dts"
       --exclude="*.dtsi" --exclude="*.rst")
tar -xJf "$tarball" -C "$dir" --strip-components=1 --wildcards "${excl[@]}"

k=(make -s -C "$dir" ARCH=arm CROSS_COMPILE="$CROSS")
"${k[@]}" tinyconfig >&2
(cd "$dir" && ARCH=arm scripts/kconfig/merge_config.sh -m .config "$frag" >&2)
"${k[@]}" olddefconfig >&2
bad=0
while IFS= read -r line; do
	case $line in
	CONFIG_*=*) grep -qxF "$line" "$dir/.config" || { echo "kernel.sh: not set: $line" >&2; bad=1; } ;;
	"# CONFIG_"*" is not set")
		o=${line#\# }; o=${o%% *}
		! grep -q "^$o=" "$dir/.config" || { echo "kernel.sh: set: $o" >&2; bad=1; } ;;
	esac
done <"$frag"
[ "$bad" = 0 ] || { echo "kernel.sh: the fragment did not stick (see $dir/.config)" >&2; exit 1; }

# User+sys of make and every compiler under it (bash's time counts the waited-for
# children): whether CI can afford to build this on each run.
TIMEFORMAT='%U %S %R'
rc=0
{ time nice -n 19 "${k[@]}" -j"$JOBS" zImage modules >"$dir/build.log" 2>&1 || rc=$?; } \
	2>"$dir/time.txt"
[ "$rc" = 0 ] ||
	{ tail -n 40 "$dir/build.log" >&2; echo "kernel.sh: build failed; log $dir/build.log" >&2; exit 1; }
read -r u s e <"$dir/time.txt"
printf 'kernel build: %.0f CPU-s (user %.0f + sys %.0f), %.0f s wall at -j%s\n' \
	"$(echo "$u + $s" | bc)" "$u" "$s" "$e" "$JOBS" >"$dir/build-cost.txt"
cat "$dir/build-cost.txt" >&2
echo "$key" >"$dir/.waferq-stamp"
echo "$dir"
