"""POST /build against a real berthd: the classic builder's stream, layers, history, config,
the cache, multi-stage, .dockerignore, bad input, and what a build leaves behind."""

from __future__ import annotations

import gzip
import io
import json
import lzma
import os
import tarfile
from urllib.parse import urlencode

import pytest

from tests.integration.build._api import build, containers_all, error, get, image_id, run_output, tar_of, text

pytestmark = pytest.mark.root


def test_stream_shape_and_result(berthd, busybox):
    df = "FROM busybox\nRUN echo hi > /x && echo out-of-run\nCOPY a.txt /app/\nENV A=1\nCMD cat /x\n"
    st, msgs = build(berthd, tar_of({"Dockerfile": df, "a.txt": "hello\n"}), "t=apitest/shape:v1")
    assert st == 200, msgs
    streams = [m["stream"] for m in msgs if "stream" in m]
    assert streams[:3] == ["Step 1/5 : FROM busybox", "\n", f" ---> {get(berthd, '/images/busybox/json')['Id'][7:19]}\n"]
    assert "Step 2/5 : RUN echo hi > /x && echo out-of-run" in streams
    running = [s for s in streams if s.startswith(" ---> Running in ")]
    assert len(running) == 3  # RUN, ENV, CMD (as the classic builder prints them)
    assert "out-of-run\n" in streams
    assert sum(s.startswith("Removing intermediate container ") for s in streams) == 3
    iid = image_id(msgs)
    assert streams[-2:] == [f"Successfully built {iid[7:19]}\n", "Successfully tagged apitest/shape:v1\n"]
    img = get(berthd, "/images/apitest/shape:v1/json")
    assert img["Id"] == iid
    assert img["Config"]["Cmd"] == ["/bin/sh", "-c", "cat /x"]
    assert "A=1" in img["Config"]["Env"]
    base_layers = len(get(berthd, "/images/busybox/json")["RootFS"]["Layers"])
    assert len(img["RootFS"]["Layers"]) == base_layers + 2  # one per RUN and COPY
    hist = get(berthd, "/images/apitest/shape:v1/history")
    by = [h["CreatedBy"] for h in hist[:4]]
    assert by[0] == '/bin/sh -c #(nop)  CMD ["/bin/sh" "-c" "cat /x"]'
    assert by[1] == "/bin/sh -c #(nop)  ENV A=1"
    assert by[2].startswith("/bin/sh -c #(nop) COPY file:") and by[2].endswith(" in /app/ ")
    assert by[3] == "/bin/sh -c echo hi > /x && echo out-of-run"
    assert run_output(berthd, "apitest/shape:v1", ["sh", "-c", "cat /x /app/a.txt; stat -c %u:%g /app/a.txt"]) \
        == "hi\nhello\n0:0\n"
    assert not any(c["Labels"].get("berth.build") for c in containers_all(berthd))


def test_second_build_is_fully_cached(berthd, busybox):
    df = "FROM busybox\nRUN echo $RANDOM > /r\nCOPY . /src/\nLABEL x=y\n"
    body = tar_of({"Dockerfile": df, "f": "1"})
    st, first = build(berthd, body, "t=apitest/cached")
    assert st == 200, first
    st, second = build(berthd, body, "t=apitest/cached")
    assert st == 200
    assert image_id(first) == image_id(second)
    assert text(second).count(" ---> Using cache\n") == 3
    assert "Running in" not in text(second)
    # a changed file busts the COPY step and what follows, not the RUN before it
    st, third = build(berthd, tar_of({"Dockerfile": df, "f": "2"}), "t=apitest/cached")
    assert text(third).count(" ---> Using cache\n") == 1
    assert image_id(third) != image_id(first)
    # nocache runs everything again
    st, fourth = build(berthd, body, "nocache=1")
    assert "Using cache" not in text(fourth)


def test_failing_run_reports_docker_error_and_leaves_nothing(berthd, busybox):
    before = {c["Id"] for c in containers_all(berthd)}
    st, msgs = build(berthd, tar_of({"Dockerfile": "FROM busybox\nRUN echo before; exit 3\n"}), "t=apitest/fail")
    assert st == 200
    err = error(msgs)
    assert err["error"] == "The command '/bin/sh -c echo before; exit 3' returned a non-zero code: 3"
    assert err["errorDetail"] == {"code": 3, "message": err["error"]}
    assert "before\n" in text(msgs)
    assert {c["Id"] for c in containers_all(berthd)} == before
    st, _ = berthd.request("GET", "/images/apitest/fail/json")
    assert st == 404


def test_parse_error_is_http_400_with_line(berthd, busybox):
    st, msgs = build(berthd, tar_of({"Dockerfile": "FROM busybox\nRUN true\nFOO bar\n"}))
    assert st == 400
    assert "line 3" in msgs[0]["message"] and "unknown instruction: FOO" in msgs[0]["message"]


def test_missing_dockerfile(berthd, busybox):
    st, msgs = build(berthd, tar_of({"a": "x"}), "dockerfile=nope.df")
    assert st in (400, 500)
    assert msgs[0]["message"] == "Cannot locate specified Dockerfile: nope.df"


def test_copy_errors(berthd, busybox):
    st, msgs = build(berthd, tar_of({"Dockerfile": "FROM busybox\nCOPY missing /x\n"}))
    assert error(msgs)["error"] == ("COPY failed: file not found in build context or excluded by "
                                    ".dockerignore: stat missing: file does not exist")
    st, msgs = build(berthd, tar_of({"Dockerfile": "FROM busybox\nCOPY ../x /x\n"}))
    assert "forbidden path outside the build context: ../x" in error(msgs)["error"]


def test_symlink_out_of_context_never_reads_host_file(berthd, busybox, tmp_path):
    secret = tmp_path / "host-secret"
    secret.write_text("HOST SECRET\n")
    files = {"Dockerfile": "FROM busybox\nCOPY link /got\n", "link": f"->{secret}"}
    st, msgs = build(berthd, tar_of(files))
    assert "file not found in build context" in error(msgs)["error"]
    # a directory with such a link copies the link itself, not the file
    files = {"Dockerfile": "FROM busybox\nCOPY d /d\n", "d/link": f"->{secret}", "d/f": "ok"}
    st, msgs = build(berthd, tar_of(files), "t=apitest/links")
    assert st == 200 and "error" not in msgs[-1], msgs
    out = run_output(berthd, "apitest/links", ["sh", "-c", "readlink /d/link; cat /d/link 2>&1 || true"])
    assert str(secret) in out and "HOST SECRET" not in out


@pytest.mark.parametrize("entry", ["../evil", "/abs/evil", "dev"])
def test_hostile_context_is_refused(berthd, busybox, entry):
    extra = tarfile.TarInfo(entry)
    if entry == "dev":
        extra.type = tarfile.CHRTYPE
        extra.devmajor, extra.devminor = 1, 3
    before = set(os.listdir(berthd.data_root / "build" / "tmp"))
    st, msgs = build(berthd, tar_of({"Dockerfile": "FROM busybox\n"}, extra=[extra]))
    assert st == 400, msgs
    assert "invalid build context" in msgs[0]["message"]
    assert set(os.listdir(berthd.data_root / "build" / "tmp")) == before
    assert not os.path.exists("/abs/evil") and not (berthd.data_root / "build" / "evil").exists()


@pytest.mark.parametrize("comp", ["gzip", "xz"])
def test_compressed_context_and_dockerignore_and_args(berthd, busybox, comp):
    raw = tar_of({"Dockerfile": "FROM busybox\nARG WHO=nobody\nCOPY . /c/\nRUN echo $WHO > /who\n",
                  ".dockerignore": "*.log\n!keep.log\n", "a.log": "no", "keep.log": "yes", "b.txt": "b"})
    body = gzip.compress(raw) if comp == "gzip" else lzma.compress(raw)
    q = urlencode({"t": f"apitest/ctx-{comp}", "buildargs": json.dumps({"WHO": "me"}), "labels": json.dumps({"l": "v"})})
    st, msgs = build(berthd, body, q)
    assert st == 200 and "error" not in msgs[-1], msgs
    out = run_output(berthd, f"apitest/ctx-{comp}", ["sh", "-c", "ls -A /c; cat /who"])
    assert out.split() == [".dockerignore", "Dockerfile", "b.txt", "keep.log", "me"]
    img = get(berthd, f"/images/apitest/ctx-{comp}/json")
    assert img["Config"]["Labels"]["l"] == "v"
    hist = get(berthd, f"/images/apitest/ctx-{comp}/history")
    assert any(h["CreatedBy"] == "|1 WHO=me /bin/sh -c echo $WHO > /who" for h in hist)


def test_multistage_target_and_unneeded_stage_skipped(berthd, busybox):
    df = ("FROM busybox AS base\nRUN echo base > /base\n"
          "FROM busybox AS broken\nRUN exit 1\n"
          "FROM base AS builder\nRUN echo built > /artifact && echo junk > /junk\n"
          "FROM busybox\nCOPY --from=builder /artifact /artifact\nCMD cat /artifact\n")
    st, msgs = build(berthd, tar_of({"Dockerfile": df}), "t=apitest/multi")
    assert st == 200 and "error" not in msgs[-1], msgs
    assert "Step 1/7 : FROM busybox AS base" in text(msgs)  # 2 + 2 + 3 steps: "broken" is skipped
    assert "RUN exit 1" not in text(msgs)
    out = run_output(berthd, "apitest/multi", ["sh", "-c", "cat /artifact; ls /junk /base 2>&1 | wc -l"])
    assert out.split("\n")[0] == "built"
    st, msgs = build(berthd, tar_of({"Dockerfile": df}), "t=apitest/multi-base&target=base")
    assert "error" not in msgs[-1], msgs
    assert run_output(berthd, "apitest/multi-base", ["cat", "/base"]) == "base\n"
    st, msgs = build(berthd, tar_of({"Dockerfile": df}), "target=nope")
    assert st == 400 and "failed to reach build target nope" in msgs[0]["message"]


def test_heredoc_cache_mount_secret(berthd, busybox):
    df = ("FROM busybox\n"
          "RUN <<EOF\necho line1 > /h\necho line2 >> /h\nEOF\n"
          "COPY <<EOT /etc/greeting\nhello heredoc\nEOT\n"
          "RUN --mount=type=cache,target=/cache echo run >> /cache/log && wc -l < /cache/log > /count\n"
          "RUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen-secret-len && wc -c < /run/secrets/tok > /len\n")
    import base64
    q = urlencode({"t": "apitest/heredoc", "berth-secrets": json.dumps({"tok": base64.b64encode(b"s3cret").decode()})})
    st, msgs = build(berthd, tar_of({"Dockerfile": df}), q)
    assert st == 200 and "error" not in msgs[-1], msgs
    out = run_output(berthd, "apitest/heredoc", ["sh", "-c", "cat /h /etc/greeting /count /len; ls /cache 2>/dev/null | wc -l"])
    lines = out.split()
    assert lines[:4] == ["line1", "line2", "hello", "heredoc"]
    first_count = int(lines[4])
    assert lines[5] == "6" and lines[6] == "0"  # the secret is readable at build time, the mount is not in the image
    st, msgs = build(berthd, tar_of({"Dockerfile": df}), q + "&nocache=1")
    out = run_output(berthd, "apitest/heredoc", ["cat", "/count"])
    assert int(out) == first_count + 1  # the cache mount kept its content between builds


def test_quiet_prints_only_the_id(berthd, busybox):
    st, msgs = build(berthd, tar_of({"Dockerfile": "FROM busybox\nRUN echo noisy\n"}), "q=1&nocache=1")
    assert st == 200
    streams = [m["stream"] for m in msgs if "stream" in m]
    assert streams == [image_id(msgs) + "\n"]


def test_dockerpy_low_level_stream(berthd, busybox):
    import docker
    cli = docker.APIClient(base_url=berthd.host, version="1.41")
    f = io.BytesIO(b"FROM busybox\nRUN echo from-dockerpy\n")
    out = list(cli.build(fileobj=f, tag="apitest/dockerpy", rm=True, decode=True, nocache=True))
    assert any(m.get("stream") == "from-dockerpy\n" for m in out)
    assert any("aux" in m for m in out)
    assert out[-1] == {"stream": "Successfully tagged apitest/dockerpy:latest\n"}
    cli.close()


def test_prune_and_df(berthd, busybox):
    st, msgs = build(berthd, tar_of({"Dockerfile": "FROM busybox\nRUN echo prune-me > /p\nRUN echo more > /q\n"}),
                     "t=apitest/prune")
    assert st == 200
    df = get(berthd, "/system/df")
    assert any("echo prune-me" in c["Description"] for c in df["BuildCache"])  # type: ignore[index]
    shown = {i["Id"] for i in get(berthd, "/images/json")}  # type: ignore[union-attr]
    everything = {i["Id"] for i in get(berthd, "/images/json?all=1")}  # type: ignore[union-attr]
    hidden = everything - shown
    assert len(hidden) >= 1  # the step images between FROM and the tagged result
    st, out = berthd.request("POST", "/images/prune")  # dangling only: intermediates have children
    assert hidden <= {i["Id"] for i in get(berthd, "/images/json?all=1")}  # type: ignore[union-attr]
    st, out = berthd.request("POST", "/build/prune?all=1")
    assert st == 200
    res = json.loads(out)
    assert set(res) == {"CachesDeleted", "SpaceReclaimed"} and res["CachesDeleted"]
    assert get(berthd, "/system/df")["BuildCache"] == []  # type: ignore[index]
    assert run_output(berthd, "apitest/prune", ["cat", "/p", "/q"]) == "prune-me\nmore\n"  # the image stays
    assert berthd.request("POST", "/build/cancel?id=none")[0] == 200   # buildkit's endpoint: nothing to cancel
