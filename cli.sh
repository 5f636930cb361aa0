#!/usr/bin/env bash
# Entry point of the apache-airflow resource: bootstraps the venv if needed, hands over to the Python CLI.
set -euo pipefail
REPO="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
# shellcheck source=scripts/venv.sh
. "$REPO/scripts/venv.sh"
resource_bootstrap "$@" || exit 1
exec "$RESOURCE_PY" -m airflow_resource "$@"
