"""Perturbation sequences (-P) and the flip probability, for any dataset.

Reference: Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions
and Perturbations" (ICLR 2019), sec. 3 / 4 (CIFAR-10-P, flip probability); sequences as in
``ImageNet-P/create_p/make_cifar_p.py`` of github.com/hendrycks/robustness (CIFAR-10-P, the
"difficulty 1" sets), flip probability as ``flip_prob`` in ``ImageNet-P/cifar-p-eval.py``.
METHODS.md sec. 1: noise sequences compare every frame with the first, the others consecutive
frames; the summary is the mean over perturbation types.

Each sequence is (N, T, C, H, W) uint8.  Noise sequences: frame 0 is the clean image, frames
1..30 carry independent noise.  The others are smooth progressions (frame 0 is the start of the
progression, not the clean image, except zoom blur).  Image size: pixel-unit constants (blur
sigmas and radii, the translation range) are multiplied by ``s = min(H, W) / 32`` as in
:mod:`auglabel.corruptions`; angles, scales and brightness steps are size-free.  Translation keeps
the reference's 1 px step and scales its range (-7..8 px at 32 px, 16 frames).

Departures: results are quantised like the reference (``np.uint8`` truncation for noise / colour
sequences, PIL / OpenCV rounding for warps) but computed on the 0..255 scale with a 1e-6
tolerance, so float error never drops an exact value by one level; rotate / scale use the true
image centre (current torchvision); OpenCV's 1/32-pixel fixed-point warp is not replicated.
"""
from __future__ import annotations

import hashlib
import math
import numbers
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..corruptions import check_uint8_images
from ..corruptions._color import as_rgb, colour, luma
from ..corruptions._filters import clipped_zoom, gaussian_filter, gaussian_filter_bank, size_scale
from ..corruptions._motion import magick_motion_blur
from ..corruptions.spatter import WATER_RGB, _water_drops
from ..errors import ConfigError, DataError

PerturbationFn = Callable[[Tensor, torch.Generator], Tensor]
#: name -> ``fn(images uint8 (N, C, H, W), generator) -> uint8 (N, T, C, H, W)``.
PERTURBATIONS: dict[str, PerturbationFn] = {}
#: Sequences of independent noise: every frame is compared with the first (clean) one.
NOISE_PERTURBATIONS: frozenset[str] = frozenset({"gaussian_noise", "shot_noise", "speckle_noise"})
#: The 10 types of CIFAR-10-P / ImageNet-P whose mean flip probability is reported.
BENCHMARK_PERTURBATIONS: tuple[str, ...] = ("gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "spatter",
                                            "brightness", "translate", "rotate", "tilt", "scale")
#: The released validation types (the reference's ``shear`` is not implemented).
EXTRA_PERTURBATIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "snow")
_MAX_FRAMES = 31
_GUARD = 1e-6  # float rounding tolerance before truncating to 8 bits


def _register(name: str) -> Callable[[Callable[[Tensor, torch.Generator], Tensor]], PerturbationFn]:
    """Wrap ``fn(x, generator)``, ``x`` float (N, C, H, W) on 0..255, returning float frames on
    0..255, into a validating uint8 -> uint8 :data:`PERTURBATIONS` entry."""
    def decorator(fn: Callable[[Tensor, torch.Generator], Tensor]) -> PerturbationFn:
        def perturbation(images: Tensor, generator: torch.Generator) -> Tensor:
            check_images(images)
            if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
                raise ConfigError("perturbations need a CPU torch.Generator (draws are moved to the images' device)")
            dtype = torch.float32 if images.device.type == "mps" else torch.float64
            if images.shape[0] == 0:  # an empty shard
                return images.new_zeros((0, num_frames(name, *images.shape[-2:]), *images.shape[1:]))
            frames = fn(images.to(dtype), generator)
            return (frames + _GUARD).nan_to_num(0.0).clamp(0, 255).floor().to(torch.uint8)

        perturbation.__name__, perturbation.__doc__ = name, fn.__doc__
        PERTURBATIONS[name] = perturbation
        return perturbation

    return decorator


def _normal(generator: torch.Generator, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """Standard normal draws from the CPU generator, moved to ``like``'s device and dtype, so that
    a seed gives the same sequence on every device."""
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(like.device, like.dtype)


# ---------------------------------------------------------------- noise (compare with frame 0)
@_register("gaussian_noise")
def gaussian_noise(x: Tensor, generator: torch.Generator) -> Tensor:
    """Frames 1..30: ``clip(x + N(0, 0.02^2))`` on [0, 1], independent per frame."""
    noise = _normal(generator, (x.shape[0], _MAX_FRAMES - 1, *x.shape[1:]), x)
    return torch.cat([x.unsqueeze(1), (x.unsqueeze(1) + 255 * 0.02 * noise).clamp(0, 255)], dim=1)


@_register("shot_noise")
def shot_noise(x: Tensor, generator: torch.Generator) -> Tensor:
    """Frames 1..30: ``clip(Poisson(700 x) / 700)`` on [0, 1]."""
    rates = (x / 255 * 700).detach().to("cpu", torch.float64).unsqueeze(1).expand(-1, _MAX_FRAMES - 1, -1, -1, -1)
    counts = torch.poisson(rates.contiguous(), generator=generator).to(x.device, x.dtype)
    return torch.cat([x.unsqueeze(1), (counts * (255 / 700)).clamp(0, 255)], dim=1)


@_register("speckle_noise")
def speckle_noise(x: Tensor, generator: torch.Generator) -> Tensor:
    """Frames 1..30: ``clip(x + x N(0, 0.05^2))``."""
    noise = _normal(generator, (x.shape[0], _MAX_FRAMES - 1, *x.shape[1:]), x)
    return torch.cat([x.unsqueeze(1), (x.unsqueeze(1) * (1 + 0.05 * noise)).clamp(0, 255)], dim=1)


# ---------------------------------------------------------------- warps (compare consecutive frames)
def _warp(x: Tensor, out_to_in: Tensor, mode: str) -> Tensor:
    """Sample every image of ``x`` (N, C, H, W) through every frame's homography ``out_to_in``
    (T, 3, 3; output pixel index (col, row, 1) -> input pixel index), zeros outside.
    Returns (N, T, C, H, W)."""
    n, c, h, w = x.shape
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
    points = torch.stack([cols, rows, torch.ones_like(rows)], dim=-1).reshape(-1, 3)
    source = points @ out_to_in.transpose(1, 2)  # (T, H*W, 3)
    src_col, src_row = source[..., 0] / source[..., 2], source[..., 1] / source[..., 2]
    grid = torch.stack([2 * src_col / (w - 1) - 1, 2 * src_row / (h - 1) - 1], dim=-1)
    grid = grid.reshape(-1, h, w, 2).to(x.device, x.dtype)
    frames = len(out_to_in)
    # images go in the channel axis so that each frame's grid is built once for the whole batch
    stacked = x.reshape(1, n * c, h, w).expand(frames, -1, -1, -1)
    out = F.grid_sample(stacked, grid, mode=mode, padding_mode="zeros", align_corners=True)
    return out.reshape(frames, n, c, h, w).transpose(0, 1)


def _affine_out_to_in(h: int, w: int, angle: Tensor, zoom: Tensor, shift_x: Tensor) -> Tensor:
    """Inverse of torchvision ``F.affine(angle, translate=(shift_x, 0), scale=zoom)``: rotation
    counter-clockwise on screen and scaling about the image centre, then translation; (T, 3, 3)."""
    theta = torch.deg2rad(angle.double())
    cos, sin, zoom = torch.cos(theta), torch.sin(theta), zoom.double()
    forward = torch.zeros(len(theta), 3, 3, dtype=torch.float64)
    forward[:, 0, 0], forward[:, 0, 1] = zoom * cos, zoom * sin
    forward[:, 1, 0], forward[:, 1, 1] = -zoom * sin, zoom * cos
    forward[:, 2, 2] = 1
    centre = torch.tensor([[1, 0, (w - 1) / 2], [0, 1, (h - 1) / 2], [0, 0, 1]], dtype=torch.float64)
    forward = centre @ forward @ torch.linalg.inv(centre)
    forward[:, 0, 2] += shift_x.double()
    return torch.linalg.inv(forward)


def _round_half_up(v: Tensor) -> Tensor:
    """PIL / OpenCV write interpolated 8-bit values rounded half up."""
    return torch.floor(v + 0.5)


def translation_range(width: int) -> range:
    """Horizontal shifts in pixels, one per frame: ``-7 .. 8`` at width 32 (the reference's
    ``translate=(i - 7, 0)``, i = 0..15), the ends scaled by ``width / 32``."""
    return range(-math.floor(7 * width / 32 + 0.5), math.floor(8 * width / 32 + 0.5) + 1)


@_register("translate")
def translate(x: Tensor, generator: torch.Generator) -> Tensor:  # noqa: ARG001
    """Horizontal shifts by whole pixels (nearest neighbour, zero fill), one pixel per frame."""
    shifts = torch.tensor(list(translation_range(x.shape[-1])), dtype=torch.float64)
    ones = torch.ones_like(shifts)
    return _warp(x, _affine_out_to_in(*x.shape[-2:], 0 * shifts, ones, shifts), "nearest")


@_register("rotate")
def rotate(x: Tensor, generator: torch.Generator) -> Tensor:  # noqa: ARG001
    """Rotation by ``i - 15`` degrees, i = 0..30, bilinear, zero fill."""
    angles = torch.arange(_MAX_FRAMES, dtype=torch.float64) - 15
    out_to_in = _affine_out_to_in(*x.shape[-2:], angles, torch.ones_like(angles), torch.zeros_like(angles))
    return _round_half_up(_warp(x, out_to_in, "bilinear"))


@_register("scale")
def scale(x: Tensor, generator: torch.Generator) -> Tensor:  # noqa: ARG001
    """Zoom by ``(2 i + 70) / 100`` (0.7 .. 1.3) about the centre, bilinear, zero fill."""
    factors = (2 * torch.arange(_MAX_FRAMES, dtype=torch.float64) + 70) / 100
    out_to_in = _affine_out_to_in(*x.shape[-2:], torch.zeros_like(factors), factors, torch.zeros_like(factors))
    return _round_half_up(_warp(x, out_to_in, "bilinear"))


def tilt_homographies(h: int, w: int, degrees: Tensor) -> Tensor:
    """The reference's ``P2 @ T @ RX @ RY @ P1`` (input -> output pixel index) for
    ``phi = theta = degrees``: the image plane rotated about both axes, viewed from ``f = |(w, h)|``."""
    angle = torch.deg2rad(degrees.double())
    cos, sin = torch.cos(angle), torch.sin(angle)
    eye = torch.eye(4, dtype=torch.float64).repeat(len(angle), 1, 1)
    rot_x, rot_y = eye.clone(), eye.clone()
    rot_x[:, 1, 1], rot_x[:, 1, 2], rot_x[:, 2, 1], rot_x[:, 2, 2] = cos, -sin, sin, cos
    rot_y[:, 0, 0], rot_y[:, 0, 2], rot_y[:, 2, 0], rot_y[:, 2, 2] = cos, -sin, sin, cos
    f = math.hypot(w, h)
    to_plane = torch.tensor([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]], dtype=torch.float64)
    push = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]], dtype=torch.float64)
    project = torch.tensor([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]], dtype=torch.float64)
    return project @ push @ rot_x @ rot_y @ to_plane


@_register("tilt")
def tilt(x: Tensor, generator: torch.Generator) -> Tensor:  # noqa: ARG001
    """Perspective tilt by ``0.75 (i - 15)`` degrees about both axes (``cv2.warpPerspective``,
    bilinear, zero border).  As in the reference, the plane sits at depth ``f + 1``, so even the
    0 degree frame is shrunk by ``f / (f + 1)`` (0.978 at 32 px)."""
    degrees = 0.75 * (torch.arange(_MAX_FRAMES, dtype=torch.float64) - 15)
    out_to_in = torch.linalg.inv(tilt_homographies(*x.shape[-2:], degrees))
    return _round_half_up(_warp(x, out_to_in, "bilinear"))


# ---------------------------------------------------------------- blur, colour, weather
@_register("zoom_blur")
def zoom_blur(x: Tensor, generator: torch.Generator) -> Tensor:  # noqa: ARG001
    """Frame i: mean of the clean image and its 8-bit zooms by ``1 + 0.004 j``, j = 1..i."""
    factors = 1 + 0.004 * torch.arange(1, _MAX_FRAMES, dtype=torch.float64)
    out_to_in = _affine_out_to_in(*x.shape[-2:], torch.zeros_like(factors), factors, torch.zeros_like(factors))
    zooms = _round_half_up(_warp(x, out_to_in, "bilinear"))
    totals = torch.cat([x.unsqueeze(1), x.unsqueeze(1) + zooms.cumsum(dim=1)], dim=1)
    counts = torch.arange(1, _MAX_FRAMES + 1, device=x.device, dtype=x.dtype).reshape(1, -1, 1, 1, 1)
    return totals / counts


@_register("gaussian_blur")
def gaussian_blur(x: Tensor, generator: torch.Generator) -> Tensor:  # noqa: ARG001
    """``skimage.filters.gaussian(sigma=(0.3 + 0.015 i) s, truncate=7)``, i = 0..30; all frames in
    one filter-bank convolution (no loop over frames)."""
    s = size_scale(x)
    return gaussian_filter_bank(x, [(0.3 + 0.015 * i) * s for i in range(_MAX_FRAMES)], truncate=7.0)


@_register("motion_blur")
def motion_blur(x: Tensor, generator: torch.Generator) -> Tensor:  # noqa: ARG001
    """ImageMagick motion blur, radius ``6 s``, sigma ``1.8 s``, angle ``9 (i - 20)`` degrees,
    i = 0..20 (21 frames)."""
    n, frames, s = x.shape[0], 21, size_scale(x)
    angles = (9.0 * (torch.arange(frames, dtype=torch.float64) - 20)).repeat(n)
    repeated = x.repeat_interleave(frames, dim=0)
    return magick_motion_blur(repeated, 6 * s, 1.8 * s, angles).reshape(n, frames, *x.shape[1:])


@_register("brightness")
def brightness(x: Tensor, generator: torch.Generator) -> Tensor:  # noqa: ARG001
    """HSV value ``V <- clip(V + c, 0, 1)``, ``c = 0.015 (i - 15)``, i = 0..30.  With hue and
    saturation fixed this scales RGB by ``V' / V`` (grey ``V'`` where ``V = 0``): skimage's
    ``rgb2hsv`` / ``hsv2rgb`` round trip without its float noise."""
    value = x.amax(dim=1, keepdim=True).unsqueeze(1)  # (N, 1, 1, H, W)
    shifts = (0.015 * 255 * (torch.arange(_MAX_FRAMES, dtype=x.dtype) - 15)).to(x.device).reshape(1, -1, 1, 1, 1)
    new_value = (value + shifts).clamp(0, 255)
    ratio = new_value / torch.where(value > 0, value, torch.ones_like(value))
    return torch.where(value > 0, x.unsqueeze(1) * ratio, new_value.expand(-1, -1, x.shape[1], -1, -1))


@_register("snow")
def snow(x: Tensor, generator: torch.Generator) -> Tensor:
    """Flakes ``N(0.05, 0.3^2)``, zoomed x2, thresholded at 0.5, 8-bit, motion-blurred (radius
    ``10 s``, sigma ``2 s``) at ``4 i - 150`` degrees, added twice (once rotated 180 degrees) to
    ``0.85 x + 0.15 max(x, 1.5 gray(x) + 0.5)``."""
    n, s = x.shape[0], size_scale(x)
    layer = clipped_zoom(0.05 + 0.3 * _normal(generator, (n, 1, *x.shape[-2:]), x), 2)
    layer = torch.floor(torch.where(layer < 0.5, torch.zeros_like(layer), layer).clamp(0, 1) * 255)
    angles = (4.0 * torch.arange(_MAX_FRAMES, dtype=torch.float64) - 150).repeat(n)
    flakes = magick_motion_blur(layer.repeat_interleave(_MAX_FRAMES, dim=0), 10 * s, 2 * s, angles) / 255
    flakes = flakes.reshape(n, _MAX_FRAMES, 1, *x.shape[-2:])
    unit = x / 255
    bright = 0.85 * unit + 0.15 * torch.maximum(unit, luma(as_rgb(unit)) * 1.5 + 0.5)
    return (bright.unsqueeze(1) + flakes + flakes.flip(-1, -2)).clamp(0, 1) * 255


@_register("spatter")
def spatter(x: Tensor, generator: torch.Generator) -> Tensor:
    """Water drops ``N(0.6, 0.265^2)`` blurred (sigma ``1.75 s``), kept above 0.7 and shaded as in
    the reference (Canny, distance, emboss; :func:`auglabel.corruptions.spatter._water_drops`),
    strength 0.6; between frames the liquid runs down: ``row_r <- 0.2 row_r + 0.8 row_(r-1)``.

    The frames stay a loop of 31 batched steps (not over images): each is computed from the one
    before, and a closed form (binomial sums of shifted rows) would round differently."""
    n, s = x.shape[0], size_scale(x)
    liquid = gaussian_filter(0.6 + 0.265 * _normal(generator, (n, 1, *x.shape[-2:]), x), 1.75 * s)
    liquid = torch.where(liquid < 0.7, torch.zeros_like(liquid), liquid)
    layers = []
    for _ in range(_MAX_FRAMES):  # frames depend on each other; each step is batched
        layers.append(liquid)
        liquid = 0.2 * liquid + 0.8 * F.pad(liquid[..., :-1, :], (0, 0, 1, 0))
    drops = _water_drops(torch.stack(layers, 1).flatten(0, 1), s).reshape(n, _MAX_FRAMES, 1, *x.shape[-2:])
    return (x.unsqueeze(1) + 0.6 * 255 * drops * colour(WATER_RGB, x.shape[1], x).unsqueeze(1)).clamp(0, 255)


# ---------------------------------------------------------------- public entry points
def check_images(images: Tensor) -> None:
    """Raise :class:`DataError` unless ``images`` is uint8 (N, C, H, W), C in {1, 3}, H, W >= 8."""
    check_uint8_images(images, "perturbations")


def perturbation_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator seeded from ``(seed, name)``, so that different types never share draws."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"perturbation seed must be an integer, got {seed!r}")
    digest = hashlib.sha256(f"auglabel.perturbations/{name}/{int(seed)}".encode()).digest()
    return torch.Generator(device="cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def num_frames(name: str, height: int, width: int) -> int:  # noqa: ARG001
    """T, the number of frames of ``name``'s sequences for images of this size."""
    if name == "translate":
        return len(translation_range(width))
    return 21 if name == "motion_blur" else _MAX_FRAMES


def _check_name(name: str) -> str:
    if name not in PERTURBATIONS:
        raise ConfigError(f"unknown perturbation {name!r}; choose one of: {', '.join(sorted(PERTURBATIONS))}")
    return name


def perturb(images: Tensor, name: str, seed: int = 0) -> Tensor:
    """The sequences of ``name`` for ``images`` (uint8 (N, C, H, W)) -> uint8 (N, T, C, H, W)."""
    return PERTURBATIONS[_check_name(name)](images, perturbation_generator(seed, name))


# ---------------------------------------------------------------- flip probability
def flip_counts(predictions: Tensor, noise: bool, difficulty: int = 1) -> tuple[int, int]:
    """``(flips, comparisons)`` over videos of top-1 predictions (N, T): a noise video compares
    frames 1..T-1 with frame 0, any other compares frames ``t`` and ``t + difficulty`` (the
    reference's consecutive frames of each ``difficulty``-strided subsequence; 1 for CIFAR-P).
    Sums, so that shards can be all-reduced exactly."""
    changed = _changed_frames(predictions, noise, difficulty)
    return int(changed.sum()), changed.numel()


def _changed_frames(predictions: Tensor, noise: bool, difficulty: int) -> Tensor:
    """The (N, T') bool comparisons that :func:`flip_counts` sums; checks shapes only (no host sync)."""
    predictions = torch.as_tensor(predictions)
    integer = not (predictions.is_floating_point() or predictions.is_complex() or predictions.dtype == torch.bool)
    if predictions.dim() != 2 or not integer:
        raise DataError(f"flip counts need integer predictions of shape (N, T); got {predictions.dtype} "
                        f"of shape {tuple(predictions.shape)}")
    frames = predictions.shape[1]
    if frames < 2:
        raise DataError(f"flip counts need videos of at least 2 frames; got {frames}")
    if isinstance(difficulty, bool) or not isinstance(difficulty, numbers.Integral) or not 1 <= difficulty < frames:
        raise ConfigError(f"flip difficulty must be an integer from 1 to {frames - 1}, got {difficulty!r}")
    if noise:
        return predictions[:, 1:] != predictions[:, :1]
    return predictions[:, difficulty:] != predictions[:, :-difficulty]


def flip_probability(predictions: Tensor, noise: bool, difficulty: int = 1) -> float:
    """The fraction of frame comparisons whose top-1 prediction changes (``flip_prob`` of the
    reference: the mean over videos of each video's mean, equal here since all videos have T frames)."""
    flips, comparisons = flip_counts(predictions, noise, difficulty)
    if comparisons == 0:
        raise DataError("flip probability of an empty set of videos")
    return flips / comparisons


def mean_flip_probability(rates: Mapping[str, float]) -> float:
    """mFP: the mean of the per-type flip probabilities (METHODS.md sec. 1)."""
    if not rates:
        raise ConfigError("mean flip probability needs at least one perturbation rate")
    return sum(rates.values()) / len(rates)


def _predict(model: nn.Module, frames: Tensor, batch_size: int) -> Tensor:
    """Top-1 predictions for uint8 frames (M, C, H, W), ``batch_size`` frames per forward pass."""
    outputs = []
    for chunk in frames.split(batch_size):
        logits = model(chunk.float() / 255)
        outputs.append((logits[0] if isinstance(logits, tuple) else logits).argmax(dim=1))
    return torch.cat(outputs)


def perturbation_flip_counts(model: nn.Module, images: Tensor, names: Sequence[str] | None = None, *, seed: int = 0,
                             batch_size: int = 256, device: torch.device | str | None = None,
                             difficulty: int = 1) -> dict[str, tuple[int, int]]:
    """``{name: (flips, comparisons)}`` of ``model`` (eval mode, no grad; images / 255 in [0, 1])
    on the sequences of ``images`` (uint8 (N, C, H, W); under DDP, this rank's shard).

    ``batch_size`` bounds the frames per forward pass; sequences are built for
    ``batch_size // 31`` images at a time (at least 1) from one generator per ``(seed, name)``,
    so a noise realisation depends on ``(seed, batch_size)``, its distribution does not.
    ``names`` defaults to :data:`BENCHMARK_PERTURBATIONS`; ``device`` to the model's.
    Flips are summed on the device and read back once per type, not once per chunk.
    """
    names = list(BENCHMARK_PERTURBATIONS if names is None else names)
    if isinstance(names, str) or not names:
        raise ConfigError("perturbation names must be a non-empty list of names")
    for name in names:
        _check_name(name)
    check_images(images)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
    if device is None:
        device = next((p.device for p in model.parameters()), images.device)
    device = torch.device(device)
    videos_per_chunk = max(1, batch_size // _MAX_FRAMES)
    was_training = model.training
    model.eval()
    counts: dict[str, tuple[int, int]] = {}
    try:
        with torch.no_grad():
            for name in names:
                generator = perturbation_generator(seed, name)
                flips = comparisons = 0
                for start in range(0, len(images), videos_per_chunk):
                    sequences = PERTURBATIONS[name](images[start:start + videos_per_chunk].to(device), generator)
                    predictions = _predict(model, sequences.flatten(0, 1), int(batch_size))
                    changed = _changed_frames(predictions.reshape(sequences.shape[:2]), name in NOISE_PERTURBATIONS,
                                              difficulty)
                    flips, comparisons = flips + changed.sum(), comparisons + changed.numel()
                counts[name] = (int(flips), comparisons)  # the one host sync per type
    finally:
        model.train(was_training)
    return counts


def perturbation_flip_rates(model: nn.Module, images: Tensor, names: Sequence[str] | None = None, *, seed: int = 0,
                            batch_size: int = 256, device: torch.device | str | None = None,
                            difficulty: int = 1) -> dict[str, float]:
    """``{name: flip probability}``: :func:`perturbation_flip_counts` divided out (one process;
    under DDP all-reduce the counts first).  Average them with :func:`mean_flip_probability`."""
    counts = perturbation_flip_counts(model, images, names, seed=seed, batch_size=batch_size, device=device,
                                      difficulty=difficulty)
    if len(images) == 0:
        raise DataError("flip rates of an empty image set")
    return {name: flips / comparisons for name, (flips, comparisons) in counts.items()}


__all__ = ["BENCHMARK_PERTURBATIONS", "EXTRA_PERTURBATIONS", "NOISE_PERTURBATIONS", "PERTURBATIONS", "check_images",
           "flip_counts", "flip_probability", "mean_flip_probability", "num_frames", "perturb",
           "perturbation_flip_counts", "perturbation_flip_rates", "perturbation_generator", "tilt_homographies",
           "translation_range"]
