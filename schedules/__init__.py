"""MetaSchedule tuning of the int8 kernels for microcontrollers, measured in QEMU (retired instructions).

``python -m schedules.tune`` writes a tuning log; ``apply_tuning_log`` applies one to deploy's kernels.
"""
from schedules.tuning_log import TuningLogWarning, apply_tuning_log

__all__ = ["TuningLogWarning", "apply_tuning_log"]
