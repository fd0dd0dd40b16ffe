"""Multi-output agent sessions of verl's v1 trainer: which rows are final outputs, and the broadcast.

In verl 0.9.1's v1 trainer an agent session may emit several outputs, stored in TransferQueue under
the sample keys `{uid}_{session_id}_{index}` (`verl/trainer/ppo/v1/agent_loop_tq.py`). verl's GRPO
(`compute_advantage_for_multi_trajectories` in `verl/trainer/ppo/v1/utils.py`) splits a key with
`key.rsplit("_", 2)`, lets only the row with the highest index of each `{uid}_{session_id}` take part
(the first such row on a tie), reads that row's advantage at its first response token and writes it
times the response mask to every row of the session. `AgentSessions` does the same, vectorized.
No verl import.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch

from saw_verl.errors import SawInputError

KEY_FORMAT = "{uid}_{session_id}_{index}"


class AgentSessions(NamedTuple):
    """keys (N,) str: the sample keys, in batch order.
    final_rows (S,) int64: the batch row of each session's final output.
    session_of_row (N,) int64: each row's session, an index into final_rows; -1 for a row of a session
    that takes no part (`without`), whose advantages are 0."""

    keys: np.ndarray
    final_rows: torch.Tensor
    session_of_row: torch.Tensor

    @property
    def num_rows(self) -> int:
        return len(self.keys)

    @property
    def all_final(self) -> bool:
        """Every row is the final output of its session: the batch is used as is."""
        return len(self.final_rows) == len(self.keys)

    def without(self, excluded: torch.Tensor) -> "AgentSessions":
        """The sessions whose final output is not `excluded` (N,) bool, e.g. verl's padding rows; the rows
        of the others get session -1 (advantage 0)."""
        kept = ~excluded[self.final_rows]
        position = torch.cumsum(kept, dim=0) - 1
        position[~kept] = -1
        return AgentSessions(self.keys, self.final_rows[kept], position[self.session_of_row])

    def broadcast(self, final_advantages: torch.Tensor, final_mask: torch.Tensor, response_mask: torch.Tensor):
        """final_advantages, final_mask (S, L): of the final rows; response_mask (N, L) -> advantages (N, L)
        float32: each row gets its session's final advantage times its own mask. As verl, the final
        advantage is read at `final_mask.argmax(dim=1)` (the first response token of a 0/1 mask)."""
        device = response_mask.device
        first_token = (final_mask.view(torch.uint8) if final_mask.dtype == torch.bool else final_mask).argmax(dim=1)
        value = final_advantages[torch.arange(len(first_token), device=device), first_token]
        value = torch.cat([value, value.new_zeros(1)])  # session -1 (takes no part) reads the appended 0
        advantages = torch.empty(response_mask.shape, dtype=torch.float32, device=device)
        advantages.copy_(response_mask)  # as the torch backend: a float32 copy scaled in place beats a mixed-dtype mul
        return advantages.mul_(value[self.session_of_row.to(device)][:, None])


def agent_sessions(batch_keys: Sequence[str]) -> AgentSessions:
    """verl's v1 sample keys `{uid}_{session_id}_{index}` (N,) -> AgentSessions.

    Raises SawInputError naming the first key that is not in that format (verl's GRPO asserts).
    """
    keys = np.asarray(batch_keys, dtype=str)
    if keys.ndim != 1 or keys.size == 0:
        raise SawInputError(f"batch_keys must be a non-empty flat list of sample keys, got shape {keys.shape}")
    malformed = np.char.count(keys, "_") < 2
    if malformed.any():
        bad = str(keys[malformed.argmax()])
        raise SawInputError(f"sample key {bad!r} is not in verl's v1 format {KEY_FORMAT}")
    split = np.char.rpartition(keys, "_")  # (N, 3): session key, "_", index
    session_names, index_text = split[:, 0], split[:, 2]
    if (index_text == "0").all():  # one output per session (TransferQueue keys are unique): nothing to select
        rows = torch.arange(len(keys))
        return AgentSessions(keys, rows, rows)
    try:
        output_index = index_text.astype(np.int64)
    except ValueError:
        bad = next(str(key) for key, text in zip(keys, index_text) if not _is_int(text))
        raise SawInputError(f"sample key {bad!r}: the output index after the last '_' is not an integer") from None
    _, session_of_row = np.unique(session_names, return_inverse=True)
    session_of_row = session_of_row.reshape(-1)
    rows = np.arange(len(keys))
    # sorted by session, then output index, then the first row last: the last row of a session is its final output
    order = np.lexsort((-rows, output_index, session_of_row))
    sessions_sorted = session_of_row[order]
    last_of_session = np.ones(len(keys), dtype=bool)
    last_of_session[:-1] = sessions_sorted[1:] != sessions_sorted[:-1]
    final_rows = order[last_of_session]
    return AgentSessions(keys, torch.from_numpy(final_rows), torch.from_numpy(session_of_row.astype(np.int64)))


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True
