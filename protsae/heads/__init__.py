"""Attention heads read in SAE features (METHODS.md section 12): per head of a transformer pLM,
its OV and QK circuits between the SAEs of the stream it reads and the stream it writes, the role
they imply, and how well they predict what the head does on real sequences."""
