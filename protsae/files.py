"""Outputs written atomically (a temporary file beside the target, then a rename), with the
permissions the user's umask gives, so an interrupted job never leaves a half-written file
that looks complete and colleagues on a shared cluster can read the results.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_TEMPORARY_SUFFIX = ".tmp"


def _temporary_prefix(path: Path) -> str:
    """How `atomic_path` names the temporaries of ``path``: ``.<name>.<random>.tmp``."""
    return f".{path.name}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An interrupted job therefore never leaves a half-written file that looks complete. The file
    gets the mode a plain ``open`` would give (0644 under umask 022), not `tempfile.mkstemp`'s
    0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=_TEMPORARY_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files `atomic_path` left in ``directory`` when its process was killed
    (SIGKILL skips the clean-up); call it only where no other process is writing there."""
    stale = sorted(Path(directory).glob(f".*{_TEMPORARY_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def remove_stale_temporaries_of(paths) -> list[Path]:
    """Delete the temporaries `atomic_path` left for these target files only, so a job can clean
    up after its own killed predecessor in a folder other jobs are writing to."""
    stale = []
    for path in map(Path, paths):
        if path.parent.is_dir():
            stale += sorted(path.parent.glob(f"{glob.escape(_temporary_prefix(path))}*{_TEMPORARY_SUFFIX}"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_tsv(table, path: str | os.PathLike, float_format: str = "%.6g") -> None:
    """Write a pandas ``table`` as TSV with a header and no index, atomically; floats to six
    significant digits (the result tables' precision); gzip-compressed when ``path`` ends in .gz."""
    compression = "gzip" if str(path).endswith(".gz") else None
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format=float_format, compression=compression)
