"""A transformer-shaped integer module (attention, Newton square root, take-upsampling) at the real
input size deploys bit-exact, float-free and sanitizer-clean, with small kernels and stack frames."""
import numpy as np

from deploy.examples import toy_vit_block
from deploy.flow import deploy_module
from deploy.host import tvm_host_outputs


def test_vit_block_on_cortex_m55(tmp_path):
    mod = toy_vit_block()
    images = [np.random.default_rng(9).integers(0, 256, (1, 3, 64, 64), dtype=np.uint8)]
    assert len(np.unique(tvm_host_outputs(mod, images)[0])) >= 3, "a constant class map would prove little"
    report = deploy_module(mod, "cortex-m55", images, tmp_path / "m55", sanitize=True).report
    assert report["run"]["bit_exact"], report["run"]
    assert report["host_sanitizers"]["reports"] == [] and report["host_sanitizers"]["bit_exact"]
    assert report["float_free"]["ok"], report["float_free"]
    assert report["memory_plan"]["arena_ratio"] <= 1.05
    assert report["stack_bytes_max_function"] < 1024
    kernels = (tmp_path / "m55" / "src" / "isegmenter_kernels.c").read_text()
    assert len(kernels) < 64 * 1024, "inlining must not duplicate expressions (Newton chain)"
    assert report["instructions"]["network_per_image"] > report["total_macs"]
