"""Real data, opt-in: fixture archives in the real formats, built here; nothing is downloaded."""

from __future__ import annotations

import hashlib
import http.client
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from course_lib import datasets
from course_lib.datasets import DownloadError, Remote, extract, fetch, read_fra_eng, read_wikitext2

FRA = "Go.\tVa !\nHi.\tSalut !\nRun!\tCours\u202f!\nI saw a saw.\tJ'ai vu une scie.\n"
WIKI = (
    " = Valkyria Chronicles III = \n \n"
    " Senjō no Valkyria 3 is a game . It was released in 2011 . It sold well . \n"
    " One sentence only \n"
)


def make_zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_registry_holds_the_published_hashes():
    assert datasets.REMOTES["fra-eng"].sha1 == "94646ad1522d915e7b0f9296181140edcf86a4f5"
    assert datasets.REMOTES["wikitext-2"].sha1 == "3c914d17d80b1459be871a5039ac23e752a53cbe"
    assert len(datasets.REMOTES["wikitext-2"].urls) >= 2  # mirrors: the original host is gone


def test_fetch_verifies_caches_and_reads_fra_eng_like_d2l(tmp_path, d2l):
    src = make_zip(tmp_path / "served.zip", {"fra-eng/fra.txt": FRA})
    remote = Remote("fra-eng.zip", sha1(src), (src.as_uri(),))
    cache = tmp_path / "cache"
    path = fetch("fra-eng", cache, remote)
    assert path == cache / "fra-eng.zip" and sha1(path) == remote.sha1
    src.unlink()  # second call: served from the cache, no download
    assert fetch("fra-eng", cache, remote) == path
    pairs = read_fra_eng(extract(path, cache / "x"))
    assert datasets.preprocess_fra_eng(FRA) == d2l.preprocess_nmt(FRA)
    d2l_src, d2l_tgt = d2l.tokenize_nmt(d2l.preprocess_nmt(FRA))
    assert [p[0] for p in pairs] == d2l_src and [p[1] for p in pairs] == d2l_tgt
    assert pairs[2] == (["run", "!"], ["cours", "!"])


def test_corrupted_download_is_rejected_and_not_kept(tmp_path):
    src = make_zip(tmp_path / "served.zip", {"fra-eng/fra.txt": FRA})
    remote = Remote("fra-eng.zip", "0" * 40, (src.as_uri(),))
    with pytest.raises(DownloadError, match="SHA-1 .* expected 0000"):
        fetch("fra-eng", tmp_path / "cache", remote)
    assert list((tmp_path / "cache").iterdir()) == []  # no partial or wrong file left behind


def test_a_file_with_another_hash_is_never_deleted(tmp_path):
    """A copy placed by hand (or a damaged one) at the target path: refused with both hashes, left untouched."""
    src = make_zip(tmp_path / "served.zip", {"fra-eng/fra.txt": FRA})
    remote = Remote("fra-eng.zip", sha1(src), (src.as_uri(),))
    (tmp_path / "cache").mkdir()
    placed = tmp_path / "cache" / "fra-eng.zip"
    placed.write_bytes(b"truncated")
    found = hashlib.sha1(b"truncated").hexdigest()
    with pytest.raises(DownloadError, match=f"SHA-1 is {found}, expected {remote.sha1}.*left untouched"):
        fetch("fra-eng", tmp_path / "cache", remote)
    assert placed.read_bytes() == b"truncated" and sorted(p.name for p in placed.parent.iterdir()) == ["fra-eng.zip"]
    placed.unlink()  # the user moves it away: now it downloads
    assert sha1(fetch("fra-eng", tmp_path / "cache", remote)) == remote.sha1


def test_offline_error_says_what_to_fetch_and_where(tmp_path):
    remote = Remote("wikitext-2-v1.zip", "3c914d17d80b1459be871a5039ac23e752a53cbe",
                    ("http://127.0.0.1:9/wikitext-2-v1.zip", "http://127.0.0.1:9/mirror.zip"))
    with pytest.raises(DownloadError) as err:
        fetch("wikitext-2", tmp_path, remote, timeout=2)
    text = str(err.value)
    assert "wikitext-2-v1.zip" in text and "http://127.0.0.1:9/mirror.zip" in text
    assert str(tmp_path / "wikitext-2-v1.zip") in text and "COURSE_DATA" in text


def test_malicious_archives_are_refused_before_writing(tmp_path):
    evil = make_zip(tmp_path / "evil.zip", {"ok.txt": "fine", "../../escaped.txt": "pwned"})
    with pytest.raises(ValueError, match="outside"):
        extract(evil, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "ok.txt").exists()
    absolute = make_zip(tmp_path / "abs.zip", {"/etc/evil.txt": "x"})
    with pytest.raises(ValueError, match="outside"):
        extract(absolute, tmp_path / "out2")
    tar_path = tmp_path / "link.tar"
    with tarfile.open(tar_path, "w") as tf:
        info = tarfile.TarInfo("innocent")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(ValueError, match="links"):
        extract(tar_path, tmp_path / "out3")
    tar_path = tmp_path / "dots.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tf:
        data = b"x"
        info = tarfile.TarInfo("a/../../b.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="outside"):
        extract(tar_path, tmp_path / "out4")


def test_wikitext_reader_in_the_real_layout(tmp_path, d2l):
    src = make_zip(tmp_path / "w.zip", {f"wikitext-2/wiki.{s}.tokens": WIKI for s in ("train", "valid", "test")})
    folder = extract(src, tmp_path / "data")
    paragraphs = read_wikitext2(folder, "train")
    assert paragraphs == [["senjō no valkyria 3 is a game", "it was released in 2011", "it sold well ."]]
    theirs = d2l._read_wiki(str(folder / "wikitext-2"))  # the same paragraphs (d2l keeps spaces)
    assert [[s.strip() for s in p] for p in theirs] == paragraphs


def test_unknown_dataset_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        fetch("imagenet", tmp_path)
    with pytest.raises(ValueError, match="extract fra-eng.zip"):
        read_fra_eng(tmp_path)
    for split in ("dev", "validation", None):  # refused before anything is fetched, the valid splits listed
        with pytest.raises(ValueError, match=r"unknown WikiText-2 split .*\('train', 'valid', 'test'\)"):
            datasets.load_wikitext2(split, tmp_path)
        with pytest.raises(ValueError, match="unknown WikiText-2 split"):
            read_wikitext2(tmp_path, split)
    assert list(tmp_path.iterdir()) == []


# --- review fixes -------------------------------------------------------------------


def make_tar(path: Path, members: dict[str, bytes | None]) -> Path:
    """A .tar.gz whose members are files (bytes) or folders (None)."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            else:
                info.size, info.mode = len(data), 0o4755  # setuid: must not survive
                tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def old_tarfile(monkeypatch):
    """A Python without extractall(filter=...) (before 3.10.12 / 3.11.4)."""
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    real = tarfile.TarFile.extractall

    def extractall(self, *args, **kwargs):
        if "filter" in kwargs:
            raise TypeError("extractall() got an unexpected keyword argument 'filter'")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extractall", extractall)


@pytest.mark.parametrize("old_python", [False, True])
def test_tar_extraction_with_and_without_the_data_filter(tmp_path, request, old_python):
    if old_python:
        request.getfixturevalue("old_tarfile")
    src = make_tar(tmp_path / "a.tar.gz", {"wikitext-2": None, "wikitext-2/wiki.train.tokens": WIKI.encode()})
    folder = extract(src, tmp_path / "out")
    data = folder / "wikitext-2" / "wiki.train.tokens"
    assert data.read_text(encoding="utf-8") == WIKI and not data.stat().st_mode & 0o4000
    assert read_wikitext2(folder)[0][0] == "senjō no valkyria 3 is a game"


def test_tar_fallback_still_refuses_escapes_and_links(tmp_path, old_tarfile):
    for k, name in enumerate(["../escaped.txt", "/abs.txt", "a/../../b.txt"]):
        with pytest.raises(ValueError, match="outside"):
            extract(make_tar(tmp_path / f"e{k}.tar.gz", {"ok.txt": b"ok", name: b"x"}), tmp_path / f"out{k}")
        assert not (tmp_path / f"out{k}" / "ok.txt").exists()  # nothing written before the check
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "b.txt").exists()
    for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE):
        path = tmp_path / f"link{kind!r}.tar"
        with tarfile.open(path, "w") as tf:
            info = tarfile.TarInfo("innocent")
            info.type, info.linkname = kind, "../../outside"
            tf.addfile(info)
        with pytest.raises(ValueError, match="links and special files"):
            extract(path, tmp_path / "out_links")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "out_pre").mkdir()
    (tmp_path / "out_pre" / "sub").symlink_to(outside)  # a link already in the target folder
    with pytest.raises(ValueError, match="outside"):
        extract(make_tar(tmp_path / "via.tar.gz", {"sub/f.txt": b"x"}), tmp_path / "out_pre")
    assert not (outside / "f.txt").exists()


class FakeResponse(io.BytesIO):
    """What urlopen returns, reading ``data``; raises IncompleteRead after it if ``truncated``."""

    def __init__(self, data: bytes, truncated: bool = False) -> None:
        super().__init__(data)
        self.truncated = truncated

    def read(self, n=-1):
        chunk = super().read(n)
        if not chunk and self.truncated:
            raise http.client.IncompleteRead(b"", 1000)
        return chunk


def test_truncated_download_falls_back_to_the_mirror(tmp_path, monkeypatch):
    src = make_zip(tmp_path / "served.zip", {"fra-eng/fra.txt": FRA})
    payload = src.read_bytes()
    tried = []

    def urlopen(url, timeout=None):
        tried.append(url)
        if url.startswith("http://first"):
            return FakeResponse(payload[:20], truncated=True)  # the server broke off
        return FakeResponse(payload)

    monkeypatch.setattr(datasets.urllib.request, "urlopen", urlopen)
    remote = Remote("fra-eng.zip", sha1(src), ("http://first.invalid/f.zip", "http://mirror.invalid/f.zip"))
    path = fetch("fra-eng", tmp_path / "cache", remote)
    assert tried == list(remote.urls) and sha1(path) == remote.sha1
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["fra-eng.zip"]  # no .part left
    monkeypatch.setattr(datasets.urllib.request, "urlopen", lambda url, timeout=None: FakeResponse(b"", True))
    with pytest.raises(DownloadError, match="IncompleteRead"):
        fetch("fra-eng", tmp_path / "cache2", remote)


def test_empty_tokens_are_dropped_like_d2l(d2l, tmp_path):
    raw = "Go  now.\tVa  !\nHi. \t Salut !\n \t \nOk.\tD'accord.\n"
    (tmp_path / "fra-eng").mkdir()
    (tmp_path / "fra-eng" / "fra.txt").write_text(raw, encoding="utf-8")
    pairs = read_fra_eng(tmp_path)
    assert pairs[0] == (["go", "now", "."], ["va", "!"]) and all("" not in s + t for s, t in pairs)
    text = datasets.preprocess_fra_eng(raw)
    assert datasets.tokenize_fra_eng(text) == pairs
    assert read_fra_eng(tmp_path, max_pairs=2) == pairs[:2]
    src, tgt = d2l.MTFraEng._tokenize(None, text)  # d2l appends <eos> and keeps blank-only lines
    theirs = [(s[:-1], t[:-1]) for s, t in zip(src, tgt) if s[:-1] and t[:-1]]
    assert pairs == theirs


def test_a_copy_placed_in_course_data_by_hand_is_kept_and_both_hashes_named(tmp_path, monkeypatch):
    """The reported case exactly: fetch("wikitext-2") with the default folder, $COURSE_DATA, holding a copy
    whose SHA-1 differs. Nothing is downloaded (the check comes first) and nothing is deleted."""
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    placed = tmp_path / "wikitext-2-v1.zip"
    placed.write_bytes(b"a copy from a course mirror")
    found = hashlib.sha1(b"a copy from a course mirror").hexdigest()
    expected = datasets.REMOTES["wikitext-2"].sha1

    def no_network(*args, **kwargs):
        raise AssertionError("a download was tried")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", no_network)
    for call in (lambda: fetch("wikitext-2"), lambda: datasets.load_wikitext2("train")):
        with pytest.raises(DownloadError, match=f"SHA-1 is {found}, expected {expected}.*left untouched"):
            call()
        assert placed.read_bytes() == b"a copy from a course mirror"
        assert [p.name for p in tmp_path.iterdir()] == ["wikitext-2-v1.zip"]


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_extracting_again_never_replaces_a_file_edited_by_hand(tmp_path, kind):
    """Re-extracting leaves identical files as they are and refuses, before writing
    anything, to replace a file whose contents differ from the archive's."""
    import tarfile
    import zipfile

    src = {"data/a.txt": b"first file\n", "data/b.txt": b"second file\n" * 100}
    archive = tmp_path / f"archive.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for name, data in src.items():
                zf.writestr(name, data)
    else:
        staged = tmp_path / "staged"
        with tarfile.open(archive, "w") as tf:
            for name, data in src.items():
                (staged / name).parent.mkdir(parents=True, exist_ok=True)
                (staged / name).write_bytes(data)
                tf.add(staged / name, arcname=name)
    out = tmp_path / "out"
    extract(archive, out)
    assert {n: (out / n).read_bytes() for n in src} == src
    before = {n: (out / n).stat().st_mtime_ns for n in src}
    extract(archive, out)                                   # identical files: nothing rewritten
    assert {n: (out / n).stat().st_mtime_ns for n in src} == before
    (out / "data/b.txt").write_bytes(b"my own edits\n")
    (out / "data/a.txt").unlink()                          # a missing file would be restored...
    with pytest.raises(ValueError, match=r"b\.txt.* exists and differs from the archive's"):
        extract(archive, out)                               # ...but nothing is written while b.txt differs
    assert (out / "data/b.txt").read_bytes() == b"my own edits\n" and not (out / "data/a.txt").exists()
