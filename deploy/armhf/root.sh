#!/bin/sh
# Builds an armhf (Cortex-A7, 32-bit) Debian root holding python3 and python3-numpy,
# the closest this machine gets to an OpenSTLinux image: apt-get download + dpkg-deb -x,
# no root, nothing installed on the host.
#
#   deploy/armhf/root.sh DIR      -> DIR/debs/*.deb (cache) and DIR/root/
# Never `apt-get install PKG:armhf`: apt would remove the native compilers to make room.
set -eu
DIR=${1:?usage: root.sh DIR}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
# python3 and numpy plus the shared libraries they load. A fixed list rather than a
# recursive resolve: the recursion pulls every BLAS alternative and the Depends of dpkg.
PKGS="libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5
 libsqlite3-0 libuuid1 libncursesw6 libtinfo6 libreadline8 libcrypt1 libnsl2 libtirpc3
 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
 libdb5.3 libgdbm6 libgdbm-compat4
 libpython3.11-minimal libpython3.11-stdlib python3.11-minimal python3.11
 libpython3-stdlib python3-minimal python3
 python3-numpy libblas3 liblapack3 libgfortran5"
# Architecture "all": pip, so that the wheel is installed the way a target installs it.
ALL_PKGS="python3-pip python3-setuptools python3-wheel python3-distutils python3-lib2to3
 python3-pkg-resources"
# A private apt state under DIR/apt with armhf as its only architecture: this
# needs no root and does not depend on (or touch) the machine's dpkg architectures,
# which other builds add and remove.
APT=$DIR/apt
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/sources"
: >"$APT/status"
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
	cp /etc/apt/sources.list.d/debian.sources "$APT/sources/"
else
	grep -h "^deb .*debian" /etc/apt/sources.list >"$APT/sources/debian.list"
fi
apt_() {
	apt-get -q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$APT/sources" \
		-o Dir::State="$APT" -o Dir::State::Lists="$APT/lists" -o Dir::State::status="$APT/status" \
		-o Dir::Cache="$APT/cache" -o APT::Architecture=armhf -o APT::Architectures::=armhf \
		-o Debug::NoLocking=1 -o Acquire::Retries=3 "$@"
}
mkdir -p "$DIR/debs"
cd "$DIR/debs"
need=""
for p in $PKGS; do
	ls "${p}"_*_armhf.deb >/dev/null 2>&1 || need="$need $p"
done
for p in $ALL_PKGS; do
	ls "${p}"_*_all.deb >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
	echo "downloading$need" >&2
	# A Debian mirror mid-sync serves an index whose size disagrees with its Release
	# file, and apt-get update then exits 100 for that one index. Try once more;
	# if an index still fails, go on with the ones fetched: the download below
	# fails clearly if a package we need is in none of them.
	tries=0
	until apt_ update >&2; do
		tries=$((tries + 1))
		if [ "$tries" -ge 2 ]; then
			echo "root.sh: apt-get update failed $tries times (mirror sync?); downloading from the indexes it fetched" >&2
			break
		fi
		sleep "${ROOT_SH_RETRY_SECONDS:-10}"
	done
	apt_ download $need >&2
fi
cd ..
if [ ! -f root/.complete ]; then
	rm -rf root
	mkdir root
	for d in debs/*.deb; do dpkg-deb -x "$d" root; done
	# Debian's python3 is a symlink to python3.11; postinst scripts never run here.
	test -x root/usr/bin/python3.11
	ln -sf python3.11 root/usr/bin/python3
	# BLAS and LAPACK are found through update-alternatives links, made by postinst.
	lib=root/usr/lib/arm-linux-gnueabihf
	ln -sf blas/libblas.so.3 $lib/libblas.so.3
	ln -sf lapack/liblapack.so.3 $lib/liblapack.so.3
	touch root/.complete
fi
echo "$DIR/root"
