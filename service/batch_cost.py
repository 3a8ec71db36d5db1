"""How long a model call takes as a function of its batch size, learnt from the calls a batcher runs.

Admission by time needs the wait a queue implies. One cost per item, averaged over recent batches, is
wrong in both directions for a batched model: measured on the small batches of a lightly loaded server
it prices a sudden queue of 50 items as 50 single-item calls (a beam-search decoder runs them as one
batch in a fraction of that), and measured under load it underprices small batches. So the cost is kept
per batch-size bucket (powers of two up to the largest batch) as a moving average of the time per item,
and a batch's time is read from its own bucket, interpolated between the buckets around it, or
extrapolated from the nearest one.

The model is written by the batcher's worker thread and read by the event loop: its state is a list of
floats of fixed length, whose element stores are atomic under the GIL.
"""

from __future__ import annotations

import math

# A short memory (about 10 batches of a size), so the estimate follows the machine's load.
_MEMORY = 0.1


def bucket_sizes(max_batch_size: int) -> list[int]:
    """1, 2, 4, ... below ``max_batch_size``, then ``max_batch_size`` itself."""
    sizes = [1 << k for k in range(max(1, max_batch_size).bit_length()) if 1 << k < max_batch_size]
    return [*sizes, max(1, max_batch_size)]


class BatchCostModel:
    def __init__(self, max_batch_size: int):
        self.max_batch_size = max(1, max_batch_size)
        self._sizes = bucket_sizes(self.max_batch_size)
        self._per_item = [0.0] * len(self._sizes)  # 0.0: no batch of this bucket measured yet

    def _bucket(self, n: int) -> int:
        """The index of the smallest bucket holding ``n`` items (the last one for larger batches): the
        buckets are 1, 2, 4, ... so that is the bit length of ``n - 1`` (asked twice per request)."""
        return min((n - 1).bit_length(), len(self._sizes) - 1)

    def observe(self, n: int, seconds: float) -> None:
        """Records a model call of ``n`` items that took ``seconds``."""
        if n < 1 or not math.isfinite(seconds) or seconds < 0:
            return
        i = self._bucket(n)
        per_item = seconds / n
        old = self._per_item[i]
        self._per_item[i] = per_item if not old else (1 - _MEMORY) * old + _MEMORY * per_item

    @property
    def measured(self) -> bool:
        return any(self._per_item)

    def batch_s(self, n: int) -> float:
        """The expected time of one model call on ``n`` items (0.0 until a batch has been measured)."""
        if n < 1:
            return 0.0
        i = self._bucket(n)
        own = self._per_item[i]  # one read: the worker thread may write meanwhile
        if own:
            return n * own
        per_item = self._per_item[:]  # one snapshot for the neighbours
        below = next((j for j in range(i - 1, -1, -1) if per_item[j]), None)
        above = next((j for j in range(i + 1, len(per_item)) if per_item[j]), None)
        if below is not None and above is not None:
            lo, hi = self._sizes[below], self._sizes[above]
            t_lo, t_hi = lo * per_item[below], hi * per_item[above]
            return t_lo + (t_hi - t_lo) * (n - lo) / (hi - lo)
        if below is not None:  # larger than anything measured: smaller batches cost more per item
            return n * per_item[below]
        if above is not None:
            return n * per_item[above]
        return 0.0

    def queue_s(self, items: int) -> float:
        """The expected time to run ``items`` queued items, taken in batches of the largest size."""
        if items < 1:
            return 0.0
        full, rest = divmod(items, self.max_batch_size)
        return full * self.batch_s(self.max_batch_size) + self.batch_s(rest)
