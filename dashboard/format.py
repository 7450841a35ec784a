"""Number formatting for the pages: units, and values next to their baseline."""
from __future__ import annotations


def human(value: float) -> str:
    """1234567 -> '1.23 M', 4200 -> '4.20 k', 12 -> '12'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:g}"


def share(value: float, base: float, of: str = "baseline") -> str:
    """'48 % of baseline' (one decimal below 10 %)."""
    if not base:
        return f"— of {of}"
    pct = 100 * value / base
    return f"{pct:.1f} % of {of}" if pct < 10 else f"{pct:.0f} % of {of}"


def percent(fraction: float | None) -> str:
    """0.9183 -> '91.83 %'; None -> '—'."""
    return "—" if fraction is None else f"{100 * fraction:.2f} %"


def points(delta: float | None) -> str | None:
    """A difference of fractions (top-1, agreement) in percentage points: -0.0123 -> '-1.23 pp' (None stays None)."""
    return None if delta is None else f"{100 * delta:+.2f} pp"


def capital(text: str) -> str:
    """``text`` with its first letter upper-case (metric titles are lower-case: 'top-1' -> 'Top-1')."""
    return text[:1].upper() + text[1:]
