"""Small per-step arrays (slot indices, routing weights, token rows) sent to the GPU without a stream sync.

A copy from pageable host memory makes the host wait for the stream's queued work, which ties every
step's host work to the GPU's and breaks the overlap of copies and compute. The arrays go through a
ring of pinned buffers instead; a buffer is written again only once the copy that read it has completed.
"""

from __future__ import annotations

import numpy as np
import torch

ENTRIES = 128
MIN_BYTES = 4096


class PinnedStaging:
    """`to_device(array)`: the array as a tensor on the device, copied asynchronously from pinned memory."""

    def __init__(self, device: torch.device, entries: int = ENTRIES) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.buffers: list[torch.Tensor | None] = [None] * entries
        self.copied: list[torch.cuda.Event | None] = [None] * entries
        self.next = 0

    def to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if not self.cuda:
            return tensor
        i = self.next
        self.next = (i + 1) % len(self.buffers)
        if self.copied[i] is not None:
            self.copied[i].synchronize()
        nbytes = tensor.numel() * tensor.element_size()
        buffer = self.buffers[i]
        if buffer is None or buffer.numel() < nbytes:
            buffer = self.buffers[i] = torch.empty(max(nbytes, MIN_BYTES), dtype=torch.uint8, pin_memory=True)
        staged = buffer[:nbytes].view(tensor.dtype).view(tensor.shape)
        staged.copy_(tensor)
        out = staged.to(self.device, non_blocking=True)
        self.copied[i] = torch.cuda.current_stream(self.device).record_event()
        return out
