#!/usr/bin/env bash
# Contract entry for the test phases: --smoke, --integration, --unit, --e2e, --all, --long (thin shim over pytest markers).
set -euo pipefail
REPO="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
phase="${1:---all}"
# PYTHON (`./cli.sh test` sets it): the runtime venv's python.
if [ -n "${PYTHON:-}" ]; then RESOURCE_PY="$PYTHON"; else
  # shellcheck source=../scripts/venv.sh
  . "$REPO/scripts/venv.sh"; resource_bootstrap || exit 1
fi
case "$phase" in
  --unit|unit)               marker="unit" ;;
  --smoke|smoke)             marker="smoke" ;;
  --integration|integration) marker="integration and not long" ;;
  --e2e|e2e)                 marker="e2e and not long" ;;
  --all|all)                 marker="(unit or smoke or integration or e2e) and not long" ;;
  --long|long)               marker="long" ;;  # faults, a second stack, the standalone baseline: CI leaves them out
  *) echo "usage: $0 --smoke|--integration|--unit|--e2e|--all|--long" >&2; exit 1 ;;
esac
cd "$REPO"
# What the phase's tests drive beyond the venv (chromium, prometheus): apt-get as root, else exit 1 naming them.
"$RESOURCE_PY" -m airflow_resource.stack.test_deps --phase "${phase#--}"
# pytest and playwright live in the test venv (<repo>/.venv-test, hashed lock), never in the runtime venv;
# it reaches Airflow and airflow_resource through a .pth to the runtime venv, which the stacks run from.
TEST_PY="$("$REPO/scripts/test-venv.sh" "$RESOURCE_PY")"
exec "$TEST_PY" -m pytest -m "$marker" "${@:2}"
