#!/usr/bin/env python3
"""Create a random-weight Mixtral-architecture model for benchmarks (numpy only, no torch).

The default shape is about 1B parameters (hidden 1024, intermediate 2816, 12 layers, 8 experts,
top-2, vocab 32000). `--layers 8` gives the exact model of ../shared/reference/llamacpp-baseline.md
(640M parameters), so figures compare with llama.cpp's on the same shape.

Examples:
  python3 scripts/make-bench-model.py --out bench-models/mixtral-1b-bf16
  python3 scripts/make-bench-model.py --out bench-models/mixtral-640m-bf16 --layers 8
  python3 scripts/make-bench-model.py --out bench-models/mixtral-1b-f32 --dtype f32
"""
import argparse
import json
import os
import struct
import sys

import numpy as np


def to_bytes(array, dtype):
    array = np.ascontiguousarray(array, dtype=np.float32)
    if dtype == "F32":
        return array.tobytes()
    bits = array.view(np.uint32)
    # round to nearest even, as torch does
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16).tobytes()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output model directory")
    parser.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--intermediate", type=int, default=2816)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dtype = "BF16" if args.dtype == "bf16" else "F32"
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    h, i, head_dim = args.hidden, args.intermediate, args.hidden // args.heads

    shapes = {"model.embed_tokens.weight": (args.vocab, h), "model.norm.weight": (h,), "lm_head.weight": (args.vocab, h)}
    for l in range(args.layers):
        p = f"model.layers.{l}."
        shapes[p + "input_layernorm.weight"] = (h,)
        shapes[p + "post_attention_layernorm.weight"] = (h,)
        shapes[p + "self_attn.q_proj.weight"] = (args.heads * head_dim, h)
        shapes[p + "self_attn.k_proj.weight"] = (args.kv_heads * head_dim, h)
        shapes[p + "self_attn.v_proj.weight"] = (args.kv_heads * head_dim, h)
        shapes[p + "self_attn.o_proj.weight"] = (h, args.heads * head_dim)
        shapes[p + "block_sparse_moe.gate.weight"] = (args.experts, h)
        for e in range(args.experts):
            q = f"{p}block_sparse_moe.experts.{e}."
            shapes[q + "w1.weight"] = (i, h)
            shapes[q + "w3.weight"] = (i, h)
            shapes[q + "w2.weight"] = (h, i)

    header, offset = {}, 0
    element = 2 if dtype == "BF16" else 4
    for name, shape in shapes.items():
        size = int(np.prod(shape)) * element
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header_bytes = json.dumps(header).encode()
    header_bytes += b" " * ((8 - (8 + len(header_bytes)) % 8) % 8)
    total = sum(int(np.prod(s)) for s in shapes.values())
    print(f"writing {total / 1e6:.0f}M parameters ({offset / 1e9:.2f} GB {args.dtype}) to {args.out}", file=sys.stderr)
    with open(os.path.join(args.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for n, (name, shape) in enumerate(shapes.items()):
            if name.endswith("norm.weight"):
                values = np.ones(shape, dtype=np.float32)
            else:
                values = rng.standard_normal(shape, dtype=np.float32) * 0.02
            f.write(to_bytes(values, dtype))
            if n % 50 == 0:
                print(f"  {n}/{len(shapes)} tensors", file=sys.stderr)
    config = {
        "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": args.vocab,
        "hidden_size": h, "intermediate_size": i, "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads, "num_key_value_heads": args.kv_heads, "num_local_experts": args.experts,
        "num_experts_per_tok": args.top_k, "rms_norm_eps": 1e-5, "rope_theta": 1e6, "tie_word_embeddings": False,
        "hidden_act": "silu", "max_position_embeddings": 32768, "bos_token_id": 1, "eos_token_id": 2,
        "torch_dtype": "bfloat16" if dtype == "BF16" else "float32",
    }
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print("done", file=sys.stderr)


if __name__ == "__main__":
    main()
