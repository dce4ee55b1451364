#!/bin/busybox sh
# vmtest guest init (busybox sh). Loads the modules, mounts the host's root over
# 9p under a tmpfs overlay, runs the host-written cmd.sh chrooted into it with
# stdout/stderr on virtio-serial ports, reports its exit status on a third port
# and powers off. Kernel parameters: vmtest.run=DIR (holds cmd.sh),
# vmtest.modules=DIR (the guest kernel's module tree on the host),
# vmtest.share=DIR (optional read-write host folder).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
	echo "vmtest init: $*" >/dev/console
	poweroff -f
}

while read -r m; do
	insmod "/mod/$m" || fail "insmod $m failed"
done </mod/list

run= share= mods=
for a in $(cat /proc/cmdline); do
	case "$a" in
	vmtest.run=*) run=${a#vmtest.run=} ;;
	vmtest.share=*) share=${a#vmtest.share=} ;;
	vmtest.modules=*) mods=${a#vmtest.modules=} ;;
	esac
done
[ -n "$run" ] || fail "no vmtest.run= on the kernel command line"

# The host names its ports; their /dev nodes are numbered in probe order, and
# the names arrive asynchronously after the driver loads.
port() {
	for p in /sys/class/virtio-ports/*; do
		[ "$(cat "$p/name" 2>/dev/null)" = "$1" ] && [ -e "/dev/${p##*/}" ] && echo "/dev/${p##*/}" && return
	done
}
i=0
while :; do
	out=$(port vm.stdout) err=$(port vm.stderr) st=$(port vm.status)
	[ -n "$out" ] && [ -n "$err" ] && [ -n "$st" ] && break
	i=$((i + 1))
	[ $i -gt 1000 ] && fail "virtio-serial ports did not appear"
	usleep 5000
done

mkdir -p /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,msize=262144 host /host || fail "mounting the host root"
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "mounting the overlay"
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
if [ -n "$share" ]; then
	mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,msize=262144 share "/newroot$share" || fail "mounting $share"
fi
# modprobe inside finds the guest kernel's modules. chroot resolves the host's
# /lib (often a symlink into /usr) inside the new root.
if [ -n "$mods" ]; then
	kver=$(uname -r)
	chroot /newroot /bin/mkdir -p "/lib/modules/$kver" && mount --bind "/newroot$mods" "/newroot$(chroot /newroot /bin/readlink -f "/lib/modules/$kver")"
fi
ip link set lo up

cd /
chroot /newroot /usr/bin/env -i /bin/sh "$run/cmd.sh" </dev/null >"$out" 2>"$err"
echo "$?" >"$st"
# Leftover background processes would print EIO errors while 9p goes away.
kill -9 -1
poweroff -f
