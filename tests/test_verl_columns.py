"""verl's batch columns -> the core's tensors (saw_verl.integrations.verl.columns)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saw_verl import SawInputError
from saw_verl.integrations.verl.columns import group_ids_from_index, rewards_from_columns


def test_group_ids_from_uid_strings_are_dense_and_consistent():
    ids, count = group_ids_from_index(np.array(["b", "a", "b", "c", "a"], dtype=object))
    assert count == 3 and ids.dtype == torch.int64
    assert ids[0] == ids[2] and ids[1] == ids[4] and len(set(ids.tolist())) == 3


def test_column_errors_name_the_key_and_row():
    columns = {"format": np.array([1, 0, 1]), "correctness": np.array([1.0, 2.0]), "text": np.array(["1", "x", "2"], dtype=object)}
    with pytest.raises(SawInputError, match=r"'length' not found; available keys: \['correctness', 'format', 'text'\]"):
        rewards_from_columns(columns, ["length"], 3)
    with pytest.raises(SawInputError, match=r"'correctness' has shape \(2,\), expected \(3,\)"):
        rewards_from_columns(columns, ["format", "correctness"], 3)
    with pytest.raises(SawInputError, match=r"'text' is not a number at row 1: 'x'"):
        rewards_from_columns(columns, ["text"], 3)
    assert rewards_from_columns(columns, ["format"], 3).tolist() == [[1.0], [0.0], [1.0]]
