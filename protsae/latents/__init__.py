"""Stage 4, what the latents are: the evaluation set, family labels, the family-specificity F1
sweep and the activation-pattern classes (METHODS.md sections 1, 4-6)."""
