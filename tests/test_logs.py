"""protsae.logs: an uncaught error reaches the rule's log file with its traceback."""

import subprocess
import sys


def test_uncaught_error_goes_to_the_log_file_with_its_traceback(tmp_path):
    log = tmp_path / "logs" / "job.log"
    script = (
        "from protsae.logs import setup_logging\n"
        f"log = setup_logging({str(log)!r})\n"
        "log.info('started')\n"
        "def read_shard():\n"
        "    raise ValueError('shard0.parquet does not match its checksum')\n"
        "read_shard()\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1
    text = log.read_text()
    assert "INFO protsae: started" in text
    assert "CRITICAL protsae: the job failed: ValueError: shard0.parquet does not match its checksum" in text
    assert "Traceback (most recent call last)" in text and "in read_shard" in text
    # stderr has it once, not twice.
    assert proc.stderr.count("Traceback") == 1 and "does not match" in proc.stderr
