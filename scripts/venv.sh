# Sourced by cli.sh and test/run-tests.sh: find the resource's (runtime) venv, create it when missing.
# Sets RESOURCE_PY (the venv's python). Only bash and a system Python are needed before this.
REPO="${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"

_home_from_args() {
  local prev=""
  for a in "$@"; do
    case "$a" in --home=*) echo "${a#--home=}"; return;; esac
    [ "$prev" = "--home" ] && { echo "$a"; return; }
    prev="$a"
  done
}

resource_bootstrap() {
  local home venv python ver lock stamp want out
  home="$(_home_from_args "$@")"
  if [ -z "$home" ]; then
    if [ "$(id -u)" = 0 ]; then home="${APACHE_AIRFLOW_HOME:-/var/lib/apache-airflow}"
    else home="${APACHE_AIRFLOW_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/apache-airflow}"; fi
  fi
  venv="${APACHE_AIRFLOW_VENV:-$home/venv}"
  if [ -e "$home" ] && [ "$(stat -c %u "$home")" != "$(id -u)" ]; then
    echo "error: $home belongs to uid $(stat -c %u "$home"), not to you (uid $(id -u))" >&2
    echo "  → run as that user, or choose another home with APACHE_AIRFLOW_HOME" >&2
    return 1
  fi
  RESOURCE_PY="$venv/bin/python"
  stamp="$venv/.resource-source"
  want="$REPO $(cksum < "$REPO/pyproject.toml" | cut -d' ' -f1)"
  if [ -x "$RESOURCE_PY" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  # Under root the components run as an unprivileged user, who must be able to run the venv's
  # Python: use the system interpreter, not one under /root (pyenv and the like).
  if [ "$(id -u)" = 0 ] && [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; else python="$(command -v python3 || true)"; fi
  if [ -z "$python" ]; then
    echo "error: python3 not found; install Python 3.10+ (Debian/Ubuntu: apt-get install python3 python3-venv)" >&2
    return 1
  fi
  if [ ! -x "$RESOURCE_PY" ]; then
    echo "• creating venv $venv ($("$python" --version))" >&2
    mkdir -p "$home"
    if ! "$python" -m venv "$venv" 2>/dev/null; then
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "• apt-get install python3-venv" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv) >/dev/null
        rm -rf "$venv"; "$python" -m venv "$venv"
      else
        echo "error: '$python -m venv' failed; install the venv module (Debian/Ubuntu: python3-venv)" >&2
        return 1
      fi
    fi
  fi
  ver="$("$RESOURCE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  lock="$REPO/constraints/cli-lock-py$ver.txt"
  if [ ! -f "$lock" ]; then
    echo "error: no lock file for Python $ver in $REPO/constraints; run PYTHON=python$ver scripts/lock.sh" >&2
    return 1
  fi
  echo "• installing the resource CLI into $venv" >&2
  # Exactly the hashed lock (a file whose sha256 differs is refused), then our package editable: it needs
  # no hash, and its build backend comes from that lock (no build isolation: pip fetches nothing else).
  if ! out="$("$RESOURCE_PY" -m pip install -q --disable-pip-version-check --require-hashes --no-deps \
      --only-binary :all: -r "$lock" 2>&1)"; then
    printf '%s\n' "$out" | grep -v "^WARNING: Location" >&2
    echo "error: pip refused or failed to install ${lock#"$REPO"/} (above; a hash mismatch names the package)" >&2
    echo "  → a lock edited by hand: regenerate it with scripts/lock.sh; otherwise the file served is not the" >&2
    echo "    released one (index, mirror or pip cache): do not install it, run pip cache purge and report it" >&2
    return 1
  fi
  "$RESOURCE_PY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$REPO" 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
  "$RESOURCE_PY" -c "import airflow_resource" || { echo "error: installing the resource CLI failed" >&2; return 1; }
  echo "$want" > "$stamp"
}
