"""What a bench record looks like to a reader: the terminal table of ``perlkit bench`` and the tables of chapter 09.

``method_rows`` is the one place a record becomes rows, so the command line and the book show the same columns in
the same order (``spec.METHOD_ORDER``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from perlkit.bench.measure import count_block_evaluations
from perlkit.bench.record import BenchRecord
from perlkit.bench.spec import PAPER_STEPS, MethodSpec, bench_split, cost_model_blocks, method_order
from perlkit.methods import build_method

if TYPE_CHECKING:
    import pandas as pd

    from perlkit.backbone import FrozenCLIP

#: the columns of the time table and of the cost table (blocks, memory) that ``method_rows`` fills
TIME_COLUMNS = ("trainable params", "eval ms/image", "eval images/s")
COST_COLUMNS = ("vision blocks/image", "cost model blocks", "eval peak RSS (MB)", "eval RSS above start (MB)")


def as_record(record: BenchRecord | Mapping[str, Any]) -> BenchRecord:
    """A typed record from either a ``BenchRecord`` or the plain dict ``run_bench`` returns."""
    return record if isinstance(record, BenchRecord) else BenchRecord.from_json(dict(record))


def train_column(batch: int) -> str:
    """The name of the training-time column for one batch size."""
    return f"train ms/image (batch {batch})"


def method_rows(record: BenchRecord | Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per method in bench order: parameters, training and evaluation cost, memory, block counts, error.

    Hook counts are shown only where the cost model applies (zero-shot and PERL): a rival's extra LayerNorm calls
    would read as block evaluations.
    """
    rec = as_record(record)
    rows = []
    for label, m in sorted(rec.methods.items(), key=lambda i: method_order(i[1].method, i[1].options.get("steps"),
                                                                          i[0])):
        measured = m.block_evaluations.eval_vision_per_image if m.block_evaluations else None
        rows.append({
            "method": f"perl (K={PAPER_STEPS})" if label == "perl" else label,
            "trainable params": m.trainable_params,
            **{train_column(b): m.train_ms_per_image.get(str(b)) for b in rec.settings.train_batches},
            "eval ms/image": m.eval_ms_per_image, "eval images/s": m.eval_images_per_s,
            "vision blocks/image": measured if m.cost_model_blocks is not None else None,
            "cost model blocks": m.cost_model_blocks,
            "eval peak RSS (MB)": m.peak_rss_mb.eval, "eval RSS above start (MB)": m.peak_rss_delta_mb.eval,
            "error": m.error,
        })
    return rows


def method_frame(record: BenchRecord | Mapping[str, Any]) -> pd.DataFrame:
    """``method_rows`` as a DataFrame (a ``method`` column), for the chapter's plots."""
    import pandas as pd

    return pd.DataFrame(method_rows(record))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _text_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    """Rows as aligned text: the method left, the numbers right."""
    cells = [[str(row["method"]), *(_fmt(row[c]) for c in columns)] for row in rows]
    header = ["method", *columns]
    widths = [max(len(text) for text in column) for column in zip(header, *cells, strict=True)]
    return ["  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(line, widths,
                                                                                                   strict=True)))
            for line in (header, *cells)]


def format_table(record: BenchRecord | Mapping[str, Any]) -> str:
    """A plain-text summary of a bench record: time, then blocks and memory, the headline ratio, the 1,000-class
    step; the same in the terminal and in chapter 09."""
    rec = as_record(record)
    rows = method_rows(rec)
    ok = [row for row in rows if not row["error"]]
    time_columns = [TIME_COLUMNS[0], *(train_column(b) for b in rec.settings.train_batches), *TIME_COLUMNS[1:]]
    lines = [f"perlkit bench: {rec.profile} profile, {rec.model} ({rec.weights} weights) on {rec.device_name} "
             f"[{rec.device}], timer {rec.timer}", *_text_table(ok, time_columns), "", *_text_table(ok, COST_COLUMNS)]
    lines += [f"{row['method']} failed: {row['error']}" for row in rows if row["error"]]
    cm = rec.cost_model
    lines.append(f"PERL (K={PAPER_STEPS}) eval time / zero-shot: {_fmt(rec.perl_eval_over_zeroshot)} "
                 f"(cost model {cm.perl}/{cm.zeroshot} = {cm.ratio})")
    memory = rec.memory_1000_classes
    for key, run in memory.runs.items():
        cuda = run.cuda_max_allocated_mb is not None
        what, peak = ("CUDA max allocated", run.cuda_max_allocated_mb) if cuda else ("peak RSS", run.peak_rss_mb)
        delta = f" (+{_fmt(run.peak_rss_delta_mb)} MB above the step's start)" if run.peak_rss_delta_mb else ""
        lines.append(f"PERL train step, {memory.classes} classes, batch {memory.batch}, {key}: {what} "
                     f"{_fmt(peak)} MB{delta}" + (f" (error: {run.error})" if run.error else ""))
    if memory.skip_reason:
        lines.append(f"{memory.classes:,}-class step: {memory.skip_reason}")
    return "\n".join(lines)


def describe_records(records: Mapping[str, BenchRecord]) -> str:
    """Markdown bullets: which machine, device, commit and settings made each bench file, and what is missing."""
    lines = [f"* `{name}`: {r.profile} profile, {r.model} ({r.weights} weights) on {r.device_name} [{r.device}], "
             f"timer {r.timer}, perlkit commit {r.git_commit[:10]}, {r.created[:10]}{' (`--quick`)' if r.quick else ''}"
             for name, r in records.items()]
    if not records:
        lines.append("No bench file in `data/bench/` yet: `make bench` writes one for this machine's CPU.")
    if not any(r.device == "cuda" for r in records.values()):
        lines.append("\nNo GPU measurement: none of the committed bench files was made on a GPU, so this chapter "
                     "shows CPU numbers only. `perlkit bench --profile paper` on a CUDA machine adds one.")
    return "\n".join(lines)


def memory_frame(records: Mapping[str, BenchRecord]) -> pd.DataFrame:
    """The many-class PERL steps of several bench files, one row per run; columns no run filled are left out."""
    import pandas as pd

    rows = [{"file": name, "classes": r.memory_1000_classes.classes, "batch": r.memory_1000_classes.batch,
             "run": key, "peak RSS (MB)": run.peak_rss_mb, "CUDA max allocated (MB)": run.cuda_max_allocated_mb,
             "seconds": run.seconds, "error": run.error}
            for name, r in records.items() for key, run in r.memory_1000_classes.runs.items()]
    frame = pd.DataFrame(rows)
    empty = [c for c in ("CUDA max allocated (MB)", "error") if rows and frame[c].isna().all()]
    return frame.drop(columns=empty)


def block_count_table(backbone: FrozenCLIP, steps: Sequence[int]) -> pd.DataFrame:
    """PERL's measured block evaluations per K (hooks, one image, one class) next to the cost model J + (K+1)(L-J),
    at the paper's J on the backbone's vision depth L."""
    import pandas as pd

    num_layers = backbone.depth("vision")
    split = bench_split(num_layers)
    rows = []
    for k in steps:
        counts = count_block_evaluations(build_method("perl", backbone, steps=k, split=split), backbone.image_size)
        rows.append({"K": k, "cost model J + (K+1)(L-J)": cost_model_blocks(
                         MethodSpec("perl", "perl", {"steps": k}), num_layers, split),
                     "vision blocks per image (measured)": counts["eval_vision_per_image"],
                     "text blocks per class (measured)": counts["classifier_text_per_class"],
                     "vision blocks per training image (measured)": counts["train_vision_per_image"]})
    return pd.DataFrame(rows)
