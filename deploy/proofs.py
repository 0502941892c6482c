"""Static proofs that a firmware ELF is integer-only: symbols, instructions, build attributes.

Each check returns ``{"ok": bool, "found": [...]}``; ``prove_float_free`` runs all three.
The run-time proof (FPU off, so an FP instruction faults) is ``tests/test_deploy_fault.py``.
"""
import re
import subprocess
from pathlib import Path

from targets import Board

SOFT_FLOAT_SYMBOL = re.compile(
    r"^(__aeabi_(f|d|[iu]?l?2[fd])\w*"
    r"|__(add|sub|mul|div|neg|eq|ne|lt|le|gt|ge|un|cmp)[sdt]f[23]"
    r"|__float\w+|__fix\w+|__extend\w+|__trunc\w+)$"
)
_ARM_FP_MNEMONIC = re.compile(r"^(v\w+|(cdp|ldc|stc|mcr|mrc|mcrr|mrrc)2?\w*\s+p1[01]\b)")
# On an integer-MVE board a vector instruction is floating point when it names a float type, an S/D
# register or the FP status register (MVE integer code uses Q registers and integer types only). Saving the
# callee-saved Q4-Q7 (= D8-D15) with VPUSH/VPOP/VLDM/VSTM moves bits, it is not arithmetic: it is allowed.
_MVE_FLOAT = re.compile(r"\.(f16|f32|f64|bf16)\b|(?<!\.)\b[sd]\d{1,2}\b|fpscr|vcvt|vsqrt|vdiv")
_CALLEE_SAVED_D = r"d(8|9|1[0-5])"
_REGISTER_SAVE = re.compile(rf"^(vpush|vpop|vldm\w*|vstm\w*)\s+(sp!?,\s*)?\{{{_CALLEE_SAVED_D}(-{_CALLEE_SAVED_D})?"
                            rf"(,\s*{_CALLEE_SAVED_D})*\}}$")
_RISCV_FP_MNEMONIC = re.compile(r"^(c\.)?f(?!ence)\w*")


def _tool(board: Board, name: str, *args: str) -> str:
    return subprocess.run([board.tool_prefix + name, *args], capture_output=True, text=True, check=True).stdout


def soft_float_symbols(board: Board, elf: Path) -> dict:
    names = [line.split()[-1] for line in _tool(board, "nm", str(elf)).splitlines() if line.strip()]
    found = sorted(n for n in names if SOFT_FLOAT_SYMBOL.match(n))
    return {"ok": not found, "found": found}


def disassembly(board: Board, elf: Path) -> list[tuple[str, str]]:
    """(address, instruction text) for every instruction of the ELF."""
    args = ["-d", "--no-show-raw-insn"] + (["-marmv8.1-m.main"] if board.arch == "arm" else []) + [str(elf)]
    rows = []
    for line in _tool(board, "objdump", *args).splitlines():
        match = re.match(r"^\s*([0-9a-f]+):\s+(\S.*)$", line)
        if match:
            rows.append((match.group(1), match.group(2).strip()))
    return rows


def is_fp_instruction(board: Board, text: str) -> bool:
    """Whether one disassembled instruction is floating point on ``board`` (MVE integer is not)."""
    if board.arch != "arm":
        return bool(_RISCV_FP_MNEMONIC.match(text))
    if not _ARM_FP_MNEMONIC.match(text):
        return False
    if not board.mve or not text.startswith("v"):
        return True
    return bool(_MVE_FLOAT.search(text)) and not _REGISTER_SAVE.match(text)


def fp_instructions(board: Board, elf: Path) -> dict:
    found = [f"{addr}: {text}" for addr, text in disassembly(board, elf) if is_fp_instruction(board, text)]
    return {"ok": not found, "found": found[:20], "count": len(found)}


def fp_build_attributes(board: Board, elf: Path) -> dict:
    text = _tool(board, "readelf", "-A", str(elf))
    if board.arch == "arm":
        allowed = ("Tag_MVE_arch: MVE Integer only",) if board.mve else ()
        found = [line.strip() for line in text.splitlines()
                 if ("Tag_FP_arch" in line or "Tag_MVE_arch" in line) and line.strip() not in allowed]
    else:
        arch = re.search(r"Tag_RISCV_arch: \"?([\w]+)", text)
        extensions = arch.group(1).split("_")[1:] if arch else []
        found = [e for e in extensions if e[:1] in ("f", "d", "q")]
        if arch and re.match(r"rv32i\d+p\d+$", arch.group(1).split("_")[0]) is None:
            found.append(arch.group(1))
    return {"ok": not found, "found": found}


def prove_float_free(board: Board, elf: Path) -> dict:
    """All static checks; ``result["ok"]`` is True only when every check passes."""
    checks = {
        "soft_float_symbols": soft_float_symbols(board, elf),
        "fp_instructions": fp_instructions(board, elf),
        "fp_build_attributes": fp_build_attributes(board, elf),
    }
    return {"ok": all(c["ok"] for c in checks.values()), **checks}
