"""What the CPU can do, for choosing a precision."""

from __future__ import annotations

from pathlib import Path


def cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bf16 natively, so bf16 autocast is faster than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags
