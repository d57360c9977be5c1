"""The README's first command runs this demo: it must work, end to end."""
import subprocess
import sys

from _helpers import subprocess_env


def test_the_demo_runs_to_the_end():
    result = subprocess.run(
        [sys.executable, "-m", "dffml_archive.demo"], env=subprocess_env(),
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.rstrip().endswith("demo finished: OK")
    assert "saved salary:2" in result.stdout and "0 B newly stored" in result.stdout
    assert "salary:production -> 2" in result.stdout
    assert "salary:2  [latest, production]  slr_archive" in result.stdout
