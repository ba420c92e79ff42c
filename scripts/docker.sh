#!/usr/bin/env bash
# Docker Engine for the container tier, beside podman (tests/blackbox/containers.rs,
# bench/containers): installs Debian's docker.io (Engine 20.10 with runc and docker-init, which
# is tini) when missing, starts a daemon of the project's own, and loads into it the base
# images scripts/containers.sh builds (postgres:15 and python:3.11-slim, from Debian's packages:
# no registry is reachable here).
#
#   scripts/docker.sh [start]   start the daemon unless it answers already, load the images;
#                               the last line on stdout is its socket, for DOCKER_HOST:
#                                 export DOCKER_HOST=unix://$(scripts/docker.sh)
#   scripts/docker.sh stop      stop it (leaving its swarm first) and unmount what it left
#
# The daemon is private: its own data root (cached images, kept between runs), exec root and
# socket, no iptables rules and no default bridge (--iptables=false --bridge=none), so it
# touches neither the host's firewall nor a system Docker. Containers use --network host or
# networks the tests create. The client is the engine's own (/usr/bin/docker, 20.10): a newer
# client elsewhere on PATH would negotiate down, but the tests pin the one that matches.
# scripts/test.sh starts it before the tests and stops it when they end; tests run by hand
# start it themselves (through this script) and leave it running.
#
# Needs root. First run: about 20 s after scripts/containers.sh and the docker.io install (daemon
# start, image load); cached: about 1 s. Safe to run twice, and concurrently (a lock).
set -euo pipefail
cd "$(dirname "$0")/.."
exec 3>&1 1>&2

dir=${ROADIE_DOCKER_DIR:-/var/cache/roadie-docker}
# The socket and exec root: short paths (a unix socket's path is at most 107 bytes).
run=${ROADIE_DOCKER_RUN:-/run/roadie-docker}
sock=$run/docker.sock
mkdir -p "$dir" "$run"
exec 9>"$dir/.lock"
flock 9

docker() { DOCKER_HOST=unix://$sock /usr/bin/docker "$@"; }
answers() { [ -S "$sock" ] && docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

stop() {
  if answers; then
    docker swarm leave --force >/dev/null 2>&1 || true
  fi
  local pid
  pid=$(cat "$run/dockerd.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    # dockerd stops its containers (10 s grace each, in parallel) and its containerd.
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  # Network namespaces of host-network-less containers stay mounted under the exec root.
  for ns in "$run"/exec/netns/*; do
    [ -e "$ns" ] && umount "$ns" 2>/dev/null || true
  done
  rm -f "$run/dockerd.pid" "$sock"
}

if [ "${1:-start}" = stop ]; then
  stop
  exit 0
fi

if ! [ -x /usr/sbin/dockerd ] || ! [ -x /usr/bin/docker ] || ! [ -x /usr/bin/docker-init ]; then
  echo "docker.sh: installing docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Without recommends (cgroupfs-mount, git, ...); the package's own service stays unused
  # (no systemd here, and the tests never touch /var/run/docker.sock).
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi

if ! answers; then
  stop
  echo "docker.sh: starting dockerd (data root $dir/root)"
  # The default nofile ulimit: as under podman (scripts/containers.sh), the 1048576 a
  # container inherits is refused here by setrlimit.
  setsid /usr/sbin/dockerd \
    --data-root "$dir/root" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
    -H "unix://$sock" --iptables=false --ip-masq=false --bridge=none \
    --default-ulimit nofile=1024:1024 \
    </dev/null >"$dir/dockerd.log" 2>&1 3>&- 9>&- &
  for _ in $(seq 600); do
    answers && break
    kill -0 $! 2>/dev/null || { tail -20 "$dir/dockerd.log"; exit 1; }
    sleep 0.1
  done
  answers || { echo "docker.sh: dockerd did not answer within 60 s"; tail -20 "$dir/dockerd.log"; exit 1; }
fi

# The base images, from podman's store (scripts/containers.sh builds them, tagged with a hash
# of their inputs): `podman save` keeps their configuration (entrypoint, env, user), which a
# plain `docker import` of the root filesystem would lose. An image already loaded has the same
# ID in both stores (the digest of its configuration), so a cached run loads nothing.
containers_dir=$(scripts/containers.sh)
export CONTAINERS_CONF=$containers_dir/containers.conf
for image in docker.io/library/postgres:15 docker.io/library/python:3.11-slim; do
  id=$(podman image inspect --format '{{.Id}}' "$image")
  if ! docker image inspect "sha256:$id" >/dev/null 2>&1; then
    echo "docker.sh: loading $image from podman"
    podman save --quiet --format docker-archive "$image" | docker load --quiet >/dev/null
  fi
  docker tag "sha256:$id" "$image"
done

echo "$sock" >&3
