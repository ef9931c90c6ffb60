"""Rebuild abnativ_human_vh.fasta.gz: a seeded draw of 3,000 human antibody heavy-chain variable
domains from the test set that ships inside the PyPI package abnativ 2.0.9 (CC BY-NC-SA 4.0).

    pip download abnativ==2.0.9 --no-deps -d /tmp/abnativ && unzip -q /tmp/abnativ/*.whl -d /tmp/abnativ/x
    python resources/antibody/make_vh_sample.py /tmp/abnativ/x/abnativ/model/percentiles/test_vh_v2_abnativ_seq_scores.csv
"""

import csv
import gzip
import random
import sys
from pathlib import Path

STANDARD = set("ACDEFGHIKLMNPQRSTVWY")
OUT = Path(__file__).with_name("abnativ_human_vh.fasta.gz")

rows = list(csv.DictReader(open(sys.argv[1], newline="")))
seen, unique = set(), []
for row in rows:
    sequence = row["input_seq"].strip()
    if set(sequence) <= STANDARD and sequence not in seen:
        seen.add(sequence)
        unique.append((row["seq_id"], sequence))
chosen = sorted(random.Random(20261202).sample(unique, 3000))
with gzip.GzipFile(OUT, "wb", mtime=0) as out:
    for seq_id, sequence in chosen:
        out.write(f">abnativ_vh|{seq_id}\n{sequence}\n".encode())
print(f"{len(rows)} rows, {len(unique)} unique standard-residue VH; wrote {len(chosen)} to {OUT}")
