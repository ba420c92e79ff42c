#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (Debian packages,
# cargo-nextest), checks formatting and lints, then runs every unit and black-box test.
# Needs root (PID namespaces, --user, package installs), as CI and our machines have.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# unshare (util-linux) runs roadie as PID 1; procps and python3 serve the test apps;
# the postgres user and server binaries come with the postgresql package.
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v python3 >/dev/null || need_apt+=(python3)
command -v ps >/dev/null || need_apt+=(procps)
command -v pgbouncer >/dev/null || need_apt+=(pgbouncer)
[ -x /usr/lib/postgresql/15/bin/postgres ] && id postgres >/dev/null 2>&1 || need_apt+=(postgresql)
# mariadbd, mariadb-install-db, the mariadb client and the mysql user: mariadb-server (it
# pulls mariadb-client); the tests run mariadbd themselves, never the service.
[ -x /usr/sbin/mariadbd ] && command -v mariadb >/dev/null && id mysql >/dev/null 2>&1 ||
  need_apt+=(mariadb-server mariadb-client)
# docker-compose 1.29 (Debian's, Compose v1): `config` checks compose/ without an engine, and
# the container tier runs the files under it against scripts/docker.sh's daemon. Installed
# without its recommends; scripts/docker.sh installs docker.io itself.
need_compose=0
command -v docker-compose >/dev/null || need_compose=1
if [ ${#need_apt[@]} -gt 0 ] || [ "$need_compose" = 1 ]; then
  echo "installing: ${need_apt[*]} $([ "$need_compose" = 1 ] && echo docker-compose)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  [ ${#need_apt[@]} -eq 0 ] || apt-get install -y -qq "${need_apt[@]}" >/dev/null
  [ "$need_compose" = 0 ] || apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
fi
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# The Python venv the black-box tests run: alembic, the FastAPI example's packages, and
# kubernetes-validate for the manifests in examples/kubernetes/.
scripts/venv.sh >/dev/null
# The container tier (tests/blackbox/containers.rs): podman with runc, podman-compose, and the
# base images postgres:15 and python:3.11-slim built from Debian's packages: about 3.5 minutes
# on a fresh machine, 1 s when cached (images are tagged with a hash of their inputs).
scripts/containers.sh >/dev/null
# Docker Engine 20.10 beside podman: a private daemon (its own data root, exec root and socket,
# no iptables, no default bridge) with the same base images, loaded from podman's store; CI
# runs part of the container tier under it (.config/nextest.toml says which). About 20 s
# cold plus installing docker.io, 1 s cached; stopped when this script ends, whatever the
# outcome.
scripts/docker.sh >/dev/null
trap 'scripts/docker.sh stop' EXIT

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo build --locked --examples
cargo nextest run --locked --profile ci
