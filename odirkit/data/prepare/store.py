"""Preprocessed images for training: held in memory when they fit, else read from the cache per
batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

#: preprocessed images are held in memory when they take less than this
PRELOAD_LIMIT_BYTES = 4 * 1024**3


class ImageStore:
    """Preprocessed images by row index, as ``uint8 [B, 3, S, S]`` batches.

    Small datasets are held in one tensor; larger ones are read from the
    cache per batch (through DataLoader workers when the run asks for them).
    """

    def __init__(self, arrays: list[np.ndarray] | None, entries: list[Path], size: int) -> None:
        self.size = size
        self.entries = entries
        self.tensor: torch.Tensor | None = None
        if arrays is not None:
            stacked = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
            self.tensor = torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return len(self.entries) if self.tensor is None else int(self.tensor.shape[0])

    def item(self, index: int) -> torch.Tensor:
        """One preprocessed image, ``uint8 [3, S, S]``."""
        if self.tensor is not None:
            return self.tensor[index]
        return torch.from_numpy(np.load(self.entries[index])).permute(2, 0, 1).contiguous()

    def batch(self, indices: np.ndarray) -> torch.Tensor:
        """Preprocessed images, ``uint8 [n, 3, S, S]``, from memory or the cache."""
        if self.tensor is not None:
            return self.tensor[torch.from_numpy(np.asarray(indices, dtype=np.int64))]
        return torch.stack([self.item(int(i)) for i in indices])

    def append(self, images: torch.Tensor, spill_dir: Path) -> np.ndarray:
        """Add ``uint8 [N, 3, S, S]`` images (e.g. synthetic ones); return their row indices.

        Held in memory when the store is; otherwise written to ``spill_dir``.
        """
        start = len(self)
        images = images.contiguous()
        if self.tensor is not None:
            self.tensor = torch.cat([self.tensor, images])
        else:
            spill_dir.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(images):
                entry = spill_dir / f"{start + i}.npy"
                np.save(entry, image.permute(1, 2, 0).numpy())
                self.entries.append(entry)
        return np.arange(start, start + len(images))


class _StoreDataset(torch.utils.data.Dataset):
    def __init__(self, store: ImageStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.store.item(index)


def chunked(indices: np.ndarray, size: int) -> list[np.ndarray]:
    """``indices`` (``[N]``) in consecutive chunks of ``size`` (the last may be shorter)."""
    return [indices[i : i + size] for i in range(0, len(indices), size)]
