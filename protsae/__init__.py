"""protsae: sparse autoencoders on protein language models."""

__version__ = "0.1.0"
