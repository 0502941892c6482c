"""Measurements of a firmware: flash/RAM (size -A), stack (-fstack-usage), exact retired
instructions per symbol (QEMU TCG plugin, -icount shift=0) and MACs per kernel (from the TIR)."""
import math
import re
import subprocess
from bisect import bisect_right
from collections import defaultdict
from pathlib import Path

import tvm
from tvm import s_tir, tirx

from common.errors import UserError
from common.paths import CACHE_DIR, REPO_ROOT
from targets import Board

PLUGIN_SOURCE_DIR = REPO_ROOT / "tools" / "qemu_plugin"
FLASH_SECTIONS = (".text", ".rodata", ".data")
RAM_SECTIONS = (".data", ".bss", ".stack")


def plugin_path() -> Path:
    """The instruction-count plugin, built on first use (``make -C tools/qemu_plugin``)."""
    out_dir = CACHE_DIR / "qemu_plugin"
    plugin = out_dir / "libinsn_count.so"
    sources = list(PLUGIN_SOURCE_DIR.glob("*.[ch]"))
    if not plugin.exists() or any(s.stat().st_mtime > plugin.stat().st_mtime for s in sources):
        result = subprocess.run(["make", "-s", "-C", str(PLUGIN_SOURCE_DIR), f"OUT={out_dir}"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise UserError(f"building the QEMU instruction-count plugin failed ({result.stderr.strip()[-200:]}); "
                            "run `make setup`")
    return plugin


def section_sizes(board: Board, elf: Path) -> dict:
    text = subprocess.run([board.tool_prefix + "size", "-A", str(elf)], capture_output=True, text=True,
                          check=True).stdout
    sections = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\S+)\s+(\d+)\s+\d+", text, re.MULTILINE)}
    return {
        "sections": sections,
        "flash_bytes": sum(sections.get(s, 0) for s in FLASH_SECTIONS),
        "ram_bytes": sum(sections.get(s, 0) for s in RAM_SECTIONS),
    }


def stack_usage(object_dir: Path) -> dict[str, int]:
    """Function -> bytes of stack frame, from the ``.su`` files ``-fstack-usage`` wrote."""
    usage = {}
    for su in object_dir.glob("*.su"):
        for line in su.read_text().splitlines():
            where, nbytes, _kind = line.split("\t")
            usage[where.rsplit(":", 1)[-1]] = int(nbytes)
    return usage


def function_symbols(board: Board, elf: Path) -> list[tuple[int, int, str]]:
    """(start, end, name) of every function in the ELF, sorted by address."""
    text = subprocess.run([board.tool_prefix + "nm", "-S", "-n", "--defined-only", str(elf)], capture_output=True,
                          text=True, check=True).stdout
    symbols = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTW":
            start = int(parts[0], 16) & ~1  # Thumb symbols carry bit 0
            symbols.append((start, start + int(parts[1], 16), parts[3]))
    return sorted(symbols)


def defined_functions(board: Board, objects: list[Path]) -> set[str]:
    """Names of the functions the object files define (the network library: kernels, micro-kernels, run)."""
    text = subprocess.run([board.tool_prefix + "nm", "--defined-only", *map(str, objects)], capture_output=True,
                          text=True, check=True).stdout
    return {parts[2] for parts in map(str.split, text.splitlines()) if len(parts) == 3 and parts[1] in "tTW"}


_STACK_ARRAY = re.compile(r"^\s+(?:u?int(8|16|32|64)_t|bool) \w+\[(\d+)\];", re.MULTILINE)


def stack_array_bytes_in_c(source: str) -> int:
    """Bytes of the local arrays that generated kernel C declares (a tuned schedule may cache whole tiles)."""
    return sum(int(bits or 8) // 8 * int(count) for bits, count in _STACK_ARRAY.findall(source))


def instructions_per_symbol(board: Board, elf: Path, counts_file: Path) -> dict[str, int]:
    """Sum the plugin's per-address counts into per-function counts (``?`` for unknown addresses)."""
    symbols = function_symbols(board, elf)
    starts = [s[0] for s in symbols]
    totals: dict[str, int] = defaultdict(int)
    for line in counts_file.read_text().splitlines():
        address, count = line.split()
        address = int(address, 16)
        i = bisect_right(starts, address) - 1
        name = symbols[i][2] if i >= 0 and address < symbols[i][1] else "?"
        totals[name] += int(count)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def macs_per_kernel(kernels: tvm.IRModule) -> dict[str, int]:
    """Multiply-accumulates of each kernel: iteration-space size of every reduction block that multiplies."""
    sch = s_tir.Schedule(kernels)
    macs = {}
    for gv, func in kernels.functions.items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        total = 0
        for block_rv in sch.get_child_blocks(sch.get_sblock("root", func_name=gv.name_hint)):
            block = sch.get(block_rv)
            reduces = any(iv.iter_type == tirx.IterVar.CommReduce for iv in block.iter_vars)
            if reduces and " * " in str(block.body):
                total += math.prod(int(iv.dom.extent) for iv in block.iter_vars)
        macs[gv.name_hint] = total
    return macs
