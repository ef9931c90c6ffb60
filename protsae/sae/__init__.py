"""Stage 3, sparse autoencoders: configuration, the variants and their kernels, saving and
loading (also InterProt's published SAEs), training, and the splice evaluation (delta CE)."""
