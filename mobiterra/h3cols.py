"""H3 index arithmetic as Spark Column functions (no Python UDF on the event path).

An H3 cell index is an int64: bits 52-55 hold the resolution and each resolution r in
1..15 has a 3-bit digit at bits 3*(15-r)..3*(15-r)+2; unused digits are 7 (0b111).
So the parent at resolution p is: set the resolution field to p, set digits p+1..15 to 7.
Golden-tested against ``h3.cell_to_parent`` in tests/test_h3cols.py.
"""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

_RES_SHIFT = 52
_RES_MASK = 0xF << _RES_SHIFT
_KEEP_MASK = ~_RES_MASK  # signed int64: everything but the resolution field


def _digits_mask(res: int) -> int:
    """Ones in the digit bits of resolutions res+1..15."""
    return (1 << (3 * (15 - res))) - 1


def parent_masks(res: int) -> tuple[int, int]:
    """(keep, set): the parent at resolution ``res`` of an int64 cell is
    ``(cell & keep) | set`` (for code outside Spark's expressions, e.g. jobs/java)."""
    if not 0 <= res <= 15:
        raise ValueError(f"H3 resolution must be 0..15, got {res}")
    return _KEEP_MASK, (res << _RES_SHIFT) | _digits_mask(res)


def h3_parent(cell: Column | str, res: int) -> Column:
    """Parent of an int64 H3 cell at resolution ``res`` (the cell itself at its own res)."""
    keep, set_bits = parent_masks(res)
    col = F.col(cell) if isinstance(cell, str) else cell
    return col.bitwiseAND(F.lit(keep)).bitwiseOR(F.lit(set_bits))


def h3_resolution(cell: Column | str) -> Column:
    col = F.col(cell) if isinstance(cell, str) else cell
    return F.shiftright(col, _RES_SHIFT).bitwiseAND(F.lit(0xF)).cast("int")


def h3_to_string(cell: Column | str) -> Column:
    """Canonical 15-character lowercase hex string of an int64 H3 cell."""
    col = F.col(cell) if isinstance(cell, str) else cell
    return F.lpad(F.lower(F.hex(col)), 15, "0")


def h3_from_string(cell: Column | str) -> Column:
    col = F.col(cell) if isinstance(cell, str) else cell
    return F.conv(col, 16, 10).cast("long")
