#!/usr/bin/env bash
# Regenerates the committed protobuf-c code of Sources/ExpertMeshProtoC from proto/.
# Usage: scripts/gen-proto.sh [OUTPUT_DIR]   (default: Sources/ExpertMeshProtoC)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-Sources/ExpertMeshProtoC}"
command -v protoc-c >/dev/null || { echo "gen-proto: protoc-c not found; run scripts/setup.sh (package protobuf-c-compiler)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
protoc-c --proto_path=proto --c_out="$tmp" proto/expertmesh/v1/*.proto
mkdir -p "$out/include"
for file in "$tmp"/expertmesh/v1/*.pb-c.c; do
    # The header lives in include/ so SwiftPM exposes it to Swift through the module map.
    sed 's|#include "expertmesh/v1/\(.*\)\.pb-c\.h"|#include "\1.pb-c.h"|' "$file" > "$out/$(basename "$file")"
done
cp "$tmp"/expertmesh/v1/*.pb-c.h "$out/include/"
echo "gen-proto: wrote $(cd "$tmp"/expertmesh/v1 && echo *) into $out"
