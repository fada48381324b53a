#!/usr/bin/env bash
# Runs set-up, then every test (unit and integration: kernels, tokenizers, transformers parity,
# wire, real worker/coordinator processes on loopback and across network namespaces) in release mode.
# Usage: scripts/test.sh [extra `swift test` arguments, e.g. --filter MeshModelsTests]
set -euo pipefail
cd "$(dirname "$0")/.."
# `swift test` builds everything itself (with testable imports, so a plain release build first would
# only be thrown away): set-up installs the packages and leaves the build to it.
scripts/setup.sh --no-build
echo "test: running swift test -c release"
log=$(mktemp)
status=0
# The tests are XCTest; Swift Testing would only add a "0 tests" summary line.
# A hung test must not eat CI's 90 minutes: the whole run is bounded (the suite takes ~1 minute).
timeout --signal=KILL 2400 swift test -c release --disable-swift-testing "$@" 2>&1 | tee "$log" || status=$?
passed=$(grep -cE "^Test Case .* passed" "$log" || true)
failed=$(grep -cE "^Test Case .* failed" "$log" || true)
skipped=$(grep -cE "^Test Case .* skipped" "$log" || true)
rm -f "$log"
echo "test: $passed passed, $failed failed, $skipped skipped"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
