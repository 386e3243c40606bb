"""HTTP client for the Docker Engine API spoken by berthd.

Stdlib only and cheap to import: the CLI starts a fresh interpreter for every command, so this
package keeps to ``socket`` and ``json`` (imported lazily) and builds no objects at import.

- ``host``    -- which daemon address to use (-H, BERTH_HOST, DOCKER_HOST, default socket)
- ``_http``   -- a minimal HTTP/1.1 client over AF_UNIX or TCP (keep-alive, chunked, hijack)
- ``api``     -- ``Client``: version negotiation, JSON requests, ``APIError``
- the 8-byte multiplexed stream framing of attach, exec and logs is ``berth.schema.stdcopy``
"""
