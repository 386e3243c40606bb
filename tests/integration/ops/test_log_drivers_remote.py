"""The syslog and journald log drivers (issue 13) against a real berthd and the docker CLI:
the shim sends each line to a syslog listener the test binds (udp, tcp, unix on loopback) in
the format dockerd writes (rfc3164, rfc5424, the local one; facility, tag), and to a fake
journal socket (the native protocol's fields); bad options are 400s at create; a syslog that
is not there fails the start; ``docker logs`` is refused for syslog; local and json-file
rotate under a chatty container and ``docker logs`` reads every file."""

from __future__ import annotations

import concurrent.futures
import os
import re
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.integration.daemon import Daemon
from tests.integration.remote.certs import Certs, make_certs

DOCKER = "/usr/local/bin/docker"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs uid 0")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    journal = tmp_path_factory.mktemp("journal") / "socket"
    d = Daemon(env={"BERTH_JOURNAL_SOCKET": str(journal)})
    d.start()
    try:
        d.import_busybox()
        yield d
    finally:
        d.cleanup()


def docker(d: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([DOCKER, *args], env=d.env, capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture
def name(daemon: Daemon) -> Iterator[str]:
    n = f"rl-{os.urandom(4).hex()}"
    yield n
    docker(daemon, "rm", "-f", n, check=False)


def _recv_all(s: socket.socket, want: int, timeout: float = 10) -> list[bytes]:
    out: list[bytes] = []
    s.settimeout(0.5)
    end = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < end:
        try:
            out.append(s.recv(65536))
        except socket.timeout:
            continue
    return out


def test_syslog_udp_rfc5424_with_facility_and_tag(daemon: Daemon, name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        docker(daemon, "run", "--name", name, "--log-driver", "syslog", "--log-opt", f"syslog-address=udp://127.0.0.1:{port}",
               "--log-opt", "syslog-format=rfc5424", "--log-opt", "syslog-facility=local3",
               "--log-opt", "tag={{.Name}}/{{.ID}}", "busybox", "sh", "-c", "echo out-line; echo err-line >&2")
        cid = docker(daemon, "inspect", "-f", "{{.Id}}", name).stdout.strip()
        msgs = sorted(m.decode() for m in _recv_all(s, 2))
    tag = f"{name}/{cid[:12]}"
    host = re.escape(socket.gethostname())
    # local3 = 19: 19*8+3 (err) = 155, 19*8+6 (info) = 158
    assert re.fullmatch(rf"<155>1 \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) {host} {re.escape(tag)} \d+ "
                        rf"{re.escape(tag)} - err-line\n", msgs[0]), msgs
    assert msgs[1].startswith("<158>1 ") and msgs[1].endswith(f" {tag} - out-line\n"), msgs


def test_syslog_tcp_rfc3164_default_tag(daemon: Daemon, name: str) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        docker(daemon, "run", "-d", "--name", name, "--log-driver", "syslog", "--log-opt",
               f"syslog-address=tcp://127.0.0.1:{port}", "--log-opt", "syslog-format=rfc3164",
               "busybox", "sh", "-c", "for i in 1 2 3; do echo tcp-$i; done")
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(10)
            data = b""
            while data.count(b"\n") < 3:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
    cid = docker(daemon, "inspect", "-f", "{{.Id}}", name).stdout.strip()
    lines = data.decode().splitlines()
    host = re.escape(socket.gethostname())
    for i, line in enumerate(lines, 1):  # daemon facility (3): 3*8+6 = 30
        assert re.fullmatch(rf"<30>[A-Z][a-z][a-z] [ \d]\d \d\d:\d\d:\d\d {host} {cid[:12]}\[\d+\]: tcp-{i}", line), line
    assert len(lines) == 3
    # dockerd cannot read syslog back either
    r = docker(daemon, "logs", name, check=False)
    assert r.returncode != 0 and "configured logging driver does not support reading" in r.stderr


def test_syslog_unix_socket_local_format(daemon: Daemon, name: str, tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        docker(daemon, "run", "--name", name, "--log-driver", "syslog", "--log-opt", f"syslog-address=unixgram://{path}",
               "--log-opt", "tag=web", "busybox", "echo", "over unix")
        [msg] = _recv_all(s, 1)
    assert re.fullmatch(rb"<30>[A-Z][a-z][a-z] [ \d]\d \d\d:\d\d:\d\d web\[\d+\]: over unix\n", msg), msg


def test_syslog_that_is_not_there_fails_the_start(daemon: Daemon, name: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        r = docker(daemon, "run", "--name", name, "--log-driver", "syslog", "--log-opt",
                   f"syslog-address=tcp://127.0.0.1:{port}", "busybox", "true", check=False)
    assert r.returncode == 125 and "failed to initialize logging driver" in r.stderr, r.stderr
    assert daemon.request("GET", "/_ping")[0] == 200


@pytest.mark.parametrize("opt, message", [
    ("syslog-address=ftp://x", "unsupported scheme: 'ftp'"),
    ("syslog-facility=nope", "invalid syslog facility"),
    ("syslog-format=rfc9999", "Invalid syslog format"),
    ("max-size=1m", "unknown log opt 'max-size' for syslog log driver"),
    ("tag={{.Nope}}", "can't evaluate field Nope"),
])
def test_bad_syslog_options_are_refused_at_create(daemon: Daemon, opt: str, message: str) -> None:
    r = docker(daemon, "run", "--rm", "--log-driver", "syslog", "--log-opt", opt, "busybox", "true", check=False)
    assert r.returncode == 125 and message in r.stderr, r.stderr


def _journal_fields(datagram: bytes) -> dict[str, str]:
    """The native journal protocol: KEY=value lines, or KEY\\n<le64 length><bytes>\\n."""
    out, i = {}, 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        line = datagram[i:nl]
        if b"=" in line:
            k, _, v = line.partition(b"=")
            out[k.decode()] = v.decode()
            i = nl + 1
        else:
            (n,) = struct.unpack("<Q", datagram[nl + 1:nl + 9])
            out[line.decode()] = datagram[nl + 9:nl + 9 + n].decode()
            i = nl + 9 + n + 1
    return out


def test_journald_sends_the_containers_fields(daemon: Daemon, name: str) -> None:
    path = daemon.extra_env["BERTH_JOURNAL_SOCKET"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        try:
            docker(daemon, "run", "--name", name, "--log-driver", "journald", "--log-opt", "tag=jt-{{.Name}}",
                   "busybox", "sh", "-c", "echo hello journal; echo oops >&2")
            got = [_journal_fields(m) for m in _recv_all(s, 2)]
        finally:
            os.unlink(path)
    cid = docker(daemon, "inspect", "-f", "{{.Id}}", name).stdout.strip()
    by_msg = {g["MESSAGE"]: g for g in got}
    assert set(by_msg) == {"hello journal", "oops"}
    common = {"CONTAINER_ID": cid[:12], "CONTAINER_ID_FULL": cid, "CONTAINER_NAME": name,
              "CONTAINER_TAG": f"jt-{name}", "SYSLOG_IDENTIFIER": f"jt-{name}", "IMAGE_NAME": "busybox"}
    assert by_msg["hello journal"] == {"MESSAGE": "hello journal", "PRIORITY": "6", **common}
    assert by_msg["oops"] == {"MESSAGE": "oops", "PRIORITY": "3", **common}


def test_journald_without_a_journal_fails_the_start(daemon: Daemon, name: str) -> None:
    r = docker(daemon, "run", "--name", name, "--log-driver", "journald", "busybox", "true", check=False)
    assert r.returncode == 125 and "failed to initialize logging driver" in r.stderr, r.stderr


@pytest.mark.parametrize("driver, gz", [("local", True), ("json-file", False)])
def test_rotation_under_a_chatty_container(daemon: Daemon, name: str, driver: str, gz: bool) -> None:
    """A container writing as fast as it can: while it runs the log never holds more than
    max-file files (local compresses the rotated ones by default), and ``docker logs`` reads
    the kept files in order, each line once, ending with the last line."""
    opts = ["--log-opt", "max-size=64k", "--log-opt", "max-file=3"]
    if driver == "json-file":
        opts += ["--log-opt", "compress=false"]
    cid = docker(daemon, "run", "-d", "--name", name, "--log-driver", driver, *opts, "busybox", "sh", "-c",
                 "i=0; while [ $i -lt 40000 ]; do i=$((i+1)); echo chatty-line-$i; done; sleep 600").stdout.strip()
    cdir = daemon.data_root / "containers" / cid
    most = 0
    end = time.monotonic() + 60
    while time.monotonic() < end:
        files = [p.name for p in cdir.iterdir() if "-json.log" in p.name]
        most = max(most, len([f for f in files if not f.endswith(".tmp")]))
        out = docker(daemon, "logs", "--tail", "1", name).stdout
        if out == "chatty-line-40000\n":
            break
        time.sleep(0.2)
    files = sorted(p.name for p in cdir.iterdir() if "-json.log" in p.name)
    assert most <= 3 and len(files) == 3, files
    assert any(f.endswith(".gz") for f in files) == gz, files
    lines = docker(daemon, "logs", name).stdout.splitlines()
    nums = [int(x.rpartition("-")[2]) for x in lines]
    assert nums[-1] == 40000 and nums == list(range(nums[0], 40001)), (nums[:3], nums[-3:])
    assert nums[0] > 1  # the oldest lines were rotated away


# -- syslog over TLS (tcp+tls://, syslog-tls-*) ------------------------------------------------

@pytest.fixture(scope="module")
def tls_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _tls_syslog(certs: Certs, want_client_cert: bool) -> tuple[ssl.SSLContext, socket.socket]:
    """A TLS listener on loopback with berthd's test server certificate (127.0.0.1)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certs.server / "cert.pem"), str(certs.server / "key.pem"))
    if want_client_cert:
        ctx.load_verify_locations(str(certs.ca / "ca.pem"))
        ctx.verify_mode = ssl.CERT_REQUIRED
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    return ctx, srv


def _read_tls(ctx: ssl.SSLContext, srv: socket.socket, until: Callable[[bytes], bool]
              ) -> concurrent.futures.Future[tuple[bytes, dict]]:
    """Accept and read in a thread: the shim's handshake is part of the container's start."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(_serve_tls, ctx, srv, until)
    finally:
        pool.shutdown(wait=False)


def _serve_tls(ctx: ssl.SSLContext, srv: socket.socket, until: Callable[[bytes], bool]) -> tuple[bytes, dict]:
    raw, _ = srv.accept()
    with ctx.wrap_socket(raw, server_side=True) as conn:
        conn.settimeout(10)
        peer = conn.getpeercert() or {}
        data = b""
        while not until(data):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    return data, peer


def test_syslog_tcp_tls_rfc5424_octet_counted_with_client_cert(daemon: Daemon, name: str,
                                                               tls_certs: Certs) -> None:
    ctx, srv = _tls_syslog(tls_certs, want_client_cert=True)
    with srv:
        port = srv.getsockname()[1]
        got = _read_tls(ctx, srv, lambda d: d.count(b"tls-") >= 2 and d.endswith(b"\n"))
        docker(daemon, "run", "-d", "--name", name, "--log-driver", "syslog",
               "--log-opt", f"syslog-address=tcp+tls://127.0.0.1:{port}", "--log-opt", "syslog-format=rfc5424",
               "--log-opt", f"syslog-tls-ca-cert={tls_certs.ca / 'ca.pem'}",
               "--log-opt", f"syslog-tls-cert={tls_certs.client / 'cert.pem'}",
               "--log-opt", f"syslog-tls-key={tls_certs.client / 'key.pem'}",
               "busybox", "sh", "-c", "echo tls-1; echo tls-2")
        data, peer = got.result(timeout=20)
    assert dict(x[0] for x in peer["subject"])["commonName"] == "client"     # our certificate was sent
    msgs = []
    while data:   # RFC 5425 octet counting: "LEN SP MSG", MSG ending in a newline
        size, _, rest = data.partition(b" ")
        msgs.append(rest[:int(size)])
        data = rest[int(size):]
    assert [m.decode().rsplit(" - ", 1)[1] for m in msgs] == ["tls-1\n", "tls-2\n"], msgs
    assert all(m.startswith(b"<30>1 ") for m in msgs), msgs


def test_syslog_tcp_tls_skip_verify_default_format(daemon: Daemon, name: str, tls_certs: Certs) -> None:
    """No CA given (the system's, which do not know the test CA): only skip-verify gets through."""
    ctx, srv = _tls_syslog(tls_certs, want_client_cert=False)
    with srv:
        port = srv.getsockname()[1]
        got = _read_tls(ctx, srv, lambda d: d.endswith(b"\n"))
        docker(daemon, "run", "-d", "--name", name, "--log-driver", "syslog", "--log-opt", "tag=tlsweb",
               "--log-opt", f"syslog-address=tcp+tls://127.0.0.1:{port}", "--log-opt", "syslog-tls-skip-verify=true",
               "busybox", "echo", "skipped verify")
        data, _ = got.result(timeout=20)
    assert re.fullmatch(rb"<30>[A-Z][a-z][a-z] [ \d]\d \d\d:\d\d:\d\d tlsweb\[\d+\]: skipped verify\n", data), data


def test_syslog_tcp_tls_unknown_ca_fails_the_start(daemon: Daemon, name: str, tls_certs: Certs) -> None:
    ctx, srv = _tls_syslog(tls_certs, want_client_cert=False)
    with srv:
        port = srv.getsockname()[1]
        got = _read_tls(ctx, srv, lambda d: True)
        r = docker(daemon, "run", "--name", name, "--log-driver", "syslog",
                   "--log-opt", f"syslog-address=tcp+tls://127.0.0.1:{port}",
                   "--log-opt", f"syslog-tls-ca-cert={tls_certs.stranger.parent / 'other-ca' / 'ca.pem'}",
                   "busybox", "true", check=False)
    with pytest.raises(ssl.SSLError):   # the shim hung up in the handshake
        got.result(timeout=20)
    assert r.returncode == 125 and "failed to initialize logging driver" in r.stderr, r.stderr
    assert "certificate verify failed" in r.stderr, r.stderr
    assert daemon.request("GET", "/_ping")[0] == 200


# -- a real journald: docker logs reads the journal back ---------------------------------------

_JOURNALD = """set -e
mkdir -p /run/systemd && mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/journal
mkdir -p /run/log && mount -t tmpfs tmpfs /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
exec /lib/systemd/systemd-journald
"""


@pytest.fixture(scope="module")
def journal_daemon() -> Iterator[Daemon]:
    """Debian's systemd-journald in a private mount namespace (its sockets and journal on
    tmpfs there, nothing on the host's), and a berthd started inside that namespace."""
    assert os.path.exists("/lib/systemd/systemd-journald"), "no systemd-journald (.ci/run installs systemd)"
    jd = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", _JOURNALD])
    d = Daemon(mountns=f"/proc/{jd.pid}/ns/mnt")
    try:
        end = time.monotonic() + 10
        while not os.path.exists(f"/proc/{jd.pid}/root/run/systemd/journal/socket"):
            assert jd.poll() is None and time.monotonic() < end, "systemd-journald did not start"
            time.sleep(0.05)
        d.start()
        d.import_busybox()
        yield d
    finally:
        d.cleanup()
        jd.terminate()
        jd.wait(10)


def test_docker_logs_reads_journald(journal_daemon: Daemon, name: str) -> None:
    d = journal_daemon
    docker(d, "run", "--name", name, "--log-driver", "journald", "busybox", "sh", "-c",
           "for i in 1 2 3; do echo j-out-$i; done; echo j-err >&2")
    end = time.monotonic() + 10
    r = docker(d, "logs", name)
    while r.stdout.count("\n") < 3 and time.monotonic() < end:  # journald writes asynchronously
        time.sleep(0.2)
        r = docker(d, "logs", name)
    assert (r.stdout, r.stderr) == ("j-out-1\nj-out-2\nj-out-3\n", "j-err\n")
    assert docker(d, "logs", "--tail", "2", name).stdout == "j-out-3\n"
    stamped = docker(d, "logs", "-t", name).stdout.splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z j-out-1", stamped[0]), stamped


def test_docker_logs_reads_long_lines_back(journal_daemon: Daemon, name: str) -> None:
    """Lines over journalctl's 4096-byte field limit for JSON (null unless --all), and 20,000
    bytes of 0xff, which the journal keeps as 16 KiB pieces that journalctl prints as arrays of
    numbers (over 64 KiB a line): all come back, the bytes that are not UTF-8 as U+FFFD."""
    d = journal_daemon
    docker(d, "run", "-d", "--name", name, "--log-driver", "journald", "busybox", "sh", "-c",
           "head -c 5000 /dev/zero | tr '\\0' x; echo; head -c 20000 /dev/zero | tr '\\0' '\\377'; echo; echo after")
    docker(d, "wait", name)
    end = time.monotonic() + 10
    r = docker(d, "logs", name, check=False)
    while not r.stdout.endswith("after\n") and r.returncode == 0 and time.monotonic() < end:
        time.sleep(0.2)
        r = docker(d, "logs", name, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "x" * 5000 + "\n" + "\ufffd" * 20000 + "\nafter\n", (len(r.stdout), r.stdout[-40:])


def test_docker_logs_follow_journald(journal_daemon: Daemon) -> None:
    """``docker logs -f``: the entries so far, then new ones as the journal gets them, and the
    stream ends once the container has stopped and the journal is quiet."""
    d = journal_daemon
    n = f"jf-{os.urandom(4).hex()}"
    try:
        docker(d, "run", "-d", "--name", n, "--log-driver", "journald", "busybox", "sh", "-c",
               "echo first; sleep 2; echo second >&2; sleep 1; echo last")
        time.sleep(0.5)
        p = subprocess.Popen([DOCKER, "logs", "-f", n], env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        try:
            assert p.stdout is not None
            assert p.stdout.readline() == "first\n"
            assert p.poll() is None            # still following: the container sleeps
            out, err = p.communicate(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert (p.returncode, out, err) == (0, "last\n", "second\n")
        assert docker(d, "inspect", "-f", "{{.State.Status}}", n).stdout.strip() == "exited"
        # following a stopped container's journal returns what is there
        r = subprocess.run([DOCKER, "logs", "-f", "--tail", "1", n], env=d.env, capture_output=True, text=True,
                           timeout=20)
        assert (r.returncode, r.stdout) == (0, "last\n"), r.stderr
    finally:
        docker(d, "rm", "-f", n, check=False)
