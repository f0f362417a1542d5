# sdsandbox inner init. Runs as PID 1 of fresh pid, mount, uts, ipc, cgroup (and
# usually net) namespaces, started by Up as:
#   unshare ... /bin/bash -c "$this_script" sdsandbox-init \
#     STATEDIR HOSTDIR MACHINEID SYSTEMD DROPCAPS DISK
# It builds an overlay root whose every write lands in a tmpfs private to this mount
# namespace (DISK=persistent: in STATEDIR itself, a host directory, so that the next boot
# on the same STATEDIR finds them), masks the units that would touch host state or start
# host services, pivots into the overlay, checks the result and only then execs systemd.
# Data arrive only as arguments; nothing here is built from them as shell code.
set -euo pipefail
state=$1 share=$2 machine_id=$3 systemd=$4 drop_caps=$5 disk=$6
readonly inner_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mask_units=(
	systemd-timesyncd.service systemd-pstore.service systemd-sysctl.service
	systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount
	systemd-modules-load.service systemd-udevd.service systemd-udevd-control.socket
	systemd-udevd-kernel.socket systemd-udev-trigger.service systemd-udev-settle.service
	systemd-hwdb-update.service fstrim.service fstrim.timer e2scrub_all.service
	e2scrub_all.timer e2scrub_reap.service console-getty.service getty@tty1.service
	serial-getty@ttyS0.service systemd-networkd.service systemd-networkd.socket
	systemd-networkd-wait-online.service systemd-resolved.service networking.service
	rc-local.service postgresql.service prometheus.service cron.service ssh.service
	ssh.socket apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer man-db.timer
)
mask_generators=(
	systemd-sysv-generator systemd-rc-local-generator postgresql-generator
	systemd-gpt-auto-generator
)

fail() { echo "sdsandbox-init: $*" >&2; exit 1; }
fstype() { stat -f -c %T "$1"; }

[ "$$" = 1 ] || fail "not PID 1 of a new pid namespace (pid $$)"
trap 'echo "sdsandbox-init: line $LINENO: $BASH_COMMAND: failed" >&2' ERR

# Nothing mounted from here on may propagate to the host.
mount --make-rprivate /

case $disk in
ram) mount -t tmpfs -o mode=0755,size=2g sdsandbox-state "$state" ;;
persistent) ;; # the upper layer stays in STATEDIR on the host: a reboot boots on it again
*) fail "disk mode $disk is neither ram nor persistent" ;;
esac
mkdir -p "$state/upper" "$state/work" "$state/root"
mount -t overlay sdsandbox-root \
	-o "lowerdir=/,upperdir=$state/upper,workdir=$state/work" "$state/root"
r=$state/root
[ "$(fstype "$r")" = overlayfs ] || fail "overlay root was not mounted"

# Configuration: written into the overlay only (its upper layer is the tmpfs).
mkdir -p "$r/etc/systemd/system" "$r/etc/systemd/system-generators"
for u in /etc/systemd/system/*.wants/* /etc/systemd/system/*.requires/*; do
	[ -e "$u" ] || [ -L "$u" ] || continue
	case ${u##*/} in
	*.target) ;;                      # targets only group units; keep them
	*) mask_units+=("${u##*/}") ;;   # everything the host's admin enabled
	esac
done
for u in "${mask_units[@]}"; do ln -sfn /dev/null "$r/etc/systemd/system/$u"; done
for g in "${mask_generators[@]}"; do ln -sfn /dev/null "$r/etc/systemd/system-generators/$g"; done
echo "# sdsandbox: no mounts" >"$r/etc/fstab"
rm -f "$r/etc/crypttab"
echo sdsandbox >"$r/etc/hostname"
echo "$machine_id" >"$r/etc/machine-id"

# API file systems, all fresh and private.
mount -t proc -o nosuid,nodev,noexec proc "$r/proc"
for p in sys sysrq-trigger; do
	[ -e "$r/proc/$p" ] || continue
	mount --bind "$r/proc/$p" "$r/proc/$p"
	mount -o remount,bind,ro "$r/proc/$p"
done
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$r/sys/fs/cgroup"

mount -t tmpfs -o mode=0755,nosuid,size=4m sdsandbox-dev "$r/dev"
mknod -m 666 "$r/dev/null" c 1 3
mknod -m 666 "$r/dev/zero" c 1 5
mknod -m 666 "$r/dev/full" c 1 7
mknod -m 666 "$r/dev/random" c 1 8
mknod -m 666 "$r/dev/urandom" c 1 9
mknod -m 666 "$r/dev/tty" c 5 0
mknod -m 600 "$r/dev/console" c 1 3 # a null device: console output is discarded
mkdir "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$r/dev/pts"
ln -s pts/ptmx "$r/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev sdsandbox-shm "$r/dev/shm"
ln -s /proc/self/fd "$r/dev/fd"
ln -s /proc/self/fd/0 "$r/dev/stdin"
ln -s /proc/self/fd/1 "$r/dev/stdout"
ln -s /proc/self/fd/2 "$r/dev/stderr"

mount -t tmpfs -o mode=0755,nosuid,nodev sdsandbox-run "$r/run"
mount -t tmpfs -o mode=1777,nosuid,nodev sdsandbox-tmp "$r/tmp"
mount -t tmpfs -o mode=1777,nosuid,nodev sdsandbox-vartmp "$r/var/tmp"

mkdir -p "$r/host"
mount --bind "$share" "$r/host"
mount -o remount,bind,ro "$r/host"

# Switch root and detach the host's tree completely.
cd "$r"
mkdir .sdsandbox-oldroot
pivot_root . .sdsandbox-oldroot
cd /
umount -l /.sdsandbox-oldroot
rmdir /.sdsandbox-oldroot

# Paranoia: systemd starts only on the overlay with private /tmp, /var/tmp and /run,
# a read-only /host and no trace of the old root.
[ "$(fstype /)" = overlayfs ] || fail "/ is $(fstype /), not overlayfs"
for d in /tmp /var/tmp /run /dev; do
	[ "$(fstype "$d")" = tmpfs ] || fail "$d is $(fstype "$d"), not tmpfs"
done
host_ro=
while read -r _ _ _ _ mountpoint options _; do
	[ "$mountpoint" = /host ] || continue
	case $options in ro | ro,*) host_ro=yes ;; *) host_ro= ;; esac
done </proc/self/mountinfo
[ "$host_ro" = yes ] || fail "/host is not mounted read-only"
if grep -q sdsandbox-oldroot /proc/self/mountinfo; then fail "the old root is still mounted"; fi

exec /usr/bin/env -i container=other PATH="$inner_path" LANG=C.UTF-8 \
	/usr/bin/setpriv --bounding-set "$drop_caps" \
	"$systemd" --system --unit=multi-user.target --show-status=no
