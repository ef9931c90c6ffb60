"""The throughputs a dry run projects device-hours from (`protsae.costs`), measured on this machine.

For a config's model, on ``--device``:
  * the model forward in residues/s over all of its layers: real proteins (the demo's UniProtKB
    sample, lengths up to the config's max_length), length-sorted token-budget batches of the
    caching stage's ``activations.max_tokens``, the config's autocast on CUDA (float32 on CPU);
    the median of ``--repeats`` passes after a warm-up;
  * SAE training in tokens x latents/s: protsae's training step (`training_step`) at the model's
    d_model, the widest width and the largest k of the sweeps, the config's batch size, on random
    activations; the median step after a warm-up.

A model whose weights are not at hand (the paper's ESM-2 650M offline) is measured with random
weights of its exact shape, which cost the same; the figures say so. Writes YAML for
``projection.throughputs`` (default resources/throughputs/<model>_<device>.yaml) and prints it.

    python benchmarks/throughput.py --config config/esm2_650m.yaml --device cuda   # on a GPU node
    python benchmarks/throughput.py --config config/config.yaml --device cpu
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from protsae.activations.batches import token_budget_batches  # noqa: E402
from protsae.activations.sizes import model_shape  # noqa: E402
from protsae.models import load_model, save_random_esm2  # noqa: E402
from protsae.sae.config import SAEConfig  # noqa: E402
from protsae.sae.train import training_step  # noqa: E402
from protsae.sae.variants import make_sae  # noqa: E402
from protsae.sequences.fasta import read_fasta  # noqa: E402


def proteins(n: int, max_length: int) -> list[str]:
    """The first ``n`` sequences of the demo's UniProtKB sample no longer than ``max_length``."""
    records = read_fasta(REPO / "resources/demo/uniprot_sample.fasta.gz")
    return list(islice((r.sequence for r in records if len(r.sequence) <= max_length), n))


def build_model(spec: dict, device: str, workdir: Path):
    """The config's model on ``device``, or random weights of its shape; and what was built."""
    spec = spec | {"device": device}
    try:
        return load_model(spec), "the config's weights"
    except Exception as error:  # offline without the checkpoint: same shape, same cost
        # The published ESM-2 shape the id names (protsae.activations.sizes): every ESM-2's feed-forward
        # is 4 x its width, with 20 heads up to 650M and 40 beyond (the head count costs nothing).
        shape = model_shape(spec) if spec["kind"] == "esm2" else None
        if shape is None or shape.n_layers is None:
            raise
        path = save_random_esm2(workdir / "model", hidden_size=shape.d_model, num_layers=shape.n_layers,
                                num_heads=20 if shape.d_model <= 1280 else 40, intermediate_size=4 * shape.d_model)
        print(f"weights not at hand ({type(error).__name__}); random weights of the exact shape", file=sys.stderr)
        return load_model(spec | {"id": str(path), "path": str(path)}), "random weights of the exact shape"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def model_throughput(model, seqs: list[str], max_tokens: int, n_layers: int, repeats: int, device: str) -> float:
    batches = [[seqs[i] for i in batch] for batch in token_budget_batches([len(s) for s in seqs], max_tokens)]
    residues = sum(len(s) for s in seqs)
    times = []
    with torch.inference_mode():
        for repeat in range(repeats + 1):
            sync(device)
            start = time.perf_counter()
            for batch in batches:
                model.hidden_states(model.tokenize(batch), [n_layers])
            sync(device)
            if repeat:  # the first pass warms up
                times.append(time.perf_counter() - start)
    return residues / statistics.median(times)


def sae_throughput(d_model: int, width: int, k: int, batch_size: int, steps: int, device: str, autocast: bool) -> float:
    sae = make_sae(SAEConfig(d_model=d_model, n_latents=width, k=k), device=device)
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-4)
    x = torch.randn(batch_size, d_model, device=device)
    times = []
    for step in range(steps + 2):
        sync(device)
        start = time.perf_counter()
        training_step(sae, optimizer, x, autocast=autocast)
        sync(device)
        if step >= 2:
            times.append(time.perf_counter() - start)
    return batch_size * width / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sequences", type=int, default=64, help="proteins in the forward measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sae-steps", type=int, default=10)
    parser.add_argument("--out", help="YAML to write (default resources/throughputs/<model>_<device>.yaml)")
    args = parser.parse_args()
    config = yaml.safe_load((REPO / args.config).read_text())
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as workdir:
        model, weights = build_model(config["model"], args.device, Path(workdir))
        n_layers = model.n_layers
        seqs = proteins(args.sequences, min(config["datasets"][config["sae"]["train_dataset"]]["max_length"], 1022))
        max_tokens = config.get("activations", {}).get("max_tokens", 16384)
        residues_per_s = model_throughput(model, seqs, max_tokens, n_layers, args.repeats, args.device)
        d_model = model.d_model
        del model
    sweeps = config["sae"]["sweeps"]
    width = max(w for sweep in sweeps for w in sweep["width"])
    k = max(kk for sweep in sweeps for kk in sweep["k"])
    training = config["sae"].get("training", {})
    batch_size = training.get("batch_size", 4096)
    autocast = args.device.startswith("cuda") and training.get("autocast", "bf16") == "bf16"
    latent_tokens_per_s = sae_throughput(d_model, width, k, batch_size, args.sae_steps, args.device, autocast)
    precision = config["model"].get("autocast", "none") if args.device.startswith("cuda") else "float32"
    if args.device.startswith("cuda"):
        hardware = torch.cuda.get_device_name(0)
    else:
        hardware = f"{torch.get_num_threads()} CPU threads of an {cpu_name()}"
    figures = {
        "model": config["model"]["name"],
        "device": args.device,
        "machine": f"{hardware}, torch {torch.__version__}, model {precision} ({weights}), SAE "
                   f"{'bf16 autocast' if autocast else 'float32'}",
        "measured": f"{datetime.date.today()}, python benchmarks/throughput.py --config {args.config} "
                    f"--device {args.device} ({len(seqs)} proteins, {sum(map(len, seqs)):,} residues, max_tokens "
                    f"{max_tokens}; SAE width {width}, k {k}, batch {batch_size}; medians)",
        "model_residues_per_s": round(residues_per_s, 1),
        "sae_latent_tokens_per_s": float(f"{latent_tokens_per_s:.4g}"),
        "sae_d_model": int(d_model),
        "sae_k": int(k),
    }
    out = Path(args.out) if args.out else REPO / "resources/throughputs" / f"{config['model']['name']}_{args.device.split(':')[0]}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "# Written by benchmarks/throughput.py; read by a dry run (projection.throughputs).\n" + yaml.safe_dump(
        figures, sort_keys=False, width=1000)
    out.write_text(text)
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
