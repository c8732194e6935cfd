"""``perlkit data check``: what is on disk, what is missing, and which images are unreadable."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .core import DatasetError
from .images import image_problem
from .readers import SPLITS, expected_counts, read_raw, resolve_data_root, root_hint
from .registry import DISPLAY_NAMES, SPECS, canonical_name

STATUSES: tuple[str, ...] = ("present", "missing", "incomplete", "corrupt")
# Readers that list files from disk need no existence check; split-file readers do.
_LISTED_KINDS = frozenset({"zhou", "aircraft"})


@dataclass
class DatasetReport:
    """The state of one dataset folder as ``data check`` prints it.

    ``counts`` maps split -> (images found on disk, expected); ``num_classes`` is (found, expected);
    ``problems`` lists every mismatch; ``missing_files`` and ``corrupt`` list paths.
    """

    name: str
    status: str
    folder: str
    message: str = ""
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    num_classes: tuple[int, int] = (0, 0)
    corrupt: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    expected_source: str = ""

    @property
    def ok(self) -> bool:
        """True only when the dataset is complete, matches the expected counts and every image decodes."""
        return self.status == "present"


def check_dataset(name: str, root: str | os.PathLike | None, verify_images: bool = True) -> DatasetReport:
    """Inspect one dataset folder without raising for dataset problems.

    Exists so that users can see, before a long run, whether a dataset is missing, incomplete (missing split
    files or images, size mismatches) or holds corrupt images. Only a bad data root raises DatasetError.
    """
    key = canonical_name(name)
    data_root = resolve_data_root(root)
    folder = data_root / SPECS[key].folder
    expected, source = expected_counts(key, data_root)
    report = DatasetReport(name=key, status="present", folder=str(folder), expected_source=source)
    report.counts = {s: (0, getattr(expected, s)) for s in SPLITS}
    report.num_classes = (0, expected.num_classes)
    if not folder.is_dir():
        report.status = "missing"
        report.message = (
            f"expected folder {folder}{root_hint(data_root)}; {DISPLAY_NAMES[key]} comes from: {SPECS[key].source}"
        )
        return report
    try:
        _, _, raw = read_raw(key, data_root)
    except DatasetError as exc:
        report.status = "incomplete"
        report.message = str(exc)
        return report

    check_exists = SPECS[key].kind in _LISTED_KINDS
    present: set[str] = set()
    labels: set[int] = set()
    for split in SPLITS:
        found = 0
        for path, label in getattr(raw, split):
            if path in present or not check_exists or os.path.isfile(path):
                present.add(path)
                labels.add(label)
                found += 1
            elif path not in report.missing_files:
                report.missing_files.append(path)
        report.counts[split] = (found, getattr(expected, split))
        if found != getattr(expected, split):
            report.problems.append(f"{split}: {found} images found, expected {getattr(expected, split)}")
    report.num_classes = (len(labels), expected.num_classes)
    if len(raw.classnames) != expected.num_classes:
        report.problems.append(f"{len(raw.classnames)} class names, expected {expected.num_classes}")
    elif len(labels) != expected.num_classes:
        report.problems.append(f"images for {len(labels)} classes, expected {expected.num_classes}")
    if report.missing_files:
        report.problems.append(f"{len(report.missing_files)} files listed in the split are not on disk")
    if verify_images:
        paths = sorted(present)
        # PIL releases the GIL while decoding, so a few threads speed up large datasets.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            verdicts = list(pool.map(image_problem, paths, chunksize=64))
        report.corrupt = [p for p, v in zip(paths, verdicts, strict=True) if v is not None]
    if report.problems:
        report.status = "incomplete"
        report.message = f"does not match the expected sizes ({source})"
    elif report.corrupt:
        report.status = "corrupt"
        report.message = f"{len(report.corrupt)} unreadable image(s)"
    return report


def _cell(pair: tuple[int, int], status: str) -> str:
    if status == "missing" or pair == (0, 0):
        return "-"
    found, want = pair
    return f"{found}/{want}" if found == want else f"{found}/{want} !"


def format_report(reports: list[DatasetReport], max_paths: int = 20) -> str:
    """The table ``perlkit data check`` prints, followed by the details of every dataset that is not ok.

    Every unreadable image is listed by path; missing files are listed up to ``max_paths`` per dataset.
    """
    header = ("dataset", "status", "classes", "train", "val", "test", "corrupt")
    rows = [header]
    for r in reports:
        rows.append(
            (
                DISPLAY_NAMES.get(r.name, r.name),
                r.status,
                _cell(r.num_classes, r.status),
                *(_cell(r.counts.get(s, (0, 0)), r.status) for s in SPLITS),
                str(len(r.corrupt)) if r.status != "missing" else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    for r in reports:
        if r.ok:
            continue
        lines.append("")
        lines.append(f"{DISPLAY_NAMES.get(r.name, r.name)} [{r.status}] {r.folder}")
        if r.message:
            lines.append(f"  {r.message}")
        lines.extend(f"  - {p}" for p in r.problems)
        for path in r.missing_files[:max_paths]:
            lines.append(f"  missing file: {path}")
        if len(r.missing_files) > max_paths:
            lines.append(f"  ... and {len(r.missing_files) - max_paths} more missing files")
        lines.extend(f"  unreadable image: {p}" for p in r.corrupt)
    return "\n".join(lines)
