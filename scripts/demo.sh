#!/usr/bin/env bash
# The ExpertMesh demo: a cluster on this machine serving the demo model (models/demo: a small
# Mixtral, 8 experts top-2, trained on Debian's fortunes; it writes English, if quirky English).
#   1. installs what is missing and builds (scripts/setup.sh; the first build takes a few minutes),
#   2. starts a coordinator and 3 expert-shard workers as separate processes on loopback (ZeroMQ),
#   3. streams two completions and a chat answer through the OpenAI-style HTTP API,
#   4. shows `expertmesh status`, then stops every process (also on Ctrl-C).
#
# Usage: scripts/demo.sh [--model DIR] [--prompt TEXT] [--question TEXT] [--seed N] [--keep-running] [--binary PATH]
#   --prompt TEXT    the first completion's prompt (the second's is "Love is")
#   --seed N         sampling seed of the answers (default 6; the same seed gives the same text on the same
#                    kind of CPU: the kernels, and so the last digits, differ between CPUs)
#   --keep-running   leave the cluster up after the demo, until Ctrl-C (try curl against it)
#   --binary PATH    use this expertmesh binary instead of setting up and building
# Examples:
#   scripts/demo.sh
#   scripts/demo.sh --prompt "The meaning of life is" --keep-running
set -euo pipefail
cd "$(dirname "$0")/.."
model=models/demo
prompt="The best thing about computers is"
question="Tell me something about food."
seed=6
keep_running=false
bin=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model|--prompt|--question|--seed|--binary)
            [ $# -ge 2 ] || { echo "demo: $1 needs a value (see --help)" >&2; exit 2; }
            case "$1" in
                --model) model=$2 ;; --prompt) prompt=$2 ;; --question) question=$2 ;; --seed) seed=$2 ;;
                --binary) bin=$2 ;;
            esac
            shift 2 ;;
        --keep-running) keep_running=true; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$bin" ]; then
    scripts/setup.sh
    bin="$(swift build -c release --show-bin-path)/expertmesh"
fi
[ -x "$bin" ] || { echo "demo: no expertmesh binary at $bin" >&2; exit 1; }
[ -f "$model/config.json" ] || { echo "demo: $model is not a model directory (no config.json)" >&2; exit 1; }

logs=$(mktemp -d)
pids=()
stop_cluster() {
    trap - EXIT INT TERM
    [ ${#pids[@]} -gt 0 ] || return 0
    echo
    echo "== stopping the coordinator and the workers"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 100); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive -eq 1 ] || break
        sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    echo "   all stopped (logs in $logs)"
}
trap stop_cluster EXIT
trap 'stop_cluster; exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
zmq="tcp://127.0.0.1:$(free_port)"
http_port=$(free_port)
url="http://127.0.0.1:$http_port"

echo "== starting a coordinator and 3 workers on this machine (logs in $logs)"
echo "   $bin coordinator --model $model --listen $zmq --http 127.0.0.1:$http_port --min-workers 3"
"$bin" coordinator --model "$model" --listen "$zmq" --http "127.0.0.1:$http_port" --min-workers 3 \
    > "$logs/coordinator.log" 2>&1 &
pids+=($!)
for name in shard-1 shard-2 shard-3; do
    echo "   $bin worker --coordinator $zmq --model $model --name $name --threads 1"
    "$bin" worker --coordinator "$zmq" --model "$model" --name "$name" --threads 1 > "$logs/$name.log" 2>&1 &
    pids+=($!)
done
for _ in $(seq 1 300); do
    curl -sf "$url/health" > /dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2>/dev/null || { echo "demo: the coordinator stopped:" >&2; tail -n 20 "$logs/coordinator.log" >&2; exit 1; }
    sleep 0.1
done
curl -sf "$url/health" > /dev/null || { echo "demo: the cluster did not become ready in 30 s" >&2; tail -n 20 "$logs"/*.log >&2; exit 1; }
grep -E "placement|experts across" "$logs/coordinator.log" | sed 's/^[^]]*] /   /'

echo
heading="a completion"
for text in "$prompt" "Love is"; do
    echo "== $heading, streamed: \"$text\""
    "$bin" generate --server "$url" --prompt "$text" --max-tokens 48 --temperature 0.7 --top-p 0.9 --seed "$seed" --stream
    echo
    echo
    heading="another completion"
done
echo "== a chat, streamed: \"$question\""
curl -sN "$url/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "$(python3 -c 'import json, sys; print(json.dumps({"messages": [{"role": "user", "content": sys.argv[1]}],
        "max_tokens": 64, "temperature": 0.7, "top_p": 0.9, "seed": int(sys.argv[2]), "stream": True}))' "$question" "$seed")" \
    | python3 -u -c 'import json, sys
for line in sys.stdin:
    if line.startswith("data: {"):
        for choice in json.loads(line[6:]).get("choices", []):
            print(choice["delta"].get("content") or "", end="", flush=True)
print()'

echo
echo "== expertmesh status --server $url"
"$bin" status --server "$url"

if $keep_running; then
    echo
    echo "== the cluster keeps running at $url; press Ctrl-C to stop it. Try:"
    echo "   curl -s $url/v1/completions -H 'Content-Type: application/json' -d '{\"prompt\": \"Love is\", \"max_tokens\": 32}'"
    wait "${pids[0]}"
fi
