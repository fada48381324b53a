#!/usr/bin/env bash
# Throughput of one coordinator against two sharing the same workers, each process in its own
# network namespace (198.18.0.0/15): two coordinator hosts, two worker hosts (each worker connects
# to both coordinators) and a client host running `expertmesh bench-serve`. Per round it loads
# coordinator 1 alone at --concurrency C, then both coordinators at C/2 each at once, and prints the
# output tokens per second of each. Needs root and iproute2; cleans up on exit.
#
# Usage: scripts/netns-coordinators-bench.sh [--model DIR] [--concurrency C] [--rounds N] [--binary PATH]
# Example: sudo scripts/netns-coordinators-bench.sh --model bench-models/mixtral-640m-bf16 --concurrency 8
set -euo pipefail
cd "$(dirname "$0")/.."
model=Tests/Fixtures/models/mixtral
concurrency=16
rounds=2
binary=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --concurrency) concurrency="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "netns-coordinators: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "netns-coordinators: needs root (network namespaces)" >&2; exit 77; }
[ -n "$binary" ] || binary="$(swift build -c release --show-bin-path)/expertmesh"
[ -x "$binary" ] || { echo "netns-coordinators: $binary not built; run swift build -c release" >&2; exit 1; }
[ "$concurrency" -ge 2 ] || { echo "netns-coordinators: --concurrency must be at least 2" >&2; exit 2; }

tag="nc$$"
# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
source scripts/netns-lib.sh
host 0 198.18.0.1
host 1 198.18.0.2
host 2 198.18.0.11
host 3 198.18.0.12
host 4 198.18.0.100
for c in 0 1; do
    ip netns exec "${tag}h$c" "$binary" coordinator --model "$model" --listen "tcp://198.18.0.$((c + 1)):5555" \
        --http "198.18.0.$((c + 1)):8080" --min-workers 2 --insecure > "$logs/coordinator-$c.log" 2>&1 &
    pids+=($!)
done
for w in 2 3; do
    ip netns exec "${tag}h$w" "$binary" worker --coordinator tcp://198.18.0.1:5555 --coordinator tcp://198.18.0.2:5555 \
        --model "$model" --name "shared-$w" --insecure > "$logs/worker-$w.log" 2>&1 &
    pids+=($!)
done
for c in 1 2; do
    wait_healthy 4 "http://198.18.0.$c:8080/health" \
        || { echo "netns-coordinators: coordinator $c never became healthy"; cat "$logs"/*.log; exit 1; }
done
# bench <coordinator 1|2> <concurrency> <output file>
bench() {
    ip netns exec "${tag}h4" "$binary" bench-serve --server "http://198.18.0.$1:8080" --concurrency "$2" \
        --prompt-tokens 64 --max-tokens 64 --vocab 300 --requests 64 --json > "$3" 2>/dev/null
}
rate() { python3 -c "import json,sys; print(round(sum(json.load(open(f))['output_tokens_per_second'] for f in sys.argv[1:]), 1))" "$@"; }
for round in $(seq 1 "$rounds"); do
    bench 1 "$concurrency" "$logs/one.json"
    bench 1 $((concurrency / 2)) "$logs/a.json" & first=$!
    bench 2 $((concurrency / 2)) "$logs/b.json" & second=$!
    wait "$first" "$second"
    echo "round $round: one coordinator at c$concurrency: $(rate "$logs/one.json") out tok/s;" \
         "two coordinators at c$((concurrency / 2)) each: $(rate "$logs/a.json" "$logs/b.json") out tok/s"
done
