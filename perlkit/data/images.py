"""Listing and opening image files without assuming an extension."""

from __future__ import annotations

import os
import warnings

from PIL import Image

from .core import DatasetError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(ext.lower() for ext in Image.registered_extensions())


def is_image_name(name: str) -> bool:
    """True for a non-hidden file name whose extension PIL can read (real data is .jpg, synthetic .png)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(folder: str | os.PathLike) -> list[str]:
    """Sorted names of the image files directly inside ``folder``.

    Sorted (unlike Dassl's unsorted ``listdir``) so that few-shot samples do not depend on the file system.
    """
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if is_image_name(e.name) and e.is_file())


def list_subdirs(folder: str | os.PathLike) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``folder`` (class folders in the ImageNet layouts)."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())


def image_problem(path: str | os.PathLike) -> str | None:
    """Return why ``path`` cannot be decoded as an image, or None when it decodes fully.

    Decodes the whole file (not just the header) so that truncated files are caught before training.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
    except FileNotFoundError:
        return "file not found"
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        return f"{type(exc).__name__}: {exc}"
    return None


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open ``path`` as an RGB image, or raise DatasetError naming the file and the way around it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return img.convert("RGB")
    except Exception as exc:
        raise DatasetError(
            f"cannot read image {os.fspath(path)} ({type(exc).__name__}: {exc}); replace the file from the "
            "original dataset archive, or pass --skip-corrupt (skip_corrupt=True) to skip it with a warning"
        ) from exc
