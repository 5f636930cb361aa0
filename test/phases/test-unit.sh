#!/usr/bin/env bash
# Contract phase "unit": delegates to the pytest suite (marker unit).
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/run-tests.sh" --unit "$@"
