"""A tiny ImageNet-layout folder of real JPEGs for tests: <root>/{train,val}/<wnid>/*.JPEG.

Each class has its own colour, plus noise, so a network can learn it; sizes have odd aspect
ratios (shortest side 60-90 px, long side up to ~2.5x) in both orientations; the first val
image of class 0 is grayscale, to exercise the grayscale -> RGB path.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.io import encode_jpeg, write_file

# Distinct colours, one per class (cycled when there are more classes).
COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 220), (230, 210, 40), (200, 60, 210), (40, 210, 210)]


def wnid(c: int) -> str:
    return f"n{c:08d}"


def make_image_folder(root, n_classes: int = 3, train_per_class: int = 6, val_per_class: int = 3,
                      seed: int = 0) -> Path:
    root = Path(root)
    g = torch.Generator().manual_seed(seed)
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for c in range(n_classes):
            folder = root / split / wnid(c)
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                short = int(torch.randint(60, 91, (1,), generator=g))
                long = int(short * (1 + 1.5 * torch.rand(1, generator=g).item()))
                h, w = (short, long) if k % 2 == 0 else (long, short)
                colour = torch.tensor(COLOURS[c % len(COLOURS)], dtype=torch.float32).view(3, 1, 1)
                noise = torch.randn(3, h, w, generator=g) * 30
                img = (colour + noise).clamp(0, 255).to(torch.uint8)
                if split == "val" and c == 0 and k == 0:
                    img = img.float().mean(0, keepdim=True).to(torch.uint8)  # grayscale
                write_file(str(folder / f"{split}_{c}_{k:03d}.JPEG"), encode_jpeg(img, quality=90))
    return root
