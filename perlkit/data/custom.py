"""Readers for a user's own images: an image folder (one sub-folder a class) or a CSV (``path,label[,split]``).

They produce the same :class:`DatasetSplits` as the benchmark readers, so few-shot sampling (``sample_fewshot``), the
base/novel split (``subsample_classes``), the loaders and the one training loop apply unchanged. Without given splits,
a seeded stratified train/val/test split (Dassl's ``read_and_split_data`` ratios: 50 % / 20 % / 30 % per class) is
written once in the ``split_zhou_*.json`` format, next to the data (or in the cache when that folder is read-only), and
reused by every later call, so the test images never change behind a user's back.

Image folder::

    DIR/<class folder>/<image files>      folder name = class name (underscores read as spaces, as CoOp does)
    DIR/classnames.txt                    optional renames, one "folder<TAB or space>class name" a line
    DIR/classnames.json                   ... or {"folder": "class name"}
    DIR/split_perlkit.json                written by perlkit (delete it to draw a new split)

CSV: a header ``path,label[,split]`` (or rows with 2 or 3 fields), paths relative to the CSV's folder, ``split`` one of
train / val / test for every row or for none; renames as above, next to the CSV, keyed by label.

Files with other extensions are ignored in a folder, as the benchmark readers do; a file with an image extension
that PIL cannot identify, an empty class folder, a single class or two classes with one name after renaming are
errors naming the culprit. Only the image header is read here (cheap on every call); an image truncated past its
header is named by the loader when training reaches it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image

from perlkit.files import StoreError, atomic_write_json, cache_root

from .core import DatasetError, DatasetSplits, Datum
from .images import is_image_name, list_images, list_subdirs
from .prompts import clean_classname, format_prompts
from .registry import SINGLE_TEMPLATE

SPLIT_FILE = "split_perlkit.json"
SPLIT_FORMAT = "perlkit-split/1"
#: Dassl's ``read_and_split_data`` defaults (p_trn, p_val); the rest of each class is the test split
SPLIT_RATIOS: tuple[float, float] = (0.5, 0.2)
#: the seed of the stratified split: fixed, so that every training seed is tested on the same images
SPLIT_SEED = 0
RENAME_FILES: tuple[str, ...] = ("classnames.txt", "classnames.json")
#: folders perlkit itself may write inside a dataset folder, never classes
RESERVED_FOLDERS: frozenset[str] = frozenset({"split_fewshot"})
SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_TEMPLATE = SINGLE_TEMPLATE


# ----------------------------------------------------------------------------------------------- listing
def _rel(path: str | os.PathLike, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _check_header(path: Path, where: str) -> None:
    """Refuse a file with an image extension that PIL cannot identify (a renamed text file, an HTML error page)."""
    try:
        with Image.open(path) as img:
            img.size  # noqa: B018  (identifying the format is enough here)
    except FileNotFoundError as err:
        raise DatasetError(f"{where}image {path} not found") from err
    except Exception as err:  # PIL raises many types for a file it cannot identify
        raise DatasetError(
            f"{where}{path} has an image extension but is not a readable image ({type(err).__name__}: {err}); "
            "replace or remove the file"
        ) from err


def read_renames(folder: Path, known: Sequence[str]) -> tuple[dict[str, str], Path | None]:
    """Renames ``{folder or label: class name}`` from ``classnames.txt`` or ``classnames.json`` in ``folder``.

    Exists so that folder names such as ``n02085620`` or ``cls_07`` can become words CLIP's text encoder knows.
    """
    present = [folder / name for name in RENAME_FILES if (folder / name).is_file()]
    if not present:
        return {}, None
    if len(present) > 1:
        raise DatasetError(f"both {present[0]} and {present[1]} rename the classes; keep one of them")
    path = present[0]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from err
    renames: dict[str, str] = {}
    if path.suffix == ".json":
        try:
            table = json.loads(text)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path} is not valid JSON ({err}); it must be an object {{folder: name}}") from err
        if not isinstance(table, dict) or not all(isinstance(v, str) and v.strip() for v in table.values()):
            raise DatasetError(f"{path} must be a JSON object {{folder: class name}} with non-empty string names")
        renames = {str(k): v.strip() for k, v in table.items()}
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            key, sep, name = line.strip().partition("\t" if "\t" in line else " ")
            if not sep or not name.strip():
                raise DatasetError(f"{path}:{lineno}: expected 'folder<TAB or space>class name', got {line.strip()!r}")
            if key in renames:
                raise DatasetError(f"{path}:{lineno}: {key!r} is renamed twice")
            renames[key] = name.strip()
    unknown = sorted(set(renames) - set(known))
    if unknown:
        raise DatasetError(
            f"{path} renames {unknown[0]!r}, which is not a class of the data ({len(unknown)} unknown); "
            f"classes found: {', '.join(sorted(known)[:10])}{' ...' if len(known) > 10 else ''}"
        )
    return renames, path


def _class_names(keys: Sequence[str], renames: dict[str, str], renames_file: Path | None, where: Path) -> list[str]:
    """Cleaned class names of ``keys`` (folders or CSV labels), refusing two classes that end up with one name."""
    names = [clean_classname(renames.get(k, k)) for k in keys]
    seen: dict[str, str] = {}
    for key, name in zip(keys, names, strict=True):
        if not name:
            raise DatasetError(f"class {key!r} in {where} has an empty name; rename it")
        folded = name.casefold()
        if folded in seen:
            by = f" after renaming by {renames_file}" if renames_file else ""
            raise DatasetError(
                f"classes {seen[folded]!r} and {key!r} in {where} both have the class name {name!r}{by}; "
                "give them different names"
            )
        seen[folded] = key
    if len(keys) < 2:
        found = f"only class {keys[0]!r}" if keys else "no class"
        raise DatasetError(f"{where}: found {found}; classification needs at least 2 classes")
    return names


def _scan_folder(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class folders (sorted, i.e. the labels) and (relative image path, label) pairs of an image folder."""
    folders = [f for f in list_subdirs(root) if f not in RESERVED_FOLDERS]
    if not folders:
        raise DatasetError(
            f"{root} holds no class folders; put the images of each class in a sub-folder named after the class "
            "(DIR/cat/*.jpg, DIR/dog/*.jpg), or give a CSV file path,label"
        )
    items: list[tuple[str, int]] = []
    for label, folder in enumerate(folders):
        images = list_images(root / folder)
        if not images:
            raise DatasetError(
                f"class folder {root / folder} holds no images (files with an image extension; sub-folders are not "
                "searched); add images or remove the folder"
            )
        for name in images:
            _check_header(root / folder / name, "")
            items.append((f"{folder}/{name}", label))
    return folders, items


def _scan_csv(path: Path) -> tuple[list[str], list[tuple[str, int]], dict[str, str] | None]:
    """Labels (sorted), (relative path, label) pairs and, when the CSV has a split column, each path's split."""
    root = path.parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            rows = [(reader.line_num, row) for row in reader]  # line_num: the row's line, as a spreadsheet shows it
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"cannot read CSV {path}: {err}") from err
    rows = [(n, [c.strip() for c in row]) for n, row in rows if any(c.strip() for c in row)]
    if not rows:
        raise DatasetError(f"CSV {path} is empty; expected rows path,label[,split]")
    head = [c.lower() for c in rows[0][1]]
    if head[:2] == ["path", "label"]:
        columns = {name: head.index(name) for name in ("path", "label", "split") if name in head}
        width = len(head)
        rows = rows[1:]
    else:
        columns = {"path": 0, "label": 1, "split": 2}
        width = len(rows[0][1])
        if width not in (2, 3):
            raise DatasetError(f"CSV {path} row {rows[0][0]}: expected path,label[,split] or a header row "
                               f"'path,label[,split]', got {rows[0][1]}")
        if width == 2:
            del columns["split"]
    raw: list[tuple[int, str, str, str | None]] = []
    for n, row in rows:
        if len(row) != width:
            raise DatasetError(f"CSV {path} row {n}: expected {width} fields like the first row, got {len(row)}: {row}")
        rel, label = row[columns["path"]], row[columns["label"]]
        split = row[columns["split"]].lower() if "split" in columns else None
        if not rel or not label:
            raise DatasetError(f"CSV {path} row {n}: empty {'path' if not rel else 'label'}")
        if split is not None and split not in SPLITS:
            raise DatasetError(
                f"CSV {path} row {n}: split {split or '(empty)'!r} is not one of {', '.join(SPLITS)} (the CSV has a "
                "split column, so every row needs one)"
            )
        raw.append((n, rel, label, split))
    if not raw:
        raise DatasetError(f"CSV {path} has a header but no rows")
    labels = sorted({label for _, _, label, _ in raw})
    index = {label: i for i, label in enumerate(labels)}
    items: list[tuple[str, int]] = []
    given: dict[str, str] = {}
    first_row: dict[str, int] = {}
    for n, rel, label, split in raw:
        file = Path(rel) if os.path.isabs(rel) else root / rel
        if not is_image_name(file.name):
            raise DatasetError(f"CSV {path} row {n}: {rel!r} is not an image file name (extension {file.suffix!r})")
        if not file.is_file():
            raise DatasetError(f"CSV {path} row {n}: image {rel!r} not found (looked for {file})")
        _check_header(file, f"CSV {path} row {n}: ")
        key = _rel(os.path.normpath(file), root)
        if key in first_row:
            raise DatasetError(f"CSV {path} rows {first_row[key]} and {n} both list image {rel!r}; keep one")
        first_row[key] = n
        items.append((key, index[label]))
        if split is not None:
            given[key] = split
    return labels, items, (given if "split" in columns else None)


# ----------------------------------------------------------------------------------------------- splits
def stratified_split(items: Sequence[tuple[str, int]], classnames: Sequence[str], where: Path,
                     seed: int = SPLIT_SEED) -> dict[str, list[str]]:
    """Per class: shuffle (one ``random.Random(seed)``, classes in label order), then 50 % train, 20 % val, rest test.

    The counts round as Dassl's ``read_and_split_data`` does; every class needs an image in each split (4 at least).
    """
    rng = random.Random(seed)
    by_label: dict[int, list[str]] = {}
    for rel, label in items:
        by_label.setdefault(label, []).append(rel)
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    p_train, p_val = SPLIT_RATIOS
    for label in sorted(by_label):
        paths = sorted(by_label[label])
        rng.shuffle(paths)
        n_train, n_val = round(len(paths) * p_train), round(len(paths) * p_val)
        if min(n_train, n_val, len(paths) - n_train - n_val) < 1:
            raise DatasetError(
                f"class {classnames[label]!r} in {where} has {len(paths)} image(s); a train/val/test split needs at "
                "least 4 a class: add images, or give the split yourself in a CSV (path,label,split)"
            )
        out["train"] += paths[:n_train]
        out["val"] += paths[n_train:n_train + n_val]
        out["test"] += paths[n_train + n_val:]
    return out


def _source(data: str | os.PathLike) -> Path:
    path = Path(data).expanduser()
    if not path.exists():
        raise DatasetError(f"data {path} does not exist; give an image folder (one sub-folder a class) or a CSV file")
    if path.is_file() and path.suffix.lower() != ".csv":
        raise DatasetError(f"data {path} is a file but not a .csv; give an image folder or a CSV path,label[,split]")
    return path.resolve()


def data_name(data: str | os.PathLike) -> str:
    """A short name for the data (the folder's name, or the CSV's stem), safe in file names."""
    path = Path(data).expanduser().resolve()
    stem = path.stem if path.suffix.lower() == ".csv" else path.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "data"


def split_locations(data: str | os.PathLike) -> tuple[Path, Path]:
    """Where the split of ``data`` is written: next to the data first, else in the cache (read-only data)."""
    path = _source(data)
    name = SPLIT_FILE if path.is_dir() else f"split_perlkit_{path.stem}.json"
    beside = (path if path.is_dir() else path.parent) / name
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    return beside, cache_root() / "splits" / f"{data_name(path)}-{digest}" / name


def own_split_file(data: str | os.PathLike) -> Path | None:
    """The split file in use for ``data`` (next to it, else in the cache), or None before the first call."""
    return next((p for p in split_locations(data) if p.is_file()), None)


def _read_split(path: Path, listing: dict[str, int]) -> dict[str, list[str]]:
    """The split file's image lists, refused when they no longer match the images of the data."""
    fix = f"delete {path} to draw a new split (the test images will change)"
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"split file {path} is unreadable ({err}); {fix}") from err
    if not isinstance(payload, dict) or any(not isinstance(payload.get(s), list) for s in SPLITS):
        raise DatasetError(f"split file {path} must hold lists 'train', 'val' and 'test'; {fix}")
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    for split in SPLITS:
        rels = []
        for i, entry in enumerate(payload[split]):
            if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)):
                raise DatasetError(f"split file {path}: {split}[{i}] = {entry!r} is not [path, label, name]; {fix}")
            if entry[0] in seen:
                raise DatasetError(f"split file {path} lists {entry[0]!r} twice; {fix}")
            seen.add(entry[0])
            rels.append(entry[0])
        out[split] = rels
    gone = [rel for rel in (r for s in SPLITS for r in out[s]) if rel not in listing]
    if gone:
        raise DatasetError(
            f"split file {path} is stale: {len(gone)} image(s) it lists no longer exist in the data "
            f"(first: {gone[0]}); {fix}"
        )
    new = sorted(set(listing) - seen)
    if new:
        raise DatasetError(
            f"split file {path} is stale: the data holds {len(new)} image(s) it does not list (first: {new[0]}); {fix}"
        )
    return out


def _write_split(data: Path, split: dict[str, list[str]], listing: dict[str, int], classnames: list[str]) -> Path:
    payload: dict[str, object] = {
        s: [[rel, listing[rel], classnames[listing[rel]]] for rel in split[s]] for s in SPLITS
    }
    payload["perlkit"] = {"format": SPLIT_FORMAT, "seed": SPLIT_SEED, "ratios": list(SPLIT_RATIOS),
                          "source": data.name}
    beside, cached = split_locations(data)
    try:
        return atomic_write_json(beside, payload)
    except StoreError:  # a read-only data folder: keep the split in the cache instead
        return atomic_write_json(cached, payload)


# ----------------------------------------------------------------------------------------------- the reader
def load_own_data(data: str | os.PathLike, template: str = DEFAULT_TEMPLATE) -> DatasetSplits:
    """Read an image folder or CSV as train / val / test lists, exactly like a benchmark.

    Exists so that ``perlkit fit`` trains on a user's images through the very path the benchmarks take. Labels are
    the class folders (or CSV labels) in sorted order; the split is the CSV's, else the stored ``split_perlkit.json``,
    else a new seeded stratified one that is stored for next time.
    """
    format_prompts(["x"], template)  # a template without exactly one {} fails here, before any reading
    path = _source(data)
    root = path if path.is_dir() else path.parent
    given = None
    try:
        if path.is_dir():
            keys, items = _scan_folder(path)
        else:
            keys, items, given = _scan_csv(path)
    except PermissionError as err:
        raise DatasetError(f"cannot read {err.filename or path}: permission denied; make it readable") from err
    renames, renames_file = read_renames(root, keys)
    classnames = _class_names(keys, renames, renames_file, path)
    listing = dict(items)
    if given is not None:
        split = {s: [rel for rel, _ in items if given[rel] == s] for s in SPLITS}
        if not split["test"] or not split["train"]:
            raise DatasetError(f"CSV {path} gives no {'test' if not split['test'] else 'train'} rows; "
                               "mark some rows train and some test (or drop the split column)")
    elif (stored := own_split_file(path)) is not None:
        split = _read_split(stored, listing)
    else:
        split = stratified_split(items, classnames, path)
        _write_split(path, split, listing, classnames)

    def as_data(rels: list[str]) -> list[Datum]:
        return [Datum(os.path.normpath(root / rel), listing[rel], classnames[listing[rel]]) for rel in rels]

    return DatasetSplits(name=data_name(path), root=str(root), classnames=classnames, train=as_data(split["train"]),
                         val=as_data(split["val"]), test=as_data(split["test"]), template=template)


def require_shots(splits: DatasetSplits, shots: int) -> None:
    """Refuse a K-shot run when a class has fewer than K training images.

    Dassl would silently draw the missing shots again with replacement; on a user's own data that usually means a
    class was forgotten, so perlkit says which one and how many images it has.
    """
    counts: dict[int, int] = {label: 0 for label in range(splits.num_classes)}
    for d in splits.train:
        counts[d.label] += 1
    short = [(n, label) for label, n in counts.items() if n < shots]
    if short:
        n, label = min(short)
        total = sum(1 for d in (*splits.train, *splits.val, *splits.test) if d.label == label)
        if n == 0:
            raise DatasetError(f"class {splits.classnames[label]!r} of {splits.root} has no training image (of "
                               f"{total}); mark some of its images train")
        raise DatasetError(
            f"class {splits.classnames[label]!r} of {splits.root} has {n} training image(s) (of {total}; the rest "
            f"are held out for validation and test), fewer than --shots {shots}: pass --shots {n} or fewer, "
            f"or add images ({len(short)} class(es) short)"
        )


def write_image_folder(items: Iterable[Datum], dest: str | os.PathLike, classes: Sequence[str] | None = None,
                       per_class: int | None = None) -> Path:
    """Copy labelled images into the image-folder layout (``dest/<class name>/<file>``), e.g. from a benchmark split.

    Exists so that a chapter or a test can make an "own data" folder out of any reader's output in one call. The
    first ``per_class`` images of each class in ``classes`` (all classes when None) are copied; a ``dest`` that
    already holds other class folders or images is refused rather than mixed.
    """
    dest = Path(dest)
    chosen: dict[str, list[Datum]] = {}
    for d in items:
        if classes is None or d.classname in classes:
            group = chosen.setdefault(d.classname, [])
            if per_class is None or len(group) < per_class:
                group.append(d)
    missing = [c for c in classes or [] if c not in chosen]
    if missing:
        raise DatasetError(f"no images of class(es) {', '.join(map(repr, missing))} to write")
    plan = {f"{name.replace(os.sep, '-')}/{Path(d.impath).name}": d.impath
            for name, group in chosen.items() for d in group}
    if dest.is_dir():
        folders = [f for f in list_subdirs(dest) if f not in RESERVED_FOLDERS]
        present = {f"{f}/{n}" for f in folders for n in list_images(dest / f)}
        extra = sorted(set(folders) - {rel.split("/")[0] for rel in plan}) or sorted(present - set(plan))
        if extra:
            raise DatasetError(f"{dest} already holds {extra[0]!r}, which is not part of this folder; use an empty one")
    for rel, src in plan.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest / rel)
    return dest
