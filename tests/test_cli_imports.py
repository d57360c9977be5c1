"""The command line stays light: building its parser (every command, ``pack``
and ``extract`` included) imports none of what only some commands need."""
import subprocess
import sys

from _helpers import subprocess_env

HEAVY = ("asyncio", "sqlalchemy", "yaml", "httpx", "dffml", "dask", "aiobotocore")


def test_pack_and_extract_import_nothing_heavy(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").write_bytes(b"w")
    for argv in (["pack", "model", "m.tar"], ["extract", "m.tar", "out"], ["--help"]):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "dffml_archive", *argv],
            cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stderr
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                    if line.startswith("import time:")}
        assert not imported & set(HEAVY), (argv, sorted(imported & set(HEAVY)))
