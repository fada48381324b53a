#!/usr/bin/env bash
# What `coordinator --overlap-exchanges` gains on a slow network. Every process in its own network
# namespace (198.18.0.0/15): one coordinator host running three coordinators on the same weights
# (plain, `--overlap-exchanges on` and `auto`), two worker hosts (each worker serves all three) and a
# client host running `expertmesh bench-serve`. Each round measures the coordinators, in turn, first on
# plain links and then with every link held to --rate (tc tbf) and/or given --delay (tc netem, where
# the kernel has it), and prints output tokens/s, the inter-token latency (the decode step) and the
# link's busy time (the bytes the coordinator moved ÷ the rate). The overlap's aims: shaped, ≥ 1.4×
# the plain coordinator's tokens/s, and its step within 1.2× of max(compute, network), where compute
# is its step on plain links and network the link's busy time per step. With two or more CPUs the
# coordinator host runs on CPU 0 and the worker hosts on the others (taskset), as separate hosts
# would: a coordinator computing while its workers compute takes no core from them.
# Needs root, iproute2 and util-linux (taskset); cleans up on exit.
#
# Usage: scripts/netns-overlap-bench.sh [--model DIR] [--rate R] [--delay D] [--concurrency C]
#            [--prompt-tokens N] [--max-tokens N] [--rounds N] [--threads T] [--weights-dtype file|int8]
#            [--busy-poll US] [--binary PATH]
# --weights-dtype int8: workers hold int8 experts and coordinators int8 dense projections.
# --busy-poll US: the coordinators poll for replies that long before sleeping (their core is their own).
# Example: python3 scripts/make-bench-model.py --out bench-models/mixtral-fine-bf16 --layers 8 \
#              --experts 64 --top-k 4 --intermediate 352
#          sudo scripts/netns-overlap-bench.sh --model bench-models/mixtral-fine-bf16 --rate 500mbit
#          sudo scripts/netns-overlap-bench.sh --delay 500us --concurrency 16
#          sudo scripts/netns-overlap-bench.sh --model bench-models/mixtral-fine-bf16 --rate 500mbit \
#              --prompt-tokens 64 --weights-dtype int8
set -euo pipefail
cd "$(dirname "$0")/.."
model=Tests/Fixtures/models/mixtral
rate=""
delay=""
concurrency=16
prompt_tokens=8
max_tokens=64
weights_dtype="file"
busy_poll=0
rounds=2
threads=1
binary=""
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --delay) delay="$2"; shift 2 ;;
        --concurrency) concurrency="$2"; shift 2 ;;
        --prompt-tokens) prompt_tokens="$2"; shift 2 ;;
        --max-tokens) max_tokens="$2"; shift 2 ;;
        --weights-dtype) weights_dtype="$2"; shift 2 ;;
        --busy-poll) busy_poll="$2"; shift 2 ;;
        --rounds) rounds="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "netns-overlap: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "netns-overlap: needs root (network namespaces)" >&2; exit 77; }
[ -n "$rate$delay" ] || rate=250mbit
case "$weights_dtype" in file|int8) ;; *) echo "netns-overlap: --weights-dtype is file or int8, got '$weights_dtype'" >&2; exit 2 ;; esac
if [ -n "$rate" ] && ! [[ "$rate" =~ ^[0-9.]+[kmgKMG]?bit$ ]]; then
    echo "netns-overlap: --rate must be in bits per second as tc writes it, e.g. 500mbit, got '$rate'" >&2; exit 2
fi
[ -n "$binary" ] || binary="$(swift build -c release --show-bin-path)/expertmesh"
[ -x "$binary" ] || { echo "netns-overlap: $binary not built; run swift build -c release" >&2; exit 1; }
cpus=$(nproc)
coordinator_cpus=(); worker_cpus=()
command -v taskset >/dev/null || { echo "netns-overlap: needs taskset (util-linux)" >&2; exit 77; }
if [ "$cpus" -ge 2 ]; then coordinator_cpus=(taskset -c 0); worker_cpus=(taskset -c "1-$((cpus - 1))"); fi
vocab=$(python3 -c "import json; print(json.load(open('$model/config.json'))['vocab_size'])")

tag="no$$"
netns_rate="$rate"
netns_delay="$delay"
# shellcheck source=netns-lib.sh source-path=SCRIPTDIR
source scripts/netns-lib.sh
unset_links() { for h in 0 1 2 3; do unshape "$h"; done; }
shape_links() { for h in 0 1 2 3; do shape "$h"; done; }
netns_rate="" netns_delay="" host 0 198.18.0.1
netns_rate="" netns_delay="" host 1 198.18.0.11
netns_rate="" netns_delay="" host 2 198.18.0.12
netns_rate="" netns_delay="" host 3 198.18.0.100
# Coordinator 1 plain (workers' port 5555, HTTP 8081), 2 overlapping (5556, 8082), 3 auto (5557, 8083).
for c in 1 2 3; do
    overlap=()
    [ "$c" = 2 ] && overlap=(--overlap-exchanges on)
    [ "$c" = 3 ] && overlap=(--overlap-exchanges auto)
    ip netns exec "${tag}h0" "${coordinator_cpus[@]}" "$binary" coordinator --model "$model" --listen "tcp://198.18.0.1:555$((4 + c))" \
        --http "198.18.0.1:808$c" --min-workers 2 --insecure --threads "$threads" --dense-dtype "$weights_dtype" --busy-poll "$busy_poll" "${overlap[@]}" \
        > "$logs/coordinator-$c.log" 2>&1 &
    pids+=($!)
done
for w in 1 2; do
    ip netns exec "${tag}h$w" "${worker_cpus[@]}" "$binary" worker --coordinator tcp://198.18.0.1:5555 \
        --coordinator tcp://198.18.0.1:5556 --coordinator tcp://198.18.0.1:5557 --model "$model" --name "host-$w" --insecure --threads "$threads" --weights-dtype "$weights_dtype" \
        > "$logs/worker-$w.log" 2>&1 &
    pids+=($!)
done
for c in 1 2 3; do
    wait_healthy 3 "http://198.18.0.1:808$c/health" \
        || { echo "netns-overlap: coordinator $c never became healthy"; cat "$logs"/*.log; exit 1; }
done

# Bytes the coordinator sent to and received from its workers so far: "sent received".
moved() {
    ip netns exec "${tag}h3" python3 - "http://198.18.0.1:808$1/metrics" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
total = {"sent": 0.0, "received": 0.0}
for line in text.splitlines():
    for key in total:
        if line.startswith(f"expertmesh_worker_{key}_bytes_total"):
            total[key] += float(line.split()[-1])
print(int(total["sent"]), int(total["received"]))
EOF
}
# run <coordinator 1|2|3> <label> <seed>: one bench-serve level (prompts from the seed: new to the
# coordinator's prefix cache); prints a line and keeps its figures.
run() {
    local before after
    before=$(moved "$1")
    ip netns exec "${tag}h3" "$binary" bench-serve --server "http://198.18.0.1:808$1" \
        --concurrency "$concurrency" --prompt-tokens "$prompt_tokens" --max-tokens "$max_tokens" --vocab "$vocab" \
        --requests $((2 * concurrency)) --seed "$3" --json > "$logs/$2.json" 2> "$logs/$2.err" \
        || { echo "netns-overlap: bench-serve failed on coordinator $1:"; cat "$logs/$2.err"; exit 1; }
    after=$(moved "$1")
    python3 - "$logs/$2.json" "$2" "$before" "$after" "${rate:-}" <<'EOF'
import json, re, sys
figures = json.load(open(sys.argv[1]))
label, before, after, rate = sys.argv[2], sys.argv[3].split(), sys.argv[4].split(), sys.argv[5]
moved = [int(a) - int(b) for a, b in zip(after, before)]
bits = {"k": 1e3, "m": 1e6, "g": 1e9}
match = re.fullmatch(r"([0-9.]+)([kmg]?)bit", rate.lower())
busy = max(moved) * 8 / (float(match.group(1)) * bits.get(match.group(2), 1)) if match else 0.0
steps = figures["output_tokens_per_second"] * figures["seconds"] / figures["concurrency"]
figures.update(link_busy_seconds=busy, link_busy_ms_per_step=1000 * busy / steps, bytes=moved)
json.dump(figures, open(sys.argv[1], "w"))
print(f"  {label:<22} {figures['output_tokens_per_second']:7.1f} out tok/s  step (ITL p50) "
      f"{figures['itl_p50_ms']:6.1f} ms  link busy {figures['link_busy_ms_per_step']:5.1f} ms/step  "
      f"({moved[0] / 1e6:.1f} MB out, {moved[1] / 1e6:.1f} MB in)")
EOF
}
echo "netns-overlap: $model, concurrency $concurrency, $max_tokens tokens each, --threads $threads," \
     "${coordinator_cpus[*]:-no pinning} for the coordinator;" \
     "shaped links: ${rate:+rate $rate }${delay:+delay $delay}"
for round in $(seq 1 "$rounds"); do
    echo "round $round"
    unset_links
    run 1 "plain-$round" "$round"1
    run 2 "overlap-$round" "$round"1
    run 3 "auto-$round" "$round"1
    shape_links
    run 1 "plain-shaped-$round" "$round"2
    run 2 "overlap-shaped-$round" "$round"2
    run 3 "auto-shaped-$round" "$round"2
done
unset_links
python3 - "$logs" "$rounds" <<'EOF'
import json, statistics, sys
logs, rounds = sys.argv[1], int(sys.argv[2])
def figures(label): return [json.load(open(f"{logs}/{label}-{r}.json")) for r in range(1, rounds + 1)]
def median(label, key): return statistics.median(f[key] for f in figures(label))
gain = median("overlap-shaped", "output_tokens_per_second") / median("plain-shaped", "output_tokens_per_second")
unshaped = median("overlap", "output_tokens_per_second") / median("plain", "output_tokens_per_second")
compute, network = median("overlap", "itl_p50_ms"), median("overlap-shaped", "link_busy_ms_per_step")
step = median("overlap-shaped", "itl_p50_ms")
print(f"netns-overlap: shaped links: overlap {gain:.2f}x the plain coordinator's tokens/s (aim >= 1.4x); "
      f"plain links: {unshaped:.2f}x")
auto = [median(f"auto{links}", "output_tokens_per_second") / median(f"plain{links}", "output_tokens_per_second")
        for links in ("-shaped", "")]
print(f"netns-overlap: auto: {auto[0]:.2f}x the plain coordinator's tokens/s on shaped links, {auto[1]:.2f}x on plain links")
print(f"netns-overlap: shaped step {step:.1f} ms = {step / max(compute, network):.2f}x max(compute {compute:.1f} ms, "
      f"network {network:.1f} ms) (aim <= 1.2x); the plain coordinator's shaped step "
      f"{median('plain-shaped', 'itl_p50_ms'):.1f} ms")
EOF
