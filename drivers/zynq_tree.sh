#!/usr/bin/env bash
# Prepare a Zynq-capable ARMv7 kernel tree for out-of-tree module builds.
#
#   zynq_tree.sh <version> <dir>     e.g. zynq_tree.sh 6.1 build/driver/zynq-6.1
#
# From Debian's own kernel source (/usr/src/linux-source-<version>.tar.xz,
# apt-get install linux-source-<version>): multi_v7_defconfig plus ARCH_ZYNQ,
# XILINX_DMA, OF_OVERLAY, FPGA_MGR_ZYNQ_FPGA and FPGA_REGION, then only
# `make modules_prepare`. Only what Kconfig and modules_prepare read is
# unpacked (no driver, file system or network C files, no other arch), which
# keeps a cold run short. The tree is kept in <dir> and reused while its
# stamp matches the tarball. Prints the tree's path.
set -euo pipefail

ver=$1
dir=$2
CROSS=${CROSS_COMPILE:-arm-linux-gnueabihf-}
JOBS=${JOBS:-2}
tarball=/usr/src/linux-source-$ver.tar.xz

missing() { echo "zynq_tree.sh: missing: $*" >&2; exit 77; }
[ -f "$tarball" ] || missing "$tarball (apt-get install linux-source-$ver)"
command -v "${CROSS}gcc" >/dev/null || missing "${CROSS}gcc (apt-get install gcc-arm-linux-gnueabihf)"
for t in flex bison bc; do
	command -v $t >/dev/null || missing "$t (apt-get install $t)"
done

stamp="$(stat -c '%s %Y' "$tarball") $(${CROSS}gcc -dumpversion) v3"
if [ -f "$dir/.waferq-stamp" ] && [ "$(cat "$dir/.waferq-stamp")" = "$stamp" ]; then
	echo "$dir"
	exit 0
fi

rm -rf "$dir"
mkdir -p "$dir"
top=linux-source-$ver
excl=()
for a in alpha arc arm64 csky hexagon ia64 loongarch m68k microblaze mips nios2 \
	 openrisc parisc powerpc riscv s390 sh sparc um x86 xtensa; do
	# Kconfig still sources some of their Kconfig files
	excl+=(--exclude="$top/arch/$a/*.[chS]" --exclude="$top/arch/$a/boot")
done
for d in drivers sound fs net crypto block security virt io_uring mm ipc init; do
	excl+=(--exclude="$top/$d/*.c")
done
excl+=(--exclude="$top/Documentation/*/*" --exclude="$top/tools/testing" --exclude="$top/tools/perf" --exclude="$top/tools/power" --exclude="$top/tools/bpf" --exclude="$top/samples/*.c"
       --exclude="$top/LICENSES" --exclude="$top/arch/arm/boot/dts" --exclude="*.rst"
       --exclude="*.dts" --exclude="*.dtsi")
tar -xJf "$tarball" -C "$dir" --strip-components=1 --wildcards "${excl[@]}"

k=(make -s -C "$dir" ARCH=arm CROSS_COMPILE="$CROSS" -j"$JOBS")
"${k[@]}" multi_v7_defconfig >&2
"$dir/scripts/config" --file "$dir/.config" -e ARCH_ZYNQ -e DMADEVICES -e XILINX_DMA \
	-e OF_OVERLAY -e FPGA -e FPGA_MGR_ZYNQ_FPGA -e FPGA_REGION -e FPGA_BRIDGE \
	-e XILINX_PR_DECOUPLER -d DEBUG_INFO_BTF -d MODULE_SIG
"${k[@]}" olddefconfig >&2
for o in ARCH_ZYNQ XILINX_DMA OF_OVERLAY FPGA_MGR_ZYNQ_FPGA FPGA_REGION; do
	grep -q "^CONFIG_$o=[ym]" "$dir/.config" ||
		{ echo "zynq_tree.sh: CONFIG_$o is not set after olddefconfig" >&2; exit 1; }
done
"${k[@]}" modules_prepare >&2
echo "$stamp" >"$dir/.waferq-stamp"
echo "$dir"
