"""The real tiered expert store: checkpoints on NVMe, pinned RAM slots, VRAM slots, transfers."""
