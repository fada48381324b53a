#!/usr/bin/env bash
# The ExpertMesh demo: builds everything, then runs one model two ways and shows they agree:
#   1. in one process (expertmesh generate --model), and
#   2. as a cluster on this machine: a coordinator and 2 expert-shard workers over ZeroMQ,
#      queried through the OpenAI-style HTTP API.
# Until the trained demo model exists it uses the tiny Mixtral fixture (random weights: the
# text is gibberish, the agreement is the point).
# Usage: scripts/demo.sh [--model DIR] [--prompt TEXT]
set -euo pipefail
cd "$(dirname "$0")/.."
model=Tests/Fixtures/models/mixtral
prompt="The quick brown fox"
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --prompt) prompt="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
scripts/setup.sh
bin="$(swift build -c release --show-bin-path)/expertmesh"
logs=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT

echo
echo "== 1. one process: expertmesh generate --model $model --prompt \"$prompt\""
"$bin" generate --model "$model" --prompt "$prompt" --max-tokens 12 --temperature 0 --ignore-eos --json

port_zmq=$((20000 + RANDOM % 20000)); port_http=$((port_zmq + 1))
echo
echo "== 2. a cluster: coordinator + 2 workers on loopback (logs in $logs)"
"$bin" coordinator --model "$model" --listen "tcp://127.0.0.1:$port_zmq" --http "127.0.0.1:$port_http" --min-workers 2 > "$logs/coordinator.log" 2>&1 &
pids+=($!)
for name in shard-a shard-b; do
    "$bin" worker --coordinator "tcp://127.0.0.1:$port_zmq" --model "$model" --name "$name" > "$logs/$name.log" 2>&1 &
    pids+=($!)
done
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port_http/health" >/dev/null 2>&1 && break
    sleep 0.1
done
grep -E "placement|experts across|ready:" "$logs/coordinator.log" | sed 's/^/   /'
echo
echo "== POST /v1/completions"
curl -s "http://127.0.0.1:$port_http/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"prompt\": \"$prompt\", \"max_tokens\": 12, \"temperature\": 0, \"ignore_eos\": true, \"return_token_ids\": true}"
echo
echo
echo "== the same through the CLI client: expertmesh generate --server"
"$bin" generate --server "http://127.0.0.1:$port_http" --prompt "$prompt" --max-tokens 12 --temperature 0 --ignore-eos --json
