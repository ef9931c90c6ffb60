"""Sparse latent codes: the code shard format, encoding a dataset with an SAE (from a cache or
straight from the model), and the per-protein maxima the latent analyses read."""
