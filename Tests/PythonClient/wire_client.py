#!/usr/bin/env python3
"""A minimal ExpertMesh coordinator in Python, built only from proto/ (protoc --python_out),
pyzmq and numpy: proof that the wire is plain protobuf + raw frames that any language speaks.

It binds a ROUTER socket, waits for one worker's Hello, assigns it every expert of a MoE layer,
waits for Ready, sends one ExpertRequest with random activations and checks the worker's
partial sums against numpy computed from the safetensors file. Exit status 0 on agreement.

Example (the Swift integration test runs exactly this):
  python3 Tests/PythonClient/wire_client.py --proto-dir /tmp/gen --model Tests/Fixtures/models/mixtral \\
      --endpoint tcp://127.0.0.1:5600 &
  expertmesh worker --coordinator tcp://127.0.0.1:5600 --model Tests/Fixtures/models/mixtral
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import zmq
import zmq.auth


def load_safetensors(model_dir):
    """name -> float32 numpy array, for every *.safetensors file in the directory."""
    tensors = {}
    for file in sorted(os.listdir(model_dir)):
        if not file.endswith(".safetensors"):
            continue
        with open(os.path.join(model_dir, file), "rb") as f:
            data = f.read()
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + length])
        base = 8 + length
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            begin, end = entry["data_offsets"]
            raw = data[base + begin:base + end]
            if entry["dtype"] == "F32":
                array = np.frombuffer(raw, dtype="<f4")
            elif entry["dtype"] == "BF16":
                array = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            elif entry["dtype"] == "F16":
                array = np.frombuffer(raw, dtype="<f2").astype(np.float32)
            else:
                continue
            tensors[name] = array.reshape(entry["shape"]).astype(np.float32)
    return tensors


def expert_matrices(tensors, layer, expert, intermediate):
    """(gate [I,H], up [I,H], down [H,I]) in nn.Linear orientation, from either checkpoint layout."""
    for prefix in (f"model.layers.{layer}.block_sparse_moe.experts.{expert}.", ):
        if prefix + "w1.weight" in tensors:
            return tensors[prefix + "w1.weight"], tensors[prefix + "w3.weight"], tensors[prefix + "w2.weight"]
    for prefix in (f"model.layers.{layer}.mlp.experts.", f"model.layers.{layer}.feed_forward.experts."):
        if prefix + "gate_up_proj" in tensors:
            gate_up, down = tensors[prefix + "gate_up_proj"][expert], tensors[prefix + "down_proj"][expert]
            if gate_up.shape[0] == 2 * intermediate:        # [2I, H]: nn.Linear storage
                return gate_up[:intermediate], gate_up[intermediate:], down
            return gate_up[:, :intermediate].T, gate_up[:, intermediate:].T, down.T   # [H, 2I]: x @ W
    for prefix in (f"model.layers.{layer}.mlp.experts.{expert}.", f"model.layers.{layer}.feed_forward.experts.{expert}."):
        if prefix + "gate_proj.weight" in tensors:
            return tensors[prefix + "gate_proj.weight"], tensors[prefix + "up_proj.weight"], tensors[prefix + "down_proj.weight"]
    raise SystemExit(f"no weights for layer {layer} expert {expert}")


def silu(x):
    return x / (1.0 + np.exp(-x))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proto-dir", required=True, help="directory holding expertmesh/v1/mesh_pb2.py (protoc --python_out)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--layer", type=int, default=None, help="MoE layer to test (default: first MoE layer)")
    parser.add_argument("--tokens", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--curve-secret-key", help="CURVE server with this czmq secret certificate (any client key accepted)")
    args = parser.parse_args()
    sys.path.insert(0, args.proto_dir)
    from expertmesh.v1 import mesh_pb2 as pb

    config = json.load(open(os.path.join(args.model, "config.json")))
    text = config.get("text_config", config)
    hidden = text["hidden_size"]
    experts = text.get("num_local_experts") or text.get("num_experts")
    intermediate = text.get("moe_intermediate_size") if text["model_type"] == "qwen3_moe" else text["intermediate_size"]
    llama4 = text["model_type"] == "llama4_text"
    tensors = load_safetensors(args.model)
    tensors = {k.replace("language_model.model.", "model.").replace("model.language_model.", "model."): v for k, v in tensors.items()}
    layer = args.layer
    if layer is None:
        layer = next(l for l in range(text["num_hidden_layers"])
                     if any(k.startswith(f"model.layers.{l}.") and "experts" in k for k in tensors))

    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    router.setsockopt(zmq.LINGER, 0)
    if args.curve_secret_key:
        public, secret = zmq.auth.load_certificate(args.curve_secret_key)
        router.curve_server = True
        router.curve_secretkey = secret
        router.curve_publickey = public
    router.bind(args.endpoint)
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)

    def receive(kind):
        while True:
            if not poller.poll(args.timeout * 1000):
                raise SystemExit(f"timed out waiting for {kind}")
            frames = router.recv_multipart()
            envelope = pb.Envelope()
            envelope.ParseFromString(frames[1])
            which = envelope.WhichOneof("body")
            if which == kind:
                return frames[0], envelope, frames[2:]
            if which == "error":
                raise SystemExit(f"worker error: {envelope.error.message}")

    identity, hello, _ = receive("hello")
    print(f"hello from {hello.hello.worker_name!r}, protocol {hello.hello.protocol_version}, fingerprint {hello.hello.model_fingerprint}")
    assignment = pb.Envelope()
    assignment.assignment.protocol_version = 1
    assignment.assignment.reply_dtype = pb.DTYPE_F32
    assignment.assignment.model_fingerprint = hello.hello.model_fingerprint
    assignment.assignment.heartbeat_interval_ms = 1000
    for e in range(experts):
        assignment.assignment.experts.add(layer=layer, expert=e)
    router.send_multipart([identity, assignment.SerializeToString()])
    _, ready, _ = receive("ready")
    print(f"ready: {len(ready.ready.experts)} experts")

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.tokens, hidden)).astype(np.float32)
    print(f"activations begin with {x.tobytes()[:32].hex()}", flush=True)
    routes = [sorted(rng.choice(experts, size=2, replace=False).tolist()) for _ in range(args.tokens)]
    weights = [rng.uniform(0.1, 1.0, size=2).astype(np.float32).tolist() for _ in range(args.tokens)]
    request = pb.Envelope()
    r = request.expert_request
    r.request_id, r.layer, r.token_count, r.hidden_size = 42, layer, args.tokens, hidden
    r.placement = pb.WEIGHT_PLACEMENT_INPUT if llama4 else pb.WEIGHT_PLACEMENT_OUTPUT
    r.route_offsets.append(0)
    for route, w in zip(routes, weights):
        r.expert_ids.extend(route)
        r.weights.extend(w)
        r.route_offsets.append(len(r.expert_ids))
    request.frames.add(name="activations", dtype=pb.DTYPE_F32, shape=[args.tokens, hidden], byte_length=x.nbytes)
    router.send_multipart([identity, request.SerializeToString(), x.tobytes()])
    _, reply, frames = receive("expert_reply")
    assert reply.expert_reply.request_id == 42, reply
    assert len(reply.frames) == 1 and reply.frames[0].name == "partial", reply.frames
    got = np.frombuffer(frames[0], dtype="<f4").reshape(args.tokens, hidden)

    expected = np.zeros_like(x)
    for t in range(args.tokens):
        for e, w in zip(routes[t], weights[t]):
            gate, up, down = expert_matrices(tensors, layer, e, intermediate)
            inp = x[t] * w if llama4 else x[t]
            out = (silu(inp @ gate.T) * (inp @ up.T)) @ down.T
            expected[t] += out if llama4 else w * out
    diff = float(np.max(np.abs(got - expected)))
    print(f"max |worker - numpy| = {diff:.3g} over {args.tokens} tokens x {hidden}")
    goodbye = pb.Envelope()
    goodbye.goodbye.reason = "python client done"
    router.send_multipart([identity, goodbye.SerializeToString()])
    if diff > 1e-4:
        raise SystemExit(f"FAIL: worker results differ from numpy by {diff}")
    print("OK")


if __name__ == "__main__":
    main()
