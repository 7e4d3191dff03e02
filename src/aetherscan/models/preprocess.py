"""Photos to Fast3R input tensors, exactly as the released model was trained and evaluated.

The rule (SPEC §3, upstream ``load_images``): resize so the long side is ``size`` (each side
``round(side * size / long_side)``; LANCZOS when shrinking, BICUBIC when enlarging), then centre-crop
each side to a multiple of 16, with square photos cropped to 4:3 landscape. ``size=224`` instead
resizes the short side to 224 and centre-crops 224x224. Pixels go to [-1, 1].

Pixel coordinates in this module are continuous with the pixel-centre convention of
``aetherscan.reconstruction`` (pixel (0, 0) covers [0, 1) x [0, 1)). Resizing scales that
coordinate system exactly, and cropping shifts it, so ``CropGeometry`` maps model pixels back to
the photo without loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

IMAGE_SIZES = (512, 384, 224)
PATCH_PX = 16


@dataclass(frozen=True)
class CropGeometry:
    """How a model input was cut from its photo: resize to ``resized_size``, then crop."""

    photo_size: tuple[int, int]  # (width, height) of the upright photo
    resized_size: tuple[int, int]  # (width, height) after resizing, before the crop
    crop_offset: tuple[int, int]  # (left, top) of the crop in the resized image, pixels
    size: tuple[int, int]  # (width, height) of the model input

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) factors from photo pixels to resized pixels; they differ by rounding only."""
        return (
            self.resized_size[0] / self.photo_size[0],
            self.resized_size[1] / self.photo_size[1],
        )

    def model_to_photo(self, uv: np.ndarray) -> np.ndarray:
        """Continuous model-input pixel coordinates (..., 2) to photo pixel coordinates."""
        sx, sy = self.scale
        left, top = self.crop_offset
        uv = np.asarray(uv, np.float64)
        return np.stack([(uv[..., 0] + left) / sx, (uv[..., 1] + top) / sy], axis=-1)

    def photo_to_model(self, uv: np.ndarray) -> np.ndarray:
        """Photo pixel coordinates (..., 2) to model-input pixel coordinates (inverse of the above)."""
        sx, sy = self.scale
        left, top = self.crop_offset
        uv = np.asarray(uv, np.float64)
        return np.stack([uv[..., 0] * sx - left, uv[..., 1] * sy - top], axis=-1)


@dataclass(frozen=True)
class ModelInput:
    """One photo prepared for Fast3R."""

    image: torch.Tensor  # (1, 3, H, W) float32 in [-1, 1]
    rgb: np.ndarray  # (H, W, 3) uint8, the same pixels before normalisation
    geometry: CropGeometry


def plan_crop(photo_size: tuple[int, int], image_size: int = 512) -> CropGeometry:
    """Where a photo of ``photo_size`` (width, height) goes in the model input, without its pixels.

    ``image_size`` 512 or 384: long side to that size, sides cropped to multiples of 16, squares
    to 4:3 landscape. 224: short side to 224, centre crop 224x224.
    """
    if image_size not in IMAGE_SIZES:
        raise ValueError(f"image_size must be one of {IMAGE_SIZES}, got {image_size}")
    width, height = photo_size
    if image_size == 224:
        long_side = round(224 * max(width / height, height / width))
    else:
        long_side = image_size
    largest = max(width, height)
    resized_w, resized_h = (round(side * long_side / largest) for side in photo_size)
    cx, cy = resized_w // 2, resized_h // 2
    if image_size == 224:
        half_w = half_h = 112
    else:
        half_w = (2 * cx) // PATCH_PX * (PATCH_PX // 2)
        half_h = (2 * cy) // PATCH_PX * (PATCH_PX // 2)
        if resized_w == resized_h:
            half_h = 3 * half_w // 4  # square to 4:3 landscape; half_w is a multiple of 8
    if min(half_w, half_h) * 2 < PATCH_PX:
        raise ValueError(
            f"a {width}x{height} photo is too elongated for {image_size}-pixel model input "
            f"(a side would be under {PATCH_PX} pixels)"
        )
    return CropGeometry(
        photo_size=(width, height),
        resized_size=(resized_w, resized_h),
        crop_offset=(cx - half_w, cy - half_h),
        size=(2 * half_w, 2 * half_h),
    )


def input_shapes(
    photo_sizes: Sequence[tuple[int, int]], image_size: int = 512
) -> list[tuple[int, int]]:
    """The model input (height, width) of photos of these (width, height), upright: what a
    memory plan needs before the photos are read."""
    shapes = []
    for size in photo_sizes:
        width, height = plan_crop(size, image_size).size
        shapes.append((height, width))
    return shapes


def preprocess(photo: Image.Image, image_size: int = 512) -> ModelInput:
    """Resize and crop an upright RGB photo (from ``open_photo``) for a Fast3R forward pass."""
    if photo.mode != "RGB":
        raise ValueError(
            f"expected an RGB image (decode it with open_photo), got mode {photo.mode}"
        )
    geometry = plan_crop(photo.size, image_size)
    # Upstream shrinks with LANCZOS and enlarges (or keeps the size) with BICUBIC.
    shrinking = max(photo.size) > max(geometry.resized_size)
    resample = Image.Resampling.LANCZOS if shrinking else Image.Resampling.BICUBIC
    resized = photo.resize(geometry.resized_size, resample)
    left, top = geometry.crop_offset
    cropped = resized.crop((left, top, left + geometry.size[0], top + geometry.size[1]))
    rgb = np.asarray(cropped, dtype=np.uint8)  # (H, W, 3)
    image = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255)  # (3, H, W)
    image = ((image - 0.5) / 0.5).unsqueeze(0)  # (1, 3, H, W)
    return ModelInput(image=image, rgb=rgb, geometry=geometry)
