#!/usr/bin/env bash
# The container tier's engine and base images (tests/blackbox/containers.rs, bench/containers):
# installs Debian's podman, runc, catatonit, mmdebstrap and busybox-static, and podman-compose from PyPI when
# missing, writes the engine's configuration, and builds the base images the project's files
# name, when missing or when their inputs changed (each is tagged with a hash of its inputs):
#
#   postgres:15        Debian's postgresql-15 + tests/containers/postgres/ (the official
#                      image's entrypoint, in the part compose/compose.yaml uses)
#   python:3.11-slim   Debian's python3 + a venv with examples/fastapi-alembic/requirements.txt
#                      installed from wheels downloaded from PyPI (tests/containers/python/)
#
# No image registry is reachable here, so the root filesystems are made with mmdebstrap from
# Debian's packages and turned into images with `podman import`. Safe to run twice, and
# concurrently (a lock). Progress on stderr; the last line on stdout is the state directory,
# whose containers.conf goes in CONTAINERS_CONF and whose venv/bin has podman-compose:
#   dir=$(scripts/containers.sh) && export CONTAINERS_CONF=$dir/containers.conf
# Needs root (apt-get, podman as root). First run about 4 minutes; cached about 1 s.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
exec 3>&1 1>&2

dir=${ROADIE_CONTAINERS_DIR:-/var/cache/roadie-containers}
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

need_apt=()
command -v podman >/dev/null || need_apt+=(podman)
command -v runc >/dev/null || need_apt+=(runc)
command -v catatonit >/dev/null || need_apt+=(catatonit)
command -v mmdebstrap >/dev/null || need_apt+=(mmdebstrap)
# Debian's python3 makes venvs (podman-compose's) only with python3-venv.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
# A static shell for the tests' apps in the shipped image, which has nothing but /roadie.
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || need_apt+=(busybox-static)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "containers.sh: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# runc, not Debian's default crun: crun refuses this kernel's cgroup v1/v2 hybrid ("cgroups in
# hybrid mode not supported"). Lower ulimits: podman's default as root (nofile=1048576) is
# refused here by setrlimit with EPERM.
conf=$dir/containers.conf
cat >"$conf.new" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
EOF
mv "$conf.new" "$conf"
export CONTAINERS_CONF=$conf

# podman-compose from PyPI, pinned (the version these files were checked with), in its own venv.
compose_version=1.6.0
if [ "$("$dir/venv/bin/podman-compose" --version 2>/dev/null | grep -o 'podman-compose version [0-9.]*' | cut -d' ' -f3)" != "$compose_version" ]; then
  echo "containers.sh: installing podman-compose $compose_version"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install -q "podman-compose==$compose_version"
fi

# The name of a base image: localhost/roadie-test/NAME:HASH, where HASH covers everything it is
# made of: the mmdebstrap arguments, the files of tests/containers/NAME/, and any EXTRA files.
#   base_image NAME PACKAGES [EXTRA...]
base_image() {
  local name=$1 packages=$2
  shift 2
  local hash
  hash=$({
    echo "mmdebstrap --variant=essential --include=$packages bookworm"
    cat "tests/containers/$name"/* "$@"
  } | sha256sum | cut -c1-16)
  echo "localhost/roadie-test/$name:$hash"
}

# build_base NAME PACKAGES TAG [EXTRA...]: builds the base image (a Debian rootfs with PACKAGES,
# then tests/containers/NAME/Containerfile with $context as its context) unless it exists, and
# tags it TAG, the name the project's files use.
build_base() {
  local name=$1 packages=$2 tag=$3
  shift 3
  local image
  image=$(base_image "$name" "$packages" "$@")
  if ! podman image exists "$image"; then
    echo "containers.sh: building $image (a Debian rootfs with $packages, then the Containerfile)"
    local rootfs=${image/\/$name:/\/$name-rootfs:}
    mmdebstrap --quiet --variant=essential --include="$packages" --format=tar bookworm - |
      podman import --quiet - "$rootfs" >/dev/null
    podman build --quiet --pull=never --network=none --build-arg "ROOTFS=$rootfs" \
      -t "$image" -f "tests/containers/$name/Containerfile" "$context" >/dev/null
    podman rmi --force "$rootfs" >/dev/null
  fi
  podman tag "$image" "$tag"
}

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT

cp tests/containers/postgres/docker-entrypoint.sh "$context/"
build_base postgres postgresql-15,passwd docker.io/library/postgres:15

# The example's packages as wheels for Debian bookworm's Python (3.11, glibc 2.36), fetched on
# the host with pip (only when the image is to be built), so the image build needs no network.
requirements=examples/fastapi-alembic/requirements.txt
python_packages=python3,python3-venv,postgresql-client-15,passwd
rm -rf "${context:?}"/*
if ! podman image exists "$(base_image python "$python_packages" "$requirements")"; then
  mkdir -p "$context/wheels"
  cp "$requirements" "$context/wheels/requirements.txt"
  # The venv's pip: Debian's python3 has none of its own.
  "$dir/venv/bin/pip" download --quiet --only-binary=:all: --python-version 3.11 \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --implementation cp \
    -d "$context/wheels" -r "$requirements"
fi
build_base python "$python_packages" docker.io/library/python:3.11-slim "$requirements"

echo "$dir" >&3
