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
