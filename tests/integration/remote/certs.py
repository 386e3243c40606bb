"""Test certificates made with openssl: a CA, a server certificate for 127.0.0.1, client
certificates from the CA (valid and expired) and one from a CA berthd does not trust.

The layout is the docker CLI's DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem) per client.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_CA_CONF = """\
[ca]
default_ca = ca_default
[ca_default]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/issued
certificate = {dir}/ca.pem
private_key = {dir}/ca-key.pem
serial = {dir}/serial
default_md = sha256
policy = any_name
copy_extensions = copy
[any_name]
commonName = supplied
"""


def _ssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(d: Path, name: str) -> None:
    d.mkdir(parents=True)
    _ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", f"/CN={name}", cwd=d)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("01\n")
    (d / "issued").mkdir()
    (d / "ca.cnf").write_text(_CA_CONF.format(dir=d))


def _issue(ca: Path, out: Path, cn: str, ext: str, dates: tuple[str, str] | None = None) -> None:
    """A key and certificate in ``out`` (key.pem, cert.pem, plus the CA as ca.pem)."""
    out.mkdir(parents=True)
    _ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem",
         "-out", "req.csr", "-subj", f"/CN={cn}", "-addext", ext, cwd=out)
    when = ["-startdate", dates[0], "-enddate", dates[1]] if dates else ["-days", "2"]
    _ssl("ca", "-batch", "-config", str(ca / "ca.cnf"), "-in", "req.csr", "-out", "cert.pem", "-notext",
         *when, cwd=out)
    (out / "ca.pem").write_bytes((ca / "ca.pem").read_bytes())


@dataclass
class Certs:
    ca: Path          # the CA berthd trusts: ca.pem
    server: Path      # berthd's cert.pem and key.pem (127.0.0.1, localhost)
    client: Path      # a valid client: ca.pem, cert.pem, key.pem
    expired: Path     # a client certificate from the CA that expired in 2020
    stranger: Path    # a client certificate from another CA


def make_certs(base: Path) -> Certs:
    ca, other = base / "ca", base / "other-ca"
    _ca(ca, "berth test CA")
    _ca(other, "someone else")
    c = Certs(ca, base / "server", base / "client", base / "expired", base / "stranger")
    _issue(ca, c.server, "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost")
    _issue(ca, c.client, "client", "extendedKeyUsage=clientAuth")
    _issue(ca, c.expired, "old client", "extendedKeyUsage=clientAuth", ("20200101000000Z", "20200102000000Z"))
    _issue(other, c.stranger, "stranger", "extendedKeyUsage=clientAuth")
    (c.stranger / "ca.pem").write_bytes((ca / "ca.pem").read_bytes())  # it trusts berthd; berthd does not trust it
    return c
