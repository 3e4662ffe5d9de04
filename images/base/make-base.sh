#!/usr/bin/env bash
# Build a minimal Debian base image for convertctl stage images without any
# registry: debootstrap a rootfs, strip it, and `docker import` it.
#
#   images/base/make-base.sh [--force] SUITE TAG
#   images/base/make-base.sh bullseye convertctl-base:bullseye   # python 3.9
#   images/base/make-base.sh bookworm convertctl-base:bookworm   # python 3.11
#
# Idempotent: does nothing when TAG already exists, unless --force.
# Environment:
#   DEBIAN_MIRROR   default http://deb.debian.org/debian
#   WORK_DIR        scratch directory (default: mktemp under /var/tmp)
# Needs root (debootstrap), debootstrap and a running docker daemon.
set -euo pipefail

usage() { echo "usage: $0 [--force] SUITE TAG" >&2; exit 2; }

force=0
args=()
for a in "$@"; do
  case "$a" in
    --force) force=1 ;;
    -h|--help) usage ;;
    -*) echo "unknown option: $a" >&2; usage ;;
    *) args+=("$a") ;;
  esac
done
[ "${#args[@]}" -eq 2 ] || usage
suite="${args[0]}"
tag="${args[1]}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

case "$suite" in
  bullseye|bookworm|trixie) ;;
  *) echo "unsupported suite: $suite (bullseye, bookworm, trixie)" >&2; exit 2 ;;
esac

if [ "$force" -eq 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag exists; skipping (use --force to rebuild)"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debootstrap not installed" >&2; exit 1; }

work="${WORK_DIR:-$(mktemp -d /var/tmp/convertctl-base.XXXXXX)}"
rootfs="$work/rootfs"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$rootfs"

echo "debootstrap $suite -> $rootfs (mirror $mirror)"
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-pip,ca-certificates \
  "$suite" "$rootfs" "$mirror"

# Plain sources.list so that `apt-get update` inside the image works.
echo "deb $mirror $suite main" > "$rootfs/etc/apt/sources.list"

# Strip: apt lists and caches, docs, man pages, locales other than C,
# Python bytecode caches, logs.
rm -rf "$rootfs"/var/lib/apt/lists/* \
       "$rootfs"/var/cache/apt/*.bin \
       "$rootfs"/var/cache/apt/archives/*.deb \
       "$rootfs"/var/cache/debconf/*-old \
       "$rootfs"/usr/share/doc/* \
       "$rootfs"/usr/share/man/* \
       "$rootfs"/usr/share/info/* \
       "$rootfs"/usr/share/lintian/* \
       "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
       "$rootfs"/tmp/* "$rootfs"/var/tmp/*
find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
find "$rootfs"/usr/lib/python3* -name '__pycache__' -type d -prune -exec rm -rf {} + 2>/dev/null || true
# debootstrap leaves the host's resolv.conf/hostname; docker bind-mounts its own.
: > "$rootfs/etc/resolv.conf"
echo localhost > "$rootfs/etc/hostname"
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"

pyver="$(chroot "$rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
echo "python in $suite rootfs: $pyver"

tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --message "convertctl base: debian $suite minbase + python$pyver" \
  - "$tag"
docker image inspect --format '{{.Id}} {{.Size}}' "$tag"
