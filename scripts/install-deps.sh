#!/usr/bin/env bash
# Installs what flashattn needs to build and test (Debian/Ubuntu); skips what is already there,
# so a second run takes seconds. Runs as root, or as a user with sudo.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

apt_packages=(cmake ninja-build g++ git libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev
              nlohmann-json3-dev libfmt-dev libomp-dev)
# A python3 with pip and headers is needed too; an existing one (venv, pyenv, conda) is kept.
if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
  apt_packages+=(python3 python3-pip python3-dev python3-venv)
fi

missing_apt=()
for package in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing_apt+=("$package")
  fi
done
if [ ${#missing_apt[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing_apt[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing_apt[@]}"
fi

# pip distribution name -> import name.
declare -A pip_modules=(
  [numpy]=numpy [pytest]=pytest [nanobind]=nanobind [scikit-build-core]=scikit_build_core
  [torch]=torch [matplotlib]=matplotlib
)
missing_pip=()
for package in "${!pip_modules[@]}"; do
  if ! python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('${pip_modules[$package]}') is None)" 2>/dev/null; then
    missing_pip+=("$package")
  fi
done
if [ ${#missing_pip[@]} -gt 0 ]; then
  echo "install-deps: pip install ${missing_pip[*]}"
  pip_install "${missing_pip[@]}"
fi
echo "install-deps: all dependencies present"
