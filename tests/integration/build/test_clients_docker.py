"""The real docker CLI 28 (classic builder: no buildx plugin, and DOCKER_BUILDKIT=0) and
docker-compose 1.29 building against berthd: output, results, cache, multi-stage, heredocs and
cache mounts."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid

import pytest

from tests.integration.build._clients import classic_env, docker, write_context

pytestmark = pytest.mark.root

COMPOSE = shutil.which("docker-compose")


@pytest.fixture(params=["no-buildx", "buildkit0"])
def env(request, berthd, busybox, tmp_path):
    e = classic_env(berthd, tmp_path, request.param == "buildkit0")
    r = docker(e, "buildx", "version")
    assert r.returncode != 0, "a buildx plugin is visible: the CLI would not use the classic builder"
    return e


def _tag() -> str:
    return f"bt-{uuid.uuid4().hex[:8]}:latest"


def test_docker_build_classic_stream_and_result(env, tmp_path):
    ctx = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\nENV GREETING=hello\nRUN echo \"$GREETING from run\" > /msg\n"
                      "COPY data.txt /data.txt\nCMD [\"cat\", \"/msg\", \"/data.txt\"]\n",
        "data.txt": "from context\n",
    })
    tag = _tag()
    r = docker(env, "build", "-t", tag, str(ctx))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Sending build context to Docker daemon" in r.stdout
    assert "Step 1/5 : FROM busybox" in r.stdout
    assert "Step 3/5 : RUN echo \"$GREETING from run\" > /msg" in r.stdout
    assert re.search(r" ---> Running in [0-9a-f]{12}\n", r.stdout)
    m = re.search(r"Successfully built ([0-9a-f]{12})\n", r.stdout)
    assert m, r.stdout
    assert f"Successfully tagged {tag}\n" in r.stdout
    image_id = docker(env, "image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()
    assert image_id.startswith("sha256:" + m.group(1))
    run = docker(env, "run", "--rm", tag)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "hello from run\nfrom context\n"
    hist = docker(env, "history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout
    assert "COPY file:" in hist or "COPY " in hist
    docker(env, "rmi", tag)


def test_second_build_is_fully_cached(env, tmp_path):
    ctx = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\nRUN echo one > /1\nCOPY f /f\nRUN cat /f > /2\nLABEL a=b\n",
        "f": f"content {uuid.uuid4()}\n",  # unique: the other parametrisation must not warm the cache
    })
    tag = _tag()
    first = docker(env, "build", "-t", tag, str(ctx))
    assert first.returncode == 0, first.stdout + first.stderr
    id1 = docker(env, "image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()
    second = docker(env, "build", "-t", tag, str(ctx))
    assert second.returncode == 0, second.stdout + second.stderr
    steps = re.split(r"^Step \d+/\d+ : ", second.stdout, flags=re.M)[2:]  # after FROM
    assert len(steps) == 4, second.stdout
    for step in steps:
        assert " ---> Using cache\n" in step, second.stdout
        assert "Running in" not in step, second.stdout
    assert docker(env, "image", "inspect", "-f", "{{.Id}}", tag).stdout.strip() == id1
    # a changed file invalidates its COPY and everything after it, but not the step before
    changed = f"changed {uuid.uuid4()}\n"
    (ctx / "f").write_text(changed)
    third = docker(env, "build", "-t", tag, str(ctx))
    assert third.returncode == 0, third.stdout + third.stderr
    steps = re.split(r"^Step \d+/\d+ : ", third.stdout, flags=re.M)[2:]
    assert " ---> Using cache" in steps[0]
    assert " ---> Using cache" not in steps[1] and " ---> Using cache" not in steps[2]
    assert docker(env, "run", "--rm", tag, "cat", "/2").stdout == changed
    docker(env, "rmi", tag)


def test_multi_stage_final_image_has_only_last_stage(env, tmp_path):
    ctx = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox AS builder\nRUN mkdir /out && echo built > /out/artifact && "
                      "echo junk > /builder-only\n"
                      "FROM busybox AS unused\nRUN echo never > /unused\n"
                      "FROM busybox\nCOPY --from=builder /out/artifact /artifact\nCMD cat /artifact\n",
    })
    tag = _tag()
    r = docker(env, "build", "-t", tag, str(ctx))
    assert r.returncode == 0, r.stdout + r.stderr
    assert docker(env, "run", "--rm", tag).stdout == "built\n"
    probe = docker(env, "run", "--rm", tag, "sh", "-c", "ls /builder-only /out /unused 2>&1; true")
    assert "No such file" in probe.stdout and "built" not in probe.stdout
    assert probe.stdout.count("No such file") == 3, probe.stdout
    docker(env, "rmi", tag)


def test_heredocs_and_cache_mounts(env, tmp_path):
    ctx = write_context(tmp_path / "ctx", {
        "Dockerfile": "FROM busybox\n"
                      "RUN <<EOF\nset -e\necho line1 > /h\necho line2 >> /h\nEOF\n"
                      "COPY <<EOF /etc/app.conf\nkey=value\nEOF\n"
                      "RUN --mount=type=cache,target=/cache "
                      "sh -c 'date +%s%N >> /cache/runs; wc -l < /cache/runs > /runs-seen'\n",
    })
    tag = _tag()
    r = docker(env, "build", "-t", tag, str(ctx))
    assert r.returncode == 0, r.stdout + r.stderr
    assert docker(env, "run", "--rm", tag, "cat", "/h", "/etc/app.conf").stdout == "line1\nline2\nkey=value\n"
    first = int(docker(env, "run", "--rm", tag, "cat", "/runs-seen").stdout)
    # the cache mount persists across builds, but is not part of the image
    r = docker(env, "build", "--no-cache", "-t", tag, str(ctx))
    assert r.returncode == 0, r.stdout + r.stderr
    assert int(docker(env, "run", "--rm", tag, "cat", "/runs-seen").stdout) == first + 1
    assert docker(env, "run", "--rm", tag, "ls", "/cache").stdout == ""
    docker(env, "rmi", tag)


def test_failing_run_exit_code_and_message(env, tmp_path):
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo before\nRUN exit 3\n"})
    r = docker(env, "build", str(ctx))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "The command '/bin/sh -c exit 3' returned a non-zero code: 3" in r.stderr


def test_bad_dockerfile_line_number(env, tmp_path):
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN true\nFOO bar\n"})
    r = docker(env, "build", str(ctx))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "line 3" in r.stderr and "unknown instruction: FOO" in r.stderr.replace("foo", "FOO")


COMPOSE_FILE = """\
version: "3.7"
services:
  web:
    build: ./web
    image: {project}-web
    networks: [appnet]
    stop_grace_period: 1s
  client:
    build:
      context: ./client
      args:
        TARGET: web
    networks: [appnet]
    depends_on: [web]
networks:
  appnet: {{}}
"""


def test_compose_build_and_up_build(berthd, busybox, tmp_path):
    assert COMPOSE is not None, "docker-compose is not installed (.ci/run installs it)"
    project = f"bb{uuid.uuid4().hex[:6]}"
    root = write_context(tmp_path / "proj", {
        "docker-compose.yml": COMPOSE_FILE.format(project=project),
        "web/Dockerfile": "FROM busybox\nRUN mkdir /www && echo built-web > /www/index.html\n"
                          "CMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n",
        "client/Dockerfile": "FROM busybox\nARG TARGET\nENV TARGET=$TARGET\n"
                             "CMD for i in $(seq 50); do wget -qO- http://$TARGET/index.html && exit 0; "
                             "sleep 0.2; done; exit 1\n",
    })
    env = classic_env(berthd, tmp_path, buildkit0=False)

    def compose(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([COMPOSE, "-p", project, *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=timeout)

    try:
        r = compose("build")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Successfully built" in r.stdout + r.stderr
        assert docker(env, "image", "inspect", f"{project}-web").returncode == 0
        (root / "web/Dockerfile").write_text(
            "FROM busybox\nRUN mkdir /www && echo rebuilt-web > /www/index.html\n"
            "CMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n")
        r = compose("up", "--build", "--abort-on-container-exit", "--exit-code-from", "client")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "rebuilt-web" in r.stdout, r.stdout + r.stderr
    finally:
        compose("down", "--rmi", "all", "-t", "1")
