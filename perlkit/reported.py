"""Numbers reported by the PERL paper and its rivals, as tidy tables (see perlkit/assets/reported/README.md)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pandas as pd

from perlkit.files import package_path

__all__ = ["REPORTED_DIR", "available", "citation", "load_reported", "reported_b2n", "reported_dir"]

#: the reported CSVs ship inside the package (package data), so an installed wheel has them too
REPORTED_DIR: Path = package_path("assets", "reported")

B2N_SETTINGS: tuple[str, ...] = ("unified_1epoch", "default_recipe", "own_paper")

# Keep text columns as text: "table" holds values like "1/5" and "6"; labels like "4.9M" must not be parsed.
_STRING_COLUMNS = {
    "table",
    "setting",
    "method",
    "dataset",
    "source",
    "note",
    "label",
    "params",
    "variant",
    "ablation",
    "id",
    "key",
    "citation",
    "url",
    "figure",
    "metric",
    "protocol",
    "unit",
    "claim",
    "where",
    "what",
    "values",
    "how_perlkit_handles",
    "params_label",
}


def reported_dir() -> Path:
    """Directory of the reported CSVs; PERLKIT_REPORTED_DIR overrides it so tests and installs can relocate data."""
    override = os.environ.get("PERLKIT_REPORTED_DIR")
    return Path(override).expanduser().resolve() if override else REPORTED_DIR


def available() -> list[str]:
    """Sorted table names (CSV stems) so callers and error messages can list what exists."""
    return sorted(p.stem for p in reported_dir().glob("*.csv"))


def load_reported(table: str) -> pd.DataFrame:
    """Load one reported table by file stem, with text columns kept as strings so labels survive intact."""
    names = available()
    if table not in names:
        raise ValueError(f"unknown reported table {table!r}; available: {', '.join(names)}")
    path = reported_dir() / f"{table}.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh))
    dtypes = {c: "string" for c in header if c in _STRING_COLUMNS}
    numeric_na = {c: [""] for c in header if c not in _STRING_COLUMNS}
    # Empty text cells stay "" (not NA); empty numeric cells become NaN.
    return pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=numeric_na)


def reported_b2n(setting: str = "unified_1epoch") -> pd.DataFrame:
    """Base-to-novel rows of one setting, because the paper's tables mix protocols that must not be compared.

    Note: in ``unified_1epoch`` MMRL++ has two ``average`` rows, Table 1's (correct) and Table 5's (a known
    duplicate of MMRL's, flagged in ``note``); filter on ``table`` to pick one.
    """
    if setting not in B2N_SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; available: {', '.join(B2N_SETTINGS)}")
    df = load_reported("b2n")
    return df[df["setting"] == setting].reset_index(drop=True)


def citation(key: str) -> str:
    """Full citation text for a ``source`` key, so every reported number can be traced to its origin."""
    sources = load_reported("sources")
    hit = sources.loc[sources["key"] == key, "citation"]
    if hit.empty:
        raise KeyError(f"unknown source key {key!r}")
    return str(hit.iloc[0])
