"""Where the time of one UniRep-256 mLSTM layer's forward goes on CPU, and how close its matmuls
run to this core's matmul speed.

The demo's forward passes (caching, the evaluation set's encoding, steering, the splice
evaluation, the networks) all run `protsae.models.unirep.MLSTMLayer.forward`. This script runs
the same computation with a timer around each part: the input projections of every position
(two matmuls before the time loop), the two matmuls of each step (``h @ wmh``, then the gates'
``addmm``) and the gates' nonlinearities. For the matmuls it prints GFLOP/s, next to the same
matmul repeated on data already in cache (a ceiling the loop cannot beat). It also checks that
the instrumented loop gives the layer's own output, bit for bit.

    python benchmarks/mlstm_forward.py              # ~10 s on one core
    python benchmarks/mlstm_forward.py --batch 30 --tokens 1000
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import time
from pathlib import Path

import torch

from protsae.models import load_model

REPO = Path(__file__).resolve().parent.parent


def instrumented_forward(layer, inputs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """`MLSTMLayer.forward`, op for op, with the seconds spent in each part."""
    clock, spent = time.perf_counter, collections.Counter()
    start = clock()
    batch, tokens, d_in = inputs.shape
    flat = inputs.transpose(0, 1).reshape(tokens * batch, d_in)
    x_mult = (flat @ layer.wmx).view(tokens, batch, -1)
    x_gates = torch.addmm(layer.b, flat, layer.wx).view(tokens, batch, -1)
    spent["input projections"] += clock() - start
    width = layer.width
    h = inputs.new_zeros((batch, width), dtype=torch.float32)
    c = torch.zeros_like(h)
    states = []
    for t in range(tokens):
        a = clock()
        m = x_mult[t] * (h @ layer.wmh)
        b = clock()
        z = torch.addmm(x_gates[t], m, layer.wh)
        e = clock()
        input_gate, forget_gate, output_gate = torch.sigmoid(z[:, : 3 * width]).chunk(3, dim=1)
        c = torch.addcmul(forget_gate * c, input_gate, torch.tanh(z[:, 3 * width :]))
        h = output_gate * torch.tanh(c)
        states.append(h)
        spent["h @ wmh"] += b - a
        spent["gates addmm"] += e - b
        spent["nonlinearities"] += clock() - e
    a = clock()
    out = torch.stack(states, dim=1)
    spent["stack"] += clock() - a
    spent["total"] = clock() - start
    return out, dict(spent)


def hot_gflops(a: torch.Tensor, w: torch.Tensor, repeats: int = 200) -> float:
    """GFLOP/s of ``a @ w`` repeated on the same, cached operands."""
    a @ w
    start = time.perf_counter()
    for _ in range(repeats):
        a @ w
    return 2 * a.shape[0] * a.shape[1] * w.shape[1] * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=100, help="sequences per batch (the demo: 32,768 tokens)")
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/mlstm_forward.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model({"kind": "unirep", "name": "unirep256", "size": 256, "device": "cpu"})
    layer = model.module.layers[1]
    inputs = torch.randn(args.batch, args.tokens, layer.wx.shape[0])
    with torch.no_grad():
        reference = layer(inputs)
        runs = []
        for _ in range(args.repeats):
            out, spent = instrumented_forward(layer, inputs)
            runs.append(spent)
    same = torch.equal(out, reference)
    parts = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    rows, steps, d = args.batch, args.tokens, layer.width
    flops = {"input projections": 2 * rows * steps * layer.wx.shape[0] * 5 * d,
             "h @ wmh": 2 * rows * steps * d * d, "gates addmm": 2 * rows * steps * d * 4 * d}
    ceiling = {"input projections": hot_gflops(torch.randn(rows * steps // 10, d), layer.wx),
               "h @ wmh": hot_gflops(torch.randn(rows, d), layer.wmh),
               "gates addmm": hot_gflops(torch.randn(rows, d), layer.wh)}
    total = parts["total"]
    print(f"one mLSTM layer (d 256), {rows} x {steps} tokens, {args.threads} thread(s), medians of {args.repeats}:"
          f" {total:.3f} s, {rows * steps / total / 1e3:.1f}k tokens/s; same output as the layer: {same}")
    print(f"{'part':<18} {'s':>6} {'share':>6} {'GFLOP/s':>8} {'in cache':>9}")
    table = {}
    for name, seconds in parts.items():
        if name == "total":
            continue
        gflops = flops[name] / seconds / 1e9 if name in flops else None
        table[name] = {"s": seconds, "share": seconds / total, "gflops": gflops, "gflops_in_cache": ceiling.get(name)}
        rate = f"{gflops:8.1f} {ceiling[name]:9.1f}" if gflops else ""
        print(f"{name:<18} {seconds:6.3f} {seconds / total:6.1%} {rate}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"batch": rows, "tokens": steps, "threads": args.threads, "repeats": args.repeats,
                                    "total_s": total, "same_output": same, "parts": table}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
