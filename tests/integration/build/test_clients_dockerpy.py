"""docker-py 7 ``images.build`` and the low-level ``api.build`` stream against berthd."""

from __future__ import annotations

import io
import tarfile
import uuid

import pytest

from tests.integration.build._clients import write_context

import docker as docker_sdk  # noqa: E402

pytestmark = pytest.mark.root


@pytest.fixture
def client(berthd, busybox):
    c = docker_sdk.DockerClient(base_url=berthd.host, version="auto", timeout=120)
    yield c
    c.close()


def _tag() -> str:
    return f"bp-{uuid.uuid4().hex[:8]}:latest"


def _run(client, image: str, cmd: str, **kw) -> str:
    return client.containers.run(image, ["sh", "-c", cmd], remove=True, **kw).decode()


def _tar(files: dict[str, str], gz: bool = False) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_build_from_path_with_args_labels_target(client, tmp_path):
    ctx = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox AS base\nARG WHO=nobody\nRUN echo \"hi $WHO\" > /who\n"
                      "FROM base AS final\nRUN echo final > /final\n",
        ".dockerignore": "secret.txt\n",
        "secret.txt": "must not be sent\n",
    })
    tag = _tag()
    image, logs = client.images.build(path=str(ctx), tag=tag, buildargs={"WHO": "py"}, target="base",
                                      labels={"org.test": "yes"}, rm=True)
    logs = list(logs)
    assert any("Step 1/4 : FROM busybox AS base" in (m.get("stream") or "") for m in logs), logs
    assert any(m.get("aux", {}).get("ID") == image.id for m in logs), logs
    assert image.labels.get("org.test") == "yes"
    assert tag in image.tags
    assert _run(client, tag, "cat /who; ls /final 2>&1; ls /secret.txt 2>&1; true").startswith("hi py\n")
    out = _run(client, tag, "ls /final /secret.txt 2>&1; true")
    assert out.count("No such file") == 2, out
    client.images.remove(tag)


def test_build_from_fileobj_dockerfile(client):
    tag = _tag()
    df = io.BytesIO(b"FROM busybox\nRUN echo fileobj > /x\nCMD [\"cat\", \"/x\"]\n")
    image, _ = client.images.build(fileobj=df, tag=tag)
    assert client.containers.run(tag, remove=True) == b"fileobj\n"
    client.images.remove(image.id, force=True)


@pytest.mark.parametrize("gz", [False, True], ids=["tar", "gzip"])
def test_build_custom_context(client, gz):
    tag = _tag()
    ctx = _tar({"Dockerfile": "FROM busybox\nCOPY a.txt /a.txt\n", "a.txt": "custom\n"}, gz)
    image, _ = client.images.build(fileobj=ctx, custom_context=True, encoding="gzip" if gz else None, tag=tag)
    assert _run(client, tag, "cat /a.txt") == "custom\n"
    client.images.remove(image.id, force=True)


def test_build_extra_hosts_and_network_mode(client):
    tag = _tag()
    df = io.BytesIO(b"FROM busybox\nRUN grep myhost /etc/hosts > /hosts-line\n"
                    b"RUN ip -o link | grep -v ' lo' | wc -l > /links || true\n")
    image, _ = client.images.build(fileobj=df, tag=tag, extra_hosts={"myhost": "10.1.2.3"},
                                   network_mode="none")
    assert "10.1.2.3" in _run(client, tag, "cat /hosts-line")
    assert _run(client, tag, "cat /links").strip() == "0"
    client.images.remove(image.id, force=True)


def test_build_cache_from_and_streamed_output(client, berthd):
    tag = _tag()
    df = b"FROM busybox\nRUN echo cached-step > /c\n"
    client.images.build(fileobj=io.BytesIO(df), tag=tag)
    stream = list(client.api.build(fileobj=io.BytesIO(df), cache_from=[tag], decode=True))
    text = "".join(m.get("stream", "") for m in stream)
    assert "Step 2/2 : RUN echo cached-step > /c" in text
    assert " ---> Using cache" in text, text
    assert "Successfully built" in text
    client.images.remove(tag, force=True)


def test_failing_run_raises_build_error(client, berthd):
    before = {c.id for c in client.containers.list(all=True)}
    with pytest.raises(docker_sdk.errors.BuildError) as info:  # forcerm: the failed container goes too
        client.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN echo about-to-fail && false\n"), forcerm=True)
    assert "The command '/bin/sh -c echo about-to-fail && false' returned a non-zero code: 1" in str(info.value)
    logs = "".join(m.get("stream", "") for m in info.value.build_log)
    assert "about-to-fail" in logs
    assert {c.id for c in client.containers.list(all=True)} == before
