"""Boards the toolchain deploys to: one table entry per board (compiler, flags, QEMU, memory).

Adding a board means adding one ``Board`` to ``BOARDS``. Every entry forbids floating point in the
compiler flags; ``fp_test_cflags`` are the flags of the deliberately-float program that proves the
FPU is off at run time (the fault handler must catch its first FP instruction).
"""
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError

STARTUP_DIR = Path(__file__).resolve().parent / "startup"
EXIT_OK, EXIT_MISMATCH, EXIT_FAULT = 0, 1, 70  # mirror startup/semihost.h

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Region:
    """A memory region the linker script places sections in."""

    origin: int
    size: int


@dataclass(frozen=True)
class Board:
    """One deployment target: how to compile for it, how to emulate it, what memory it has."""

    name: str
    description: str
    arch: str  # "arm" | "riscv": picks the startup file and the float-free proofs
    cc: str
    cflags: tuple[str, ...]  # code generation flags; no floating point allowed
    fp_test_cflags: tuple[str, ...]  # flags that DO emit FP instructions (fault-handler test only)
    qemu: str
    qemu_args: tuple[str, ...]
    flash: Region  # code (+ weights unless ``weights`` is set)
    ram: Region  # data, bss, arena, stack
    weights: Region | None = None  # separate read-only memory for .rodata (e.g. XIP QSPI flash)
    stack_size: int = 64 * KIB
    # Integer MVE (Helium) on (cflags define ISEG_ENABLE_CP10_CP11): the startup code grants CP10/CP11 (which gate
    # MVE and the FPU alike), matmul kernels are tensorized with the MVE micro-kernel, the proofs accept MVE
    # integer instructions and still reject VFP/MVE-float ones.
    mve: bool = False
    # Float board (FPU on, hard-float ABI): only for the fp32 comparison build (``--precision fp32``); the
    # integer-only proofs do not apply. Integer models go to the integer boards.
    fpu: bool = False

    @property
    def stack_array_limit(self) -> int:
        """Most bytes of local arrays one kernel may keep on the stack (half of it): tuned schedules above it are
        refused by the tuning builder and dropped by deploy."""
        return self.stack_size // 2

    @property
    def widens_int8_gemms(self) -> bool:
        """Whether tuning also tries int8 GEMMs with both operands packed to int16 (``schedules.tensorize``): on
        Arm's DSP (``SMLAD``) int16 operands need no sign extension in the loop; with MVE ``VMLADAVA.S8`` does
        twice the MACs of the int16 form, and RISC-V has no SIMD multiply."""
        return self.arch == "arm" and not self.mve

    @property
    def weights_region(self) -> Region:
        """Where the weights (``.rodata``) live."""
        return self.weights or self.flash

    @property
    def tool_prefix(self) -> str:
        """``arm-none-eabi-`` etc.: prefix of nm/objdump/readelf/size for this board."""
        return self.cc[: -len("gcc")]

    @property
    def mcpu(self) -> str:
        """The ``-mcpu`` core name (for TVM's C target), or "" on boards configured by ``-march``."""
        flag = next((f for f in self.cflags if f.startswith("-mcpu=")), "")
        return flag.removeprefix("-mcpu=").split("+")[0]

    @property
    def startup_sources(self) -> tuple[Path, ...]:
        """Startup + semihosting sources linked into every program for this board."""
        arch_file = "arm_cortex_m.c" if self.arch == "arm" else "riscv32.S"
        return (STARTUP_DIR / arch_file, STARTUP_DIR / "semihost.c")


_ARM_QEMU = "qemu-system-arm"
_RISCV_QEMU = "qemu-system-riscv32"
# The Cortex-M55 boards share one machine (MPS3 AN547): ITCM code, 4 MiB SRAM data, QSPI weights.
_MPS3_AN547 = dict(
    arch="arm",
    cc="arm-none-eabi-gcc",
    qemu=_ARM_QEMU,
    qemu_args=("-M", "mps3-an547"),
    flash=Region(0x00000000, 512 * KIB),
    ram=Region(0x21000000, 4 * MIB),
    weights=Region(0x28000000, 8 * MIB),
)

BOARDS: dict[str, Board] = {
    board.name: board
    for board in [
        Board(
            name="cortex-m55",
            description="Arm Cortex-M55, MPS3 AN547 (ITCM code, QSPI weights, SRAM data)",
            cflags=("-mcpu=cortex-m55+nofp+nomve", "-mfloat-abi=soft", "-mthumb"),
            fp_test_cflags=("-mcpu=cortex-m55", "-mfloat-abi=softfp", "-mthumb"),
            **_MPS3_AN547,
        ),
        Board(
            name="cortex-m55-mve",
            description="Arm Cortex-M55 with integer MVE (Helium), MPS3 AN547; no floating point",
            # MVE only through the micro-kernels' intrinsics: GCC's auto-vectorizer would move int64 constants
            # through D registers (VLDR d), which the float-free proof rejects.
            cflags=("-mcpu=cortex-m55+nofp", "-mfloat-abi=softfp", "-mthumb", "-DISEG_ENABLE_CP10_CP11",
                    "-fno-tree-vectorize"),
            fp_test_cflags=("-mcpu=cortex-m55", "-mfloat-abi=softfp", "-mthumb", "-DISEG_ENABLE_CP10_CP11"),
            mve=True,
            **_MPS3_AN547,
        ),
        Board(
            name="cortex-m55-fp",
            description="Arm Cortex-M55 with its FPU on (hard-float ABI), MPS3 AN547; fp32 comparison builds only",
            cflags=("-mcpu=cortex-m55+nomve", "-mfloat-abi=hard", "-mthumb", "-DISEG_ENABLE_CP10_CP11"),
            fp_test_cflags=("-mcpu=cortex-m55+nomve", "-mfloat-abi=hard", "-mthumb", "-DISEG_ENABLE_CP10_CP11"),
            fpu=True,
            **_MPS3_AN547,
        ),
        Board(
            name="cortex-m4",
            description="Arm Cortex-M4, MPS2 AN386",
            arch="arm",
            cc="arm-none-eabi-gcc",
            cflags=("-mcpu=cortex-m4+nofp", "-mfloat-abi=soft", "-mthumb"),
            fp_test_cflags=("-mcpu=cortex-m4", "-mfloat-abi=softfp", "-mfpu=fpv4-sp-d16", "-mthumb"),
            qemu=_ARM_QEMU,
            qemu_args=("-M", "mps2-an386"),
            flash=Region(0x00000000, 4 * MIB),
            ram=Region(0x20000000, 4 * MIB),
        ),
        Board(
            name="cortex-m7",
            description="Arm Cortex-M7, MPS2 AN500",
            arch="arm",
            cc="arm-none-eabi-gcc",
            cflags=("-mcpu=cortex-m7+nofp", "-mfloat-abi=soft", "-mthumb"),
            fp_test_cflags=("-mcpu=cortex-m7", "-mfloat-abi=softfp", "-mfpu=fpv5-d16", "-mthumb"),
            qemu=_ARM_QEMU,
            qemu_args=("-M", "mps2-an500"),
            flash=Region(0x00000000, 4 * MIB),
            ram=Region(0x20000000, 4 * MIB),
        ),
        Board(
            name="cortex-m33",
            description="Arm Cortex-M33, MPS2 AN505 (secure code alias)",
            arch="arm",
            cc="arm-none-eabi-gcc",
            cflags=("-mcpu=cortex-m33+nofp", "-mfloat-abi=soft", "-mthumb"),
            fp_test_cflags=("-mcpu=cortex-m33", "-mfloat-abi=softfp", "-mfpu=fpv5-sp-d16", "-mthumb"),
            qemu=_ARM_QEMU,
            qemu_args=("-M", "mps2-an505"),
            flash=Region(0x10000000, 4 * MIB),
            ram=Region(0x38000000, 2 * MIB),
        ),
        Board(
            name="riscv32",
            description="RISC-V rv32imac, QEMU virt without F/D",
            arch="riscv",
            cc="riscv64-unknown-elf-gcc",
            cflags=("-march=rv32imac", "-mabi=ilp32", "-mcmodel=medany"),
            fp_test_cflags=("-march=rv32imafc", "-mabi=ilp32", "-mcmodel=medany"),
            qemu=_RISCV_QEMU,
            qemu_args=("-M", "virt", "-bios", "none", "-cpu", "rv32,f=false,d=false"),
            flash=Region(0x80000000, 4 * MIB),
            ram=Region(0x80400000, 4 * MIB),
        ),
    ]
}

DEFAULT_TARGET = "cortex-m55"


def get_board(name: str) -> Board:
    """The board called ``name``; a UserError listing the known boards otherwise."""
    if name not in BOARDS:
        raise UserError(f"unknown target '{name}'; known targets: {', '.join(BOARDS)}")
    return BOARDS[name]


def describe_boards() -> str:
    """The table printed by ``python -m deploy.build --list-targets``."""
    def region(r: Region) -> str:
        return f"{r.size // KIB:>5} KiB@{r.origin:08x}"

    header = (f"{'target':<11} {'compiler':<24} {'qemu machine':<12} {'code':>17} {'weights':>17} {'ram':>17}"
              "  description")
    rows = [header]
    for b in BOARDS.values():
        rows.append(f"{b.name:<11} {b.cc:<24} {b.qemu_args[1]:<12} {region(b.flash)} {region(b.weights_region)} "
                    f"{region(b.ram)}  {b.description}")
    return "\n".join(rows)
