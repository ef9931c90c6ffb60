"""Stage 8: steering the language model with one SAE latent (METHODS.md section 8)."""
