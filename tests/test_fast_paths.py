"""Every fast path of the engine gives exactly what its reference gives: the
hand-built ustar header (tarfile's USTAR_FORMAT), the one-regex name check
(the rule-by-rule check) and the member-by-member manifest encoder
(one json.dumps call)."""
import itertools
import json
import tarfile

import pytest

from dffml_archive import _manifest, _pack, _safety
from dffml_archive import _constants as C
from dffml_archive.errors import UnsafeArchiveError


def _tarfile_header(name, kind, mode, size):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if kind == _safety.DIRECTORY else tarfile.REGTYPE
    info.mode, info.size, info.mtime = mode, size, C.FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")


@pytest.mark.parametrize("name", ["a", "weights/layer-1.npy", "x" * 100, "sp ace/~!#$%^&()"])
@pytest.mark.parametrize("kind", [_safety.FILE, _safety.DIRECTORY])
@pytest.mark.parametrize("mode", [0o644, 0o755, 0o700, 0])
@pytest.mark.parametrize("size", [0, 1, 511, 512, 10 ** 9, 8 ** 11 - 1])
def test_ustar_header_is_tarfiles(name, kind, mode, size):
    if kind == _safety.DIRECTORY:  # the engine names directories "d/", as tarfile does
        name, size = name.rstrip("/")[:99] + "/", 0
    ours = _pack._tar_header(name, kind, mode, size)
    assert len(ours) == tarfile.BLOCKSIZE
    assert ours == _tarfile_header(name, kind, mode, size)
    parsed = tarfile.TarInfo.frombuf(ours, "utf-8", "surrogateescape")
    assert (parsed.name, parsed.mode, parsed.size) == (name.rstrip("/"), mode, size)


def test_long_or_unicode_names_and_huge_sizes_take_pax():
    for name, size in (("n" * 101, 1), ("ünï.txt", 1), ("big", 8 ** 11)):
        header = _pack._tar_header(name, _safety.FILE, 0o644, size)
        assert header[156:157] == tarfile.XHDTYPE


def _checked(name):
    try:
        return ("ok", _safety._checked_member_name("a.tar", name))
    except UnsafeArchiveError as error:
        return ("refused", error.reason)


def _cleaned(name):
    try:
        return ("ok", _safety.clean_member_name("a.tar", name))
    except UnsafeArchiveError as error:
        return ("refused", error.reason)


ALPHABET = ["a", "Z", "0", "_", ".", "..", "-", "/", "//", "\\", ":", " ", "é", "\x00", "\x1f", "\u2028", "\udc80"]


def test_plain_name_fast_path_agrees_with_every_rule():
    names = {"".join(parts) for length in range(1, 5) for parts in itertools.product(ALPHABET, repeat=length)}
    names |= {"c" * 255, "c" * 256, "d/" + "c" * 255, "d/" + "c" * 256 + "/e", "x/" * 2048, "x/" * 2047 + "y"}
    fast = 0
    for name in names:
        assert _cleaned(name) == _checked(name), name
        fast += bool(_safety._PLAIN_NAME.fullmatch(name))
    assert fast > 1000  # the fast path is really taken


def test_tracker_refuses_files_used_as_parents_in_any_order():
    for first, second in (("a/b/c", "a/b"), ("a/b", "a/b/c"), ("A/b/c", "a/B")):
        tracker = _safety.MemberTracker("t.tar", _safety.Limits(), 1)
        kinds = {first: _safety.FILE, second: _safety.FILE}
        tracker.add(first, kinds[first])
        with pytest.raises(UnsafeArchiveError):
            tracker.add(second, kinds[second])
    tracker = _safety.MemberTracker("t.tar", _safety.Limits(), 1)
    for name in ("a", "a/b", "a/b/c", "a/b/d", "a/e/f"):
        tracker.add(name, _safety.DIRECTORY if name in ("a", "a/b") else _safety.FILE)


def test_manifest_bytes_are_one_json_dumps():
    members = [
        _manifest.ManifestMember("dir", "directory", 0o755),
        _manifest.ManifestMember('q"uote\\back\nline\u2028ü', "file", 0o600, 12, "f" * 64),
        _manifest.ManifestMember("odd", "file", 0o644, 3, None),
    ]
    model = {"config": {"features": [{"name": "x"}], "note": ',"model":"members"'}, "entry_point": "slr_archive"}
    for manifest in (_manifest.Manifest(members, model=model), _manifest.Manifest([], model=None)):
        reference = json.dumps(
            manifest.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8") + b"\n"
        assert manifest.to_bytes() == reference


def _zipfile_reference(raw, manifest_bytes, entries, level):
    """What zipfile writes for the same members and compressor choices."""
    import stat
    import zipfile

    from dffml_archive._formats import raw_deflate_compressor

    def info(name, kind, mode, size, deflate):
        zinfo = zipfile.ZipInfo(name, date_time=C.FIXED_ZIP_DATE_TIME)
        zinfo.create_system = 3
        if kind == _safety.DIRECTORY:
            zinfo.external_attr = ((stat.S_IFDIR | mode) << 16) | 0x10
        else:
            zinfo.external_attr = (stat.S_IFREG | mode) << 16
            zinfo.file_size = size
        zinfo.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
        return zinfo

    def add(zinfo, data, deflate):
        with bundle.open(zinfo, "w") as out:
            if deflate:
                out._compressor = raw_deflate_compressor(level)
            out.write(data)

    with zipfile.ZipFile(raw, "w", allowZip64=True) as bundle:
        add(info(C.MANIFEST_NAME, _safety.FILE, 0o644, len(manifest_bytes), True), manifest_bytes, True)
        for entry in entries:
            if entry.type == _safety.DIRECTORY:
                add(info(entry.relative + "/", entry.type, entry.mode, 0, False), b"", False)
            else:
                zinfo = info(entry.relative, entry.type, entry.mode, entry.size, entry.deflate)
                with open(entry.path, "rb") as handle, bundle.open(zinfo, "w") as out:
                    if entry.deflate:
                        out._compressor = raw_deflate_compressor(level)
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        out.write(chunk)


@pytest.mark.parametrize("level", [None, 1, 9])
def test_zip_writer_writes_what_zipfile_writes(tmp_path, level):
    import os
    import zipfile

    from dffml_archive import _job

    source = tmp_path / "model"
    (source / "sub" / "ünï").mkdir(parents=True)
    (source / "empty-dir").mkdir()
    (source / "empty.txt").write_bytes(b"")
    (source / "config.json").write_text('{"a": 1}\n' * 50)
    (source / "sub" / "ünï" / "naïve.txt").write_text("x")
    (source / "sub" / "random.bin").write_bytes(os.urandom(300_000))  # streamed, stored
    (source / "sub" / "zeros.bin").write_bytes(bytes(200_000))  # streamed, deflated
    (source / "sub" / "small-random.bin").write_bytes(os.urandom(20_000))  # in memory, stored
    os.chmod(source / "config.json", 0o755)
    archive = tmp_path / "a.zip"
    entries = _pack._scan(str(source), archive)
    _pack._hash_files(entries, _job.Job(), archive, for_zip=True)
    assert {entry.deflate for entry in entries if entry.type == _safety.FILE} == {True, False}
    assert any(entry.content is None for entry in entries if entry.type == _safety.FILE)
    manifest_bytes = _manifest.Manifest([entry.manifest_member() for entry in entries]).to_bytes()
    with open(tmp_path / "ours.zip", "wb") as raw:
        _pack._write_zip(raw, manifest_bytes, entries, _job.Job(), archive, level)
    with open(tmp_path / "zipfile.zip", "wb") as raw:
        _zipfile_reference(raw, manifest_bytes, entries, level)
    ours = (tmp_path / "ours.zip").read_bytes()
    assert ours == (tmp_path / "zipfile.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "ours.zip") as bundle:
        assert bundle.testzip() is None
        assert bundle.read("sub/ünï/naïve.txt") == b"x"


def test_zip_writer_zip64_end_records_match_zipfile(tmp_path):
    """More than 65,535 members: the ZIP64 end records (the large-file
    branches need gigabytes and are covered by zipfile's own rules)."""
    import zipfile

    from dffml_archive import _zip_writer
    from dffml_archive._formats import raw_deflate_compressor

    count = zipfile.ZIP_FILECOUNT_LIMIT + 2
    with open(tmp_path / "ours.zip", "wb") as raw:
        writer = _zip_writer.ZipWriter(raw, raw_deflate_compressor)
        for index in range(count):
            writer.add_bytes(f"f{index}", 0o644 << 16, b"", False)
        writer.close()
    with zipfile.ZipFile(tmp_path / "zipfile.zip", "w", allowZip64=True) as bundle:
        for index in range(count):
            zinfo = zipfile.ZipInfo(f"f{index}", date_time=C.FIXED_ZIP_DATE_TIME)
            zinfo.create_system, zinfo.external_attr = 3, 0o644 << 16
            bundle.writestr(zinfo, b"")
    assert (tmp_path / "ours.zip").read_bytes() == (tmp_path / "zipfile.zip").read_bytes()


def test_zip_writer_zip64_large_member_matches_zipfile(tmp_path):
    """A member over zipfile's ZIP64 limit (2 GiB): sizes move to the ZIP64
    extra field in both headers.  Sparse zeros: no disk used, deflates small."""
    import zipfile

    from dffml_archive import _job

    source = tmp_path / "model"
    source.mkdir()
    with open(source / "huge.bin", "wb") as handle:
        handle.truncate(zipfile.ZIP64_LIMIT + (64 << 20))
    (source / "after.txt").write_text("a member after the big one")
    archive = tmp_path / "a.zip"
    entries = _pack._scan(str(source), archive)
    _pack._hash_files(entries, _job.Job(), archive, for_zip=True)
    manifest_bytes = _manifest.Manifest([entry.manifest_member() for entry in entries]).to_bytes()
    with open(tmp_path / "ours.zip", "wb") as raw:
        _pack._write_zip(raw, manifest_bytes, entries, _job.Job(), archive, 1)
    with open(tmp_path / "zipfile.zip", "wb") as raw:
        _zipfile_reference(raw, manifest_bytes, entries, 1)
    assert (tmp_path / "ours.zip").read_bytes() == (tmp_path / "zipfile.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "ours.zip") as bundle:
        assert bundle.getinfo("huge.bin").file_size == zipfile.ZIP64_LIMIT + (64 << 20)
        assert bundle.read("after.txt") == b"a member after the big one"


@pytest.mark.parametrize("size", [10, _pack.KEEP_FILE_BYTES + 1])  # read at once / streamed
def test_a_file_swapped_for_a_link_after_the_scan_is_refused(tmp_path, size):
    import os

    from dffml_archive import _job
    from dffml_archive.errors import ArchiveSourceError

    source = tmp_path / "model"
    source.mkdir()
    (source / "weights.bin").write_bytes(b"x" * size)
    (tmp_path / "secret").write_text("not part of the model")
    archive = tmp_path / "a.tar"
    entries = _pack._scan(str(source), archive)
    os.unlink(source / "weights.bin")
    os.symlink(tmp_path / "secret", source / "weights.bin")
    with pytest.raises(ArchiveSourceError, match="weights.bin"):
        _pack._hash_files(entries, _job.Job(), archive, for_zip=False)
