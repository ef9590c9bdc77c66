#!/usr/bin/env python3
"""ONNX Runtime's own per-op profile of one model, for docs/results-kernels.md.

    python3 bench/ort_profile.py MODEL.onnx [--threads 1] [--runs 40] [--nodes]

Runs the model (CPU provider, ORT_ENABLE_ALL, sequential, spinning off unless --spin) on a fixed random
input with profiling on, then sums the kernel time of each op type over the timed runs (the
first 10 runs are warm-up and dropped) and prints milliseconds per run; with --nodes, each node's
too, in run order. Prints the median
wall time of one run (profiling off, same session options) too.
"""
import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np
import onnxruntime as ort


def options(threads, spin, profile_dir=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if profile_dir:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(profile_dir, "ort")
    return so


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--nodes", action="store_true", help="print each node's time too")
    ap.add_argument("--spin", action="store_true",
                    help="let the intra-op workers spin between nodes and runs (ORT's default); off by default")
    a = ap.parse_args()
    warmup = 10
    plain = ort.InferenceSession(a.model, options(a.threads, a.spin), providers=["CPUExecutionProvider"])
    inp = plain.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    feed = {inp.name: x}
    times = []
    for i in range(warmup + a.runs):
        t = time.perf_counter()
        plain.run(None, feed)
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
    with tempfile.TemporaryDirectory() as d:
        s = ort.InferenceSession(a.model, options(a.threads, a.spin, d), providers=["CPUExecutionProvider"])
        for _ in range(warmup + a.runs):
            s.run(None, feed)
        trace = json.load(open(s.end_profiling()))
    # Kernel events are "cat": "Node" with an op_name; one per node per run, in run order.
    nodes = [e for e in trace if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_run = len(nodes) // (warmup + a.runs)
    per_op = {}
    per_node = {}
    for e in nodes[warmup * per_run:]:
        op = e.get("args", {}).get("op_name", "?")
        per_op[op] = per_op.get(op, 0.0) + e["dur"] / 1e3 / a.runs
        key = (op, e["name"][: -len("_kernel_time")])
        per_node[key] = per_node.get(key, 0.0) + e["dur"] / 1e3 / a.runs
    print(f"ONNX Runtime {ort.__version__}, {os.path.basename(a.model)}, {a.threads} thread(s){', spinning' if a.spin else ''}: "
          f"median {statistics.median(times):.2f} ms per run ({a.runs} runs)")
    print(f"{'op':<28} {'ms':>8}")
    for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1]):
        print(f"{op:<28} {ms:>8.3f}")
    print(f"{'sum of kernels':<28} {sum(per_op.values()):>8.3f}")
    if a.nodes:
        print()
        for (op, name), ms in per_node.items():
            print(f"{op:<20} {ms:>8.3f}  {name}")


if __name__ == "__main__":
    main()
