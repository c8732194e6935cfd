"""``perlkit bench``: what PERL and its rivals cost, measured side by side in one process on one machine.

PERL's cost model (reference section 6) is J + (K+1)(L-J) block evaluations per encoder, 32 against zero-shot's 12
at J=7, K=4 (2.67x). The bench measures, for zero-shot CLIP, PERL at K = 1..5 and every registered rival, on one
shared frozen backbone with random weights of the profile's architecture (timing needs no real weights):

* training ms per image at batch 4 and 32 (the engine's training step: forward, backward, optimiser step; the text
  side over all training classes on every step, as in real training);
* evaluation images per second, the way users evaluate: ``classifier`` once outside the timed loop, then ``logits``
  per batch;
* peak memory of each phase: CPU RSS (VmHWM, reset per phase through ``/proc/self/clear_refs``) and, on CUDA,
  ``torch.cuda.max_memory_allocated``;
* block evaluations counted by forward hooks on every residual block of both encoders (one image, one class);
* one PERL training step over 1,000 classes at batch 4, with and without ``text_chunk_size``.

Timed repeats are interleaved across methods (round robin, order reversed every other round) and summarised by
medians, so that load from other processes on a shared machine hits every method alike. The headline clock
(``timer``) is this process's CPU time on CPU (``time.process_time``: work done, blind to cores lost to other jobs;
the command line runs one torch thread on CPU unless ``--threads`` says otherwise, so it reads as single-core time) and
synchronised wall time on CUDA, where the steps run under bf16 autocast (``perlkit.engine.autocast_context``).
Wall-clock values are kept next to the CPU ones (``*_wall*`` keys).

Block evaluations count calls of each block's first LayerNorm (``ln_1``), so the readout-only last block of
``FrozenCLIP.refine`` (keys and values from every token, the query, MLP and output only at CLS/EOS) counts as one
evaluation, as in the paper's cost model; it is ~1/6 of a full block's work for zero-shot and PERL alike.

The package: ``spec`` (what to run: labels, order, sizes), ``measure`` (clocks, memory, block hooks, the timed
steps), ``run`` (``run_bench``, one function a phase), ``record`` (the JSON schema ``perlkit-bench-v1`` as typed
dataclasses; labels ``zeroshot``, ``perl`` (K=4, the paper's), ``perl-k1`` ... ``perl-k5`` and each rival's
registered name), ``table`` (the terminal table and the chapter's tables), ``command`` (``perlkit bench``).
"""

from perlkit.bench.command import add_bench_command
from perlkit.bench.measure import PeakMemory, count_block_evaluations, trainable_counts
from perlkit.bench.record import (
    BENCH_DIR,
    SCHEMA,
    BenchRecord,
    CostModel,
    MemoryRun,
    MethodRecord,
    RecordError,
    load_records,
    read_record,
)
from perlkit.bench.run import run_bench
from perlkit.bench.spec import METHOD_ORDER, PAPER_STEPS, BenchSettings, MethodSpec, cost_model_blocks, resolve_methods
from perlkit.bench.table import block_count_table, describe_records, format_table, memory_frame, method_frame

__all__ = [
    "BENCH_DIR", "METHOD_ORDER", "PAPER_STEPS", "SCHEMA", "BenchRecord", "BenchSettings", "CostModel", "MemoryRun",
    "MethodRecord", "MethodSpec", "PeakMemory", "RecordError", "add_bench_command", "block_count_table",
    "cost_model_blocks", "count_block_evaluations", "describe_records", "format_table", "load_records",
    "memory_frame", "method_frame", "read_record", "resolve_methods", "run_bench", "trainable_counts",
]
