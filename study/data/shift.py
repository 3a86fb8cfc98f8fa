"""Controlled domain shift: derived datasets that walk a natural dataset away from ImageNet step by step.

``<base>@<transform>`` (e.g. ``cats_and_dogs_filtered@shuffle4``) is the base dataset's images and labels,
pool and test split alike, after a deterministic transform. Labels, sizes and splits are untouched, so
comparing ladder levels isolates the effect of domain distance from everything else. Any registered dataset
can be the base; the transform's name and version enter the content fingerprint, so the activation cache
never confuses a level with its base.

Levels (ordered by intended distance from natural photos):
0 ``original``; 1 ``grey`` (luminance, 3 equal channels); 2 ``grey_invert``; 3 ``shuffle4`` (4x4 grid of tiles,
positions shuffled by one fixed permutation); 4 ``shuffle8`` (8x8 tiles); 5 ``permute`` (every pixel moved by
one fixed permutation: no spatial structure left for a convolution to exploit, yet learnable from scratch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from study.errors import StudyError

SEED = 20211  # fixed: every user and run gets the same permutations
VERSION = 1


def _grey(x: np.ndarray) -> np.ndarray:
    y = np.rint(x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    return np.repeat(np.clip(y, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def _tiles(grid: int) -> Callable[[np.ndarray], np.ndarray]:
    def shuffle(x: np.ndarray) -> np.ndarray:
        n, s = x.shape[0], x.shape[1]
        t = s // grid
        if t == 0:
            raise StudyError(f"image size {s} is too small for {grid}x{grid} tiles; use at least {grid} px")
        core = x[:, : t * grid, : t * grid]
        tiles = core.reshape(n, grid, t, grid, t, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, grid * grid, t, t, 3)
        perm = np.random.default_rng(SEED + grid).permutation(grid * grid)
        out = x.copy()
        out[:, : t * grid, : t * grid] = (
            tiles[:, perm].reshape(n, grid, grid, t, t, 3).transpose(0, 1, 3, 2, 4, 5).reshape(n, t * grid, t * grid, 3)
        )
        return out

    return shuffle


def _permute(x: np.ndarray) -> np.ndarray:
    n, s = x.shape[0], x.shape[1]
    perm = np.random.default_rng(SEED).permutation(s * s)
    return x.reshape(n, s * s, 3)[:, perm].reshape(x.shape)


@dataclass(frozen=True)
class Shift:
    name: str
    level: int
    fn: Callable[[np.ndarray], np.ndarray]
    description: str


LADDER: dict[str, Shift] = {
    s.name: s
    for s in (
        Shift("original", 0, lambda x: x, "the base dataset unchanged"),
        Shift("grey", 1, _grey, "ITU-R 601 luminance copied to 3 channels"),
        Shift("grey_invert", 2, lambda x: 255 - _grey(x), "greyscale, then 255 - value"),
        Shift("shuffle4", 3, _tiles(4), "4x4 tiles, positions shuffled by one fixed permutation"),
        Shift("shuffle8", 4, _tiles(8), "8x8 tiles, positions shuffled by one fixed permutation"),
        Shift("permute", 5, _permute, "every pixel moved by one fixed permutation"),
    )
}

SHIFT_DOMAIN = "shifted"


def parse(name: str) -> tuple[str, Shift | None]:
    """``"base@shuffle4"`` -> (``"base"``, the shift); a plain name -> (name, None)."""
    if "@" not in name:
        return name, None
    base, _, shift = name.partition("@")
    if shift not in LADDER:
        raise StudyError(f"unknown domain shift {shift!r} in {name!r}; known shifts: {', '.join(LADDER)}")
    return base, LADDER[shift]


def ladder(base: str) -> list[str]:
    """Dataset names of the whole ladder on ``base``, level 0 first."""
    return [f"{base}@{s.name}" for s in sorted(LADDER.values(), key=lambda s: s.level)]


def apply(shift: Shift, images: np.ndarray) -> np.ndarray:
    """Transform a uint8 batch (n, s, s, 3); deterministic and independent of n."""
    return np.ascontiguousarray(shift.fn(images), dtype=np.uint8)
