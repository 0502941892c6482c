"""Measurement through TVM's RPC tracker: RPC servers run the QEMU measurement of uploaded firmware.

:func:`start_local_cluster` starts a tracker and ``workers`` servers on 127.0.0.1 (each server registers
``schedules.rpc.measure_elf``); :class:`RpcQemuRunner` is a MetaSchedule runner that, for each candidate
built by :class:`schedules.measure.QemuBuilder`, asks the tracker for a free server, uploads the ELF and
runs it there. The cost and the bit-exactness check are those of the local runner.

TVM's RPC server executes whatever its clients send: use it only on loopback or a trusted network.
"""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tvm import rpc
from tvm.rpc.tracker import Tracker
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from schedules.measure import FirmwareKit, ThreadFuture

MEASURE_FUNCTION = "schedules.rpc.measure_elf"
SESSION_TIMEOUT_S = 120


def measure_uploaded(name: str, board_name: str, harness_symbols: str) -> str:
    """Server side: instructions per call of the uploaded firmware ``name``, or ``error: <why>``."""
    import tvm

    from schedules.measure import measure_elf
    from targets import get_board

    elf = Path(tvm.get_global_func("tvm.rpc.server.workpath")(name))
    try:
        return str(measure_elf(get_board(board_name), set(harness_symbols.split()), elf))
    except (RuntimeError, OSError, ValueError) as error:
        return f"error: {error}"


def register_measure_function() -> None:
    """``server_init_callback`` of every server: makes ``MEASURE_FUNCTION`` callable over RPC."""
    import tvm

    from schedules.rpc import measure_uploaded as function

    tvm.register_global_func(MEASURE_FUNCTION, function, override=True)


def start_local_cluster(key: str, workers: int = 2):
    """A tracker and ``workers`` measurement servers on 127.0.0.1; returns (tracker, servers)."""
    tracker = Tracker(host="127.0.0.1", port=9190, port_end=9290, silent=True)
    servers = [rpc.Server(host="127.0.0.1", port=9300, port_end=9400, key=key, silent=True,
                          tracker_addr=(tracker.host, tracker.port), server_init_callback=register_measure_function)
               for _ in range(workers)]
    return tracker, servers


@derived_object
class RpcQemuRunner(ms.runner.PyRunner):
    """Runs each candidate on a server the tracker hands out (``key``); at most ``max_workers`` at once."""

    def __init__(self, kit: FirmwareKit, tracker_host: str, tracker_port: int, key: str, max_workers: int = 2):
        super().__init__()
        self.kit, self.tracker, self.key = kit, (tracker_host, tracker_port), key
        self.pool = ThreadPoolExecutor(max_workers)

    def run(self, runner_inputs: list) -> list:
        return [ThreadFuture(self.pool.submit(self._measure, Path(i.artifact_path))) for i in runner_inputs]

    def _measure(self, elf: Path):
        try:
            session = rpc.connect_tracker(*self.tracker).request(self.key, session_timeout=SESSION_TIMEOUT_S)
            name = f"{elf.parent.name}.elf"
            session.upload(str(elf), name)
            answer = session.get_function(MEASURE_FUNCTION)(name, self.kit.board.name,
                                                            " ".join(sorted(self.kit.harness_symbols)))
        except Exception as error:  # noqa: BLE001 - a lost server is a failed measurement, not a crash
            return ms.runner.RunnerResult(None, f"RPC measurement failed: {str(error).splitlines()[0][:200]}")
        if answer.startswith("error: "):
            return ms.runner.RunnerResult(None, answer.removeprefix("error: "))
        return ms.runner.RunnerResult([float(answer)], None)


def main(argv: list[str] | None = None) -> int:
    """``python -m schedules.rpc``: serve a loopback tracker + servers for ``python -m schedules.tune --rpc-tracker``."""
    import argparse
    import signal
    import time

    parser = argparse.ArgumentParser(prog="python -m schedules.rpc", description=main.__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--key", default="iseg-qemu")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops the servers like Ctrl-C
    tracker, servers = start_local_cluster(args.key, args.workers)
    print(f"tracker 127.0.0.1:{tracker.port}, {len(servers)} servers with key {args.key}; Ctrl-C or SIGTERM stops them",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        for server in servers:
            server.terminate()
        tracker.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
