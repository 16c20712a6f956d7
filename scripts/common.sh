# Helpers shared by the scripts in this directory (sourced, not run).

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "error: '$*' needs root and sudo is not installed" >&2
    return 1
  fi
}

# pip install into the interpreter that runs the tests. Debian's own python3 refuses
# (PEP 668, "externally managed") unless told otherwise; a venv or pyenv python needs nothing.
pip_install() {
  local flags=()
  if python3 -c 'import sys, sysconfig, os; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) and sys.prefix == sys.base_prefix else 1)'; then
    flags+=(--break-system-packages)
  fi
  if [ "$(id -u)" -ne 0 ] && ! python3 -c 'import os, sys, sysconfig; sys.exit(0 if os.access(sysconfig.get_path("purelib"), os.W_OK) else 1)'; then
    flags+=(--user)
  fi
  python3 -m pip install --disable-pip-version-check --no-input "${flags[@]}" "$@"
}

# Whether a usable NVIDIA GPU is present (nvidia-smi exists and sees a device).
have_gpu() {
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'
}

# Number of parallel jobs for builds and tests.
job_count() {
  nproc 2>/dev/null || echo 2
}
