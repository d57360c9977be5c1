"""The demo behind ``scripts/demo``: a model becomes one file, moves, and
predicts again from the file alone.

1. The engine: pack a model-like directory, inspect, verify, extract.
2. DFFML: train a real model with the real ``dffml`` CLI straight into an
   archive, check its accuracy, move the archive to another directory and
   predict from it in a new process without repeating its configuration.
3. The model repository: train into ``models:salary`` (version 1), push the
   moved archive with metadata (version 2, nothing new stored: same
   weights), tag it ``production``, predict from the tag, find it by its
   metadata, show the log.  The repository is a temporary one
   (``DFFML_ARCHIVE_REPOSITORY``), removed with the rest.
"""
import asyncio
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tempfile

import dffml_archive


def _step(text):
    print(f"\n== {text}", flush=True)


def _dffml_script() -> str:
    """The ``dffml`` script of this environment (it may not be on PATH)."""
    beside = pathlib.Path(sys.executable).parent / "dffml"
    return str(beside) if beside.exists() else "dffml"


def _run(*command, cwd):
    print("$ " + shlex.join(command), flush=True)
    if command[0] == "dffml":
        command = (_dffml_script(), *command[1:])
    result = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, text=True)
    if result.returncode:
        raise SystemExit(f"demo failed: {command[0]} exited {result.returncode}")
    return result.stdout


def _make_weights(directory: pathlib.Path) -> None:
    (directory / "weights").mkdir(parents=True)
    for index in range(3):
        (directory / "weights" / f"layer{index}.bin").write_bytes(os.urandom(4 << 20))
    (directory / "config.json").write_text(json.dumps({"layers": 3}))


def _make_csvs(directory: pathlib.Path) -> None:
    rows = [f"{x},{3 * x + 2 if x % 5 else 3 * x + 2.5}" for x in range(40)]
    (directory / "train.csv").write_text("experience,salary\n" + "\n".join(rows) + "\n")
    (directory / "new.csv").write_text("experience\n7\n12.5\n100\n")


async def engine_demo(work: pathlib.Path) -> None:
    _step("engine: pack a 12 MB model-like directory into one .tar.gz")
    source = work / "model-dir"
    _make_weights(source)
    archive = work / "model-dir.tar.gz"
    manifest = await dffml_archive.pack(source, archive)
    print(f"packed {len(manifest.members)} members into {archive.name} "
          f"({archive.stat().st_size} bytes)")
    info = await dffml_archive.inspect(archive)
    print(f"inspect: format {info.format}, manifest lists {len(info.members)} members")
    await dffml_archive.verify(archive)
    print("verify: every size and sha256 matches the manifest")
    await dffml_archive.extract(archive, work / "extracted")
    same = all(
        (work / "extracted" / p.relative_to(source)).read_bytes() == p.read_bytes()
        for p in source.rglob("*") if p.is_file()
    )
    print(f"extract: identical content: {same}")
    if not same:
        raise SystemExit("demo failed: extracted content differs")


def dffml_demo(work: pathlib.Path) -> None:
    _make_csvs(work)
    first = work / "machine-a"
    archive = first / "salary.tar.gz"
    common = ["-sources", "f=csv", "-source-filename"]
    _step("dffml: train slr straight into an archive")
    _run("dffml", "train", "-model", "slr_archive",
         "-model-features", "experience:float:1", "-model-predict", "salary:float:1",
         "-model-location", str(archive), *common, "train.csv", cwd=work)
    print(f"{archive} is one file of {archive.stat().st_size} bytes")
    accuracy = _run("dffml", "accuracy", "-model", "slr_archive",
                    "-model-location", str(archive), *common, "train.csv", cwd=work)
    print(f"accuracy: {accuracy.strip()}")
    _step("move the archive elsewhere and predict from the file alone")
    moved = work / "machine-b" / "salary.tar.gz"
    moved.parent.mkdir()
    shutil.move(str(archive), str(moved))
    output = _run("dffml", "predict", "all", "-model", "slr_archive",
                  "-model-location", str(moved), *common, "new.csv", cwd=work)
    for record in json.loads(output):
        prediction = record["prediction"]["salary"]
        print(f"experience {record['features']['experience']:>5} -> salary "
              f"{prediction['value']:.2f} (confidence {prediction['confidence']:.3f})")
    print(_run(sys.executable, "-m", "dffml_archive", "inspect", str(moved), cwd=work))
    return moved


def repository_demo(work: pathlib.Path, archive: pathlib.Path) -> None:
    os.environ["DFFML_ARCHIVE_REPOSITORY"] = str(work / "repository")
    common = ["-sources", "f=csv", "-source-filename"]
    models = [sys.executable, "-m", "dffml_archive", "models"]
    _step("repository: train into models:salary (a new version)")
    _run("dffml", "train", "-model", "slr_archive",
         "-model-features", "experience:float:1", "-model-predict", "salary:float:1",
         "-model-location", "models:salary", *common, "train.csv", cwd=work)
    _step("repository: push the moved archive with metadata, tag it, predict from the tag")
    print(_run(*models, "push", str(archive), "salary", "--comment", "from machine-b",
               "--meta", "Accuracy=0.99", "--meta", "dataset=train.csv", cwd=work).strip())
    print(_run(*models, "tag", "salary:2", "production", cwd=work).strip())
    output = _run("dffml", "predict", "all", "-model", "slr_archive",
                  "-model-location", "models:salary:production", *common, "new.csv", cwd=work)
    values = [round(r["prediction"]["salary"]["value"], 2) for r in json.loads(output)]
    print(f"predictions from models:salary:production: {values}")
    print(_run(*models, "find", 'entrypoint == "slr_archive" and Accuracy > 0.9', cwd=work).strip())
    print(_run(*models, "log", "salary", cwd=work))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dffml-archive-demo-") as temp:
        work = pathlib.Path(temp)
        asyncio.run(engine_demo(work))
        moved = dffml_demo(work)
        repository_demo(work, moved)
    print("\ndemo finished: OK")


if __name__ == "__main__":
    main()
