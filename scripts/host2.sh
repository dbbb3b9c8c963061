#!/usr/bin/env bash
# A second LibGo host on this machine, for the many-host tests: a network namespace joined to
# the machine by a veth pair, with its own dockerd (TCP with TLS on the namespace's address)
# and its own libvirtd (in a private mount namespace, TCP and TLS on the namespace's address).
#
#   scripts/host2.sh start NAME   starts it; prints `export LIBGO_HOST2_…=…` lines for eval
#   scripts/host2.sh stop NAME    stops what `start` started (by pid) and deletes it all
#   scripts/host2.sh docker-kill|docker-start NAME   kills (as a crash would) or starts its dockerd
#   scripts/host2.sh libvirt-kill|libvirt-start NAME kills (as a crash would) or starts its
#                                                    libvirtd; its guests run on
#   scripts/host2.sh crash NAME   kills its libvirtd and its guests' QEMU (the machine died)
#
# NAME is unique per run (the tests pass one). Each host takes the first free /30 of
# 10.250.0.0/16; the machine's side is .1, the host's .2. State lives in
# /var/lib/libgo-hosts/NAME. Test-only: libvirt's TCP listener has no authentication (its TLS
# listener asks for a client certificate of the host's CA).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# The host's directories are its libvirt's, which QEMU (another user) must enter: a caller
# with a private umask (a test process that runs a LibGo server, which sets 0077) must not
# make them 0700.
umask 022

cmd=${1:-}
name=${2:-}
[[ "$cmd" =~ ^(start|stop|docker-kill|docker-start|libvirt-kill|libvirt-start|crash)$ &&
  "$name" =~ ^[a-z][a-z0-9]{0,9}$ ]] || {
  echo "usage: $0 start|stop|docker-kill|docker-start|libvirt-kill|libvirt-start|crash NAME" \
    "(NAME: a-z0-9, at most 10 characters)" >&2
  exit 2
}
dir=/var/lib/libgo-hosts/$name
ns=libgo-$name
veth_out=lgo-$name # the machine's end; interface names have at most 15 characters
veth_in=lgi-$name

stop_pid() { # stop_pid FILE — TERM, then KILL, the process whose pid FILE holds
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# dockerd: its own roots, pid file and sockets; a bridge of its own inside the namespace but
# no iptables rules (nothing leaves the namespace but the TCP API).
start_dockerd() {
  local addr_in
  addr_in=$(cat "$dir/addr")
  nsenter --net="/var/run/netns/$ns" nohup dockerd \
    --data-root "$dir/docker-data" --exec-root "$dir/docker-exec" --pidfile "$dir/docker.pid" \
    -H "unix://$dir/docker.sock" -H "tcp://$addr_in:2376" \
    --tlsverify --tlscacert "$dir/tls/ca.pem" --tlscert "$dir/tls/server-cert.pem" \
    --tlskey "$dir/tls/server-key.pem" --iptables=false --ip-masq=false \
    --config-file "$dir/daemon.json" --bip "$(cat "$dir/bip")" >>"$dir/dockerd.log" 2>&1 &
  wait_for "the second host's dockerd" 60 docker -H "unix://$dir/docker.sock" version
}

# libvirtd: in a mount namespace where libvirt's directories are this host's own.
start_libvirtd() {
  local addr_in
  addr_in=$(cat "$dir/addr")
  nsenter --net="/var/run/netns/$ns" unshare -m --propagation private sh -c "
    mount --bind '$dir/run' /run/libvirt &&
    mount --bind '$dir/lib' /var/lib/libvirt &&
    mount --bind '$dir/etc' /etc/libvirt &&
    mount --bind '$dir/log' /var/log/libvirt &&
    mount --bind '$dir/cache' /var/cache/libvirt &&
    exec libvirtd --listen -f /etc/libvirt/libvirtd.conf -p '$dir/libvirtd.pid'
  " >>"$dir/libvirtd.log" 2>&1 &
  wait_for "the second host's libvirtd" 60 timeout 10 virsh -c "qemu+tcp://$addr_in/system" version
}

kill_pidfile() { # kill_pidfile FILE — SIGKILL (as a crash would), and wait until it is gone
  local pid
  pid=$(cat "$1")
  kill -9 "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$1"
}

# The QEMU processes of this host's guests: they live in its mount namespace, whose bind
# mountinfo shows this host's directory bound over /var/lib/libvirt.
kill_guests() {
  local p
  for p in $(pgrep -f "qemu-system.*" 2>/dev/null); do
    grep -qs " $dir/lib /var/lib/libvirt " "/proc/$p/mountinfo" && kill -9 "$p" 2>/dev/null || true
  done
}

case "$cmd" in
docker-kill) kill_pidfile "$dir/docker.pid"; exit 0 ;;
docker-start) start_dockerd; exit 0 ;;
libvirt-kill) kill_pidfile "$dir/libvirtd.pid"; exit 0 ;;
libvirt-start) start_libvirtd; exit 0 ;;
crash) kill_pidfile "$dir/libvirtd.pid"; kill_guests; exit 0 ;;
esac

if [ "$cmd" = stop ]; then
  # Guests first (their QEMU processes are the namespace libvirtd's children), then daemons.
  stop_pid "$dir/libvirtd.pid"
  pkill -f -- "-name guest=.*$dir" 2>/dev/null || true
  if [ -S "$dir/docker.sock" ]; then
    for c in $(docker -H "unix://$dir/docker.sock" ps -q 2>/dev/null); do
      docker -H "unix://$dir/docker.sock" kill "$c" >/dev/null 2>&1 || true
    done
  fi
  stop_pid "$dir/docker.pid"
  stop_pid "$dir/docker-exec/containerd/containerd.pid"
  ip link del "$veth_out" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  # QEMU processes that libvirtd left behind in the namespace.
  kill_guests
  umount -R "$dir/docker-data" 2>/dev/null || true
  rm -rf "$dir"
  log "host $name stopped"
  exit 0
fi

apt_install iproute2 openssl docker.io libvirt-daemon-system util-linux
mkdir -p /var/lib/libgo-hosts

# The first /30 of 10.250.0.0/16 that no interface uses, taken under a lock (tests start
# hosts concurrently). The lock's descriptor is closed before any daemon starts.
exec 9>/var/lib/libgo-hosts/.subnet.lock
flock 9
subnet=""
for i in $(seq 0 16383); do
  base=$((i * 4))
  cand="10.250.$((base / 256)).$((base % 256))"
  ip -o addr show | grep -q " 10.250.$((base / 256)).$((base % 256 + 1))/30" && continue
  subnet=$cand
  break
done
[ -n "$subnet" ] || { log "no free /30 in 10.250.0.0/16"; exit 1; }
prefix=${subnet%.*}
last=${subnet##*.}
addr_out="$prefix.$((last + 1))"
addr_in="$prefix.$((last + 2))"

rm -rf "$dir"
mkdir -p "$dir"/{tls,run,lib/images,log/qemu,cache,etc,docker-data,docker-exec}
echo "$addr_in" >"$dir/addr"

ip netns add "$ns"
ip link add "$veth_out" type veth peer name "$veth_in"
ip link set "$veth_in" netns "$ns"
ip addr add "$addr_out/30" dev "$veth_out"
ip link set "$veth_out" up
nsenter --net="/var/run/netns/$ns" ip addr add "$addr_in/30" dev "$veth_in"
nsenter --net="/var/run/netns/$ns" ip link set "$veth_in" up
nsenter --net="/var/run/netns/$ns" ip link set lo up
exec 9>&-

# TLS for Docker: a CA of this host's own, a server certificate for its address and a client
# certificate for LibGo.
(
  cd "$dir/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=libgo-test-ca-$name" \
    -keyout ca-key.pem -out ca.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$addr_in" -keyout server-key.pem -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$addr_in" >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
    -extfile server.ext -out server-cert.pem 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=libgo-client" -keyout key.pem -out client.csr 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
    -extfile client.ext -out cert.pem 2>/dev/null
  chmod 0600 ./*key.pem
  # The same CA and certificates for libvirt's TLS: the server's in libvirtd.conf, LibGo's as
  # a libvirt client pki directory (`qemu+tls://ADDR/system?pkipath=DIR`).
  mkdir -p libvirt-client
  cp ca.pem libvirt-client/cacert.pem
  cp cert.pem libvirt-client/clientcert.pem
  cp key.pem libvirt-client/clientkey.pem
)

# Docker's engine id comes from its trust key, /etc/docker/key.json by default: this host
# has a key of its own, or it would be the machine's dockerd by id.
printf '{"deprecated-key-path": "%s/docker-key.json"}\n' "$dir" >"$dir/daemon.json"

echo "172.31.$(((last / 4) % 256)).1/24" >"$dir/bip"
start_dockerd

# libvirtd: a copy of the machine's configuration without its domains and networks, in a
# mount namespace where libvirt's directories are this host's own.
cp -a /etc/libvirt/. "$dir/etc/"
rm -f "$dir"/etc/qemu/*.xml "$dir"/etc/qemu/autostart/* "$dir"/etc/qemu/networks/*.xml \
  "$dir"/etc/qemu/networks/autostart/* "$dir"/etc/storage/autostart/*
rm -f "$dir"/etc/storage/*.xml
cat >"$dir/etc/storage/default.xml" <<XML
<pool type='dir'><name>default</name><target><path>/var/lib/libvirt/images</path></target></pool>
XML
ln -s ../default.xml "$dir/etc/storage/autostart/default.xml"
cat >"$dir/etc/libvirtd.conf" <<CONF
listen_tls = 1
listen_tcp = 1
listen_addr = "$addr_in"
auth_tcp = "none"
auth_tls = "none"
ca_file = "$dir/tls/ca.pem"
cert_file = "$dir/tls/server-cert.pem"
key_file = "$dir/tls/server-key.pem"
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
CONF
# No virtlogd in this mount namespace: QEMU writes its own logs.
echo 'stdio_handler = "file"' >>"$dir/etc/qemu.conf"
start_libvirtd
tls_uri="qemu+tls://$addr_in/system?pkipath=$dir/tls/libvirt-client"
wait_for "the second host's libvirtd over TLS" 60 timeout 10 virsh -c "$tls_uri" version || {
  # What the client and the daemon said, for whoever reads the failure.
  timeout 10 virsh -c "$tls_uri" version >&2 || true
  grep -v "ethtool ioctl" "$dir/libvirtd.log" | tail -n 20 >&2 || true
  openssl verify -CAfile "$dir/tls/ca.pem" "$dir/tls/server-cert.pem" "$dir/tls/cert.pem" >&2 || true
  ip -o addr show | grep " 10\.250\." >&2 || true
  exit 1
}

# The busybox test image, from the machine's dockerd.
if docker image inspect libgo-test/busybox:latest >/dev/null 2>&1; then
  docker save libgo-test/busybox:latest | docker -H "unix://$dir/docker.sock" load -q >/dev/null
fi

log "host $name ready at $addr_in"
cat <<ENV
export LIBGO_HOST2_NAME=$name
export LIBGO_HOST2_ADDR=$addr_in
export LIBGO_HOST2_PEER=$addr_out
export LIBGO_HOST2_DOCKER=tcp://$addr_in:2376
export LIBGO_HOST2_DOCKER_TLS=$dir/tls
export LIBGO_HOST2_LIBVIRT=qemu+tcp://$addr_in/system
export LIBGO_HOST2_LIBVIRT_TLS=qemu+tls://$addr_in/system?pkipath=$dir/tls/libvirt-client
ENV
