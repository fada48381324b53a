#!/usr/bin/env python3
"""A rogue ExpertMesh worker, from proto/ alone: it joins like a real worker (hello, ready,
heartbeats) and answers every expert request wrongly, to show the coordinator never combines
such a result.

Modes: nan (a NaN in every reply), inf (an infinite value), shape (one row too few).
The model fingerprint must be the coordinator's (it prints it at start).

Example (the Swift failover test runs exactly this):
  python3 Tests/PythonClient/rogue_worker.py --proto-dir /tmp/gen --endpoint tcp://127.0.0.1:5600 \\
      --name rogue --fingerprint mixtral-0123abcd --mode nan
"""
import argparse
import sys
import time

import numpy as np
import zmq


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proto-dir", required=True, help="directory holding expertmesh/v1/mesh_pb2.py (protoc --python_out)")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--fingerprint", required=True)
    parser.add_argument("--mode", choices=["nan", "inf", "shape"], default="nan")
    parser.add_argument("--seconds", type=float, default=120, help="run this long, then leave")
    args = parser.parse_args()
    sys.path.insert(0, args.proto_dir)
    from expertmesh.v1 import mesh_pb2 as pb

    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, args.name.encode())
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(args.endpoint)

    def send(envelope, *frames):
        socket.send_multipart([envelope.SerializeToString(), *frames])

    hello = pb.Envelope()
    hello.hello.protocol_version = 1
    hello.hello.model_fingerprint = args.fingerprint
    hello.hello.worker_name = args.name
    hello.hello.threads = 1
    send(hello)
    answered, last_beat, end = 0, 0.0, time.time() + args.seconds
    while time.time() < end:
        if time.time() - last_beat >= 0.5:
            beat = pb.Envelope()
            beat.heartbeat.sent_unix_ms = int(time.time() * 1000)
            send(beat)
            last_beat = time.time()
        if not socket.poll(100):
            continue
        frames = socket.recv_multipart()
        envelope = pb.Envelope()
        envelope.ParseFromString(frames[0])
        which = envelope.WhichOneof("body")
        if which == "assignment":
            ready = pb.Envelope()
            ready.ready.experts.extend(envelope.assignment.experts)
            send(ready)
            print(f"assigned {len(envelope.assignment.experts)} experts", flush=True)
        elif which == "expert_request":
            request = envelope.expert_request
            rows = request.token_count - (1 if args.mode == "shape" else 0)
            partial = np.zeros((rows, request.hidden_size), dtype="<f4")
            if rows > 0:
                partial[rows // 2, request.hidden_size // 2] = np.nan if args.mode == "nan" else np.inf
            reply = pb.Envelope()
            reply.expert_reply.request_id = request.request_id
            reply.expert_reply.layer = request.layer
            reply.expert_reply.token_count = rows
            reply.frames.add(name="partial", dtype=pb.DTYPE_F32, shape=list(partial.shape), byte_length=partial.nbytes)
            send(reply, partial.tobytes())
            answered += 1
            print(f"answered request {request.request_id} wrongly ({args.mode})", flush=True)
        elif which == "error":
            print(f"coordinator: {envelope.error.message}", flush=True)
    print(f"done: {answered} wrong answers", flush=True)


if __name__ == "__main__":
    main()
