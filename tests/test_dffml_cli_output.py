"""What the ``dffml`` command prints around our models (issue 15, item 8):
our ``-model`` names in ``dffml list models``, and no daal4py banner in
every scikit command."""
import importlib.util
import subprocess

from _e2e_helpers import DFFML, write_csv
from _helpers import subprocess_env


def run(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([DFFML, *args], cwd=str(cwd), capture_output=True, text=True,
                          timeout=600, env=subprocess_env())


def test_list_models_shows_the_names_given_to_model(tmp_path):
    listed = run("list", "models", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = {line.rstrip(":") for line in listed.stdout.splitlines() if line.endswith(":")}
    assert {"slr_archive", "scikitlr_archive", "scratchlgrsag_archive"} <= names
    assert "SLRModelArchive" not in names


def test_scikit_commands_print_no_daal4py_banner(tmp_path):
    assert importlib.util.find_spec("daal4py") is not None, (
        "daal4py is not installed: build the environment with the 'all' extras"
    )
    write_csv(tmp_path / "train.csv", [{"x": float(x), "y": x % 2} for x in range(8)])
    common = ["-model", "scikitlr_archive", "-model-location", "m.tar.gz",
              "-sources", "f=csv", "-source-filename", "train.csv"]
    trained = run("train", *common, "-model-features", "x:float:1",
                  "-model-predict", "y:int:1", cwd=tmp_path)
    predicted = run("predict", "all", *common, cwd=tmp_path)
    for result in (trained, predicted):
        assert result.returncode == 0, result.stderr
        for banner in ("daal4py", "oneAPI", "sklearnex", "Device support is limited"):
            assert banner not in result.stderr, result.stderr
