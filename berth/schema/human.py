"""Human-readable sizes, durations and memory sizes exactly as Docker's go-units prints and
parses them (pure; shared by the API, which words container statuses, and the CLI)."""


from __future__ import annotations

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
_BINARY_MULT = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def _scaled(size: float, base: float, units: tuple[str, ...]) -> tuple[float, str]:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return size, units[i]


def human_size(size: float, precision: int = 4) -> str:
    """go-units HumanSizeWithPrecision: decimal units, ``%.{precision}g``. ``images`` uses 3."""
    value, unit = _scaled(float(size), 1000.0, _DECIMAL)
    return "%.*g%s" % (precision, value, unit)


def bytes_size(size: float) -> str:
    """go-units BytesSize: binary units, 4 significant digits ("23.54GiB")."""
    value, unit = _scaled(float(size), 1024.0, _BINARY)
    return "%.4g%s" % (value, unit)


def human_duration(seconds: float) -> str:
    """go-units HumanDuration of a duration given in seconds."""
    secs = int(seconds)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)  # time.Duration.Round(time.Hour): half away from zero
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ram_in_bytes(text: str) -> int:
    """go-units RAMInBytes: "512m", "1g", "1.5GiB", "100" -> bytes.

    Raises:
        ValueError: with go-units' message ("invalid size: '...'", "invalid suffix: '...'").
    """
    sep = max(text.rfind(c) for c in "0123456789. ")
    if sep == -1:
        raise ValueError(f"invalid size: '{text}'")
    if text[sep] == " ":
        num, sfx = text[:sep], text[sep + 1:]
    else:
        num, sfx = text[: sep + 1], text[sep + 1:]
    try:
        size = float(num)
    except ValueError:
        raise ValueError(f'strconv.ParseFloat: parsing "{num}": invalid syntax') from None
    if size < 0:
        raise ValueError(f"invalid size: '{text}'")
    if not sfx:
        return int(size)
    low = sfx.lower()
    if len(sfx) > 3:
        raise ValueError(f"invalid suffix: '{sfx}'")
    if low[0] == "b":
        if len(low) > 1:
            raise ValueError(f"invalid suffix: '{low}'")
        return int(size)
    mult = _BINARY_MULT.get(low[0])
    if mult is None or (len(low) == 2 and low[1] != "b") or (len(low) == 3 and low[1:] != "ib"):
        raise ValueError(f"invalid suffix: '{low}'")
    return int(size * mult)


def mem_swap_bytes(text: str) -> int:
    """--memory-swap: "-1" means unlimited, else a size."""
    return -1 if text == "-1" else ram_in_bytes(text)


def nano_cpus(text: str) -> int:
    """--cpus "1.5" -> 1500000000 (docker's opts.NanoCPUs).

    Raises:
        ValueError: not a number, or more precise than a nanosecond of CPU.
    """
    from fractions import Fraction

    try:
        value = Fraction(text.strip()) * 1_000_000_000
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"failed to parse {text} as a rational number") from None
    if value.denominator != 1:
        raise ValueError("value is too precise")
    return int(value)


# The names the API uses.
duration = human_duration
size = human_size
