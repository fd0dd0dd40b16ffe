"""verl's batch columns -> the core's tensors: per-key reward columns and the uid array (no verl import)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from saw_verl.errors import SawInputError


def rewards_from_columns(columns: Mapping, keys: Sequence[str], num_rows: int) -> torch.Tensor:
    """Stack per-key reward columns (e.g. verl's non_tensor_batch) into an (N, K) float64 tensor."""
    stacked = []
    for key in keys:
        if key not in columns:
            raise SawInputError(
                f"reward key {key!r} not found; available keys: {sorted(map(str, columns))}. "
                f"Make sure compute_score returns a dict containing {key!r} for every sample."
            )
        column = np.asarray(columns[key])
        if column.ndim != 1 or column.shape[0] != num_rows:
            raise SawInputError(f"reward key {key!r} has shape {column.shape}, expected ({num_rows},)")
        try:
            values = column.astype(np.float64)
        except (TypeError, ValueError):
            row = next(i for i, v in enumerate(column) if not _is_number(v))
            raise SawInputError(f"reward key {key!r} is not a number at row {row}: {column[row]!r}") from None
        stacked.append(torch.from_numpy(values))
    return torch.stack(stacked, dim=1) if stacked else torch.empty(num_rows, 0, dtype=torch.float64)


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def group_ids_from_index(index) -> tuple[torch.Tensor, int]:
    """verl's uid array (N,) of any hashables -> (group ids (N,) int64 in [0, G), G)."""
    if isinstance(index, torch.Tensor):
        unique, inverse = torch.unique(index, return_inverse=True)
        return inverse.to(torch.int64), int(unique.numel())
    array = np.asarray(index)
    if array.dtype == object:
        array = array.astype(str)
    unique, inverse = np.unique(array, return_inverse=True)
    return torch.from_numpy(inverse.reshape(-1).astype(np.int64)), int(unique.size)
