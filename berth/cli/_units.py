"""Human-readable sizes and durations as docker prints them: see berth/schema/human.py."""

from berth.schema.human import (bytes_size, human_duration, human_size, mem_swap_bytes,  # noqa: F401
                                nano_cpus, ram_in_bytes)
