#!/usr/bin/env bash
# Installs and starts dockerd, a local registry on 127.0.0.1:5000 and the busybox test image.
# Idempotent: an engine that already answers is left alone.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_install docker.io docker-registry busybox-static apache2-utils curl

DOCKER=/usr/bin/docker
if ! $DOCKER version >/dev/null 2>&1; then
  log "starting dockerd"
  rm -f /var/run/docker.pid /var/run/docker.sock /var/run/docker/containerd/containerd.pid
  nohup dockerd >/var/log/libgo-dockerd.log 2>&1 &
  wait_for dockerd 60 $DOCKER version
fi

if ! curl -sf http://127.0.0.1:5000/v2/ >/dev/null 2>&1; then
  log "starting the local registry on 127.0.0.1:5000"
  mkdir -p /var/lib/libgo-registry
  cat >/etc/libgo-registry.yml <<'YML'
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/libgo-registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YML
  nohup docker-registry serve /etc/libgo-registry.yml >/var/log/libgo-registry.log 2>&1 &
  wait_for registry 30 curl -sf http://127.0.0.1:5000/v2/
fi

# A second registry that wants credentials, for the push/pull-with-credentials tests.
# Test-only credentials on loopback: user libgo-test, password libgo-test-secret.
if ! curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5001/v2/ 2>/dev/null | grep -q 401; then
  log "starting the authenticating registry on 127.0.0.1:5001"
  mkdir -p /var/lib/libgo-registry-auth
  htpasswd -Bbc /etc/libgo-registry-auth.htpasswd libgo-test libgo-test-secret >/dev/null 2>&1
  cat >/etc/libgo-registry-auth.yml <<'YML'
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/libgo-registry-auth
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5001
auth:
  htpasswd:
    realm: libgo-test
    path: /etc/libgo-registry-auth.htpasswd
YML
  nohup docker-registry serve /etc/libgo-registry-auth.yml >/var/log/libgo-registry-auth.log 2>&1 &
  wait_for "authenticating registry" 30 sh -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5001/v2/ | grep -q 401"
fi

# No registry on the internet is reachable: the test image is built from Debian's busybox.
if ! $DOCKER image inspect libgo-test/busybox:latest >/dev/null 2>&1; then
  log "building libgo-test/busybox:latest"
  ctx=$(mktemp -d)
  cp /bin/busybox "$ctx/busybox"
  cat >"$ctx/Dockerfile" <<'DF'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
DF
  $DOCKER build -q -t libgo-test/busybox:latest "$ctx" >/dev/null
  rm -rf "$ctx"
fi
log "docker ready: $($DOCKER version -f '{{.Server.Version}} (API {{.Server.APIVersion}})')"
