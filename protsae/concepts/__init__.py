"""Concept coverage (METHODS.md section 10): per-residue biological concepts, from several
sources behind one table format, and the sweep that scores every (unit, concept, threshold) of
an SAE's latents or of the raw residual dimensions."""
