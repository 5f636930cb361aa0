#!/usr/bin/env bash
# Contract phase "smoke": delegates to the pytest suite (marker smoke).
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/run-tests.sh" --smoke "$@"
