"""The embedded DNS server of user-defined networks (Docker's 127.0.0.11)."""
