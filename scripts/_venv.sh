# Sourced by scripts/run and scripts/test: make .venv (Python >= 3.11) and install Yuchi into it
# when pyproject.toml changed since the last install. Idempotent.
set -euo pipefail

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }

find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

ensure_venv() {
  local extras="$1"   # "" or "test"
  if [ ! -x .venv/bin/python ]; then
    local py
    py=$(find_python) || { echo "Yuchi needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)." >&2; exit 1; }
    say "creating .venv with $($py --version 2>&1)"
    "$py" -m venv .venv
  fi
  local spec="." stamp=".venv/.yuchi-installed"
  [ -n "$extras" ] && spec=".[$extras]"
  local want
  want="$spec $(cat pyproject.toml | cksum)"
  if [ ! -f "$stamp" ] || ! grep -qxF "$want" "$stamp"; then
    say "installing Yuchi and its dependencies into .venv (first run takes a minute)"
    local log=.venv/install.log
    if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip &&
           .venv/bin/python -m pip install --disable-pip-version-check -e "$spec"; } >"$log" 2>&1; then
      tail -n 40 "$log" >&2
      echo "Installing failed; the whole log is in $log." >&2
      exit 1
    fi
    echo "$want" > "$stamp"
  fi
}
