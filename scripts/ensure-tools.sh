#!/usr/bin/env bash
# Installs the programs the tests drive (real NBD and Prometheus peers) when
# they are missing. Under CI=true a tool that cannot be installed is a
# failure; elsewhere too, but with the command to run by hand.
set -euo pipefail

# command -> Debian package. cinder is Debian's own /usr/bin/cinder (run
# under the system python, which has the cinderclient module): a cinder
# elsewhere on PATH (a pip install in another python) does not count.
declare -A tools=(
  [qemu-img]=qemu-utils [qemu-io]=qemu-utils [qemu-nbd]=qemu-utils
  [nbdinfo]=libnbd-bin [nbdcopy]=libnbd-bin [nbdsh]=python3-libnbd
  [nbdkit]=nbdkit
  [fio]=fio
  [promtool]=prometheus [prometheus]=prometheus
  [/usr/bin/cinder]=python3-cinderclient
  [node]=nodejs [npm]=npm
)
# python modules nbdsh needs, checked with the system python
python_pkgs=(python3-libnbd)

missing=()
for cmd in "${!tools[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${tools[$cmd]}")
done
# -I: not the working directory, whose nbd/ (our Go package) would pass
if ! /usr/bin/python3 -I -c 'import nbd' >/dev/null 2>&1; then
  missing+=("${python_pkgs[@]}")
fi
if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "ensure-tools: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if ! command -v apt-get >/dev/null 2>&1 ||
     ! { $sudo apt-get update -qq &&
         DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    echo "ensure-tools: could not install ${missing[*]}; run: apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# npm packages the system tests drive, pinned by their lock files.
cd "$(dirname "$0")/.."
for dir in cmd/vdiskd/systest/testdata/xo; do
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    echo "ensure-tools: npm ci in $dir" >&2
    if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
      echo "ensure-tools: npm ci failed in $dir; run it there by hand" >&2
      exit 1
    fi
  fi
done

# XenAPI.py, the classic XenAPI client: Debian ships it in
# python3-os-xenapi, whose other modules (and their dependencies) the
# tests do not need, so only that file is taken from the package.
xenapi_py=cmd/vdiskd/systest/testdata/xenapi/XenAPI.py
if [ ! -f "$xenapi_py" ]; then
  echo "ensure-tools: extracting XenAPI.py from python3-os-xenapi" >&2
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download python3-os-xenapi >/dev/null 2>&1 &&
        dpkg -x python3-os-xenapi_*.deb x) ||
     ! cp "$(find "$tmp/x" -name XenAPI.py | head -1)" "$xenapi_py"; then
    rm -rf "$tmp"
    echo "ensure-tools: could not get XenAPI.py; run: apt-get download python3-os-xenapi, and copy its XenAPI.py to $xenapi_py" >&2
    exit 1
  fi
  rm -rf "$tmp"
fi
