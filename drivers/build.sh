#!/usr/bin/env bash
# Build the waferq kernel module and check it.
#
#   build.sh native       W=1 build against Debian's amd64 headers
#   build.sh armv7        W=1 cross-build against Debian's armmp headers (the QEMU test's kernel)
#   build.sh zynq <ver>   W=1 cross-build against a Zynq-configured tree made from Debian's
#                         linux-source-<ver> (zynq_tree.sh; cached in $ZYNQ_TREES)
#   build.sh armv7-extra <dir>  another module folder against the armmp headers (tests/qemu)
#   (armv7 and armv7-extra build against a built ARMv7 tree instead when ARMV7_TREE names one)
#   build.sh checkpatch   checkpatch.pl --strict on every .c and .h
#   build.sh user         user-space pieces for the tests (msg+sg library, UAPI dump, example)
#   build.sh all          native, zynq 6.1, zynq 6.12 and checkpatch
#
# Outputs go to $OUT (default build/driver): $OUT/<arch>/waferq/waferq.ko and
# $OUT/<arch>/build.log. Downloads and unpacked packages are cached in
# $WAFERQ_CACHE (default build/driver/cache) and reused. Any compiler or
# modpost warning fails the build. See drivers/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
OUT=${OUT:-$REPO/build/driver}
CACHE=${WAFERQ_CACHE:-$REPO/build/driver/cache}
PY=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PY" ] || PY=python3
JOBS=${JOBS:-$(nproc)}
CROSS=${CROSS_COMPILE:-arm-linux-gnueabihf-}
ARMMP_DEBS=${ARMMP_DEBS:-/opt/armmp}
ZYNQ_TREES=${ZYNQ_TREES:-$REPO/build/kernel}

die() { echo "build.sh: $*" >&2; exit 1; }
# Exit 77: a tool or package is missing (the tests skip on it).
missing() { echo "build.sh: missing: $*" >&2; exit 77; }

# Copy the sources next to each other, as Kbuild expects, and generate
# wq_stream_format.h from protocol/stream.py.
stage() {
	local dir=$1
	rm -rf "$dir"
	mkdir -p "$dir"
	cp -r "$HERE/waferq" "$HERE/include" "$dir/"
	(cd "$REPO" && "$PY" -m protocol.codegen "$dir/waferq" >/dev/null &&
		"$PY" -m zybo_z7.csr_map --out-dir "$dir/waferq" >/dev/null) ||
		die "protocol.codegen or zybo_z7.csr_map failed (is the venv installed? make install)"
}

# make with W=1 and -Werror; fail on any warning left in the log.
kmake() {
	local log=$1
	shift
	if ! make -j"$JOBS" "$@" W=1 KCFLAGS=-Werror modules >"$log" 2>&1; then
		cat "$log" >&2
		die "kernel build failed; log in $log"
	fi
	if grep -Ei '(warning|error)[: ]' "$log" | grep -v 'Skipping BTF' |
		grep -Ev "${KMAKE_ALLOW:-^\$}" >&2; then
		die "the build printed warnings; log in $log"
	fi
}

native() {
	local kdir dir
	kdir=${KDIR:-$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1)}
	[ -n "$kdir" ] && [ -f "$kdir/Makefile" ] ||
		missing "amd64 kernel headers (apt-get install linux-headers-amd64)"
	dir=$OUT/amd64
	stage "$dir"
	kmake "$dir/build.log" -C "$kdir" M="$dir/waferq"
	echo "native: $dir/waferq/waferq.ko ($(basename "$kdir"))"
}

# Run apt with armhf enabled only for the download: installing armhf headers
# through multiarch would remove the native gcc and g++.
fetch_armmp_debs() {
	local debs=$1 rc=0
	local had
	[ "$(id -u)" = 0 ] || missing "root, to download the armmp headers (or put the debs in $ARMMP_DEBS)"
	# Leave armhf enabled where it was (a shared machine may rely on it).
	had=$(dpkg --print-foreign-architectures | grep -cx armhf || true)
	dpkg --add-architecture armhf
	download_armmp_debs "$debs" || rc=$?
	if [ "$had" = 0 ]; then
		dpkg --remove-architecture armhf
		apt-get update -qq || echo "build.sh: apt-get update reported errors" >&2
	fi
	[ "$rc" = 0 ] || die "downloading the armmp headers failed"
}

# Runs in a || context (no set -e): every step checks its own status.
download_armmp_debs() {
	local debs=$1 hdr
	# A mirror mid-sync fails one index; the search below still decides.
	apt-get update -qq || echo "build.sh: apt-get update reported errors" >&2
	hdr=$(apt-cache search --names-only '^linux-headers-6\.1\.0-[0-9]+-armmp$' |
	      awk '{print $1}' | sort -V | tail -n 1)
	[ -n "$hdr" ] || { echo "no linux-headers-6.1.0-*-armmp in apt" >&2; return 1; }
	(cd "$debs" && apt-get download "$hdr:armhf" "${hdr%-armmp}-common" linux-kbuild-6.1)
}

# Unpack the armmp headers into $CACHE/armmp/root; prints the headers dir.
armmp_headers() {
	local root=$CACHE/armmp/root debs=$CACHE/armmp/debs kdir d
	kdir=$(ls -d "$root"/usr/src/linux-headers-*-armmp 2>/dev/null | sort -V | tail -n 1)
	if [ -z "$kdir" ]; then
		mkdir -p "$debs"
		if ls "$ARMMP_DEBS"/linux-headers-*-armmp_*.deb >/dev/null 2>&1; then
			cp "$ARMMP_DEBS"/*.deb "$debs/"
		elif ! ls "$debs"/linux-headers-*-armmp_*.deb >/dev/null 2>&1; then
			fetch_armmp_debs "$debs" >&2
		fi
		rm -rf "$root"
		for d in "$debs"/*.deb; do
			dpkg-deb -x "$d" "$root"
		done
		kdir=$(ls -d "$root"/usr/src/linux-headers-*-armmp | sort -V | tail -n 1)
		sed -i "s#include /usr/src/#include $root/usr/src/#" "$kdir/Makefile"
	fi
	echo "$kdir"
}

# Kernel sources for checkpatch.pl and modpost: the headers packages ship
# neither the script nor modpost's sources. Only those files are unpacked.
linux_source() {
	local src=$CACHE/linux-source-6.1 deb
	# The Zynq tree of `build.sh zynq` has them all.
	if [ -f "$ZYNQ_TREES/zynq-6.1/.waferq-stamp" ]; then
		echo "$ZYNQ_TREES/zynq-6.1"
		return
	fi
	if [ ! -f "$src/scripts/checkpatch.pl" ]; then
		mkdir -p "$CACHE"
		deb=$(ls "$CACHE"/linux-source-6.1_*_all.deb 2>/dev/null | tail -n 1)
		if [ -f /usr/src/linux-source-6.1.tar.xz ]; then
			extract_source </usr/src/linux-source-6.1.tar.xz
			echo "$src"
			return
		fi
		if [ -z "$deb" ]; then
			command -v apt-get >/dev/null || missing "apt-get, to download linux-source-6.1"
			(cd "$CACHE" && { apt-get download linux-source-6.1 ||
				{ apt-get update -qq; apt-get download linux-source-6.1; }; }) >&2
			deb=$(ls "$CACHE"/linux-source-6.1_*_all.deb | tail -n 1)
		fi
		dpkg-deb --fsys-tarfile "$deb" |
			tar -xO ./usr/src/linux-source-6.1.tar.xz | extract_source
	fi
	echo "$src"
}

# The few files of the source tarball on stdin that checkpatch and modpost need.
extract_source() {
	tar -xJ -C "$CACHE" --wildcards \
		'linux-source-6.1/scripts/checkpatch.pl' \
		'linux-source-6.1/scripts/spelling.txt' \
		'linux-source-6.1/scripts/const_structs.checkpatch' \
		'linux-source-6.1/scripts/mod/*' \
		'linux-source-6.1/include/linux/license.h'
}

# Debian's linux-kbuild modpost carries the amd64 layout of the device-table
# structs, so it rejects a 32-bit module's of_device_id table. Build one for
# the armmp headers: offsets from the cross compiler, elfconfig from an ARM
# object, the rest from the kernel sources.
arm_modpost() {
	local kdir=$1 src=$2 dir=$CACHE/modpost-$(basename "$1") m
	m=$dir/scripts/mod
	if [ ! -x "$m/modpost" ]; then
		rm -rf "$dir"
		mkdir -p "$m" "$dir/include/linux" "$dir/off"
		cp "$src"/scripts/mod/*.[ch] "$m/"
		cp "$src/include/linux/license.h" "$dir/include/linux/"
		cp "${kdir%-armmp}-common/include/linux/mod_devicetable.h" "$dir/include/linux/"
		cp "$src/scripts/mod/devicetable-offsets.c" "$src/scripts/mod/empty.c" "$dir/off/"
		echo 'obj-m := empty.o' >"$dir/off/Kbuild"
		make -s -C "$kdir" M="$dir/off" ARCH=arm CROSS_COMPILE="$CROSS" \
			devicetable-offsets.s empty.o >&2
		{
			echo '#ifndef __DEVICETABLE_OFFSETS_H__'
			echo '#define __DEVICETABLE_OFFSETS_H__'
			sed -ne 's:^[[:space:]]*\.ascii[[:space:]]*"\(.*\)".*:\1:; /^->/{s:->#\(.*\):/* \1 */:; s:^->\([^ ]*\) [\$#]*\([^ ]*\) \(.*\):#define \1 \2 /* \3 */:; s:->::; p;}' \
				"$dir/off/devicetable-offsets.s"
			echo '#endif'
		} >"$m/devicetable-offsets.h"
		gcc -O2 -o "$m/mk_elfconfig" "$m/mk_elfconfig.c"
		"$m/mk_elfconfig" <"$dir/off/empty.o" >"$m/elfconfig.h"
		gcc -O2 -o "$m/modpost.tmp" "$m/modpost.c" "$m/file2alias.c" "$m/sumversion.c"
		mv "$m/modpost.tmp" "$m/modpost"
	fi
	echo "$m/modpost"
}

# Where the armv7 builds go: Debian's armmp headers with our modpost (above), or,
# with ARMV7_TREE set, a fully built ARMv7 tree (the QEMU test's kmemleak kernel,
# tests/qemu/kmemleak/) with its own modpost and Module.symvers. Sets KDIR and KARGS.
armv7_kdir() {
	local src modpost
	command -v "${CROSS}gcc" >/dev/null ||
		missing "${CROSS}gcc (apt-get install gcc-arm-linux-gnueabihf)"
	if [ -n "${ARMV7_TREE:-}" ]; then
		[ -f "$ARMV7_TREE/Module.symvers" ] || die "$ARMV7_TREE is not a built tree"
		KDIR=$ARMV7_TREE
		KARGS=(ARCH=arm CROSS_COMPILE="$CROSS")
		return
	fi
	command -v dpkg-deb >/dev/null || missing "dpkg-deb"
	KDIR=$(armmp_headers)
	src=$(linux_source)
	modpost=$(arm_modpost "$KDIR" "$src")
	KARGS=(ARCH=arm CROSS_COMPILE="$CROSS" MODPOST="$modpost")
}

armv7() {
	local dir
	armv7_kdir
	dir=$OUT/armv7
	stage "$dir"
	kmake "$dir/build.log" -C "$KDIR" M="$dir/waferq" "${KARGS[@]}"
	echo "armv7: $dir/waferq/waferq.ko ($(basename "$KDIR"))"
}

# The kernel a Zybo would run: Debian's source, multi_v7_defconfig + Zynq,
# XILINX_DMA, OF_OVERLAY and the FPGA manager/region (zynq_tree.sh).
zynq() {
	local ver=$1 tree dir rc=0
	tree=$("$HERE/zynq_tree.sh" "$ver" "$ZYNQ_TREES/zynq-$ver") || rc=$?
	[ "$rc" = 77 ] && exit 77
	[ "$rc" = 0 ] || die "preparing the Zynq $ver tree failed"
	dir=$OUT/zynq-$ver
	stage "$dir"
	# modules_prepare builds no vmlinux, so there is no Module.symvers and
	# modpost cannot resolve kernel symbols: only those lines are let through.
	# (The armmp build resolves them against Debian's Module.symvers, and the
	# QEMU test loads the module.)
	KMAKE_ALLOW='^WARNING: (modpost: "[A-Za-z0-9_]+" \[[^]]*waferq\.ko\] undefined!|modpost: suppressed [0-9]+ unresolved symbol warnings|Module\.symvers is missing\.)' \
		kmake "$dir/build.log" -C "$tree" M="$dir/waferq" ARCH=arm \
		CROSS_COMPILE="$CROSS" KBUILD_MODPOST_WARN=1
	echo "zynq $ver: $dir/waferq/waferq.ko ($(make -s -C "$tree" kernelrelease))"
}

# A further module folder (the QEMU test's TEST-ONLY DMA model) against the
# same kernel as armv7; the generated headers go next to it.
armv7_extra() {
	local src=$1 dir
	armv7_kdir
	dir=$OUT/armv7-extra/$(basename "$src")
	rm -rf "$dir"
	mkdir -p "$dir"
	cp -r "$src"/. "$dir/"
	(cd "$REPO" && "$PY" -m protocol.codegen "$dir" >/dev/null &&
		"$PY" -m zybo_z7.csr_map --out-dir "$dir" >/dev/null)
	kmake "$dir/build.log" -C "$KDIR" M="$dir" "${KARGS[@]}"
	echo "armv7-extra: $dir ($(basename "$KDIR"))"
}

checkpatch() {
	local src files log
	src=$(linux_source)
	files=$(cd "$HERE" && ls waferq/*.c waferq/*.h include/uapi/linux/*.h include/dt-bindings/*.h)
	mkdir -p "$OUT"
	log=$OUT/checkpatch.log
	# shellcheck disable=SC2086
	# LINUX_VERSION_CODE: this out-of-tree module builds for 6.1 and 6.12;
	# its few version checks are in waferq.h (an in-tree driver has none).
	(cd "$HERE" && perl "$src/scripts/checkpatch.pl" --no-tree --strict \
		--show-types --ignore LINUX_VERSION_CODE -f $files) >"$log" 2>&1 || true
	grep -E '^total:' "$log" || die "checkpatch did not run; log in $log"
	if grep -E '^(ERROR|WARNING):' "$log" >&2; then
		die "checkpatch found errors or warnings; log in $log"
	fi
	echo "checkpatch: clean ($(echo "$files" | wc -w) files)"
}

user() {
	local dir=$OUT/user
	mkdir -p "$dir"
	(cd "$REPO" && "$PY" -m protocol.codegen "$dir" >/dev/null)
	gcc -Wall -Wextra -Werror -O2 -fPIC -shared -I"$dir" \
		-o "$dir/libwaferq_msg.so" "$HERE/waferq/waferq_msg.c" \
		"$HERE/waferq/waferq_sg.c"
	gcc -Wall -Wextra -Werror -O2 -I"$HERE/include/uapi" \
		-o "$dir/uapi_dump" "$HERE/tools/uapi_dump.c"
	gcc -Wall -Wextra -Werror -O2 -I"$HERE/include/uapi" \
		-o "$dir/example_submit" "$HERE/tools/example_submit.c"
	echo "user: $dir"
}

case ${1:-all} in
native | armv7 | checkpatch | user) "$1" ;;
armv7-extra) armv7_extra "$2" ;;
zynq) zynq "$2" ;;
all) native && zynq 6.1 && zynq 6.12 && checkpatch ;;
*) die "usage: build.sh native|armv7|zynq <ver>|armv7-extra <dir>|checkpatch|user|all" ;;
esac
