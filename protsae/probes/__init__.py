"""Stage 5, linear probes (METHODS.md section 7): task loaders and homology splits, features,
standardisation, the protein- and residue-level probes, their interpretation, and one probe fit
from a task's config."""
