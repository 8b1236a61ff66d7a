"""Archive extraction refuses members that would land outside the target directory."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from rsvl.data.safety import safe_extract
from rsvl.errors import DataError, UnsafeArchiveError


def make_zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data)
    return path


def make_tar(path, members: list[tuple[str, bytes | None, str | None]]):
    """``(name, data, None)`` adds a file, ``(name, None, target)`` a symlink."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


def written_outside(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name not in {"out", "a.zip", "a.tar.gz"})


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "/tmp/evil.txt"])
def test_zip_member_escaping_is_refused(tmp_path, name):
    archive = make_zip(tmp_path / "a.zip", {"fine.txt": b"x", name: b"evil"})
    with pytest.raises(UnsafeArchiveError, match="evil.txt"):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert written_outside(tmp_path) == []


@pytest.mark.parametrize("name", ["../evil.txt", "/tmp/evil.txt"])
def test_tar_member_escaping_is_refused(tmp_path, name):
    archive = make_tar(tmp_path / "a.tar.gz", [("fine.txt", b"x", None), (name, b"evil", None)])
    with pytest.raises(UnsafeArchiveError, match="evil.txt"):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert written_outside(tmp_path) == []


@pytest.mark.parametrize("link", ["../..", "/etc"])
def test_tar_symlink_escaping_is_refused(tmp_path, link):
    archive = make_tar(tmp_path / "a.tar.gz", [("link", None, link), ("link/evil.txt", b"evil", None)])
    with pytest.raises(UnsafeArchiveError, match=f"link 'link' -> '{link}' points outside"):
        safe_extract(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert written_outside(tmp_path) == []


def test_clean_zip_extracts(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"images/a.txt": b"alpha", "b.txt": b"beta"})
    files = safe_extract(archive, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in files) == ["b.txt", "images/a.txt"]
    assert (tmp_path / "out" / "images" / "a.txt").read_bytes() == b"alpha"


def test_clean_tar_with_inner_symlink_extracts(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [("data/a.txt", b"alpha", None), ("alias.txt", None, "data/a.txt")])
    files = safe_extract(archive, tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in files] == ["data/a.txt"]
    assert (tmp_path / "out" / "alias.txt").read_bytes() == b"alpha"


def test_file_that_is_no_archive_is_a_data_error(tmp_path):
    bogus = tmp_path / "a.zip"
    bogus.write_bytes(b"plain text, not an archive")
    with pytest.raises(DataError, match="not a zip or tar archive"):
        safe_extract(bogus, tmp_path / "out")
