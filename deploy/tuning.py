"""Which MetaSchedule tuning log a deploy applies: the committed one for the model and board, one given
on the command line, or none.

Committed logs live in ``assets/tuning/<model>/<target>/`` (``python -m schedules.tune``). For a model file
``M.onnx`` the lookup tries ``assets/tuning/M/<target>/`` (its metadata must carry the file's sha256), then
the Segmenter kernel-set log ``assets/tuning/segmenter-kernels/<target>/`` (its metadata must carry the hash
of ``schedules.kernels``' workloads). ``schedules.apply_tuning_log`` validates target, TVM version and model
hash, and matches kernels by structure, so a log never changes a kernel it was not tuned for.
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path

from common.paths import ASSETS

COMMITTED_LOGS = ASSETS / "tuning"
KERNEL_SET = "segmenter-kernels"


@dataclass(frozen=True)
class TuningChoice:
    """The log to apply (None: default schedules only), the model hash it must carry, and why."""

    log_dir: Path | None
    model_hash: str | None
    source: str  # "committed" | "--tuning-log" | "disabled" | "none found"


def kernel_set_hash() -> str:
    """The model hash ``schedules.tune`` writes for the built-in Segmenter kernel set."""
    from schedules.tune import BUILTIN_MODEL, model_cases

    return model_cases(BUILTIN_MODEL)[1]


def committed_log(model_path: Path | None, target: str, root: Path = COMMITTED_LOGS) -> TuningChoice:
    """The committed log for ``model_path`` (None: the built-in example, no log) on board ``target``."""
    if model_path is not None:
        own = root / Path(model_path).stem / target
        if own.is_dir():
            return TuningChoice(own, hashlib.sha256(Path(model_path).read_bytes()).hexdigest(), "committed")
        kernel_set = root / KERNEL_SET / target
        if kernel_set.is_dir():
            return TuningChoice(kernel_set, kernel_set_hash(), "committed")
    return TuningChoice(None, None, "none found")


def choose_log(model_path: Path | None, target: str, tuning_log: Path | None, no_tuning: bool) -> TuningChoice:
    """``--no-tuning`` > ``--tuning-log DIR`` (any model: kernels still match by structure) > committed log."""
    if no_tuning:
        return TuningChoice(None, None, "disabled")
    if tuning_log is not None:
        return TuningChoice(Path(tuning_log), None, "--tuning-log")
    return committed_log(model_path, target)
