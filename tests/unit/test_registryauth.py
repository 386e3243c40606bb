"""The one decoder of Docker's registry credentials, as both sides use it."""

from __future__ import annotations

import base64
import json

import pytest

from berth.client.credentials import lookup, registry_auth_header
from berth.errors import InvalidArgument
from berth.registry.client.auth import decode_registry_auth
from berth.schema.registryauth import b64decode


@pytest.mark.parametrize("encode", [base64.urlsafe_b64encode, base64.b64encode])
@pytest.mark.parametrize("strip_padding", [False, True])
def test_b64decode_reads_what_clients_write(encode, strip_padding):
    raw = b'{"username":"u?>","password":"p~~~"}'  # bytes whose base64 differs by alphabet
    text = encode(raw).decode()
    assert b64decode((text.rstrip("=") if strip_padding else text) + "\n") == raw


def test_header_round_trip_between_client_and_daemon():
    header = registry_auth_header({"username": "me", "password": "s3cr>t?", "serveraddress": "r:5000"})
    creds = decode_registry_auth(header.rstrip("="))
    assert (creds.username, creds.password, creds.serveraddress) == ("me", "s3cr>t?", "r:5000")
    with pytest.raises(InvalidArgument):
        decode_registry_auth("!!!not base64")


def test_config_auth_field(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {"r:5000": {"auth": base64.b64encode(b"me:pw").decode().rstrip("=")}}}))
    assert lookup("r:5000", cfg) == {"username": "me", "password": "pw", "identitytoken": "",
                                     "serveraddress": "r:5000"}
