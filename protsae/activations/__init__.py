"""Stage 2, residual-stream activations: forward batches, the Parquet shard format, caching,
manifests, projected sizes, and the shuffled token stream that trains the SAEs."""
