"""Readers for the 15 CoOp/Dassl dataset folders, exactly as they lie on disk.

Each reader turns one dataset folder into train / val / test lists of :class:`Datum` with the labels CoOp
assigns. Structural problems (missing folders or split files, malformed lines, unknown classes) raise
:class:`DatasetError`; size problems are compared against the expected counts by :func:`load_dataset`.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from .core import DatasetError, DatasetSplits, Datum
from .images import list_images, list_subdirs
from .prompts import clean_classname, get_template
from .registry import (
    DISPLAY_NAMES,
    EXPECTED_FILE,
    PUBLISHED_COUNTS,
    SPECS,
    Expected,
    Spec,
    canonical_name,
)

ENV_VAR = "PERLKIT_DATA"
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class RawSplits:
    """Reader output before clean-up: raw class names (index == label) and the three lists."""

    classnames: list[str]
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    test: list[tuple[str, int]]


def resolve_data_root(value: str | os.PathLike | None) -> Path:
    """Return the data root from ``--data-root`` (``value``) or else ``$PERLKIT_DATA``.

    Exists so that every entry point finds the datasets the same way and fails with the same clear message.
    """
    origin = "--data-root"
    if value is None or os.fspath(value) == "":
        value = os.environ.get(ENV_VAR) or None
        origin = f"${ENV_VAR}"
    if value is None:
        raise DatasetError(
            f"no data root given: pass --data-root DIR or set {ENV_VAR}=DIR, where DIR holds the dataset folders "
            "(imagenet/, caltech-101/, oxford_pets/, ...) laid out as in KaiyangZhou/CoOp DATASETS.md"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DatasetError(f"data root {path} (from {origin}) does not exist or is not a folder")
    return path.resolve()


def root_hint(data_root: Path) -> str:
    """A hint when the data root is itself one dataset's folder (a common slip: --data-root DIR/eurosat), else ''."""
    folders = {spec.folder for spec in SPECS.values()}
    if data_root.name in folders and not any((data_root / f).is_dir() for f in folders):
        return (f" (the data root {data_root} looks like a dataset folder itself: pass the folder that holds it, "
                f"--data-root {data_root.parent})")
    return ""


def dataset_folder(name: str, root: str | os.PathLike | None) -> Path:
    """The folder of dataset ``name`` under the data root (e.g. ``<root>/caltech-101``); need not exist."""
    return resolve_data_root(root) / SPECS[canonical_name(name)].folder


def expected_counts(name: str, root: str | os.PathLike | None) -> tuple[Expected, str]:
    """Expected class count and split sizes of ``name``, and where they come from.

    Published CoOp counts, unless ``<root>/perlkit_expected.json`` lists the dataset (used by worlds
    perlkit generates itself); a malformed file is an error rather than silently ignored.
    """
    key = canonical_name(name)
    path = resolve_data_root(root) / EXPECTED_FILE
    if not path.is_file():
        return PUBLISHED_COUNTS[key], "published CoOp counts"
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot parse {path}: {exc}; fix or delete the file") from exc
    if not isinstance(table, dict):
        raise DatasetError(f"{path} must hold a JSON object {{dataset key: {{num_classes, train, val, test}}}}")
    entry = table.get(key)
    if entry is None:
        return PUBLISHED_COUNTS[key], "published CoOp counts"
    fields = ("num_classes", "train", "val", "test")
    if not isinstance(entry, dict) or any(
        not isinstance(entry.get(f), int) or isinstance(entry.get(f), bool) or entry[f] < 0 for f in fields
    ):
        raise DatasetError(
            f"{path}: entry {key!r} must be an object with non-negative integers {', '.join(fields)}; got {entry!r}"
        )
    return Expected(*(entry[f] for f in fields)), str(path)


# ----------------------------------------------------------------------------------------------- helpers


def _where(key: str) -> str:
    return f"{DISPLAY_NAMES[key]} comes from: {SPECS[key].source}"


def _require_dir(path: Path, key: str, what: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{DISPLAY_NAMES[key]}: {what} not found; expected folder {path}. {_where(key)}")


def _require_file(path: Path, key: str, what: str) -> None:
    if not path.is_file():
        raise DatasetError(f"{DISPLAY_NAMES[key]}: {what} not found; expected file {path}. {_where(key)}")


def _read_lines(path: Path, key: str, what: str) -> list[tuple[int, str]]:
    _require_file(path, key, what)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{DISPLAY_NAMES[key]}: cannot read {path}: {exc}. {_where(key)}") from exc
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def read_classnames_txt(path: Path, key: str) -> dict[str, str]:
    """Parse CoOp's ImageNet ``classnames.txt`` (lines ``"<wnid> <class name>"``) into wnid -> name, in order."""
    out: dict[str, str] = {}
    for lineno, line in _read_lines(path, key, "classnames.txt"):
        parts = line.split(" ", 1)
        if len(parts) != 2 or not parts[1].strip():
            raise DatasetError(
                f"{path}:{lineno}: expected '<wnid> <class name>', got {line!r}; {_where(key)}"
            )
        if parts[0] in out:
            raise DatasetError(f"{path}:{lineno}: folder name {parts[0]!r} listed twice")
        out[parts[0]] = parts[1].strip()
    return out


def _read_class_folders(
    split_dir: Path, wnid_to_label: dict[str, int], names_file: Path
) -> list[tuple[str, int]]:
    items: list[tuple[str, int]] = []
    for folder in list_subdirs(split_dir):
        if folder not in wnid_to_label:
            raise DatasetError(
                f"class folder {split_dir / folder} is not listed in {names_file}; remove the folder or use the "
                "complete classnames.txt from KaiyangZhou/CoOp DATASETS.md"
            )
        label = wnid_to_label[folder]
        items.extend((os.path.join(split_dir, folder, f), label) for f in list_images(split_dir / folder))
    return items


# ----------------------------------------------------------------------------------------------- readers


def _read_zhou(key: str, spec: Spec, folder: Path) -> RawSplits:
    assert spec.split_file is not None
    split_path = folder / spec.split_file
    _require_file(split_path, key, "split file")
    prefix = folder if spec.paths_relative_to_dataset_dir else folder / spec.image_dir
    _require_dir(prefix, key, "image folder")
    try:
        data = json.loads(split_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"split file {split_path} is not valid JSON ({exc}). {_where(key)}") from exc
    if not isinstance(data, dict) or any(not isinstance(data.get(s), list) for s in SPLITS):
        raise DatasetError(
            f"split file {split_path} must be a JSON object with lists 'train', 'val' and 'test' of "
            f"[relative_path, label, classname]. {_where(key)}"
        )
    names: dict[int, str] = {}
    first_use: dict[int, tuple[str, int, str]] = {}  # label -> (split, index, relative path) of its first entry
    out: dict[str, list[tuple[str, int]]] = {}
    for split in SPLITS:
        items: list[tuple[str, int]] = []
        for i, entry in enumerate(data[split]):
            ok = isinstance(entry, list | tuple) and len(entry) == 3
            if ok:
                rel, label, cname = entry
                ok = isinstance(rel, str) and isinstance(cname, str)
                if isinstance(label, str) and label.strip().isdigit():
                    label = int(label)
                ok = ok and isinstance(label, int) and not isinstance(label, bool) and label >= 0
            if not ok:
                raise DatasetError(
                    f"split file {split_path}: {split}[{i}] = {entry!r} is not [relative_path, label, classname]"
                )
            if names.setdefault(label, cname) != cname:
                raise DatasetError(
                    f"split file {split_path}: label {label} is named both {names[label]!r} and {cname!r} "
                    f"({split}[{i}], image {rel!r}); the file is corrupt, re-download it. {_where(key)}"
                )
            first_use.setdefault(label, (split, i, rel))
            items.append((os.path.normpath(os.path.join(prefix, rel)), label))
        out[split] = items
    missing = sorted(set(range(len(names))) - set(names))
    if missing:
        _raise_out_of_range(split_path, key, names, first_use, missing)
        raise DatasetError(
            f"split file {split_path}: labels must be 0..{len(names) - 1} without gaps but "
            f"{len(missing)} are absent (first: {missing[:5]}); the file is truncated or edited. {_where(key)}"
        )
    return RawSplits([names[i] for i in range(len(names))], out["train"], out["val"], out["test"])


def _raise_out_of_range(split_path: Path, key: str, names: dict[int, str],
                        first_use: dict[int, tuple[str, int, str]], missing: list[int]) -> None:
    """Name the entry whose label lies beyond the file's classes (e.g. 99 among 25), which a gap alone does not."""
    n = len(names)
    order = {s: k for k, s in enumerate(SPLITS)}
    beyond = sorted((lab for lab in names if lab >= n), key=lambda lab: (order[first_use[lab][0]], first_use[lab][1]))
    if not beyond:
        return
    label = beyond[0]
    split, i, rel = first_use[label]
    same_name = [lab for lab, c in names.items() if c == names[label] and lab != label]
    hint = f" (its class name {names[label]!r} is label {same_name[0]} elsewhere)" if same_name else ""
    more = f"; {len(beyond) - 1} more label(s) beyond {n - 1}" if len(beyond) > 1 else ""
    raise DatasetError(
        f"split file {split_path}: {split}[{i}] (image {rel!r}) has label {label}{hint}, but labels must be "
        f"0..{n - 1} without gaps ({n} distinct labels; absent: {missing[:5]}){more}; fix that entry or "
        f"re-download the file. {_where(key)}"
    )


def _read_aircraft(key: str, spec: Spec, folder: Path) -> RawSplits:
    image_dir = folder / spec.image_dir
    classnames = [line for _, line in _read_lines(folder / "variants.txt", key, "variants.txt")]
    cname_to_label = {c: i for i, c in enumerate(classnames)}
    split_lines = {
        s: _read_lines(folder / f"images_variant_{s}.txt", key, f"{s} split file") for s in SPLITS
    }
    _require_dir(image_dir, key, "image folder")
    # Real files are <id>.jpg; a generated world may use another extension, so map id -> actual file name.
    by_stem: dict[str, str] = {}
    for fname in list_images(image_dir):
        stem = os.path.splitext(fname)[0]
        if stem not in by_stem or fname.lower().endswith(".jpg"):
            by_stem[stem] = fname
    out: dict[str, list[tuple[str, int]]] = {}
    for split, lines in split_lines.items():
        items = []
        for lineno, line in lines:
            parts = line.split(" ", 1)
            cname = parts[1].strip() if len(parts) == 2 else ""
            if cname not in cname_to_label:
                raise DatasetError(
                    f"{folder / f'images_variant_{split}.txt'}:{lineno}: variant {cname!r} is not listed in "
                    f"{folder / 'variants.txt'}. {_where(key)}"
                )
            fname = by_stem.get(parts[0], parts[0] + ".jpg")
            items.append((os.path.join(image_dir, fname), cname_to_label[cname]))
        out[split] = items
    return RawSplits(classnames, out["train"], out["val"], out["test"])


def _imagenet_family(key: str, spec: Spec, folder: Path, images: str | None = None) -> tuple[Path, dict, Path]:
    """What every ImageNet-family layout shares: the classnames.txt file, its wnid -> name map, the image folder
    (checked to exist when ``images`` names what it holds)."""
    names_file = folder / "classnames.txt"
    image_dir = folder / spec.image_dir
    wnids = read_classnames_txt(names_file, key)
    if images is not None:
        _require_dir(image_dir, key, images)
    return names_file, wnids, image_dir


def _read_imagenet(key: str, spec: Spec, folder: Path) -> RawSplits:
    names_file, wnids, image_dir = _imagenet_family(key, spec, folder)
    train_dir, val_dir = image_dir / "train", image_dir / "val"
    _require_dir(train_dir, key, "training images")
    _require_dir(val_dir, key, "validation images (used as the test set)")
    wnid_to_label = {w: i for i, w in enumerate(wnids)}
    train = _read_class_folders(train_dir, wnid_to_label, names_file)
    test = _read_class_folders(val_dir, wnid_to_label, names_file)
    return RawSplits(list(wnids.values()), train, [], test)


def _read_imagenet_v2(key: str, spec: Spec, folder: Path) -> RawSplits:
    names_file, wnids, image_dir = _imagenet_family(key, spec, folder, "image folder")
    for sub in list_subdirs(image_dir):
        if not sub.isdigit() or int(sub) >= len(wnids):
            raise DatasetError(
                f"ImageNet-V2 class folder {image_dir / sub} should be named by a label 0..{len(wnids) - 1} "
                f"(one per line of {names_file})"
            )
    items: list[tuple[str, int]] = []
    for label in range(len(wnids)):
        class_dir = image_dir / str(label)
        if class_dir.is_dir():
            items.extend((os.path.join(class_dir, f), label) for f in list_images(class_dir))
    return RawSplits(list(wnids.values()), [], [], items)


def _read_imagenet_sketch(key: str, spec: Spec, folder: Path) -> RawSplits:
    names_file, wnids, image_dir = _imagenet_family(key, spec, folder, "image folder")
    items = _read_class_folders(image_dir, {w: i for i, w in enumerate(wnids)}, names_file)
    return RawSplits(list(wnids.values()), [], [], items)


def _read_imagenet_subset(key: str, spec: Spec, folder: Path) -> RawSplits:
    names_file, wnids, image_dir = _imagenet_family(key, spec, folder, "image folder")
    present = list_subdirs(image_dir)  # files such as README.txt are ignored, as CoOp does
    unknown = [w for w in present if w not in wnids]
    if unknown:
        raise DatasetError(
            f"class folder {image_dir / unknown[0]} is not listed in {names_file} ({len(unknown)} unknown); "
            "copy the complete ImageNet classnames.txt there"
        )
    items: list[tuple[str, int]] = []
    for label, wnid in enumerate(present):
        items.extend((os.path.join(image_dir, wnid, f), label) for f in list_images(image_dir / wnid))
    return RawSplits([wnids[w] for w in present], [], [], items)


READERS = {
    "zhou": _read_zhou,
    "aircraft": _read_aircraft,
    "imagenet": _read_imagenet,
    "imagenet_v2": _read_imagenet_v2,
    "imagenet_sketch": _read_imagenet_sketch,
    "imagenet_subset": _read_imagenet_subset,
}


def read_raw(name: str, root: str | os.PathLike | None) -> tuple[str, Path, RawSplits]:
    """Run the reader of ``name`` without any size check; returns (key, dataset folder, raw lists).

    Shared by :func:`load_dataset` and the ``data check`` command, which reports instead of raising.
    """
    key = canonical_name(name)
    spec = SPECS[key]
    folder = resolve_data_root(root) / spec.folder
    if not folder.is_dir():
        raise DatasetError(
            f"{DISPLAY_NAMES[key]} is missing: expected folder {folder}{root_hint(folder.parent)}. {_where(key)}"
        )
    try:
        return key, folder, READERS[spec.kind](key, spec, folder)
    except OSError as exc:  # a folder that cannot be listed (permissions, a broken mount) is a data problem too
        what = exc.filename or folder
        fix = f"make it readable (chmod -R a+rX {folder})" if isinstance(exc, PermissionError) else "check the disk"
        raise DatasetError(f"{DISPLAY_NAMES[key]}: cannot read {what}: {exc.strerror or exc}; {fix}") from exc


def to_splits(key: str, folder: Path, raw: RawSplits) -> DatasetSplits:
    """Build the public :class:`DatasetSplits` (cleaned class names, CoOp template) from reader output."""
    classnames = [clean_classname(c, key) for c in raw.classnames]

    def conv(items: list[tuple[str, int]]) -> list[Datum]:
        return [Datum(path, label, classnames[label]) for path, label in items]

    return DatasetSplits(
        name=key,
        root=str(folder),
        classnames=classnames,
        train=conv(raw.train),
        val=conv(raw.val),
        test=conv(raw.test),
        template=get_template(key, "coop"),
    )


def count_mismatches(raw: RawSplits, expected: Expected) -> list[str]:
    """Human-readable differences between what was read and the expected class count / split sizes."""
    problems = []
    labels = {lab for items in (raw.train, raw.val, raw.test) for _, lab in items}
    if len(raw.classnames) != expected.num_classes:
        problems.append(f"{len(raw.classnames)} class names, expected {expected.num_classes}")
    elif len(labels) != expected.num_classes:
        problems.append(f"images for {len(labels)} classes, expected {expected.num_classes}")
    for split in SPLITS:
        found = len(getattr(raw, split))
        want = getattr(expected, split)
        if found != want:
            problems.append(f"{split}: {found} images, expected {want}")
    return problems


def load_dataset(name: str, root: str | os.PathLike | None, strict: bool = True) -> DatasetSplits:
    """Read dataset ``name`` from the data root ``root`` (None: ``$PERLKIT_DATA``) as CoOp would.

    A class-count or split-size mismatch against the expected counts raises DatasetError (``strict``) or
    warns (``strict=False``), so that a partial download is never trained on without anyone noticing.
    """
    key, folder, raw = read_raw(name, root)
    expected, source = expected_counts(key, root)
    problems = count_mismatches(raw, expected)
    if problems:
        msg = (
            f"{DISPLAY_NAMES[key]} at {folder} does not match the expected sizes ({source}): "
            + "; ".join(problems)
            + f". Run `perlkit data check --data-root {folder.parent} --dataset {key}` for details; "
            f"to use a deliberate subset, list its sizes in {folder.parent / EXPECTED_FILE}"
        )
        if strict:
            raise DatasetError(msg)
        warnings.warn(msg, stacklevel=2)
    return to_splits(key, folder, raw)
