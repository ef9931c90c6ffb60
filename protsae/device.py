"""Where a job computes: the config's ``device`` (auto | cpu | cuda | cuda:N) resolved on the node.

``auto`` is the shipped configs' default: CUDA when the job sees a GPU, else the CPU, so one config
runs on a laptop, a CPU node and a GPU node alike (the device is a runtime key: changing it reruns
nothing). A job that was given GPUs (``CUDA_VISIBLE_DEVICES`` names some) but sees none through
torch is almost always a broken node or a CPU-only torch; it still runs on the CPU, and says so.
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device for ``device``; ``cuda...`` without a visible CUDA device is an error."""
    granted = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if device == "auto":
        if torch.cuda.is_available():
            chosen = torch.device("cuda")
            log.info("device auto: cuda (%s)", torch.cuda.get_device_name(0))
        else:
            chosen = torch.device("cpu")
            if granted not in ("", "-1", "none", "NoDevFiles"):
                log.warning("device auto: cpu, although the job was given GPU(s) %s: torch sees no CUDA "
                            "device (CPU-only torch, or a broken node)", granted)
            else:
                log.info("device auto: cpu (no GPU visible)")
        return chosen
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device is {device!r} but no CUDA device is visible "
                           f"(CUDA_VISIBLE_DEVICES={granted or 'unset'}); use device: auto to fall back to the CPU")
    return torch.device(device)
