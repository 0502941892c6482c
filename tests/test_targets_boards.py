"""The board table: float-forbidding flags, memory regions in the linker script, bad names, --list-targets."""
import re

import pytest

from common.errors import UserError
from deploy.build import main as build_main
from targets import BOARDS, get_board
from targets.linker import linker_script


@pytest.mark.parametrize("name", [name for name, board in BOARDS.items() if not board.fpu])
def test_every_integer_board_forbids_floating_point(name):
    board = BOARDS[name]
    flags = " ".join(board.cflags)
    if board.arch == "arm":
        assert "-mfloat-abi=soft" in flags and "+nofp" in flags
    else:
        assert re.search(r"-march=rv32i[^fdg]*$", board.cflags[0]) and "-mabi=ilp32" in flags


@pytest.mark.parametrize("name", list(BOARDS))
def test_linker_script_uses_board_regions(name):
    board = BOARDS[name]
    script = linker_script(board)
    assert f"ORIGIN = 0x{board.flash.origin:08x}, LENGTH = 0x{board.flash.size:x}" in script
    assert f"ORIGIN = 0x{board.ram.origin:08x}, LENGTH = 0x{board.ram.size:x}" in script
    weights = board.weights_region
    assert f"ORIGIN = 0x{weights.origin:08x}, LENGTH = 0x{weights.size:x}" in script
    assert ("} > WEIGHTS" in script) == (board.weights is not None)
    assert all(path.is_file() for path in board.startup_sources)


def test_unknown_target_lists_known_ones():
    with pytest.raises(UserError, match=r"unknown target 'cortex-m99'; known targets: cortex-m55, .*riscv32"):
        get_board("cortex-m99")


def test_list_targets_prints_every_board(capsys):
    assert build_main(["--list-targets"]) == 0
    out = capsys.readouterr().out
    for board in BOARDS.values():
        assert board.name in out and board.qemu_args[1] in out


def test_float_boards_are_marked_and_refuse_integer_deploys():
    from deploy.flow import generate_c
    from deploy.examples import toy_segmenter

    floats = [board for board in BOARDS.values() if board.fpu]
    assert floats and all("-mfloat-abi=hard" in board.cflags for board in floats)
    with pytest.raises(UserError, match="float board"):
        generate_c(toy_segmenter(), floats[0])
