"""The MediaPipe selfie segmenter (a CNN nobody here trained) through the same integer-only passes.

``quantize_selfie(imported, calibration_images)`` takes ``frontend.load(fetch_mediapipe_selfie())``
(TFLite: NHWC RGB in [0, 1] -> person probability [1,256,256,1]) and uint8 photos [N,256,256,3]:

1. :func:`selfie_float_module`: weights bound, convolutions NCHW, the input made the raw uint8 image
   (``x / 255`` in NCHW, folded into the first convolution by ``FoldInputNormalization``) and the
   NHWC regions between the convolutions kept in NCHW (:mod:`sink_layout_permutes`);
2. ``calibrate`` -> ``integerize`` -> ``verify_integer_only``, as for the Segmenter, with int16 activations
   (int8 per-tensor activations lose the model: see docs/passes.md) and bias correction by default.

The integer module maps the uint8 image [1,256,256,3] to a **uint8 probability map** [1,256,256,1]
(``round(255 * sigmoid)``, an integer lookup table of the int8 logit): person mask = ``p >= 128``,
which is ``sigmoid >= 0.5``.
"""
import numpy as np
import tvm
from tvm import relax

from common.errors import UserError

from .calibrate import calibrate
from .fold_input_normalization import FoldInputNormalization
from .integerize import integerize
from .quantize import QuantizedModel
from .sink_layout_permutes import sink_layout_permutes
from .verify_integer_only import verify_integer_only

PHOTOS = ("astronaut", "chelsea", "coffee", "camera")  # the frontend's LiteRT comparison photos; the first calibrates
MASK_THRESHOLD = 128  # uint8 probability p = round(255 * sigmoid): p >= 128  <=>  sigmoid >= 0.5


def selfie_float_module(imported) -> tvm.IRModule:
    """Float ``main(image float32 [1,3,H,W] raw pixels 0..255) -> probability [1,H,W,1]``, weights bound."""
    from frontend.weights import bind_weights

    shape = tuple(int(d) for d in imported.input_shape)
    if len(shape) != 4 or shape[3] != 3 or str(imported.input_dtype) != "float32":
        raise UserError(f"{imported.source_path or 'model'}: expected an NHWC float32 RGB input [1,H,W,3] in [0, 1] "
                        f"(the MediaPipe selfie segmenter), got {imported.input_dtype} {list(shape)}")
    bound, _ = bind_weights(imported.mod, imported.params)
    nchw = relax.transform.ConvertLayout({"relax.nn.conv2d": ["NCHW", "OIHW"]})(bound)
    func = relax.transform.FoldConstant()(nchw)["main"]
    nhwc_input = func.params[0]
    image = relax.Var("image", relax.TensorType((shape[0], 3, shape[1], shape[2]), "float32"))

    def unit_range(bb, sinker, image):  # the model's [0, 1] NHWC input stands for image / 255 in NCHW
        sinker.stand_in[nhwc_input] = bb.emit(relax.op.multiply(image, relax.const(1 / 255, "float32")))

    mod = tvm.IRModule({"main": sink_layout_permutes(func, [image], unit_range)})
    return FoldInputNormalization()(relax.transform.FoldConstant()(mod))


def selfie_photos(names=PHOTOS, size: int = 256) -> np.ndarray:
    """scikit-image's photos as uint8 RGB [N,size,size,3] (grey ones repeated to RGB), resized with anti-aliasing."""
    from skimage import data, transform

    photos = []
    for name in names:
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        resized = transform.resize(image, (size, size), anti_aliasing=True)
        photos.append(np.round(resized * 255).astype(np.uint8))
    return np.stack(photos)


def photo_inputs(images, size: int = 256) -> list[np.ndarray]:
    """uint8 photos [N,size,size,3] -> the float module's inputs (one [1,3,size,size] float32 per photo)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8 or not len(images):
        raise UserError(f"photos must be uint8 [N,{size},{size},3] (N >= 1), got {images.dtype} {list(images.shape)}; "
                        "resize them first, e.g. relax_passes.mediapipe.selfie_photos")
    return [img.transpose(2, 0, 1)[None].astype(np.float32) for img in images]


def quantize_selfie(imported, calibration_images, *, observer: str = "minmax", headroom: bool = True,
                    activations: str = "int16", bias_correction: bool = True, progress: bool = True) -> QuantizedModel:
    """The selfie segmenter as an integer-only module: uint8 image -> uint8 probability map."""
    mod = selfie_float_module(imported)
    inputs = photo_inputs(calibration_images, int(imported.input_shape[1]))
    calibration = calibrate(mod, inputs, progress=progress)
    program = integerize(mod["main"], calibration, observer=observer, headroom=headroom, activations=activations,
                         bias_correction=bias_correction)
    return QuantizedModel(program, verify_integer_only(program.to_relax()), mod, calibration, observer,
                          gelu="none", softmax_dtype="none", headroom=headroom)


def mask_agreement(model: QuantizedModel, images) -> list[float]:
    """Per image: fraction of pixels where the integer mask (p >= 128) equals the float one (sigmoid > 0.5),
    the float one from the TVM llvm build of ``model.float_mod``, the integer one from the numpy reference."""
    inputs = photo_inputs(images, model.input_shape[1])
    float_vm = relax.VirtualMachine(tvm.compile(model.float_mod, "llvm"), tvm.cpu())
    agreement = []
    for image, x in zip(images, inputs):
        expected = float_vm["main"](tvm.runtime.tensor(x)).numpy() > 0.5
        got = model.reference(image[None]) >= MASK_THRESHOLD
        agreement.append(float(np.mean(got == expected)))
    return agreement


ABLATIONS = ({}, {"bias_correction": False}, {"activations": "int8"}, {"observer": "mse"})


def agreement_report() -> dict:
    """Default options, calibration on the first photo: ``{"photos": {name: agreement}, ...}`` for the accuracy
    benchmark, or ``{"skipped": reason}`` when the model cannot be fetched (offline, nothing in the cache)."""
    import frontend
    from frontend.tflite_import import fetch_mediapipe_selfie

    try:
        imported = frontend.load(fetch_mediapipe_selfie())
    except UserError as err:
        return {"skipped": str(err)}
    photos = selfie_photos()
    agreement = mask_agreement(quantize_selfie(imported, photos[:1], progress=False), photos)
    return {"calibration": PHOTOS[0], "photos": dict(zip(PHOTOS, agreement)), "min": min(agreement)}


def main():
    """``python -m relax_passes.mediapipe``: mask agreement integer vs float on the photos, with ablations."""
    import frontend
    from frontend.tflite_import import fetch_mediapipe_selfie

    imported = frontend.load(fetch_mediapipe_selfie())
    photos = selfie_photos()
    print(f"calibration: {PHOTOS[0]} (one photo); mask = p >= {MASK_THRESHOLD} vs float sigmoid > 0.5")
    print("| options | " + " | ".join(PHOTOS) + " | min |")
    print("|---|" + "---|" * (len(PHOTOS) + 1))
    for options in ABLATIONS:
        model = quantize_selfie(imported, photos[:1], progress=False, **options)
        agreement = mask_agreement(model, photos)
        name = ", ".join(f"{k}={v}" for k, v in options.items()) or "default (int16 activations, bias correction)"
        print(f"| {name} | " + " | ".join(f"{a:.2%}" for a in agreement) + f" | {min(agreement):.2%} |", flush=True)


if __name__ == "__main__":
    main()
