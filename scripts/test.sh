#!/usr/bin/env bash
# Runs set-up, then every test (unit and integration) in release mode.
# Usage: scripts/test.sh [extra `swift test` arguments, e.g. --filter MeshModelsTests]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "test: running swift test -c release"
swift test -c release "$@"
