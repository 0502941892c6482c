"""Measuring through TVM's RPC tracker on loopback (tracker + two servers): the same exact counts as the
local runner, and a wrong candidate is an error there too. Needs ``tornado`` (tvm.rpc.tracker imports it)."""
import tvm
import tvm.script
from tvm.s_tir import meta_schedule as ms

from deploy.schedule import apply_default_schedules
from schedules.kernels import KERNELS, kernel_case
from schedules.measure import FirmwareKit, QemuBuilder, measure_module
from schedules.rpc import RpcQemuRunner, start_local_cluster
from targets import get_board

KEY = "iseg-test-qemu"


def test_rpc_runner_matches_local_measurement(tmp_path):
    case = kernel_case(KERNELS["proj"])
    kit = FirmwareKit(get_board("cortex-m55"), case, tmp_path)
    good = apply_default_schedules(case.mod)
    text = good.script()
    wrong = tvm.script.from_source(text.replace(">> T.int64(32)", ">> T.int64(31)"))
    target = tvm.target.Target({"kind": "c", "mcpu": "cortex-m55"})
    built = QemuBuilder(kit).build([ms.builder.BuilderInput(m, target) for m in (good, good, wrong)])
    tracker, servers = start_local_cluster(KEY, workers=2)
    try:
        runner = RpcQemuRunner(kit, tracker.host, tracker.port, KEY)
        results = [f.result() for f in runner.run([ms.runner.RunnerInput(b.artifact_path, "cpu", []) for b in built])]
    finally:
        for server in servers:
            server.terminate()
        tracker.terminate()
    local = measure_module(kit, good)
    assert [r.error_msg for r in results[:2]] == [None, None]
    assert [int(r.run_secs[0].value) for r in results[:2]] == [local, local]
    assert results[2].run_secs is None and "not bit-exact" in results[2].error_msg
