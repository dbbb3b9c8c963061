#!/usr/bin/env bash
# Installs and starts Open vSwitch (ovsdb-server + ovs-vswitchd) for LibGo's OVS tests.
# The kernel datapath is not available on these machines: bridges use the userspace
# datapath (datapath_type=netdev). Idempotent: a switch that already answers is left alone.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_install openvswitch-switch

if ! ovs-vsctl --timeout=2 show >/dev/null 2>&1; then
  log "starting ovsdb-server and ovs-vswitchd"
  mkdir -p /var/run/openvswitch /var/log/openvswitch
  if ! pgrep -x ovsdb-server >/dev/null; then
    rm -f /var/run/openvswitch/ovsdb-server.pid /var/run/openvswitch/db.sock
    [ -f /etc/openvswitch/conf.db ] ||
      ovsdb-tool create /etc/openvswitch/conf.db /usr/share/openvswitch/vswitch.ovsschema
    ovsdb-server /etc/openvswitch/conf.db \
      --remote=punix:/var/run/openvswitch/db.sock \
      --pidfile=/var/run/openvswitch/ovsdb-server.pid --detach \
      --log-file=/var/log/openvswitch/ovsdb-server.log
  fi
  wait_for ovsdb-server 30 ovs-vsctl --no-wait --timeout=2 show
  ovs-vsctl --no-wait init
  if ! pgrep -x ovs-vswitchd >/dev/null; then
    rm -f /var/run/openvswitch/ovs-vswitchd.pid
    ovs-vswitchd --pidfile=/var/run/openvswitch/ovs-vswitchd.pid --detach \
      --log-file=/var/log/openvswitch/ovs-vswitchd.log
  fi
  wait_for ovs-vswitchd 30 ovs-appctl --timeout=2 version
fi
log "open vswitch ready: $(ovs-vsctl --version | head -1)"
