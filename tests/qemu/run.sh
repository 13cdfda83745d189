#!/usr/bin/env bash
# Boot Debian's armmp kernel in QEMU (-M virt, TCG) with an initramfs holding
# only the guest test (/init, tests/qemu/guest/), the real
# waferq.ko and the TEST-ONLY DMA model (tests/qemu/testonly_dma/), all built
# against the armmp headers of that same kernel. Prints the guest's output and
# ends with its "N passed, M failed" line; exit 0 only when M is 0.
# Exit 77: qemu-system-arm or another tool is missing. Cache: build/qemu.
#
# KMEMLEAK=1: boot a kmemleak kernel built from Debian's linux-source-6.1 instead
# (tests/qemu/kmemleak/: tinyconfig plus a fragment; cached by its hash in
# build/qemu-kmemleak), with the modules built against that tree, and add the case
# kmemleak_clean: two scans after the other cases, failing on any report from
# waferq or the TEST-ONLY model; a "kmemleak: ..." line comes before the summary.
# WQ_LEAK=1 (with KMEMLEAK=1) makes the model lose allocations on purpose: that
# run must fail, naming the model (the check's own test).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
KMEMLEAK=${KMEMLEAK:-0}
[ "$KMEMLEAK" = 1 ] && qdef=$REPO/build/qemu-kmemleak || qdef=$REPO/build/qemu
Q=${WAFERQ_QEMU_DIR:-$qdef}
CROSS=arm-linux-gnueabihf-
missing() { echo "run.sh: missing: $*" >&2; exit 77; }

command -v qemu-system-arm >/dev/null || missing "qemu-system-arm (apt-get install qemu-system-arm)"
command -v "${CROSS}gcc" >/dev/null || missing "${CROSS}gcc (apt-get install gcc-arm-linux-gnueabihf)"
for t in dtc cpio dpkg-deb; do command -v $t >/dev/null || missing "$t"; done
mkdir -p "$Q/debs" "$Q/img"

# The newest armmp kernel with its headers, from apt (armhf as a foreign
# architecture; the packages are only downloaded and unpacked).
armmp_kernel() {
if ! ls "$Q"/img/linux-image-*-armmp_*.deb >/dev/null 2>&1; then
	if ! apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-armmp$' | grep -c . >/dev/null; then
		[ "$(id -u)" = 0 ] || missing "root, to enable armhf in apt (or put the debs in $Q/img and $Q/debs)"
		dpkg --add-architecture armhf
		# A mirror mid-sync fails one index (exit 100); the search below still decides.
		apt-get update -qq || echo "run.sh: apt-get update reported errors" >&2
	fi
	img=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-armmp$' |
	      awk '{print $1}' | sort -V | tail -n 1)
	[ -n "$img" ] || missing "linux-image-6.1.0-*-armmp in apt (armhf)"
	ver=${img#linux-image-}
	(cd "$Q/img" && apt-get download "$img:armhf")
	(cd "$Q/debs" && apt-get download "linux-headers-$ver:armhf" \
		"linux-headers-${ver%-armmp}-common" linux-kbuild-6.1)
fi
deb=$(ls "$Q"/img/linux-image-*-armmp_*.deb | tail -n 1)
if [ ! -d "$Q/kernel/boot" ]; then
	rm -rf "$Q/kernel"
	dpkg-deb -x "$deb" "$Q/kernel"
fi
kernel=$(ls "$Q"/kernel/boot/vmlinuz-*-armmp | tail -n 1)
kver=$(basename "$kernel"); kver=${kver#vmlinuz-}
}

export OUT=$Q/out JOBS=${JOBS:-2}
append="console=ttyAMA0 rdinit=/init fw_devlink=permissive panic=-1 quiet"
if [ "$KMEMLEAK" = 1 ]; then
	# The kernel tree (its build costs minutes once; kernel.sh prints the CPU time).
	tree=$("$HERE/kmemleak/kernel.sh" "$Q/kernel") || exit $?
	kernel=$tree/arch/arm/boot/zImage
	kver=$(cat "$tree/include/config/kernel.release")
	export ARMV7_TREE=$tree
	append="$append WQ_KMEMLEAK=1"
	[ "${WQ_LEAK:-0}" = 1 ] && append="$append WQ_LEAK=1"
else
	armmp_kernel
	export WAFERQ_CACHE=$Q/cache ARMMP_DEBS=$Q/debs
fi

# The modules, against that kernel (build.sh: W=1, no warnings).
"$REPO/drivers/build.sh" armv7 >&2
"$REPO/drivers/build.sh" armv7-extra "$HERE/testonly_dma" >&2
for ko in "$OUT/armv7/waferq/waferq.ko" "$OUT/armv7-extra/testonly_dma/waferq_testonly_dma.ko"; do
	strings "$ko" | grep -c "vermagic=$kver " >/dev/null ||
		{ echo "run.sh: $ko is not built for $kver" >&2; exit 1; }
done

# The initramfs: /init and the two modules.
root=$Q/initramfs
rm -rf "$root"
mkdir -p "$root/proc" "$root/sys" "$root/dev"
"${CROSS}gcc" -static -O2 -Wall -Wextra -Werror -I"$REPO/drivers/include/uapi" \
	-I"$OUT/armv7/waferq" -o "$root/init" "$HERE"/guest/*.c
cp "$OUT/armv7/waferq/waferq.ko" "$OUT/armv7-extra/testonly_dma/waferq_testonly_dma.ko" "$root/"
(cd "$root" && find . | cpio -o -H newc --quiet) >"$Q/initramfs.cpio"

# The board: QEMU's own virt tree plus the model and the accelerator node.
opts=(-M virt -cpu cortex-a15 -m 256 -nographic -no-reboot)
qemu-system-arm -M virt,dumpdtb="$Q/virt.dtb" "${opts[@]:2}" >/dev/null 2>&1
{ dtc -q -I dtb -O dts "$Q/virt.dtb"; cat "$HERE/waferq-virt.dtsi"; } >"$Q/wq.dts"
dtc -q -I dts -O dtb -o "$Q/wq.dtb" "$Q/wq.dts"

# Hang guard only: the tests take well under a minute of guest time.
log=$Q/console.log
timeout "${WAFERQ_QEMU_TIMEOUT:-900}" qemu-system-arm "${opts[@]}" -kernel "$kernel" \
	-initrd "$Q/initramfs.cpio" -dtb "$Q/wq.dtb" \
	-append "$append" </dev/null >"$log" 2>&1 || true
tr -d '\r' <"$log" | grep -E '^(PASS|FAIL|waferq-qemu)' || true
if grep -q '^---- kmemleak' "$log"; then
	tr -d '\r' <"$log" | sed -n '/^---- kmemleak/,/^----$/p' | head -n 200
fi
if grep -q '^---- kernel log' "$log"; then
	tr -d '\r' <"$log" | sed -n '/^---- kernel log/,/^----$/p' | tail -n 80
fi
summary=$(tr -d '\r' <"$log" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -n 1)
if [ -z "$summary" ]; then
	tail -n 40 "$log"
	echo "0 passed, 1 failed"
	echo "run.sh: the guest did not finish (log: $log)" >&2
	exit 1
fi
tr -d '\r' <"$log" | grep -E '^kmemleak: [0-9]+ suspected' || true
# The guest checks its kernel log (kernel_log_clean); this catches what the console
# shows outside it (quiet: errors and worse), e.g. an oops while powering off.
passed=${summary%% *}
nfail=${summary#* passed, }
nfail=${nfail% failed}
if tr -d '\r' <"$log" | grep -E '(WARNING:|BUG:|Oops|Internal error)' >&2; then
	echo "run.sh: the console shows a kernel warning or oops (log: $log)" >&2
	nfail=$((nfail + 1))
fi
echo "$passed passed, $nfail failed"
[ "$nfail" = 0 ]
