"""Find a dataset on disk, or download, verify and unpack it: never leaving a half-written dataset behind.

Why so careful: a killed or failed download that leaves a partial folder would later be found "present"
and silently train on part of a dataset. So every file is streamed to a staging folder beside the target,
checked (sha256/md5, else size), unpacked there, and only then moved into place with renames. Offline or
on any network error the user gets one line naming the dataset, every place looked in, the URL and the fix.

``requests`` and ``tqdm`` are imported lazily: the offline path (the dataset is on disk) must stay instant.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from study.data.datasets import DatasetSpec, Download
from study.errors import DatasetUnavailableError

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 30.0


def locate(spec: DatasetSpec, data_dirs: list[Path]) -> Path | None:
    """The dataset's folder in the first data directory that holds all its required files, else None."""
    if spec.root is not None:
        return spec.root if spec.is_present(spec.root) else None
    for d in data_dirs:
        root = Path(d) / spec.folder
        if spec.is_present(root):
            return root
    return None


def _looked_in(spec: DatasetSpec, data_dirs: list[Path]) -> str:
    if spec.root is not None:
        return str(spec.root)
    return ", ".join(str(Path(d) / spec.folder) for d in data_dirs) or "(no data directories)"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"


def fetch(
    spec: DatasetSpec,
    data_dirs: list[Path],
    download_dir: Path,
    allow_download: bool = True,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    session: Any = None,
    progress: bool | None = None,
) -> Path:
    """Return the dataset's folder; download it into ``download_dir/<folder>`` when it is nowhere on disk.

    ``session`` (a ``requests.Session``-like object) and ``timeout`` exist for tests and slow links;
    ``progress=None`` shows a tqdm bar only on a terminal.
    """
    found = locate(spec, data_dirs)
    if found is not None:
        return found
    looked = _looked_in(spec, data_dirs)
    fix = f"put the dataset at <dir>/{spec.folder} and set TRANSFER_STUDY_DATA=<dir>"
    if not spec.downloads:
        raise DatasetUnavailableError(
            f"dataset {spec.name!r} not found (looked in: {looked}) and it has no download "
            f"(source: {spec.homepage or 'unknown'}); {fix}"
        )
    if not allow_download:
        raise DatasetUnavailableError(
            f"dataset {spec.name!r} not found (looked in: {looked}) and downloads are disabled "
            f"(would fetch {spec.downloads[0].url}); {fix}, or allow downloads"
        )
    target = Path(download_dir) / spec.folder
    try:
        Path(download_dir).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.partial-", dir=download_dir))
    except OSError as exc:
        raise DatasetUnavailableError(
            f"dataset {spec.name!r} not found (looked in: {looked}) and the download folder {download_dir} "
            f"is not writable ({_one_line(exc)}); set TRANSFER_STUDY_DATA to a writable folder"
        ) from None
    try:
        for dl in spec.downloads:
            _fetch_one(spec, dl, staging, looked, timeout=timeout, session=session, progress=progress)
        if not spec.is_present(staging):
            missing = [p for p in spec.required_paths() if not (staging / p).exists()]
            raise DatasetUnavailableError(
                f"dataset {spec.name!r} was downloaded from {spec.downloads[0].url} but lacks {missing}; "
                "the archive layout changed upstream, so please report it (or place the data by hand)"
            )
        _commit(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _commit(staging: Path, target: Path) -> None:
    """Move a complete staging folder into place: one rename when the target is new, else per entry."""
    if not target.exists():
        os.replace(staging, target)
        return
    for entry in staging.iterdir():
        dest = target / entry.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(entry, dest)


def _fetch_one(
    spec: DatasetSpec,
    dl: Download,
    staging: Path,
    looked: str,
    *,
    timeout: float,
    session: Any,
    progress: bool | None,
) -> None:
    """Download one file (trying mirrors), verify it, and unpack it into ``staging`` if it is an archive."""
    part = staging / f".{dl.filename}.part"
    errors: list[str] = []
    for url in (dl.url, *dl.mirrors):
        try:
            _download(url, part, timeout=timeout, session=session, progress=progress)
        except OSError as exc:  # requests' exceptions are OSErrors too
            part.unlink(missing_ok=True)
            errors.append(_one_line(exc))
            continue
        verify(part, dl, url)
        break
    else:
        mirrors = f" and {len(dl.mirrors)} mirror(s)" if dl.mirrors else ""
        raise DatasetUnavailableError(
            f"dataset {spec.name!r} not found (looked in: {looked}) and downloading {dl.url}{mirrors} failed "
            f"({errors[0]}); go online, or put the dataset at <dir>/{spec.folder} and set TRANSFER_STUDY_DATA=<dir>"
        )
    if dl.extract:
        extract(part, staging, dl.archive_root, name=dl.filename)
        part.unlink()
    else:
        os.replace(part, staging / dl.filename)


def _download(url: str, dest: Path, *, timeout: float, session: Any, progress: bool | None) -> None:
    """Stream ``url`` to ``dest`` with a progress bar (``file://`` URLs are read directly)."""
    if url.startswith("file://"):
        src = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
        with open(src, "rb") as fin, open(dest, "wb") as fout:
            shutil.copyfileobj(fin, fout, CHUNK)
        return
    import requests

    sess = session if session is not None else requests.Session()
    with sess.get(url, stream=True, timeout=(min(timeout, 10.0), timeout)) as resp:
        resp.raise_for_status()
        total = int(resp.headers.get("content-length") or 0) or None
        chunks: Iterator[bytes] = resp.iter_content(CHUNK)
        _write(chunks, dest, total, os.path.basename(urllib.parse.urlparse(url).path) or url, progress)


def _write(chunks: Iterator[bytes], dest: Path, total: int | None, label: str, progress: bool | None) -> None:
    from tqdm import tqdm

    with (
        open(dest, "wb") as fout,
        tqdm(
            total=total, unit="B", unit_scale=True, desc=label, disable=None if progress is None else not progress
        ) as bar,
    ):
        for chunk in chunks:
            if chunk:
                fout.write(chunk)
                bar.update(len(chunk))


def file_digest(path: Path, algo: str) -> str:
    """Hex digest of a file, read in chunks (datasets are too big to read at once)."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, dl: Download, url: str | None = None) -> None:
    """Check a downloaded file against its published sha256/md5 (else its size); delete it on mismatch."""
    checks: list[tuple[str, str, Callable[[], str]]] = []
    if dl.sha256:
        checks.append(("sha256", dl.sha256.lower(), lambda: file_digest(path, "sha256")))
    elif dl.md5:
        checks.append(("md5", dl.md5.lower(), lambda: file_digest(path, "md5")))
    if dl.size is not None:
        checks.append(("size", str(dl.size), lambda: str(path.stat().st_size)))
    for kind, expected, actual_fn in checks:
        actual = actual_fn()
        if actual != expected:
            path.unlink(missing_ok=True)
            raise DatasetUnavailableError(
                f"checksum mismatch for {url or dl.url} ({dl.filename}): expected {kind} {expected}, got {actual}; "
                "the file was discarded: retry the download, and report it if it persists"
            )


def _member_target(name: str, archive_root: str) -> PurePosixPath | None:
    """Where an archive member goes relative to the dataset folder; None to skip it (outside root, unsafe)."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    root = PurePosixPath(archive_root).parts if archive_root else ()
    if tuple(parts[: len(root)]) != root:
        return None
    rel = parts[len(root) :]
    if not rel or any(p in ("..", "") or p.startswith("/") for p in rel) or name.startswith("/"):
        return None
    if rel[0] in ("__MACOSX",) or rel[-1] in (".DS_Store",):
        return None
    return PurePosixPath(*rel)


def extract(archive: Path, dest: Path, archive_root: str = "", *, name: str | None = None) -> None:
    """Unpack a zip or tar(.gz) into ``dest``, keeping only members under ``archive_root`` (prefix removed).

    Member paths are sanitised (no absolute paths, no ``..``) because archives come from the network.
    """
    label = name or archive.name
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    rel = _member_target(info.filename, archive_root)
                    if rel is None or info.is_dir():
                        continue
                    out = dest / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                for member in tf:
                    rel = _member_target(member.name, archive_root)
                    if rel is None or not member.isfile():
                        continue
                    out = dest / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    src = tf.extractfile(member)
                    if src is None:
                        continue
                    with src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
        else:
            raise DatasetUnavailableError(f"downloaded file {label} is neither a zip nor a tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetUnavailableError(f"cannot unpack {label}: {_one_line(exc)}; delete it and retry") from None
