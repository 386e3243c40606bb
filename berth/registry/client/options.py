"""Daemon-wide registry settings (cheap to import: berthd builds them at start-up)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

USER_AGENT = "berth/0.1 (linux)"


@dataclass
class Options:
    """Daemon-wide registry settings (``--insecure-registry``, ``--registry-mirror``,
    ``--max-concurrent-downloads``/``-uploads``); berthd changes them in place on SIGHUP."""
    insecure: list[str] = field(default_factory=list)
    mirrors: list[str] = field(default_factory=list)
    max_downloads: int = 6
    max_uploads: int = 5
    timeout: float = 30.0
    user_agent: str = USER_AGENT

    def is_insecure(self, host: str) -> bool:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
        name = name.strip("[]")
        if name == "localhost":
            return True
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            ip = None
        if ip is not None and ip.is_loopback:
            return True
        for entry in self.insecure:
            entry = entry.removeprefix("http://").removeprefix("https://").rstrip("/")
            if entry in (host, name):
                return True
            if ip is not None and "/" in entry:
                try:
                    if ip in ipaddress.ip_network(entry, strict=False):
                        return True
                except ValueError:
                    pass
        return False


def api_host(domain: str) -> str:
    return "registry-1.docker.io" if domain == "docker.io" else domain


