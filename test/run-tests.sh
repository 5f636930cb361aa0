#!/usr/bin/env bash
# Contract entry for the test phases: --smoke, --integration, --unit, --all (thin shim over pytest markers).
set -euo pipefail
REPO="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
phase="${1:---all}"
if [ -n "${PYTHON:-}" ]; then RESOURCE_PY="$PYTHON"; else
  # shellcheck source=../scripts/venv.sh
  . "$REPO/scripts/venv.sh"; resource_bootstrap || exit 1
fi
case "$phase" in
  --unit|unit)               marker="unit" ;;
  --smoke|smoke)             marker="smoke" ;;
  --integration|integration) marker="integration" ;;
  --all|all)                 marker="unit or smoke or integration" ;;
  *) echo "usage: $0 --smoke|--integration|--unit|--all" >&2; exit 1 ;;
esac
cd "$REPO"
exec "$RESOURCE_PY" -m pytest -m "$marker" "${@:2}"
