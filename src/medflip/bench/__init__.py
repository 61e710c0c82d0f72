"""`medflip bench`: what masking buys. flops (the analytic ceiling), steps (timed training steps at several
mask ratios), objective (per-rank cost of the whole loss at simulated world sizes), cli (the command)."""

from medflip._lazy import lazy_face

_NAMES = {
    "transformer_flops": "flops",
    "pair_forward_flops": "flops",
    "ceiling_speedup": "flops",
    "peak_tflops": "flops",
    "BenchConfig": "steps",
    "run_bench": "steps",
    "format_table": "steps",
    "ObjectiveBenchConfig": "objective",
    "run_objective_bench": "objective",
    "format_objective_table": "objective",
}
__all__ = sorted(_NAMES)
__getattr__, __dir__ = lazy_face(__name__, _NAMES)
