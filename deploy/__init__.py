"""Integer-only Relax module -> bare-metal C99 firmware, run in QEMU, proven float-free and bit-exact.

Entry points: ``python -m deploy.build`` (CLI) and ``deploy.flow.deploy_module`` (Python).
Pipeline: lower (Relax -> fused TIR kernels + kernel calls) -> schedule (inline / epilogue fusion)
-> memory_plan (one static arena) -> emit_c (kernels + static executor) -> project (build/<target>/)
-> qemu (build + run) -> proofs (float-free) -> measure (size, stack, instructions, MACs).
"""
