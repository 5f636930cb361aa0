#!/usr/bin/env bash
# The test venv: the test tooling (pytest, playwright: constraints/test-lock-py<X.Y>.txt, hashed) in a venv
# of its own, which reaches the runtime venv's packages (Airflow, airflow_resource) through a .pth, so
# the runtime venv, the one the stack runs from, never gets them.
#   scripts/test-venv.sh RUNTIME_PYTHON    creates or refreshes it and prints its python
# TEST_VENV says where it lives (default <repo>/.venv-test). It is made again when the runtime venv or the
# test lock changes (a stamp records both); otherwise this is a no-op.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runtime_py="${1:?usage: scripts/test-venv.sh RUNTIME_PYTHON}"
venv="${TEST_VENV:-$REPO/.venv-test}"
ver="$("$runtime_py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
lock="$REPO/constraints/test-lock-py$ver.txt"
[ -f "$lock" ] || { echo "error: no $lock; run PYTHON=python$ver scripts/lock.sh" >&2; exit 1; }
site="$("$runtime_py" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
want="$site $(cksum < "$lock" | cut -d' ' -f1)"
stamp="$venv/.test-venv-source"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "$venv/bin/python"; exit 0
fi
echo "• creating the test venv $venv (test tooling from ${lock#"$REPO"/})" >&2
rm -rf "$venv"
# No pip of its own: the runtime venv's pip installs into it (--python), which saves ensurepip's seconds.
"$runtime_py" -m venv --without-pip "$venv"
if ! out="$("$runtime_py" -m pip --python "$venv/bin/python" install -q --disable-pip-version-check \
    --require-hashes --no-deps --only-binary :all: -r "$lock" 2>&1)"; then
  printf '%s\n' "$out" | grep -v "^WARNING: Location" >&2
  echo "error: pip refused or failed to install ${lock#"$REPO"/} into $venv (above; a hash mismatch names the package)" >&2
  echo "  → a lock edited by hand: regenerate it with scripts/lock.sh; otherwise the file served is not the" >&2
  echo "    released one (index, mirror or pip cache): do not install it, run pip cache purge and report it" >&2
  exit 1
fi
# After the install, so the test venv holds its own copy of every tool. addsitedir (not a bare path line)
# also runs the runtime venv's own .pth files: the editable install of airflow_resource is one.
own_site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
echo "import site; site.addsitedir('$site')" > "$own_site/_runtime_venv.pth"
"$venv/bin/python" -c "import airflow_resource, pytest" || { echo "error: the test venv $venv cannot import airflow_resource and pytest" >&2; exit 1; }
echo "$want" > "$stamp"
echo "$venv/bin/python"
