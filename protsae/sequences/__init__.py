"""Stage 1, sequences: FASTA streams and the seeded, sharded sample of a dataset."""
