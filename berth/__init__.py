"""berth: a Docker-compatible container engine for Linux."""

__version__ = "0.1.0"
