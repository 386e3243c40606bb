"""Sizes and durations as docker (go-units) prints them."""

import pytest

from berth.cli._units import (bytes_size, human_duration, human_size, mem_swap_bytes,
                              nano_cpus, ram_in_bytes)


@pytest.mark.parametrize("size, text", [
    (0, "0B"), (999, "999B"), (1000, "1kB"), (1920, "1.92kB"), (1983480, "1.98MB"),
    (4_260_000, "4.26MB"), (999_999, "1e+03kB"), (1_000_000_000, "1GB"), (123_456_789, "123MB"),
])
def test_human_size_precision_3(size: int, text: str) -> None:
    assert human_size(size, 3) == text


def test_human_size_default_precision_4() -> None:
    assert human_size(1983480) == "1.983MB"
    assert human_size(0) == "0B"


def test_bytes_size() -> None:
    assert bytes_size(25_275_658_240) == "23.54GiB"
    assert bytes_size(1024) == "1KiB"


@pytest.mark.parametrize("seconds, text", [
    (0.3, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (120, "2 minutes"), (3599, "59 minutes"), (3600, "About an hour"),
    (5399, "About an hour"), (5400, "2 hours"), (47 * 3600, "47 hours"),
    (48 * 3600, "2 days"), (13 * 86400, "13 days"), (14 * 86400, "2 weeks"),
    (59 * 86400, "8 weeks"), (60 * 86400, "2 months"), (729 * 86400, "24 months"),
    (730 * 86400, "2 years"),
])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize("text, value", [
    ("100", 100), ("1k", 1024), ("512m", 512 << 20), ("1g", 1 << 30), ("1GiB", 1 << 30),
    ("1.5g", int(1.5 * (1 << 30))), ("10b", 10), ("4MB", 4 << 20),
])
def test_ram_in_bytes(text: str, value: int) -> None:
    assert ram_in_bytes(text) == value


@pytest.mark.parametrize("text, message", [("1x", "invalid suffix: 'x'"),
                                           ("abc", "invalid size: 'abc'"),
                                           ("1kbb", "invalid suffix: 'kbb'")])
def test_ram_in_bytes_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ram_in_bytes(text)


def test_swap_and_cpus() -> None:
    assert mem_swap_bytes("-1") == -1
    assert nano_cpus("1.5") == 1_500_000_000
    assert nano_cpus("0.000000001") == 1
    with pytest.raises(ValueError, match="rational"):
        nano_cpus("abc")
    with pytest.raises(ValueError, match="too precise"):
        nano_cpus("0.0000000001")
