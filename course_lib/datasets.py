"""Real corpora, opt-in: English–French pairs (Tatoeba, as d2l distributes them) and WikiText-2.

Nothing in the course needs them (the chapters use ``course_lib.corpus``), and the tests
never download. ``fetch(name)`` looks in the cache folder first (``$COURSE_DATA`` or
``~/.cache/course_lib``); otherwise it tries each URL in turn, verifies the SHA-1 of what
arrived, and keeps the file only if it matches. Without a network it raises one
``DownloadError`` that says which file to get, from where, and where to put it.
A file already at the target path whose SHA-1 differs (a copy placed by hand, say) is
never deleted nor overwritten: ``fetch`` raises a ``DownloadError`` with the expected and
the found hash. Archives are extracted only if every member stays inside the target folder.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from course_lib._checks import check_number


@dataclass(frozen=True)
class Remote:
    filename: str
    sha1: str
    urls: tuple[str, ...]


REMOTES = {
    # d2l's distribution of the Tatoeba English-French pairs (SHA-1 as published by d2l).
    "fra-eng": Remote(
        "fra-eng.zip",
        "94646ad1522d915e7b0f9296181140edcf86a4f5",
        ("http://d2l-data.s3-accelerate.amazonaws.com/fra-eng.zip",),
    ),
    # WikiText-2 (Merity et al. 2016). The original host (research.metamind.io) is gone;
    # mirrors first, the original last for completeness.
    "wikitext-2": Remote(
        "wikitext-2-v1.zip",
        "3c914d17d80b1459be871a5039ac23e752a53cbe",
        (
            "https://wikitext.smerity.com/wikitext-2-v1.zip",
            "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
        ),
    ),
}


class DownloadError(RuntimeError):
    """A file could not be fetched or did not match its expected hash."""


def cache_dir() -> Path:
    return Path(os.environ.get("COURSE_DATA", Path.home() / ".cache" / "course_lib"))


def sha1_of(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(name: str, folder: Path | None = None, remote: Remote | None = None, timeout: float = 30.0) -> Path:
    """Return the path of a verified copy of dataset ``name``'s archive, downloading it if needed.

    ``timeout``: seconds to wait for each server before trying the next one (a finite number > 0).
    """
    check_number("timeout", timeout, positive=True)
    if remote is None:
        if name not in REMOTES:
            raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(REMOTES)}")
        remote = REMOTES[name]
    folder = Path(folder) if folder is not None else cache_dir()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"the data folder {str(folder)!r} is a file, not a folder (set COURSE_DATA or pass folder=)")
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / remote.filename
    if target.exists():
        found = sha1_of(target)
        if found == remote.sha1:
            return target
        # Never delete or overwrite a file this function did not write (it writes only verified files).
        raise DownloadError(
            f"{target} exists but is not the expected file: its SHA-1 is {found}, expected {remote.sha1} "
            f"(a different version, or a damaged or partial copy). It was left untouched: replace it with the "
            f"right file, or move it away and call fetch again to download {remote.filename} from one of: "
            f"{', '.join(remote.urls)}"
        )
    failures = []
    for url in remote.urls:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=remote.filename + ".", suffix=".part")
        os.close(fd)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
            got = sha1_of(Path(tmp))
            if got != remote.sha1:
                failures.append(f"{url}: SHA-1 {got}, expected {remote.sha1} (corrupted or a different file)")
                continue
            os.replace(tmp, target)
            return target
        # OSError: no network, DNS failure, HTTP error, timeout. HTTPException: the server
        # broke off (IncompleteRead after a truncated transfer, a bad status line); both
        # mean "try the next URL".
        except (OSError, http.client.HTTPException) as err:
            failures.append(f"{url}: {err}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DownloadError(
        f"Could not get {remote.filename} (SHA-1 {remote.sha1}).\n"
        + "".join(f"  tried {f}\n" for f in failures)
        + f"Download it by hand from one of: {', '.join(remote.urls)}\n"
        + f"and put it at {target} (or set COURSE_DATA to the folder that holds it)."
    )


def _safe_target(root: Path, member: str) -> Path:
    target = (root / member).resolve()
    if member.startswith(("/", "\\")) or ".." in Path(member).parts or not target.is_relative_to(root):
        raise ValueError(f"refusing to extract {member!r}: it would land outside {root}")
    return target


def _extract_tar_members(tf: tarfile.TarFile, members: list[tarfile.TarInfo], folder: Path) -> None:
    """Write already validated regular files and folders ourselves, without tarfile's extraction.

    For Pythons whose ``extractall`` has no ``filter=`` argument (before 3.10.12 and
    3.11.4): only contents are written, never owners, modes or links.
    """
    for m in members:
        target = _safe_target(folder, m.name)
        if m.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tf.extractfile(m)
        if source is None:
            raise ValueError(f"refusing to extract {m.name!r}: it has no readable contents")
        with source, open(target, "wb") as out:
            shutil.copyfileobj(source, out)


def _already_there(folder: Path, name: str, size: int, read) -> bool:
    """True if ``folder/name`` already holds exactly this member's bytes (nothing to write).

    A file there with other contents (one edited by hand, say) is never replaced: that is
    a ValueError naming it, raised before anything is written."""
    target = folder / name
    if not target.exists():
        return False
    if target.is_file() and target.stat().st_size == size and target.read_bytes() == read():
        return True
    raise ValueError(f"{str(target)!r} exists and differs from the archive's {name!r}; extracting would replace "
                     "it. Move it away (or delete it) to extract the archive's copy again")


def extract(archive: Path, folder: Path) -> Path:
    """Extract a .zip or .tar(.gz) into folder, refusing any member that would escape it.

    Every member is checked before anything is written: no absolute paths, no ``..``,
    nothing that resolves outside ``folder``, and in tar archives only regular files and
    folders (no links, devices or FIFOs). Tar archives are then extracted with
    ``filter="data"`` where this Python has it, and member by member otherwise.
    """
    folder = Path(folder).resolve()
    if not Path(archive).is_file():
        raise ValueError(f"archive {str(archive)!r} is not a file")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"the target folder {str(folder)!r} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                _safe_target(folder, name)  # check everything before writing anything
            infos = [i for i in zf.infolist()
                     if i.is_dir() or not _already_there(folder, i.filename, i.file_size, lambda i=i: zf.read(i))]
            zf.extractall(folder, members=infos)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _safe_target(folder, m.name)
                if m.issym() or m.islnk() or not (m.isfile() or m.isdir()):
                    raise ValueError(f"refusing to extract {m.name!r}: links and special files are not allowed")
            members = [m for m in members
                       if m.isdir() or not _already_there(folder, m.name, m.size, lambda m=m: tf.extractfile(m).read())]
            if hasattr(tarfile, "data_filter"):  # Python 3.10.12+, 3.11.4+, 3.12+
                tf.extractall(folder, members=members, filter="data")
            else:
                _extract_tar_members(tf, members, folder)
    else:
        raise ValueError(f"{archive} is neither a zip nor a tar archive")
    return folder


def preprocess_fra_eng(text: str) -> str:
    """d2l's preprocessing: normalize spaces, lower-case, a space before , . ! ? where missing."""
    if not isinstance(text, str):
        raise TypeError(f"preprocess_fra_eng expects the text of fra.txt as a str, got {type(text).__name__}")
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    out = [" " + ch if i > 0 and ch in ",.!?" and text[i - 1] != " " else ch for i, ch in enumerate(text)]
    return "".join(out)


def tokenize_fra_eng(text: str) -> list[tuple[list[str], list[str]]]:
    """Split preprocessed fra-eng text into (English tokens, French tokens) pairs.

    Lines are tab-separated (English, French[, attribution]); tokens are split at
    spaces, and empty tokens (from double or trailing spaces) are dropped, as d2l
    1.0.3's ``MTFraEng._tokenize`` drops them (which also appends ``<eos>``; we do not).
    Lines without both sides are skipped.
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize_fra_eng expects the preprocessed text as a str, got {type(text).__name__}")
    pairs = []
    for line in text.split("\n"):
        parts = line.split("\t")
        if len(parts) < 2:
            continue
        src = [t for t in parts[0].split(" ") if t]
        tgt = [t for t in parts[1].split(" ") if t]
        if src and tgt:
            pairs.append((src, tgt))
    return pairs


def read_fra_eng(folder: Path, max_pairs: int | None = None) -> list[tuple[list[str], list[str]]]:
    """Token pairs from fra-eng/fra.txt (tab-separated English, French, attribution); the first ``max_pairs``."""
    if max_pairs is not None and (not isinstance(max_pairs, int) or isinstance(max_pairs, bool) or max_pairs < 0):
        raise ValueError(f"max_pairs must be None or an int >= 0, got {max_pairs!r}")
    path = Path(folder) / "fra-eng" / "fra.txt"
    if not path.is_file():
        raise ValueError(f"{path} not found: extract fra-eng.zip into {folder} first")
    pairs = tokenize_fra_eng(preprocess_fra_eng(path.read_text(encoding="utf-8")))
    return pairs if max_pairs is None else pairs[:max_pairs]


WIKITEXT2_SPLITS = ("train", "valid", "test")


def _check_wikitext2_split(split: object) -> None:
    if split not in WIKITEXT2_SPLITS:
        raise ValueError(f"unknown WikiText-2 split {split!r}; expected one of {WIKITEXT2_SPLITS}")


def read_wikitext2(folder: Path, split: str = "train") -> list[list[str]]:
    """Paragraphs of at least two sentences, each a list of lower-case sentences (as d2l does for BERT).

    ``split``: "train", "valid" or "test".
    """
    _check_wikitext2_split(split)
    path = Path(folder) / "wikitext-2" / f"wiki.{split}.tokens"
    if not path.is_file():
        raise ValueError(f"{path} not found: extract wikitext-2-v1.zip into {folder} first")
    paragraphs = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        sentences = [s.strip() for s in re.split(r" \. ", line.strip().lower()) if s.strip()]
        if len(sentences) >= 2:
            paragraphs.append(sentences)
    return paragraphs


def load_fra_eng(max_pairs: int | None = None, folder: Path | None = None) -> list[tuple[list[str], list[str]]]:
    """Fetch (or find in the cache), verify, extract and read the English-French pairs."""
    folder = Path(folder) if folder is not None else cache_dir()
    return read_fra_eng(extract(fetch("fra-eng", folder), folder), max_pairs)


def load_wikitext2(split: str = "train", folder: Path | None = None) -> list[list[str]]:
    """Fetch (or find in the cache), verify, extract and read a WikiText-2 split ("train", "valid" or "test")."""
    _check_wikitext2_split(split)  # before any download
    folder = Path(folder) if folder is not None else cache_dir()
    return read_wikitext2(extract(fetch("wikitext-2", folder), folder), split)
