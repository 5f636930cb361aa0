#!/usr/bin/env bash
# Contract phase "integration": delegates to the pytest suite (marker integration).
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/run-tests.sh" --integration "$@"
