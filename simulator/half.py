"""float16 in numba, which has no float16 type on the CPU: kernels take a float16 array viewed as
uint16 (`bits`) and widen each value with LLVM's `fpext` (one instruction with F16C). Router logits
stay float16 from the trace to the kernel, so re-routing neither converts nor copies 160 million
values for ten million accesses first (0.5 s of a 2 s replay)."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def widen(typingctx, bits):
    """The float32 value of float16 `bits` (a uint16), exactly."""
    if bits != types.uint16:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


def bits(values: np.ndarray) -> np.ndarray:
    """float16 `values` (other floats are rounded to float16 first) as the uint16 array the kernels read."""
    return np.ascontiguousarray(values, np.float16).view(np.uint16)
