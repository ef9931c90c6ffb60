"""Feature networks (METHODS.md section 11): edges between the latents of one SAE or of the SAEs
of two layers, each labelled with its kind (co-activation, decoder similarity; causal edges to
come, issue 17)."""
