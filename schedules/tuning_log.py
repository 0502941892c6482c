"""The tuning log: MetaSchedule's JSON database plus ``metadata.json``, and applying it to deploy kernels.

A log directory holds ``database_workload.json`` and ``database_tuning_record.json`` (MetaSchedule's JSON
lines; a record's ``run_secs`` holds retired **instructions** per kernel call, see ``schedules.measure``) and
``metadata.json``: the board, the TVM version, the model and its hash, and the structural hash of every
tuned workload. :func:`apply_tuning_log` checks all of it before using a record: a log for another board,
another TVM version or another model is skipped with a :class:`TuningLogWarning`; unreadable lines and
records whose workload is not in the metadata are dropped with a warning; a record whose schedule no
longer replays leaves its kernel on the default schedule. It never raises for a bad log.
"""
import json
import tempfile
import warnings
from pathlib import Path

import tvm
import tvm_ffi
from tvm import tirx
from tvm.s_tir import meta_schedule as ms

from schedules.measure import mcpu_of
from schedules.tensorize import register_intrinsics
from targets import get_board

WORKLOAD_FILE, RECORD_FILE, METADATA_FILE = "database_workload.json", "database_tuning_record.json", "metadata.json"
COST_UNIT = "retired instructions per kernel call (QEMU TCG plugin, -icount shift=0), in run_secs"


class TuningLogWarning(UserWarning):
    """A tuning log (or part of it) was not applied."""


def workload(func: tirx.PrimFunc) -> tvm.IRModule:
    """The name-independent MetaSchedule workload of a kernel (tuning and lookup use the same one)."""
    return tvm.IRModule({"main": func.with_attr("global_symbol", "main").with_attr("tirx.noalias", True)})


def workload_hash(func: tirx.PrimFunc) -> str:
    return f"{tvm_ffi.structural_hash(workload(func)) & 0xFFFFFFFFFFFFFFFF:016x}"


def tuning_target(mcpu: str) -> tvm.target.Target:
    return tvm.target.Target({"kind": "c", "mcpu": mcpu} if mcpu else {"kind": "c"})


def open_database(log_dir: Path) -> ms.database.JSONDatabase:
    log_dir.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(str(log_dir / WORKLOAD_FILE), str(log_dir / RECORD_FILE),
                                    module_equality="structural")


def read_metadata(log_dir: Path) -> dict | None:
    path = Path(log_dir) / METADATA_FILE
    try:
        metadata = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return metadata if isinstance(metadata, dict) else None


def write_metadata(log_dir: Path, board_name: str, model: str, model_hash: str, hashes: dict[str, str]) -> None:
    """Record what the log was tuned for; ``hashes`` (kernel name -> workload hash) merge with earlier runs."""
    old = read_metadata(log_dir) or {}
    same = old.get("target") == board_name and old.get("model_hash") == model_hash
    kernels = {**(old.get("kernels", {}) if same else {}), **hashes}
    metadata = {"target": board_name, "tvm_version": tvm.__version__, "model": model, "model_hash": model_hash,
                "cost_unit": COST_UNIT, "kernels": kernels}
    (Path(log_dir) / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")


def _warn(message: str) -> None:
    warnings.warn(message, TuningLogWarning, stacklevel=3)


def _json_lines(path: Path) -> list:
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            _warn(f"{path.name} line {number} is not JSON; skipped")
    return rows


def _clean_copy(log_dir: Path, allowed_hashes: set[str], scratch: Path) -> ms.database.JSONDatabase | None:
    """A database with only readable lines and records of workloads the metadata lists."""
    kept_workloads, parsed = [], {}  # parsed: index in the file -> (index in the copy, Workload)
    for index, row in enumerate(_json_lines(log_dir / WORKLOAD_FILE)):
        try:
            entry = ms.database.Workload.from_json(row)
            func = entry.mod["main"]
            register_intrinsics(func)  # a tensorized record reads (and replays) only with its intrinsics registered
        except Exception:  # noqa: BLE001 - any damage in a stored IRModule means: skip it
            _warn(f"{WORKLOAD_FILE} entry {index} is not a readable workload; skipped")
            continue
        if workload_hash(func) not in allowed_hashes:
            _warn(f"{WORKLOAD_FILE} entry {index} is a workload the metadata does not list; skipped")
            continue
        parsed[index] = (len(kept_workloads), entry)
        kept_workloads.append(row)
    records = []
    for row in _json_lines(log_dir / RECORD_FILE):
        try:
            copy_index, entry = parsed[row[0]]
            ms.database.TuningRecord.from_json(row[1], entry)
        except Exception:  # noqa: BLE001
            _warn(f"{RECORD_FILE}: an unreadable record, or one for an unknown or skipped workload; skipped")
            continue
        records.append([copy_index, row[1]])
    (scratch / WORKLOAD_FILE).write_text("".join(json.dumps(w) + "\n" for w in kept_workloads))
    (scratch / RECORD_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    try:
        return open_database(scratch)
    except Exception as error:  # noqa: BLE001
        _warn(f"tuning log {log_dir} cannot be loaded ({str(error).splitlines()[0][:200]}); not applied")
        return None


def apply_tuning_log(kernels: tvm.IRModule, target: str, log_dir, model_hash: str | None = None
                     ) -> tuple[tvm.IRModule, list[str]]:
    """Replace each kernel of ``kernels`` that ``log_dir`` holds a valid best schedule for.

    ``target`` is the board name (``cortex-m55``); ``model_hash``, when given, must equal the log's.
    Returns the new module and the names of the kernels that got a tuned schedule (the others are left
    unscheduled for ``deploy.schedule.apply_default_schedules``).
    """
    log_dir = Path(log_dir)
    metadata = read_metadata(log_dir)
    problem = None
    if metadata is None:
        problem = f"no readable {METADATA_FILE}"
    elif metadata.get("target") != target:
        problem = f"it was tuned for target {metadata.get('target')!r}, not {target!r}"
    elif metadata.get("tvm_version") != tvm.__version__:
        problem = f"it was tuned with TVM {metadata.get('tvm_version')}, this is TVM {tvm.__version__}"
    elif model_hash is not None and metadata.get("model_hash") != model_hash:
        problem = f"it was tuned for another model ({metadata.get('model')})"
    elif not all((log_dir / name).is_file() for name in (WORKLOAD_FILE, RECORD_FILE)):
        problem = "the MetaSchedule database files are missing"
    if problem:
        _warn(f"tuning log {log_dir} not applied: {problem}; re-tune with `python -m schedules.tune`")
        return kernels, []
    allowed = set(metadata.get("kernels", {}).values())
    with tempfile.TemporaryDirectory(prefix="tuning_log_") as scratch:
        database = _clean_copy(log_dir, allowed, Path(scratch))
        if database is None:
            return kernels, []
        tvm_target = tuning_target(mcpu_of(get_board(target)))
        tuned, functions = [], dict(kernels.functions.items())
        for gv, func in kernels.functions.items():
            if not isinstance(func, tirx.PrimFunc) or workload_hash(func) not in allowed:
                continue
            try:
                sch = database.query_schedule(workload(func), tvm_target, workload_name="main")
            except Exception as error:  # noqa: BLE001 - a record that no longer replays is skipped
                _warn(f"the tuned schedule of {gv.name_hint} does not apply ({str(error).splitlines()[0][:200]});"
                      " default schedule kept")
                continue
            if sch is None:
                continue
            functions[gv] = sch.mod["main"].with_attr("global_symbol", gv.name_hint)
            tuned.append(gv.name_hint)
    return tvm.IRModule(functions, attrs=kernels.attrs), tuned


def best_instructions(database: ms.database.Database, func: tirx.PrimFunc) -> int | None:
    """The fewest instructions per call measured for ``func`` (None if no successful measurement)."""
    mod = workload(func)
    if not database.has_workload(mod):
        return None
    records = database.get_top_k(database.commit_workload(mod), 1)
    return int(records[0].run_secs[0].value) if records and records[0].run_secs else None


def measured_trials(database: ms.database.Database, func: tirx.PrimFunc, tensorized_only: bool = False) -> int:
    """How many candidates of ``func`` the log already measured (for resuming); ``tensorized_only``: only those
    whose schedule calls a micro-kernel (a ``tensorize`` step in the trace)."""
    mod = workload(func)
    return sum(1 for record in database.get_all_tuning_records() if tvm_ffi.structural_equal(record.workload.mod, mod)
               and (not tensorized_only or any(inst.kind.name == "Tensorize" for inst in record.trace.insts)))
