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
