"""Number formatting for the pages."""


def human(value: float) -> str:
    """1234567 -> '1.23 M', 4200 -> '4.20 k', 12 -> '12'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:g}"
