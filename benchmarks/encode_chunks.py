"""CPU encoding in chunks of `protsae.codes.encode.CPU_CHUNK_BYTES` of pre-activations against
the whole batch at once, side by side in one run.

One batch of ``--rows`` activation rows (the encoding stage's ``encode.batch_rows``, 65,536 by
default) is encoded under five SAEs of the demo's layer-3 sweep shapes (d_model 256; 1,024 to
4,096 latents; k 16 to 64) by `protsae.codes.encode.encode_rows`, first with the chunking
disabled (one chunk), then as protsae encodes, alternating, ``--repeats`` times; the table gives
the median wall and system (kernel) seconds and whether both gave the same bytes.

    python benchmarks/encode_chunks.py             # ~2 minutes on one core
    python benchmarks/encode_chunks.py --repeats 2 --rows 16384
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import time
from pathlib import Path

import torch

from protsae.codes import encode
from protsae.sae.config import SAEConfig
from protsae.sae.variants import make_sae

REPO = Path(__file__).resolve().parent.parent
SHAPES = [(1024, 32), (2048, 16), (2048, 32), (2048, 64), (4096, 32)]


def timed(saes, x, chunk_bytes: int) -> tuple[float, float, str]:
    """Wall and system seconds of encoding ``x`` under every SAE, and a digest of the codes."""
    encode.CPU_CHUNK_BYTES = chunk_bytes
    digest = hashlib.sha256()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for sae in saes:
        idx, val = encode.encode_rows(sae, x)
        digest.update(idx.tobytes())
        digest.update(val.tobytes())
    wall = time.perf_counter() - start
    return wall, resource.getrusage(resource.RUSAGE_SELF).ru_stime - before.ru_stime, digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=65536)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/encode_chunks.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    saes = [make_sae(SAEConfig(d_model=256, n_latents=width, k=k)) for width, k in SHAPES]
    x = torch.randn(args.rows, 256)
    chunked = encode.CPU_CHUNK_BYTES
    settings = {"one chunk": 1 << 62, "chunked": chunked}
    runs = {name: [] for name in settings}
    for repeat in range(args.repeats):
        for name in (list(settings) if repeat % 2 == 0 else list(settings)[::-1]):
            runs[name].append(timed(saes, x, settings[name]))
    encode.CPU_CHUNK_BYTES = chunked
    table = {name: {"wall_s": statistics.median(r[0] for r in rows), "sys_s": statistics.median(r[1] for r in rows)}
             for name, rows in runs.items()}
    same = len({r[2] for rows in runs.values() for r in rows}) == 1
    ratio = table["chunked"]["wall_s"] / table["one chunk"]["wall_s"]
    print(f"{args.rows:,} rows x {len(SHAPES)} SAEs, {args.threads} thread(s), medians of {args.repeats}")
    print(f"{'setting':<10} {'wall s':>7} {'sys s':>6}")
    for name, row in table.items():
        print(f"{name:<10} {row['wall_s']:7.2f} {row['sys_s']:6.2f}")
    print(f"chunked / one chunk wall: {ratio:.3f}; same bytes: {same}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": args.rows, "threads": args.threads, "repeats": args.repeats,
                                    "chunk_bytes": chunked, "shapes": SHAPES, "table": table,
                                    "chunked_over_one_chunk": ratio, "same_bytes": same}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
