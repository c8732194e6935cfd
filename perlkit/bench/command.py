"""``perlkit bench`` on the command line: arguments, where the JSON goes, and what is printed."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from perlkit.bench.record import BENCH_DIR
from perlkit.bench.run import run_bench
from perlkit.bench.spec import BenchSettings, available_methods, resolve_methods, settings_for
from perlkit.bench.table import format_table
from perlkit.files import atomic_write_json, cache_root, output_root
from perlkit.profiles import PROFILE_NAMES, get_profile


def device_tag(device: torch.device) -> str:
    """Short file-name form of the device: 'cpu' or 'cuda-<gpu name>'."""
    if device.type != "cuda":
        return "cpu"
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def default_output(profile: str, model: str, device: torch.device, folder: Path = BENCH_DIR) -> Path:
    """<folder>/<profile>-<device>.json, with the model in the name when it is not the profile's own."""
    stem = profile if model == get_profile(profile).model else f"{profile}-{model}"
    return folder / f"{stem}-{device_tag(device)}.json"


def _settings_from_args(args: argparse.Namespace, device: torch.device) -> BenchSettings:
    """The profile's settings with the command line's overrides applied."""
    settings = settings_for(args.profile, args.quick, device)
    overrides: dict[str, Any] = {}
    if args.train_batches:
        overrides["train_batches"] = tuple(args.train_batches)
    for name in ("train_classes", "train_repeats", "eval_batch", "eval_rounds", "memory_classes", "memory_chunk"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    return replace(settings, **overrides)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the bench, save its JSON (user cache; data/bench/ with --ship) and print a table (or the JSON)."""
    resolve_methods(args.methods)  # fail fast on a typo, before building anything
    device = torch.device(args.device or get_profile(args.profile).device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device here; use --device cpu")
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    result = run_bench(
        args.profile,
        args.methods,
        quick=args.quick,
        model=args.model,
        device=device,
        settings=_settings_from_args(args, device),
        progress=not args.no_progress,
    )
    if not args.no_save:
        chosen = output_root(args.out, args.ship, BENCH_DIR)  # --out and --ship together are refused
        folder = BENCH_DIR if args.ship else cache_root() / "bench"
        out = chosen if args.out else default_output(args.profile, result["model"], device, folder)
        atomic_write_json(out, result)
        print(f"perlkit bench: wrote {out}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(format_table(result))
    return 0


def add_bench_command(sub: argparse._SubParsersAction) -> None:
    """Register ``perlkit bench`` on the CLI's subparsers."""
    p = sub.add_parser("bench", help="time and memory of zero-shot, PERL (K=1..5) and the rivals, side by side")
    p.add_argument("--profile", default="mini", choices=sorted(PROFILE_NAMES))
    p.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                   help=f"subset (default: all); 'perl' means K=1..5. Available: {', '.join(available_methods())}")
    p.add_argument("--quick", action="store_true", help="fewer repeats and smaller batches (minutes on 2 CPU cores)")
    p.add_argument("--json", action="store_true", help="print only the JSON record on stdout")
    p.add_argument("--model", default=None, help="override the profile's architecture (e.g. tiny-clip for tests)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the profile's)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 on CPU, for single-core timings; 0: torch's own default)")
    p.add_argument("--out", default=None, help="JSON path (default: <cache>/bench/<profile>-<device>.json)")
    p.add_argument("--ship", action="store_true", help="write into the repository's data/bench/ (maintainers)")
    p.add_argument("--no-save", action="store_true", help="do not write the JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    sizes = p.add_argument_group("sizes (override the profile's defaults)")
    sizes.add_argument("--train-batches", type=int, nargs="+", default=None, metavar="B")
    sizes.add_argument("--train-classes", type=int, default=None)
    sizes.add_argument("--train-repeats", type=int, default=None)
    sizes.add_argument("--eval-batch", type=int, default=None)
    sizes.add_argument("--eval-rounds", type=int, default=None)
    sizes.add_argument("--memory-classes", type=int, default=None, help="0 skips the 1,000-class memory step")
    sizes.add_argument("--memory-chunk", type=int, default=None, help="text_chunk_size of the chunked memory step")
    p.set_defaults(func=cmd_bench)
