"""Cross-compile a written project and run it in QEMU with semihosting; read the outputs back."""
import shutil
import subprocess
from pathlib import Path

import numpy as np

from common.errors import UserError
from deploy.project import OUTPUT_BEGIN, OUTPUT_END
from targets import EXIT_FAULT, Board

DEFAULT_TIMEOUT_S = 120


def require_tools(board: Board) -> None:
    """One-line error naming the missing tool when the cross compiler, QEMU or make is absent."""
    for tool, what in ((board.cc, "cross compiler"), (board.qemu, "QEMU"), ("make", "make")):
        if shutil.which(tool) is None:
            raise UserError(f"missing {what} '{tool}' for target {board.name}; run `make setup`")


def build_firmware(directory: Path, board: Board) -> Path:
    """``make`` in the project directory; returns the ELF. Link/compile errors become one line."""
    require_tools(board)
    result = subprocess.run(["make", "-s", "-C", str(directory), "firmware.elf"], capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if "error" in line or "overflowed" in line]
        detail = lines[0].strip() if lines else result.stderr.strip().splitlines()[-1]
        raise UserError(f"building firmware for {board.name} failed: {detail}")
    return directory / "firmware.elf"


def qemu_command(board: Board, elf: Path, plugin: Path | None = None, plugin_out: Path | None = None) -> list[str]:
    command = [board.qemu, *board.qemu_args, "-nographic", "-semihosting-config", "enable=on,target=native"]
    if plugin is not None:
        command += ["-icount", "shift=0", "-plugin", f"{plugin},out={plugin_out}"]
    return command + ["-kernel", str(elf)]


def run_firmware(board: Board, elf: Path, timeout_s: float = DEFAULT_TIMEOUT_S, plugin: Path | None = None,
                 plugin_out: Path | None = None) -> str:
    """Run ``elf`` in QEMU; return its semihosting text. Timeouts and faults are one-line errors."""
    require_tools(board)
    try:
        result = subprocess.run(qemu_command(board, elf, plugin, plugin_out), capture_output=True, text=True,
                                timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise UserError(f"QEMU timed out after {timeout_s:.0f} s running {elf.name} on {board.name}; "
                        "raise --timeout or check the program for an endless loop") from None
    if result.returncode == EXIT_FAULT:
        raise UserError(f"{board.name} hard fault (exit code {EXIT_FAULT}) running {elf.name}: "
                        "an illegal/FP instruction or a bad memory access")
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"QEMU exited with code {result.returncode} on {board.name}: {last}")
    return result.stdout + result.stderr


def parse_outputs(text: str, dtype: str, shape: tuple[int, ...]) -> list[np.ndarray]:
    """The arrays the test runner printed between OUTPUT_BEGIN/OUTPUT_END markers (hex, little-endian)."""
    outputs, current = [], None
    for line in text.splitlines():
        if line == OUTPUT_BEGIN:
            current = []
        elif line == OUTPUT_END and current is not None:
            raw = bytes.fromhex("".join(current))
            outputs.append(np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape))
            current = None
        elif current is not None:
            current.append(line.strip())
    return outputs
