"""A folder of PNG images, one subfolder per class::

    root/Center/a.png  root/Edge-Loc/b.png  root/none/c.png ...

Class names are the subfolder names. When every subfolder names a class of
``contract.spec.WAFER_CLASSES`` (case, '_' and ' ' vs '-' ignored, so
``edge_loc`` is Edge-Loc), labels index WAFER_CLASSES; otherwise they index
the sorted subfolder names (or the ``classes`` passed in). Images are read as
grayscale uint8 (pillow mode 'L'; a 16-bit PNG is scaled to 8 bits, an alpha
channel dropped). A file that cannot be read, or is empty, becomes an error
record and the others still load.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract.spec import WAFER_CLASSES

EXTENSIONS = (".png",)


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


@dataclass
class PngDir:
    """``images``: a list of 2-D uint8 arrays (sizes may differ) or, with
    ``size``, uint8 [N][size][size][1] model input. ``labels``: int64 [N]
    into ``classes``. ``paths``: one per image. ``errors``: (path, reason)."""

    images: object
    labels: np.ndarray
    classes: tuple[str, ...]
    paths: list[Path]
    errors: list[tuple[Path, str]] = field(default_factory=list)


def class_names(root, classes=None) -> tuple[tuple[str, ...], dict[str, int]]:
    """(class tuple, subfolder name -> label index)."""
    folders = sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"{root}: no class subfolders")
    if classes is not None:
        canon = {_norm(c): i for i, c in enumerate(classes)}
        missing = [f for f in folders if _norm(f) not in canon]
        if missing:
            raise ValueError(f"{root}: subfolders {missing} are not among the classes {list(classes)}")
        return tuple(classes), {f: canon[_norm(f)] for f in folders}
    canon = {_norm(c): i for i, c in enumerate(WAFER_CLASSES)}
    if all(_norm(f) in canon for f in folders):
        return WAFER_CLASSES, {f: canon[_norm(f)] for f in folders}
    return tuple(folders), {f: i for i, f in enumerate(folders)}


def read_gray(path) -> np.ndarray:
    """One image as 2-D uint8; ValueError with the reason when it cannot be."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(im, dtype=np.int64)
                top = 65535 if im.mode.startswith("I;16") else max(int(a.max()), 1)
                a = (a * 255 + top // 2) // top
                return np.clip(a, 0, 255).astype(np.uint8)
            a = np.asarray(im.convert("L"))
    except UnidentifiedImageError:
        raise ValueError("not a readable image") from None
    except (OSError, SyntaxError) as e:
        # pillow reports truncated/corrupt data as OSError (SyntaxError for bad chunks)
        raise ValueError(f"corrupt image: {e}") from None
    if a.size == 0:
        raise ValueError("empty image")
    return a


def load(root, classes=None, size: int | None = None) -> PngDir:
    """Every ``*.png`` one level below ``root``, sorted by class then name."""
    root = Path(root)
    names, index = class_names(root, classes)
    images, labels, paths, errors = [], [], [], []
    for folder in sorted(index):
        for path in sorted((root / folder).iterdir()):
            if path.suffix.lower() not in EXTENSIONS or not path.is_file():
                continue
            try:
                if path.stat().st_size == 0:
                    raise ValueError("empty file")
                img = read_gray(path)
            except ValueError as e:
                errors.append((path, str(e)))
                continue
            images.append(img)
            labels.append(index[folder])
            paths.append(path)
    if size is not None:
        from contract.preprocess import to_model_input

        images = np.stack([to_model_input(m, size) for m in images]) if images else \
            np.zeros((0, size, size, 1), np.uint8)
    return PngDir(images, np.asarray(labels, dtype=np.int64), names, paths, errors)


def save(root, images, labels, classes) -> list[Path]:
    """Write 2-D uint8 ``images`` as ``root/<class>/<i>.png``; returns the paths."""
    from PIL import Image

    out = []
    for i, (img, k) in enumerate(zip(images, labels)):
        d = Path(root) / classes[int(k)]
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{i:06d}.png"
        Image.fromarray(np.asarray(img, dtype=np.uint8)).save(p)
        out.append(p)
    return out
