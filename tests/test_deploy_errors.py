"""Bad input gives one actionable line (a UserError / exit code 2) and never a half-written output dir."""
import dataclasses
import subprocess

import numpy as np
import pytest
from PIL import Image

import targets
from common.errors import UserError
from deploy import qemu
from deploy.build import main as build_main
from deploy.flow import load_image
from deploy.examples import toy_segmenter
from deploy.flow import deploy_module
from targets import BOARDS, Region
from targets.linker import linker_script

IMAGE = np.zeros((1, 16, 16, 3), np.uint8)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def assert_nothing_written(parent):
    assert list(parent.iterdir()) == [], "no output dir, no staging leftovers"


def test_unknown_target_cli(capsys):
    assert build_main(["--target", "cortex-a53", "--example", "toy"]) == 2
    assert "known targets: cortex-m55" in one_line_error(capsys)


def test_fp32_needs_the_float_model_not_the_integer_example(capsys):
    assert build_main(["--precision", "fp32", "--example", "toy"]) == 2
    assert "--precision fp32 deploys the float model" in one_line_error(capsys)


def test_integer_model_on_the_float_board_is_refused(capsys):
    assert build_main(["--target", "cortex-m55-fp", "--example", "toy"]) == 2
    assert "cortex-m55-fp is a float board" in one_line_error(capsys)


def test_missing_tuning_log_directory(capsys, tmp_path):
    assert build_main(["--example", "toy", "--tuning-log", str(tmp_path / "nope")]) == 2
    assert "no such directory" in one_line_error(capsys)


@pytest.mark.parametrize("region, message", [
    ("flash", r"weights need 0\.3 KiB of flash, the board has 0 KiB \(0\.2 KiB over\)"),
    ("ram", r"need 73\.0 KiB of RAM, the board has 16 KiB \(57\.0 KiB over\)"),
])
def test_model_too_big_for_board(tmp_path, monkeypatch, region, message):
    board = BOARDS["cortex-m4"]
    small = {"flash": Region(board.flash.origin, 100), "ram": Region(board.ram.origin, 16 * 1024)}[region]
    monkeypatch.setitem(targets.BOARDS, "cortex-m4", dataclasses.replace(board, **{region: small}))
    with pytest.raises(UserError, match=f"model too big for cortex-m4: .*{message}"):
        deploy_module(toy_segmenter(), "cortex-m4", [IMAGE], tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_missing_cross_compiler_names_make_setup(tmp_path, monkeypatch):
    board = dataclasses.replace(BOARDS["riscv32"], cc="riscv-nonexistent-gcc")
    monkeypatch.setitem(targets.BOARDS, "riscv32", board)
    with pytest.raises(UserError, match=r"missing cross compiler 'riscv-nonexistent-gcc' .*run `make setup`"):
        deploy_module(toy_segmenter(), "riscv32", [IMAGE], tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_failure_after_writing_leaves_no_directory(tmp_path, monkeypatch):
    def failing_build(directory, board):
        assert (directory / "src" / "isegmenter.c").is_file()
        raise UserError("building firmware failed: simulated")

    monkeypatch.setattr(qemu, "build_firmware", failing_build)
    with pytest.raises(UserError, match="simulated"):
        deploy_module(toy_segmenter(), "cortex-m4", [IMAGE], tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_qemu_timeout_is_one_line(tmp_path):
    board = BOARDS["cortex-m4"]
    (tmp_path / "loop.c").write_text("int main(void) { for (;;) { __asm__ volatile(\"nop\"); } }\n")
    (tmp_path / "board.ld").write_text(linker_script(board))
    elf = tmp_path / "loop.elf"
    subprocess.run([board.cc, *board.cflags, "-O2", f"-I{targets.STARTUP_DIR}", "-T", str(tmp_path / "board.ld"),
                    str(tmp_path / "loop.c"), *map(str, board.startup_sources), "-nostdlib", "-lgcc", "-o", str(elf)],
                   check=True)
    with pytest.raises(UserError, match=r"QEMU timed out after 2 s running loop.elf on cortex-m4"):
        qemu.run_firmware(board, elf, timeout_s=2)


def test_image_of_wrong_size(tmp_path, capsys):
    path = tmp_path / "small.png"
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(path)
    with pytest.raises(UserError, match=r"image is 10x12, the model takes 16x16; resize it first"):
        load_image(path, (1, 16, 16, 3))
    assert build_main(["--example", "toy", "--image", str(path), "--output", str(tmp_path / "out")]) == 2
    assert "resize it first" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_image_array_of_wrong_shape(tmp_path):
    with pytest.raises(UserError, match=r"image 0 is uint8\[1, 8, 8, 3\]; the model takes uint8\[1, 16, 16, 3\]"):
        deploy_module(toy_segmenter(), "cortex-m4", [np.zeros((1, 8, 8, 3), np.uint8)], tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_image_layout_follows_model_input(tmp_path):
    path = tmp_path / "rgb.png"
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    np.testing.assert_array_equal(load_image(path, (1, 16, 16, 3))[0], pixels)
    np.testing.assert_array_equal(load_image(path, (1, 3, 16, 16))[0], pixels.transpose(2, 0, 1))


def test_cli_no_run_writes_project(tmp_path, capsys):
    assert build_main(["--target", "cortex-m33", "--example", "toy", "--no-run", "--output", str(tmp_path / "m33")]) == 0
    assert (tmp_path / "m33" / "firmware.elf").is_file() and (tmp_path / "m33" / "report.json").is_file()
    assert "float-free proofs: pass" in capsys.readouterr().out


def test_weights_passed_as_parameters_are_bound(tmp_path):
    from tvm import relax

    from deploy.flow import bind_weights
    from deploy.host import tvm_host_outputs

    bb = relax.BlockBuilder()
    image = relax.Var("image", relax.TensorType((1, 4), "uint8"))
    weight = relax.Var("weight", relax.TensorType((1, 4), "uint8"))
    with bb.function("main", [image, weight]):
        out = bb.emit(relax.op.add(image, weight))
        bb.emit_func_output(out)
    values = np.array([[1, 2, 3, 4]], np.uint8)
    bound = bind_weights(bb.get(), [values])
    assert len(bound["main"].params) == 1
    np.testing.assert_array_equal(tvm_host_outputs(bound, [values])[0], 2 * values)
    with pytest.raises(UserError, match="main takes 1 weights but 2 were given"):
        bind_weights(bb.get(), [values, values])


def test_kernel_stack_frame_larger_than_reserved_stack():
    from deploy.flow import check_stack

    board = BOARDS["cortex-m4"]
    check_stack({"small_kernel": 512}, board)
    with pytest.raises(UserError, match=r"function big_kernel needs 131656 B of stack but cortex-m4 reserves 65536 B"):
        check_stack({"small_kernel": 512, "big_kernel": 131656}, board)


def float_module(fused: bool):
    from tvm import relax

    bb = relax.BlockBuilder()
    image = relax.Var("image", relax.TensorType((1, 4), "uint8"))
    with bb.function("main", [image]):
        with bb.dataflow():
            scaled = relax.op.multiply(relax.op.astype(image, "float32"), relax.const(0.5, "float32"))
            out = bb.emit_output(relax.op.astype(scaled, "uint8") if fused else scaled)
        bb.emit_func_output(out)
    return bb.get()


def test_float_tensor_is_rejected_before_compiling(tmp_path):
    with pytest.raises(UserError, match=r"is float32: the deployed module must be integer-only"):
        deploy_module(float_module(fused=False), "cortex-m4", [np.zeros((1, 4), np.uint8)], tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_float_inside_a_fused_kernel_fails_the_build(tmp_path):
    with pytest.raises(UserError, match=r"building firmware for cortex-m4 failed: .*poisoned"):
        deploy_module(float_module(fused=True), "cortex-m4", [np.zeros((1, 4), np.uint8)], tmp_path / "out")
    assert_nothing_written(tmp_path)
