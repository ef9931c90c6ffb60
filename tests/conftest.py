import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_FASTA = os.path.join(REPO, "resources", "demo", "uniprot_sample.fasta.gz")


@pytest.fixture(scope="session")
def tiny_model():
    from protsae.models import tiny_esm2

    return tiny_esm2()
