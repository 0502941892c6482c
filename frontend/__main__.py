"""``python -m frontend MODEL [--input-shape 1,3,64,64] [--json]``: import a model and describe it.

Prints the input spec, the weights and the canonical operator census, so a model can be
checked before ``python -m deploy.build``.  Bad input: ``error: <message>`` and exit code 2.
"""
import argparse
import json
import sys

from common.errors import UserError

from . import load


def describe(model) -> dict:
    """What a user needs to know about an imported model, JSON-ready."""
    return {
        "source": model.source_path,
        "format": model.source_format,
        "input": {"name": model.input_name, "shape": list(model.input_shape), "dtype": model.input_dtype},
        "weights": {"tensors": len(model.params), "values": int(sum(p.size for p in model.params))},
        "relax_ops": model.notes["relax_ops"],
        "non_canonical_ops": model.notes["non_canonical_ops"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m frontend", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .onnx, .pt2 (torch.export) or .tflite file")
    parser.add_argument("--input-shape", help="fix dynamic input dims, e.g. 1,3,64,64")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    try:
        shape = None if args.input_shape is None else tuple(int(d) for d in args.input_shape.split(","))
    except ValueError:
        print(f"error: --input-shape '{args.input_shape}' is not a comma-separated list of integers", file=sys.stderr)
        return 2
    try:
        info = describe(load(args.model, input_shape=shape))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    spec = info["input"]
    print(f"{info['source']} ({info['format']}): input '{spec['name']}' {spec['dtype']}{spec['shape']}, "
          f"{info['weights']['tensors']} weight tensors ({info['weights']['values']} values)")
    for op, count in info["relax_ops"].items():
        print(f"  {count:4d}  {op}")
    if info["non_canonical_ops"]:
        print(f"outside the canonical vocabulary: {', '.join(info['non_canonical_ops'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
