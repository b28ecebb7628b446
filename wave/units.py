"""Sizes and durations in the units people use, for every message a user reads ("1 MiB", "15m").

Limits are configured as ``16m`` or ``15m`` (see wave.config); a message that says "1398105 characters"
makes the user do arithmetic to find which setting it was. Pure functions, importable from any layer.
"""

from __future__ import annotations


def format_size(size: int) -> str:
    """``1 MiB``, ``512 KiB``, ``1.5 GiB``, ``100 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes" if size != 1 else "1 byte"


def format_duration(seconds: float) -> str:
    """As a duration setting is written: ``90s``, ``15m``, ``12h``, ``1h30m``, ``2d``."""
    whole = round(seconds)
    if whole < 60 or whole % 60:
        return f"{whole}s" if whole >= 60 or seconds == whole else f"{seconds:g}s"
    parts = []
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= length:
            parts.append(f"{whole // length}{unit}")
            whole %= length
    return "".join(parts)
