"""A task folder's images, loose (`images/...`) or packed into one `images.zip` beside that folder.

Ingest packs them. DVC then hashes one file per task instead of one per image: a no-op `dvc repro` over 29k loose
images spent 6.5 of its 8.5 s hashing them, and a remote push or pull moves one object per task instead of
thousands. Records keep their paths (`images/train_00001.png`). Readers resolve such a path with `read_image_bytes`,
which reads the loose file when there is one and the pack's member otherwise, so folders a user or a test writes by
hand keep working."""

from __future__ import annotations

import threading
import zipfile
from functools import lru_cache
from pathlib import Path

IMAGES_DIR = "images"
PACK = IMAGES_DIR + ".zip"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip timestamps pinned: the same images give the same bytes on any machine


def pack_images(folder: Path) -> int:
    """Move `folder/images/**` into `folder/images.zip` (stored uncompressed, PNGs already are; sorted; fixed
    timestamps) and return how many files it holds. A folder whose images/ holds anything but regular files (a
    symlink ingest kept for validation to reject) is left loose, so validation still names those rows."""
    folder = Path(folder)
    loose = folder / IMAGES_DIR
    if not loose.is_dir():
        return 0
    entries = sorted(loose.rglob("*"))
    if any(p.is_symlink() or not (p.is_file() or p.is_dir()) for p in entries):
        return 0
    files = [p for p in entries if p.is_file()]
    tmp = folder / (PACK + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as pack:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(loose).as_posix(), date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            pack.writestr(info, path.read_bytes())
    tmp.replace(folder / PACK)
    for path in reversed(entries):  # files first, then their (now empty) folders
        path.unlink() if path.is_file() else path.rmdir()
    loose.rmdir()
    return len(files)


def _packed(path: Path) -> tuple[Path, str] | None:
    """(pack, member) holding `path` when it lies under an `images/` folder whose pack exists. The nearest such
    folder is not always the packed one: an imported batch keeps its own `images/` inside the task's
    (`images/images/x.png`), so every `images` ancestor is tried."""
    for parent in Path(path).parents:
        if parent.name == IMAGES_DIR:
            pack = parent.with_name(PACK)
            if pack.is_file():
                return pack, Path(path).relative_to(parent).as_posix()
    return None


class _Pack:
    """An open pack and its member names. zipfile reads members of one open file under its own lock, so threads
    (the HTTP server's, a data loader's) share it."""

    def __init__(self, path: Path):
        self.zip = zipfile.ZipFile(path)
        self.names = frozenset(self.zip.namelist())
        self.lock = threading.Lock()

    def read(self, member: str) -> bytes:
        with self.lock:
            return self.zip.read(member)


@lru_cache(maxsize=64)
def _open_pack(path: str, mtime_ns: int, size: int) -> _Pack:  # keyed by stat: a rewritten pack is reopened
    return _Pack(Path(path))


def _pack_at(pack: Path) -> _Pack:
    st = pack.stat()
    return _open_pack(str(pack.resolve()), st.st_mtime_ns, st.st_size)


def _member(path: Path) -> tuple[_Pack, str] | None:
    """The open pack and member name holding `path`, when its folder's pack has it."""
    found = _packed(path)
    if found is None:
        return None
    pack = _pack_at(found[0])
    return (pack, found[1]) if found[1] in pack.names else None


def image_exists(path: Path) -> bool:
    """Whether a record's image path names a loose file or a packed member."""
    return Path(path).is_file() or _member(path) is not None


def read_image_bytes(path: Path) -> bytes:
    """The bytes of a record's image: the loose file, else the pack's member. FileNotFoundError names `path`."""
    path = Path(path)
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        pass
    member = _member(path)
    if member is None:
        raise FileNotFoundError(f"{path}: no such image (neither a file nor in its folder's {PACK})")
    pack, name = member
    return pack.read(name)
