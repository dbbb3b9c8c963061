#!/usr/bin/env bash
# Installs and starts libvirt (virtlogd + libvirtd) with QEMU, makes /dev/kvm usable,
# ensures the `default` dir storage pool, and builds the LibGo test guest (Debian's cloud
# kernel + a busybox initramfs) into $LIBGO_CACHE/guest/.
# Idempotent: a daemon that already answers is left alone; the guest is built once.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# qemu-utils must come from the same Debian release as qemu-system-x86: pin both to the
# candidate version of qemu-system-x86 (apt_install allows the downgrade of a newer one).
if [ ! -f "$LIBGO_CACHE/apt-updated" ] && ! apt-cache policy qemu-system-x86 | grep -q 'Candidate: [0-9]'; then
  apt-get update -qq && touch "$LIBGO_CACHE/apt-updated"
fi
QEMU_V=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
want_qemu_utils() {
  [ "$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null)" = "$QEMU_V" ] &&
    [ "$(dpkg-query -W -f='${Version}' qemu-block-extra 2>/dev/null)" = "$QEMU_V" ]
}
want_qemu_ga() {
  [ "$(dpkg-query -W -f='${Version}' qemu-guest-agent 2>/dev/null)" = "$QEMU_V" ]
}
apt_install qemu-system-x86 libvirt-daemon-system libvirt-dev linux-image-cloud-amd64 \
  busybox-static cpio openvswitch-switch dnsmasq-base
if ! want_qemu_utils; then
  log "installing qemu-utils=$QEMU_V"
  [ -f "$LIBGO_CACHE/apt-updated" ] || { apt-get update -qq && touch "$LIBGO_CACHE/apt-updated"; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades \
    "qemu-utils=$QEMU_V" "qemu-block-extra=$QEMU_V" >/dev/null
fi
# The test guest's QEMU guest agent: Debian's qemu-ga of the same version as QEMU (copied
# into the initramfs below; it is not run on the host).
if ! want_qemu_ga; then
  log "installing qemu-guest-agent=$QEMU_V"
  [ -f "$LIBGO_CACHE/apt-updated" ] || { apt-get update -qq && touch "$LIBGO_CACHE/apt-updated"; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades \
    "qemu-guest-agent=$QEMU_V" >/dev/null
fi

# /dev/kvm exists but is root-only: let the qemu user open it.
if [ -e /dev/kvm ]; then chmod 0666 /dev/kvm; fi

VIRSH="virsh -c qemu:///system"

# LIBGO_LIBVIRT_TCP=1 (set by scripts/test.sh only) also serves libvirt's remote protocol
# on 127.0.0.1:16509 without authentication, so that the tests can use a remote URI
# (qemu+tcp://127.0.0.1/system). Never for real use: any local user could drive libvirt.
LIBVIRTD_ARGS=""
if [ "${LIBGO_LIBVIRT_TCP:-0}" = 1 ]; then
  cat >/etc/libvirt/libgo-test-libvirtd.conf <<'CONF'
listen_tls = 0
listen_tcp = 1
listen_addr = "127.0.0.1"
auth_tcp = "none"
CONF
  LIBVIRTD_ARGS="--listen -f /etc/libvirt/libgo-test-libvirtd.conf"
  if pgrep -x libvirtd >/dev/null && ! virsh -c qemu+tcp://127.0.0.1/system version >/dev/null 2>&1; then
    log "restarting libvirtd to serve the remote protocol on loopback (tests only)"
    pkill -x libvirtd || true
    wait_for "libvirtd to exit" 30 sh -c '! pgrep -x libvirtd'
  fi
fi
if ! $VIRSH version >/dev/null 2>&1; then
  log "starting virtlogd and libvirtd"
  if ! pgrep -x virtlogd >/dev/null; then
    rm -f /var/run/virtlogd.pid /var/run/libvirt/virtlogd-sock /var/run/libvirt/virtlogd-admin-sock
    mkdir -p /var/run/libvirt
    virtlogd -d
  fi
  if ! pgrep -x libvirtd >/dev/null; then
    rm -f /var/run/libvirtd.pid /var/run/libvirt/libvirt-sock /var/run/libvirt/libvirt-sock-ro \
      /var/run/libvirt/libvirt-admin-sock
    libvirtd -d $LIBVIRTD_ARGS
  fi
  wait_for libvirtd 60 $VIRSH version
fi

if [ "${LIBGO_LIBVIRT_TCP:-0}" = 1 ]; then
  wait_for "libvirt on 127.0.0.1:16509" 30 virsh -c qemu+tcp://127.0.0.1/system version
fi

# The default storage pool (a directory).
if ! $VIRSH pool-info default >/dev/null 2>&1; then
  log "defining the default storage pool"
  mkdir -p /var/lib/libvirt/images
  $VIRSH pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
  $VIRSH pool-autostart default >/dev/null
fi
pool_info=$($VIRSH pool-info default)
if ! grep -q 'State: *running' <<<"$pool_info"; then
  $VIRSH pool-start default >/dev/null
fi

# The test guest: direct kernel boot of Debian's cloud kernel with a busybox initramfs.
GUEST=$LIBGO_CACHE/guest
GUEST_VERSION=8 # bump when the initramfs below changes
if [ ! -s "$GUEST/vmlinuz" ] || [ ! -s "$GUEST/initrd.img" ] ||
  [ "$(cat "$GUEST/version" 2>/dev/null)" != "$GUEST_VERSION" ]; then
  log "building the test guest in $GUEST"
  KVER=$(ls /lib/modules | grep -- '-cloud-amd64$' | sort -V | tail -1)
  [ -n "$KVER" ] || { log "no cloud kernel under /lib/modules"; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  root=$work/root
  mkdir -p "$root"/{bin,sbin,dev,proc,sys,mnt/seed,lib/modules,tmp,etc,run,var/lib}
  ln -s ../run "$root/var/run"
  cp /bin/busybox "$root/bin/busybox"
  # Every applet, so that exec through the guest agent finds `pwd`, `env`, `id`...
  for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"
  done
  # qemu-ga with the shared libraries it links (and the dynamic loader), at their paths.
  cp /usr/sbin/qemu-ga "$root/bin/qemu-ga"
  for lib in $(ldd /usr/sbin/qemu-ga | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  MODS="scsi_common scsi_mod virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev \
virtio_pci virtio_blk virtio_console failover net_failover virtio_net fat vfat nls_cp437 nls_iso8859-1 nls_ascii libata ata_piix cdrom \
sr_mod isofs"
  for m in $MODS; do
    f=$(modinfo -k "$KVER" -n "$m" 2>/dev/null || true)
    case "$f" in
      /*.ko) cp "$f" "$root/lib/modules/$m.ko" ;;
      /*.ko.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;;
      /*.ko.zst) zstd -dcq "$f" >"$root/lib/modules/$m.ko" ;;
      *) ;; # built into the kernel
    esac
  done
  echo "$MODS" >"$root/etc/modules"
  # Accounts, and the chpasswd the agent's guest-set-user-password runs (busybox has none):
  # `user:password` lines (hashes with -e) on stdin, written to /etc/shadow.
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'root:*:20000:0:99999:7:::' >"$root/etc/shadow"
  chmod 0600 "$root/etc/shadow"
  cat >"$root/bin/chpasswd" <<'CHPASSWD'
#!/bin/sh
crypted=0
[ "$1" = "-e" ] && crypted=1
while IFS=: read -r user pass; do
  if [ "$crypted" = 1 ]; then hash=$pass; else hash=$(mkpasswd -m sha512 "$pass") || exit 1; fi
  grep -q "^$user:" /etc/shadow || { echo "chpasswd: no user $user" >&2; exit 1; }
  sed -i "s|^$user:[^:]*:|$user:$hash:|" /etc/shadow || exit 1
done
CHPASSWD
  chmod 0755 "$root/bin/chpasswd"
  # udhcpc's hook: applies the lease it got (busybox ships none).
  mkdir -p "$root/usr/share/udhcpc"
  cat >"$root/usr/share/udhcpc/default.script" <<'DHCP'
#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    : >/etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
    echo "LIBGO-IP=$ip" >/dev/ttyS0
    ;;
esac
DHCP
  chmod 0755 "$root/usr/share/udhcpc/default.script"
  cat >"$root/init" <<'INIT'
#!/bin/sh
# LibGo test guest: reports on ttyS0 that it booted and what its cloud-init seed says.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "LIBGO-GUEST-READY" >/dev/ttyS0
for m in $(cat /etc/modules); do
  [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko 2>/dev/null
done
# The QEMU guest agent on its virtio-serial port (no udev: find the port by its name),
# unless the kernel command line says libgo.noagent.
agent=""
for i in 1 2 3 4 5 6 7 8 9 10; do
  [ -n "$(ls /sys/class/virtio-ports 2>/dev/null)" ] && break
  sleep 0.2
done
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && agent=/dev/${p##*/}
done
if [ -n "$agent" ] && ! grep -qw libgo.noagent /proc/cmdline; then
  qemu-ga -m virtio-serial -p "$agent" -t /run -l /run/qemu-ga.log &
  echo "LIBGO-AGENT=$agent" >/dev/ttyS0
else
  echo "LIBGO-AGENT=none" >/dev/ttyS0
fi
# The first network interface asks for an address by DHCP (LibGo's address pools give
# each VM one through a DHCP host entry); the lease is printed as LIBGO-IP=.
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  udhcpc -f -i eth0 -T 2 -A 3 -s /usr/share/udhcpc/default.script >/dev/null 2>&1 &
fi
sleep 1
found=""
for dev in /dev/vd? /dev/sr? /dev/sd?; do
  [ -b "$dev" ] || continue
  for fs in vfat iso9660; do
    opts=ro
    [ $fs = vfat ] && opts=ro,codepage=437,iocharset=iso8859-1
    if mount -t $fs -o $opts "$dev" /mnt/seed 2>/dev/null; then
      if [ -f /mnt/seed/meta-data ]; then found=$dev; break 2; fi
      umount /mnt/seed
    fi
  done
done
if [ -n "$found" ]; then
  h=$(sed -n 's/^local-hostname: *//p' /mnt/seed/meta-data | tr -d '"\r')
  [ -n "$h" ] && hostname "$h"
  echo "LIBGO-SEED=$found" >/dev/ttyS0
  echo "LIBGO-HOSTNAME=$h" >/dev/ttyS0
else
  echo "LIBGO-SEED=none" >/dev/ttyS0
fi
n=0
while true; do
  echo "LIBGO-GUEST-ALIVE $n" >/dev/ttyS0
  n=$((n + 1))
  sleep 5
done
INIT
  chmod 0755 "$root/init"
  mkdir -p "$GUEST"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) >"$GUEST/initrd.img.new"
  cp "/boot/vmlinuz-$KVER" "$GUEST/vmlinuz.new"
  mv "$GUEST/initrd.img.new" "$GUEST/initrd.img"
  mv "$GUEST/vmlinuz.new" "$GUEST/vmlinuz"
  chmod 0644 "$GUEST/vmlinuz" "$GUEST/initrd.img"
  echo "$GUEST_VERSION" >"$GUEST/version"
fi
# QEMU runs as the libvirt-qemu user: it must be able to read the guest.
chmod 0755 "$LIBGO_CACHE" "$GUEST"

log "libvirt ready: $($VIRSH version --daemon | awk '/Running against daemon/ {print $NF}'), guest in $GUEST"
