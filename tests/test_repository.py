"""The model repository through its async Python API: images stored member by
member, versions, tags, metadata, attachments, selectors, gc and verify."""
import asyncio
import hashlib
import io
import json
import os
import pathlib
import sqlite3

import pytest

import dffml_archive as da
from dffml_archive.repository import Repository, find, gc, parse_location, verify
from _helpers import fixed_umask, read_tree  # noqa: F401
from _repository_helpers import remove_blob, replace_blob, stored_digests

pytestmark = pytest.mark.usefixtures("fixed_umask")


@pytest.fixture
def root(tmp_path, repository_backend) -> pathlib.Path:
    """The repository root; the metadata and blobs live there (embedded) or
    on the servers (PostgreSQL + SeaweedFS): every test runs on both."""
    return tmp_path / "repository"


def make_model(directory: pathlib.Path, weights: bytes = b"w" * 5000, extra: str = "1") -> pathlib.Path:
    (directory / "weights").mkdir(parents=True, exist_ok=True)
    (directory / "weights" / "a.bin").write_bytes(weights)
    (directory / "weights" / "b.bin").write_bytes(b"shared" * 1000)
    (directory / "config.json").write_text('{"extra": %s}' % extra)
    (directory / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(directory / "run.sh", 0o755)
    return directory


async def test_versions_are_consecutive_and_latest_moves(tmp_path, root):
    model = make_model(tmp_path / "model")
    async with Repository(root) as repo:
        models = await repo.create("credit-risk")
        first = await models.new_image(model).save(comment="first")
        (model / "config.json").write_text('{"extra": 2}')
        second = await models.new_image(model).save(comment="second")
        assert (first.version, second.version) == (1, 2)
        assert second.tags == ["latest"]
        assert await models.get_tags() == {"latest": 2}
        log = await models.log()
        assert [v["version"] for v in log] == [2, 1]
        assert [v["comment"] for v in log] == ["second", "first"]
        assert log[0]["tags"] == ["latest"] and log[1]["tags"] == []
        newest = await models.get_model_image()
        assert newest.version == 2


async def test_each_distinct_file_is_stored_once(tmp_path, root):
    model = make_model(tmp_path / "model")
    async with Repository(root) as repo:
        models = await repo.create("m")
        first = await models.new_image(model).save()
        assert first.new_bytes == first.size  # everything is new
        (model / "weights" / "a.bin").write_bytes(b"x" * 7000)
        second = await models.new_image(model).save()
        assert second.new_bytes == 7000  # only the changed file
        same = await models.new_image(model).save()
        assert same.new_bytes == 0 and same.digest == second.digest
        stored = await stored_digests(repo)
    distinct = {
        hashlib.sha256(data).hexdigest()
        for data in (b"w" * 5000, b"x" * 7000, b"shared" * 1000, b'{"extra": 1}', b"#!/bin/sh\n")
    }
    assert stored == distinct


async def test_materialize_gives_back_the_tree_verified(tmp_path, root):
    model = make_model(tmp_path / "model")
    async with Repository(root) as repo:
        image = await (await repo.create("m")).new_image(model).save()
        await image.materialize(tmp_path / "out")
    assert read_tree(tmp_path / "out") == read_tree(model)
    assert os.stat(tmp_path / "out" / "run.sh").st_mode & 0o777 == 0o755


@pytest.mark.parametrize("extension", [".tar", ".tar.gz", ".zip", ".tar.zst"])
async def test_download_is_a_verified_reproducible_archive(tmp_path, root, extension):
    model = make_model(tmp_path / "model")
    async with Repository(root) as repo:
        image = await (await repo.create("m")).new_image(model).save()
        await image.download(tmp_path / f"one{extension}")
        await image.download(tmp_path / f"two{extension}")
    one = (tmp_path / f"one{extension}").read_bytes()
    assert one == (tmp_path / f"two{extension}").read_bytes()
    manifest = await da.verify(tmp_path / f"one{extension}")
    assert manifest.to_bytes() == image.manifest_bytes
    await da.extract(tmp_path / f"one{extension}", tmp_path / "extracted")
    assert read_tree(tmp_path / "extracted") == read_tree(model)


async def test_an_archive_pushed_keeps_its_model_section(tmp_path, root):
    model = make_model(tmp_path / "model")
    archive = tmp_path / "model.tar.gz"
    info = {"entrypoint": "slr_archive", "upstream": "slr", "extra": None, "config": {},
            "versions": {}}
    await da.pack(model, archive, model=info)
    async with Repository(root) as repo:
        image = await (await repo.create("m")).new_image(archive).save()
        assert image.manifest.model == info
        assert image.get_metadata()["entrypoint"] == "slr_archive"
        await image.materialize(tmp_path / "out")
    assert read_tree(tmp_path / "out") == read_tree(model)


async def test_metadata_automatic_and_the_users(tmp_path, root):
    model = make_model(tmp_path / "model")
    async with Repository(root) as repo:
        new = (await repo.create("m")).new_image(model)
        new["Accuracy"] = 0.89
        new["dataset"] = {"rows": 100, "name": "credit"}
        saved = await new.save(comment="c")
        metadata = saved.get_metadata()
    assert metadata["Accuracy"] == 0.89 and metadata["dataset"]["rows"] == 100
    assert metadata["size"] == saved.size > 0
    assert metadata["user"] and metadata["host"] and metadata["created"] > 0
    assert metadata["versions"]["dffml-archive"] == da.__version__
    assert saved["Accuracy"] == 0.89


@pytest.mark.parametrize("key, value", [
    ("size", 1), ("user", "x"), ("", 1), ("a\nb", 1), ("nan", float("nan")), ("obj", object()),
])
async def test_bad_metadata_is_refused_when_set(tmp_path, root, key, value):
    model = make_model(tmp_path / "model")
    async with Repository(root) as repo:
        new = (await repo.create("m")).new_image(model)
        with pytest.raises(da.BadReferenceError):
            new[key] = value


async def test_attachments_are_stored_and_verified(tmp_path, root):
    model = make_model(tmp_path / "model")
    (tmp_path / "report.html").write_text("<p>report</p>")
    async with Repository(root) as repo:
        new = (await repo.create("m")).new_image(model)
        new.attach("notes.txt", io.BytesIO(b"notes"))
        new.attach("report.html", tmp_path / "report.html")
        new.attach("raw.bin", b"\x00\x01")
        for bad in ("../x", "a/b", "", ".hidden"):
            with pytest.raises(da.BadReferenceError):
                new.attach(bad, b"x")
        saved = await new.save()
        assert await saved.get_attachments() == {"notes.txt": 5, "raw.bin": 2, "report.html": 13}
        assert await saved.read_attachment("report.html") == b"<p>report</p>"
        with pytest.raises(da.ReferenceNotFoundError, match="no attachment 'other.txt'"):
            await saved.read_attachment("other.txt")


async def test_tags_move_are_logged_and_go_with_their_version(tmp_path, root):
    model = make_model(tmp_path / "model")
    async with Repository(root) as repo:
        models = await repo.create("m")
        for extra in "123":
            make_model(model, extra=extra)
            await models.new_image(model).save()
        assert await models.add_tag("production", 1) is None
        assert await models.add_tag("production", 2) == 1  # moved
        assert (await models.get_model_image(tag="production")).version == 2
        with pytest.raises(da.BadReferenceError, match="kept by the repository"):
            await models.add_tag("latest", 1)
        with pytest.raises(da.ReferenceNotFoundError, match="no version 9"):
            await models.add_tag("staging", 9)
        assert await models.delete_version(2) == ["production"]
        assert await models.get_tags() == {"latest": 3}
        with pytest.raises(da.ReferenceNotFoundError, match="no tag 'production'"):
            await models.get_model_image(tag="production")
        await models.delete_version(3)
        assert await models.get_tags() == {"latest": 1}
        fourth = await models.new_image(model).save()
        assert fourth.version == 4  # numbers are never reused
        events = [(e["action"], e["version"], e["tag"], e["previous_version"])
                  for e in await models.events()]
    assert events == [
        ("save", 1, None, None), ("save", 2, None, None), ("save", 3, None, None),
        ("tag", 1, "production", None), ("tag", 2, "production", 1),
        ("delete", 2, None, None), ("delete", 3, None, None), ("save", 4, None, None),
    ]


@pytest.mark.parametrize("name", [
    "../x", "", "a/../b", "/abs", "a:b", "a\x1b[31m", "x" * 101, "a/b/c", ".hidden", "a b",
])
async def test_bad_names_are_refused_and_change_nothing(root, name):
    async with Repository(root) as repo:
        with pytest.raises(da.BadReferenceError, match="is not a repository name"):
            await repo.create(name)
        with pytest.raises(da.BadReferenceError):
            await repo.get(name)
        assert await repo.list() == []
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith("repository.db")) == []


@pytest.mark.parametrize("location, reason", [
    ("models:", "is not a repository name"),
    ("models:m:", "neither a version number nor a tag"),
    ("models:m:0", "neither a version number nor a tag"),
    ("models:m:-1", "neither a version number nor a tag"),
    ("models:m:a b", "neither a version number nor a tag"),
    ("models:../m", "is not a repository name"),
])
def test_bad_locations_are_refused(location, reason):
    with pytest.raises(da.BadReferenceError, match=reason):
        parse_location(location)


def test_locations_parse():
    assert str(parse_location("models:team/credit-risk:3")) == "team/credit-risk:3"
    assert parse_location("models:m:production").tag == "production"
    assert parse_location("models:m").version is None


async def test_unknown_repositories_versions_and_tags(tmp_path, root):
    async with Repository(root) as repo:
        with pytest.raises(da.ReferenceNotFoundError, match="no such model repository"):
            await repo.get("nothing")
        models = await repo.create("m")
        with pytest.raises(da.ReferenceNotFoundError, match="has no versions yet"):
            await models.get_model_image()
        await models.new_image(make_model(tmp_path / "model")).save()
        with pytest.raises(da.ReferenceNotFoundError, match="no version 2"):
            await repo.get_model_image("m:2")
        with pytest.raises(da.ReferenceNotFoundError, match="no tag 'prod'"):
            await repo.get_model_image("m:prod")
        with pytest.raises(da.ReferenceNotFoundError):
            await models.delete_version(5)
        with pytest.raises(da.ReferenceNotFoundError):
            await models.remove_tag("prod")
        assert [v["version"] for v in await models.log()] == [1]


async def test_a_damaged_blob_is_refused_naming_image_and_member(tmp_path, root):
    model = make_model(tmp_path / "model")
    async with Repository(root) as repo:
        image = await (await repo.create("m")).new_image(model).save()
        digest = hashlib.sha256(b"w" * 5000).hexdigest()
        data = bytearray(b"w" * 5000)
        data[100] ^= 1
        await replace_blob(repo, digest, bytes(data))
        with pytest.raises(da.CorruptBlobError) as caught:
            await image.materialize(tmp_path / "out")
        assert caught.value.archive == "m:1" and caught.value.member == "weights/a.bin"
        with pytest.raises(da.CorruptBlobError, match="weights/a.bin"):
            await image.download(tmp_path / "m.tar.gz")
        assert not (tmp_path / "m.tar.gz").exists()
        checked, damaged = await verify(repo)
        assert checked == 4 and [d.blob for d in damaged] == [digest]
        assert damaged[0].used_by == [("m:1", "weights/a.bin")]
        await remove_blob(repo, digest)
        with pytest.raises(da.CorruptBlobError, match="is missing"):
            await image.materialize(tmp_path / "out2")


async def test_gc_frees_what_only_deleted_versions_used(tmp_path, root):
    model = make_model(tmp_path / "model")
    async with Repository(root) as repo:
        models = await repo.create("m")
        await models.new_image(model).save()
        (model / "weights" / "a.bin").write_bytes(b"v2" * 4000)
        await models.new_image(model).save()
        assert (await gc(repo, 0)).freed_bytes == 0  # everything is used
        await models.delete_version(1)
        young = await gc(repo)  # the default grace spares a fresh blob
        assert young.blobs == 0 and young.images == 1
        report = await gc(repo, 0)
        assert report.blobs == 1 and report.freed_bytes == 5000
        assert hashlib.sha256(b"w" * 5000).hexdigest() not in await stored_digests(repo)
        image = await models.get_model_image(version=2)
        await image.materialize(tmp_path / "out")  # what remains is whole
        assert (await verify(repo))[1] == []


async def test_concurrent_saves_in_one_process_get_distinct_versions(tmp_path, root):
    async with Repository(root) as repo:
        models = await repo.create("m")
        sources = [make_model(tmp_path / f"model{i}", extra=str(i)) for i in range(8)]
        saved = await asyncio.gather(*(models.new_image(s).save() for s in sources))
    assert sorted(image.version for image in saved) == list(range(1, 9))


SELECTOR_CASES = [
    ('entrypoint == "slr_archive" and Accuracy > 0.8 and "experience" in features', ["a:1"]),
    ('entrypoint == "slr_archive"', ["a:1", "a:2"]),
    ("Accuracy >= 0.5 or tags contains \"production\"", ["a:1", "a:2", "b:1"]),
    ('not (entrypoint == "slr_archive")', ["b:1"]),
    ('config.predict.name == "salary" and version == 2', ["a:2"]),
    ('metadata["team name"] == "risk"', ["b:1"]),
    ("Accuracy > \"x\"", []),  # a number and a string never compare
    ("missing_key == None", ["a:1", "a:2", "b:1"]),
    ('name in ["b", "c"]', ["b:1"]),
    ('comment == "x contains y"', ["b:1"]),
    # Top-level "and" terms the database checks first (a prefilter): the same answers.
    ("Accuracy > 0.8", ["a:1"]),
    ('Accuracy < 1 and entrypoint == "slr_archive"', ["a:1", "a:2"]),
    ("Accuracy == 0.9", ["a:1"]),
    ("flag >= 1", []),  # a boolean is no number
    ("flag == True", ["b:1"]),
    ('entrypoint == "nothing" and Accuracy > 0', []),
]


async def _selector_repository(tmp_path, root):
    repo = Repository(root)
    await repo.open()
    model = make_model(tmp_path / "model")
    features = [{"name": "experience", "dtype": "int", "length": 1}]
    slr = {"entrypoint": "slr_archive", "upstream": "slr", "extra": None,
           "config": {"features": features, "predict": {"name": "salary", "dtype": "float",
                                                        "length": 1}}, "versions": {}}
    a = await repo.create("a")
    image = a.new_image(model, model=slr)
    image["Accuracy"] = 0.9
    await image.save()
    image = a.new_image(model, model={**slr, "config": {**slr["config"], "features": []}})
    image["Accuracy"] = 0.5
    await image.save()
    b = await repo.create("b")
    image = b.new_image(model)
    image["team name"] = "risk"
    image["flag"] = True
    saved = await image.save(comment="x contains y")
    await b.add_tag("production", saved.version)
    return repo


@pytest.mark.parametrize("expression, expected", SELECTOR_CASES)
async def test_selectors(tmp_path, root, expression, expected):
    repo = await _selector_repository(tmp_path, root)
    try:
        found = await find(repo, expression)
    finally:
        await repo.close()
    assert [f"{item['name']}:{item['version']}" for item in found] == expected


@pytest.mark.parametrize("expression", [
    "", "Accuracy >", '__import__("os").system("true")', "a.b()", "x = 1", "lambda: 1",
    "[x for x in tags]", "Accuracy + 1 > 2",
])
async def test_bad_selectors_are_refused(root, expression):
    async with Repository(root) as repo:
        with pytest.raises(da.BadReferenceError, match="is not a selector"):
            await find(repo, expression)


async def test_the_migrated_schema_is_the_declared_one(root, repository_backend):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import text

    from dffml_archive.repository._schema import SCHEMA_REVISION, metadata

    async with Repository(root) as repo:
        async with repo.engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
            revision = (await connection.execute(
                text("SELECT version_num FROM alembic_version"))).all()
    assert differences == []
    assert revision == [(SCHEMA_REVISION,)]
    if repository_backend == "embedded":
        with sqlite3.connect(root / "repository.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_repository_from_a_newer_release_is_refused(root):
    from sqlalchemy import text

    async with Repository(root) as repo:
        async with repo.engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(da.RepositoryError, match="newer dffml-archive"):
        async with Repository(root):
            pass


async def test_the_first_schema_migrates_keeping_versions_and_claims(tmp_path):
    """A repository made by the first schema (0001) opens: alembic upgrades it,
    and every blob it references is claimed (gc keeps it)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from dffml_archive.repository import _database

    root = tmp_path / "old"
    async with Repository(root) as repo:
        await (await repo.create("m")).new_image(make_model(tmp_path / "model")).save()
    engine = create_engine(f"sqlite:///{root / 'repository.db'}")
    config = Config()
    config.set_main_option("script_location", str(pathlib.Path(_database.__file__).with_name(
        "_migrations")))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001_initial")
    engine.dispose()
    async with Repository(root) as repo:
        assert (await gc(repo, 0)).blobs == 0
        image = await repo.get_model_image("m:1")
        await image.materialize(tmp_path / "out")
    assert read_tree(tmp_path / "out") == read_tree(tmp_path / "model")
