"""Static C99 executor: kernels + weights in flash + one arena + ``isegmenter_run``.

``emit_sources(program, plan)`` returns the C sources of the deployable library:

* ``isegmenter_kernels.c``: the TIR kernels built by the bare-metal pipeline (plain C functions);
* ``isegmenter.c``: the weights as ``static const`` arrays, the arena, and ``isegmenter_run`` calling
  the kernels in order with pointers into the arena (no malloc, no recursion, no floating point);
* ``isegmenter.h``: the one-function API and the tensor shapes.
"""
import re

import numpy as np

from deploy.high_word_sum import HIGH_WORD_SUM
from deploy.lower import StaticProgram, Tensor
from deploy.memory_plan import ALIGNMENT, ArenaPlan
from deploy.saturating_clamp import SATURATE_MACROS
from deploy.tir_pipeline import kernels_to_c

C_TYPES = {
    "int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "uint16": "uint16_t",
    "int32": "int32_t", "uint32": "uint32_t", "int64": "int64_t", "uint64": "uint64_t", "bool": "bool",
    "float32": "float",  # --precision fp32 only: integer programs are rejected by lower() before they get here
}
PRELUDE = ("#include <stdbool.h>\n#include <stdint.h>\n" + SATURATE_MACROS + HIGH_WORD_SUM
           + "\n#pragma GCC poison float double\n")
# the fp32 comparison build
FLOAT_PRELUDE = "#include <math.h>\n#include <stdbool.h>\n#include <stdint.h>\n" + SATURATE_MACROS + HIGH_WORD_SUM


def is_floating(program: StaticProgram) -> bool:
    """A float program (``--precision fp32``, lowered with ``allow_float``)."""
    return any(t.dtype.startswith("float") for t in program.tensors)


def prelude(floating: bool) -> str:
    """Every integer source poisons ``float``/``double``; the fp32 comparison build includes <math.h>."""
    return FLOAT_PRELUDE if floating else PRELUDE
_PROTOTYPE = re.compile(r"^void (\w+)\((.*)\);$", re.MULTILINE)
_CODEGEN_NOISE = [
    re.compile(r'^#ifdef __cplusplus\nextern "C"\n#endif\n', re.MULTILINE),
    re.compile(r"^#define TVM_EXPORTS\n", re.MULTILINE),
    re.compile(r"^void\* __tvm_ffi__library_ctx = NULL;\n", re.MULTILINE),
    re.compile(r"^#include <stdbool.h>\n", re.MULTILINE),
    re.compile(r"^// tvm target:.*\n", re.MULTILINE),
    # helpers the prelude defines (saturate macros, high-word sum), not extern functions
    re.compile(r"^(TVM_DLL )?int32_t (ISEG_[SU]SAT|iseg_mulhi_sum)\(int32_t(, int32_t)*\);\n", re.MULTILINE),
]


def c_type(dtype: str) -> str:
    if dtype not in C_TYPES:
        raise ValueError(f"no C type for dtype {dtype}: the deployed module must be integer-only")
    return C_TYPES[dtype]


_EXTERN_DECLARATION = re.compile(r"^void \w+\((?:void\*|int32_t)(?:, (?:void\*|int32_t))*\);\n", re.MULTILINE)


def clean_kernel_source(source: str, floating: bool = False, headers: tuple[str, ...] = ()) -> str:
    """The codegen's C with TVM's export macros, C++ guards and globals removed.

    Extern micro-kernels (``T.call_extern``) keep the declaration the codegen writes for them, unless they come
    from ``headers`` (header-only micro-kernels, included first so that they inline into the kernels)."""
    for pattern in _CODEGEN_NOISE:
        source = pattern.sub("", source)
    source = source.replace("TVM_DLL ", "")
    if headers:
        source = _EXTERN_DECLARATION.sub("", source)
    includes = "".join(f'#include "{header}"\n' for header in headers)
    return includes + prelude(floating) + re.sub(r"\n{3,}", "\n\n", source)


def headers_of(sources: dict[str, str] | None) -> tuple[str, ...]:
    """The header files among shipped extern sources (micro-kernels the kernels include)."""
    return tuple(name for name in (sources or {}) if name.endswith(".h"))


def array_literal(values: np.ndarray) -> str:
    flat = values.ravel()
    if flat.dtype == np.bool_:
        flat = flat.astype(np.uint8)
    if flat.dtype == np.float32:  # exact: C99 hexadecimal float literals
        lines = [", ".join(f"{v.hex()}f" for v in flat[i:i + 8].tolist()) for i in range(0, flat.size, 8)]
        return "{\n    " + ",\n    ".join(lines) + "\n}"
    lines = [", ".join(map(str, flat[i:i + 24].tolist())) for i in range(0, flat.size, 24)]
    return "{\n    " + ",\n    ".join(lines) + "\n}"


def _pointer(program: StaticProgram, plan: ArenaPlan, index: int) -> str:
    tensor = program.tensors[index]
    ctype = c_type(tensor.dtype)
    if tensor.kind == "input":
        return f"({ctype}*)image"
    if tensor.kind == "output":
        return f"({ctype}*)class_map"
    if tensor.kind == "const":
        return f"({ctype}*){tensor.name}"
    return f"({ctype}*)(isegmenter_arena + {plan.offsets[index]})"


def _shape_macros(prefix: str, tensor: Tensor) -> str:
    dims = ", ".join(map(str, tensor.shape))
    size = int(np.prod(tensor.shape))
    return (f"#define ISEGMENTER_{prefix}_SHAPE {{{dims}}}\n"
            f"#define ISEGMENTER_{prefix}_SIZE {size} /* elements of {c_type(tensor.dtype)} */\n")


def emit_header(program: StaticProgram, plan: ArenaPlan) -> str:
    image, class_map = program.tensors[program.input_index], program.tensors[program.output_index]
    return (
        "/* Integer-only I-Segmenter: generated by deploy.emit_c. */\n"
        "#ifndef ISEGMENTER_H\n#define ISEGMENTER_H\n#include <stdint.h>\n\n"
        + _shape_macros("INPUT", image) + _shape_macros("OUTPUT", class_map)
        + f"#define ISEGMENTER_ARENA_BYTES {plan.size}\n\n"
        "/* Runs the network on one image; returns 0. Not reentrant (one static arena). */\n"
        f"int isegmenter_run(const {c_type(image.dtype)} *image, {c_type(class_map.dtype)} *class_map);\n"
        "\n#endif\n"
    )


def emit_executor(program: StaticProgram, plan: ArenaPlan, kernel_source: str) -> str:
    floating = is_floating(program)
    image, class_map = program.tensors[program.input_index], program.tensors[program.output_index]
    prototypes = "\n".join(f"void {name}({args});" for name, args in _PROTOTYPE.findall(kernel_source))
    weights = "\n".join(
        f"static const {c_type(program.tensors[i].dtype)} {program.tensors[i].name}"
        f"[{max(1, program.tensors[i].value.size)}] __attribute__((aligned({ALIGNMENT}))) = "
        f"{array_literal(program.tensors[i].value)};"
        for i in program.tensors_of_kind("const")
    )
    arena = (f"static uint8_t isegmenter_arena[{plan.size}] __attribute__((aligned({ALIGNMENT})));\n\n"
             if plan.size else "")
    calls = "\n".join(
        f"    {call.kernel}({', '.join(_pointer(program, plan, a) for a in call.args)});" for call in program.calls
    )
    return (
        '/* Static executor generated by deploy.emit_c: weights in flash, one arena, no malloc. */\n'
        '#include "isegmenter.h"\n' + prelude(floating) + "\n" + prototypes + "\n\n" + weights + "\n\n" + arena
        + f"int isegmenter_run(const {c_type(image.dtype)} *image, {c_type(class_map.dtype)} *class_map)\n"
        "{\n" + calls + "\n    return 0;\n}\n"
    )


def emit_sources(program: StaticProgram, plan: ArenaPlan, mcpu: str = "",
                 extern_sources: dict[str, str] | None = None) -> dict[str, str]:
    """File name -> C source of the deployable library for ``program`` with arena ``plan``.

    ``extern_sources``: micro-kernels called by tensorized kernels, shipped alongside."""
    kernel_source = clean_kernel_source(kernels_to_c(program.kernels, mcpu), is_floating(program),
                                        headers_of(extern_sources))
    return {
        "isegmenter.h": emit_header(program, plan),
        "isegmenter.c": emit_executor(program, plan, kernel_source),
        "isegmenter_kernels.c": kernel_source,
        **(extern_sources or {}),
    }
