"""Typed commands: arguments, flags, expansion, stages, with Docker's messages."""

import pytest

from berth.build.dockerfile import DockerfileError, parse
from berth.build.instructions import (
    Arg, Cmd, Copy, Entrypoint, Env, Expose, From, Healthcheck, Label, Maintainer, Mount, Onbuild,
    Run, Shell, Stopsignal, User, Volume, Workdir, parse_duration, parse_words, port_specs,
    predefined_platform_args, ram_in_bytes, split_stages, to_command, validate,
)


def cmd(line, env=None, text_prefix=""):
    df = parse(text_prefix + line + "\n")
    return to_command(df.instructions[-1], env or {}, df.escape)


def error(line, env=None):
    with pytest.raises(DockerfileError) as e:
        cmd(line, env)
    return str(e.value)


# ------------------------------------------------------------------ FROM

@pytest.mark.parametrize("line,image,name,platform", [
    ("FROM busybox", "busybox", None, None),
    ("FROM busybox:1.36 AS build", "busybox:1.36", "build", None),
    ("FROM busybox as Build-1.x", "busybox", "build-1.x", None),
    ("FROM ${BASE}:${TAG:-latest}", "alpine:latest", None, None),
    ("FROM --platform=$BUILDPLATFORM golang AS b", "golang", "b", "linux/amd64"),
    ("FROM scratch", "scratch", None, None),
])
def test_from(line, image, name, platform):
    c = cmd(line, {"BASE": "alpine", "BUILDPLATFORM": "linux/amd64"})
    assert isinstance(c, From)
    assert (c.image, c.name, c.platform) == (image, name, platform)


@pytest.mark.parametrize("line,message", [
    ("FROM", "FROM requires either one or three arguments"),
    ("FROM a b", "FROM requires either one or three arguments"),
    ("FROM a FOR b", "FROM requires either one or three arguments"),
    ("FROM a AS b c", "FROM requires either one or three arguments"),
    ("FROM a AS 1st", 'invalid name for build stage: "1st", name can\'t start with a number or contain symbols'),
    ("FROM a AS b$c", 'invalid name for build stage: "b$c", name can\'t start with a number or contain symbols'),
    ("FROM --plaform=x a", "unknown flag: plaform (did you mean platform?)"),
])
def test_from_errors(line, message):
    assert error(line) == f"dockerfile parse error on line 1: {message}"


def test_from_blank_after_expansion():
    assert error("FROM ${NOPE}") == "dockerfile parse error on line 1: base name (${NOPE}) should not be blank"


# ------------------------------------------------------------------ ENV / LABEL / ARG

@pytest.mark.parametrize("line,pairs", [
    # docs.docker.com/reference/dockerfile/#env
    ('ENV MY_NAME="John Doe"', [("MY_NAME", "John Doe")]),
    ("ENV MY_DOG=Rex\\ The\\ Dog", [("MY_DOG", "Rex The Dog")]),
    ("ENV MY_CAT=fluffy", [("MY_CAT", "fluffy")]),
    ('ENV MY_NAME="John Doe" MY_DOG=Rex\\ The\\ Dog \\\n    MY_CAT=fluffy',
     [("MY_NAME", "John Doe"), ("MY_DOG", "Rex The Dog"), ("MY_CAT", "fluffy")]),
    # legacy form: key, then the rest of the line
    ("ENV MY_VAR my-value", [("MY_VAR", "my-value")]),
    ("ENV ONE TWO= THREE=world", [("ONE", "TWO= THREE=world")]),
    ("ENV a b c", [("a", "b c")]),
    ("ENV a=", [("a", "")]),
    ('ENV a=""', [("a", "")]),
    ("ENV a='$HOME' b=\"$HOME\" c=$HOME", [("a", "$HOME"), ("b", "/root"), ("c", "/root")]),
    ("ENV PATH=/x:$PATH", [("PATH", "/x:/bin")]),
    ("ENV abc=bye def=$abc", [("abc", "bye"), ("def", "hello")]),   # uses the env before this line
    ("ENV x=${undefined:-dflt}", [("x", "dflt")]),
])
def test_env(line, pairs):
    c = cmd(line, {"HOME": "/root", "PATH": "/bin", "abc": "hello"})
    assert isinstance(c, Env)
    assert list(c.pairs) == pairs


@pytest.mark.parametrize("line,message", [
    ("ENV", "ENV requires at least one argument"),
    ("ENV a", "ENV must have two arguments"),
    ("ENV a=b c", "Syntax error - can't find = in \"c\". Must be of the form: name=value"),
    ("ENV =b", "ENV names can not be blank"),
    ("LABEL", "LABEL requires at least one argument"),
    ("LABEL a=b c", "Syntax error - can't find = in \"c\". Must be of the form: name=value"),
    ("ENV --x=1 a=b", "unknown flag: x"),
])
def test_env_label_errors(line, message):
    assert error(line) == f"dockerfile parse error on line 1: {message}"


def test_label_docs_examples():
    text = ('LABEL "com.example.vendor"="ACME Incorporated"\n'
            'LABEL com.example.label-with-value="foo"\n'
            'LABEL version="1.0"\n'
            'LABEL description="This text illustrates \\\nthat label-values can span multiple lines."\n'
            'LABEL multi.label1="value1" multi.label2="value2" other="value3"\n')
    df = parse(text)
    got = [p for i in df.instructions for p in to_command(i, {}, df.escape).pairs]
    assert got == [
        ("com.example.vendor", "ACME Incorporated"),
        ("com.example.label-with-value", "foo"),
        ("version", "1.0"),
        ("description", "This text illustrates that label-values can span multiple lines."),
        ("multi.label1", "value1"), ("multi.label2", "value2"), ("other", "value3"),
    ]
    assert isinstance(to_command(df.instructions[0], {}, "\\"), Label)


@pytest.mark.parametrize("line,pairs", [
    ("ARG user1", [("user1", None)]),
    ("ARG buildno=1", [("buildno", "1")]),
    ("ARG user1=someuser buildno", [("user1", "someuser"), ("buildno", None)]),
    ('ARG msg="hello world"', [("msg", "hello world")]),
    ("ARG empty=", [("empty", "")]),
    ("ARG v=${BASE}-x", [("v", "alpine-x")]),
])
def test_arg(line, pairs):
    c = cmd(line, {"BASE": "alpine"})
    assert isinstance(c, Arg)
    assert list(c.pairs) == pairs


@pytest.mark.parametrize("line,message", [
    ("ARG", "ARG requires at least one argument"),
    ("ARG =x", "ARG names can not be blank"),
])
def test_arg_errors(line, message):
    assert error(line) == f"dockerfile parse error on line 1: {message}"


@pytest.mark.parametrize("rest,words", [
    ('a="b c" d=e', ['a="b c"', "d=e"]),
    ("a=b\\ c", ["a=b\\ c"]),
    ("a='x y'  b", ["a='x y'", "b"]),
    ('a="x \\" y"', ['a="x \\" y"']),
    ("", []),
])
def test_parse_words_keeps_quotes(rest, words):
    assert parse_words(rest) == words


# ------------------------------------------------------------------ EXPOSE

@pytest.mark.parametrize("line,ports", [
    ("EXPOSE 80", ["80/tcp"]),
    ("EXPOSE 80/tcp 80/udp", ["80/tcp", "80/udp"]),
    ("EXPOSE 53/UDP", ["53/udp"]),
    ("EXPOSE 8000-8002", ["8000/tcp", "8001/tcp", "8002/tcp"]),
    ("EXPOSE 7000-7001/udp", ["7000/udp", "7001/udp"]),
    ("EXPOSE 132/sctp", ["132/sctp"]),
    ("EXPOSE $PORTS", ["443/tcp", "80/tcp"]),
    ("EXPOSE ${PORT:-3000}", ["3000/tcp"]),
    ("EXPOSE 80 80/tcp", ["80/tcp"]),
])
def test_expose(line, ports):
    c = cmd(line, {"PORTS": "80 443"})
    assert isinstance(c, Expose)
    assert sorted(c.ports) == sorted(ports)


@pytest.mark.parametrize("line,message", [
    ("EXPOSE", "EXPOSE requires at least one argument"),
    ("EXPOSE 80/xyz", "invalid proto: xyz"),
    ("EXPOSE http", "invalid containerPort: http"),
    ("EXPOSE 70000", "invalid containerPort: 70000"),
])
def test_expose_errors(line, message):
    assert error(line) == f"dockerfile parse error on line 1: {message}"


def test_port_specs():
    assert port_specs("1-3/udp") == ["1/udp", "2/udp", "3/udp"]
    with pytest.raises(ValueError):
        port_specs("3-1")


# ------------------------------------------------------------------ RUN / CMD / ENTRYPOINT / SHELL

def test_run_shell_and_exec_forms_are_not_expanded():
    c = cmd("RUN echo $HOME && ls", {"HOME": "/root"})
    assert isinstance(c, Run)
    assert (c.cmd, c.shell_form) == (("echo $HOME && ls",), True)
    c = cmd('RUN ["echo", "$HOME"]', {"HOME": "/root"})
    assert (c.cmd, c.shell_form) == (("echo", "$HOME"), False)


def test_run_heredoc():
    c = cmd("RUN <<EOF\necho hi\nEOF")
    assert c.cmd == ("<<EOF",) and c.heredocs[0].content == "echo hi\n"


@pytest.mark.parametrize("flag,mount", [
    ("type=cache,target=/root/.cache",
     Mount(type="cache", target="/root/.cache", id="/root/.cache", sharing="shared", readonly=False)),
    ("type=cache,target=/var/cache/apt,sharing=locked,id=apt,mode=0755,uid=1000,gid=1000",
     Mount(type="cache", target="/var/cache/apt", id="apt", sharing="locked", mode=0o755, uid=1000,
           gid=1000, readonly=False)),
    ("target=/src", Mount(type="bind", target="/src", readonly=True)),
    ("type=bind,source=/x,target=/y,from=build,rw", Mount(type="bind", source="/x", target="/y", from_="build", readonly=False)),
    ("type=bind,src=a,dst=/b,readwrite=true", Mount(type="bind", source="a", target="/b", readonly=False)),
    ("type=bind,target=/b,ro", Mount(type="bind", target="/b", readonly=True)),
    ("type=tmpfs,target=/tmp,size=64m", Mount(type="tmpfs", target="/tmp", size=64 << 20, readonly=False)),
    ("type=secret,id=mysecret", Mount(type="secret", id="mysecret", target="/run/secrets/mysecret")),
    ("type=secret,id=aws,target=/root/.aws/credentials,required",
     Mount(type="secret", id="aws", target="/root/.aws/credentials", required=True)),
    ("type=secret,target=/etc/token", Mount(type="secret", id="token", target="/etc/token")),
    ("type=secret,id=API_KEY,env=API_KEY", Mount(type="secret", id="API_KEY", env="API_KEY")),
    ("type=ssh", Mount(type="ssh", id="default")),
    ('"type=cache,target=/x"', Mount(type="cache", target="/x", id="/x", sharing="shared", readonly=False)),
    ("type=cache,target=$DIR", Mount(type="cache", target="/data", id="/data", sharing="shared", readonly=False)),
])
def test_run_mount(flag, mount):
    c = cmd(f"RUN --mount={flag} true", {"DIR": "/data"})
    assert c.mounts == (mount,)


def test_run_several_mounts_network_security():
    c = cmd("RUN --mount=type=cache,target=/a --mount=type=tmpfs,target=/b --network=host --security=insecure x")
    assert [m.target for m in c.mounts] == ["/a", "/b"]
    assert (c.network, c.security) == ("host", "insecure")
    assert cmd("RUN x").network is None


@pytest.mark.parametrize("flag,message", [
    ("--mount=type=foo,target=/x", 'unsupported mount type "foo"'),
    ("--mount=type=cach,target=/x", 'unsupported mount type "cach" (did you mean cache?)'),
    ("--mount=type=cache,target=/x,sharing=bad", 'unsupported sharing value "bad"'),
    ("--mount=type=cache,target=/x,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
    ("--mount=type=cache,target=/x,nokey", "invalid field 'nokey' must be a key=value pair"),
    ("--mount=type=bind,target=/x,mode=0755", 'mode not allowed for "bind" type mounts'),
    ("--mount=type=cache,target=/x,mode=9", "invalid value 9 for mode"),
    ("--mount=type=cache,target=/x,uid=a", "invalid value a for uid"),
    ("--mount=type=bind,target=/x,size=1m", "unexpected key 'size' for mount type 'bind'"),
    ("--mount=type=tmpfs,target=/x,size=lots", "invalid value for size: lots"),
    ("--mount=type=bind,target=/x,ro=maybe", "invalid value for ro: maybe"),
    ("--mount=type=cache,target=/x,required", "unexpected key 'required' for mount type 'cache'"),
    ("--mount=type=secret", "invalid secret mount. one of source, target required"),
    ("--mount=type=secret,id=a,from=b", "secret mount should not have a from"),
    ("--mount=type=bind,target=/x,sharing=locked", "invalid cache sharing set for bind mount"),
    ("--mount=type=cache", "mount target is required"),
    ("--network=bridge", 'invalid network mode "bridge"'),
    ("--network", "missing a value on flag: network"),
    ("--foo=bar", "unknown flag: foo"),
    ("--mout=type=cache", "unknown flag: mout (did you mean mount?)"),
])
def test_run_flag_errors(flag, message):
    assert error(f"RUN {flag} true") == f"dockerfile parse error on line 1: {message}"


@pytest.mark.parametrize("line,cls,value,shell_form", [
    ("CMD echo hi", Cmd, ("echo hi",), True),
    ('CMD ["echo", "hi"]', Cmd, ("echo", "hi"), False),
    ('CMD ["--help"]', Cmd, ("--help",), False),
    ("CMD []", Cmd, (), False),
    ("ENTRYPOINT top -b", Entrypoint, ("top -b",), True),
    ('ENTRYPOINT ["top", "-b"]', Entrypoint, ("top", "-b"), False),
    ("ENTRYPOINT $X", Entrypoint, ("$X",), True),
])
def test_cmd_entrypoint(line, cls, value, shell_form):
    c = cmd(line, {"X": "1"})
    assert isinstance(c, cls)
    assert (c.cmd, c.shell_form) == (value, shell_form)


def test_shell():
    c = cmd('SHELL ["powershell", "-command"]')
    assert isinstance(c, Shell) and c.cmd == ("powershell", "-command")
    assert error("SHELL /bin/bash -c") == \
        "dockerfile parse error on line 1: SHELL requires the arguments to be in JSON form"
    assert error("SHELL []") == "dockerfile parse error on line 1: SHELL requires at least one argument"


# ------------------------------------------------------------------ simple ones

@pytest.mark.parametrize("line,cls,attr,value", [
    ("WORKDIR /app", Workdir, "path", "/app"),
    ("WORKDIR ${DIR}/sub", Workdir, "path", "/data/sub"),
    ("WORKDIR /path with space", Workdir, "path", "/path with space"),
    ("USER $UID:$GID", User, "user", "1000:100"),
    ("USER nobody", User, "user", "nobody"),
    ("STOPSIGNAL SIGKILL", Stopsignal, "signal", "SIGKILL"),
    ("STOPSIGNAL $SIG", Stopsignal, "signal", "9"),
    ("MAINTAINER Jane <j@x> $DIR", Maintainer, "name", "Jane <j@x> $DIR"),
])
def test_single_argument_instructions(line, cls, attr, value):
    c = cmd(line, {"DIR": "/data", "UID": "1000", "GID": "100", "SIG": "9"})
    assert isinstance(c, cls)
    assert getattr(c, attr) == value


@pytest.mark.parametrize("line,message", [
    ("WORKDIR", "WORKDIR requires exactly one argument"),
    ("USER", "USER requires exactly one argument"),
    ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
    ("MAINTAINER", "MAINTAINER requires exactly one argument"),
])
def test_single_argument_errors(line, message):
    assert error(line) == f"dockerfile parse error on line 1: {message}"


@pytest.mark.parametrize("line,paths", [
    ("VOLUME /data", ["/data"]),
    ("VOLUME /a /b", ["/a", "/b"]),
    ('VOLUME ["/data", "/logs"]', ["/data", "/logs"]),
    ("VOLUME $DIR", ["/data"]),
    ('VOLUME ["$DIR"]', ["/data"]),
])
def test_volume(line, paths):
    c = cmd(line, {"DIR": "/data"})
    assert isinstance(c, Volume)
    assert list(c.paths) == paths


def test_volume_errors():
    assert error("VOLUME") == "dockerfile parse error on line 1: VOLUME requires at least one argument"
    assert error('VOLUME [""]') == "dockerfile parse error on line 1: VOLUME specified can not be an empty string"
    assert error("VOLUME $EMPTY") == "dockerfile parse error on line 1: VOLUME specified can not be an empty string"


def test_onbuild():
    c = cmd("ONBUILD ADD . /app/src")
    assert isinstance(c, Onbuild) and c.expression == "ADD . /app/src"
    c = cmd("onbuild   RUN echo $X")
    assert c.expression == "RUN echo $X"
    c = cmd("ONBUILD RUN <<EOF\necho x\nEOF")
    assert c.expression == "RUN <<EOF\necho x\nEOF"


@pytest.mark.parametrize("line,message", [
    ("ONBUILD", "ONBUILD requires at least one argument"),
    ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
    ("ONBUILD maintainer x", "MAINTAINER isn't allowed as an ONBUILD trigger"),
])
def test_onbuild_errors(line, message):
    assert error(line) == f"dockerfile parse error on line 1: {message}"


# ------------------------------------------------------------------ HEALTHCHECK

S = 1_000_000_000


@pytest.mark.parametrize("line,test,interval,timeout,start_period,start_interval,retries", [
    ("HEALTHCHECK NONE", ("NONE",), 0, 0, 0, 0, 0),
    ("HEALTHCHECK CMD curl -f http://localhost/ || exit 1",
     ("CMD-SHELL", "curl -f http://localhost/ || exit 1"), 0, 0, 0, 0, 0),
    ('HEALTHCHECK CMD ["curl", "-f", "http://localhost/"]', ("CMD", "curl", "-f", "http://localhost/"), 0, 0, 0, 0, 0),
    ("HEALTHCHECK --interval=5m --timeout=3s CMD curl -f http://localhost/ || exit 1",
     ("CMD-SHELL", "curl -f http://localhost/ || exit 1"), 300 * S, 3 * S, 0, 0, 0),
    ("HEALTHCHECK --interval=1m30s --timeout=10s --start-period=5s --start-interval=2s --retries=3 cmd true",
     ("CMD-SHELL", "true"), 90 * S, 10 * S, 5 * S, 2 * S, 3),
    ("HEALTHCHECK --interval=1.5s CMD true", ("CMD-SHELL", "true"), 1_500_000_000, 0, 0, 0, 0),
    ("HEALTHCHECK --interval=0 CMD true", ("CMD-SHELL", "true"), 0, 0, 0, 0, 0),
    ("HEALTHCHECK --timeout=500ms CMD true", ("CMD-SHELL", "true"), 0, 500_000_000, 0, 0, 0),
])
def test_healthcheck(line, test, interval, timeout, start_period, start_interval, retries):
    c = cmd(line)
    assert isinstance(c, Healthcheck)
    assert c.test == test
    assert (c.interval, c.timeout, c.start_period, c.start_interval, c.retries) == \
        (interval, timeout, start_period, start_interval, retries)


@pytest.mark.parametrize("line,message", [
    ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
    ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
    ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK CMD []", "Missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK RUN x", 'Unknown type "RUN" in HEALTHCHECK (try CMD)'),
    ("HEALTHCHECK --interval=abc CMD x", 'time: invalid duration "abc"'),
    ("HEALTHCHECK --interval=10 CMD x", 'time: missing unit in duration "10"'),
    ("HEALTHCHECK --interval=1us CMD x", 'Interval "interval" cannot be less than 1ms'),
    ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)"),
    ("HEALTHCHECK --retries=x CMD x", 'strconv.ParseInt: parsing "x": invalid syntax'),
    ("HEALTHCHECK --intervl=1s CMD x", "unknown flag: intervl (did you mean interval?)"),
])
def test_healthcheck_errors(line, message):
    assert error(line) == f"dockerfile parse error on line 1: {message}"


@pytest.mark.parametrize("text,ns", [
    ("30s", 30 * S), ("1m30s", 90 * S), ("1h", 3600 * S), ("2h45m", (2 * 3600 + 45 * 60) * S),
    ("300ms", 300_000_000), ("1.5h", 5400 * S), ("10us", 10_000), ("10µs", 10_000), ("7ns", 7),
    ("0", 0), ("-1s", -S), (".5s", S // 2),
])
def test_parse_duration(text, ns):
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "s", "1", "1x", "1s2", "abc", "--1s"])
def test_parse_duration_errors(text):
    with pytest.raises(ValueError):
        parse_duration(text)


# ------------------------------------------------------------------ COPY / ADD

def test_copy_basic_and_expanded():
    c = cmd("COPY --chown=$U:$G --chmod=644 a $SRC /dst/", {"U": "1", "G": "2", "SRC": "b"})
    assert isinstance(c, Copy) and not c.is_add
    assert (c.sources, c.dest, c.chown, c.chmod) == (("a", "b"), "/dst/", "1:2", "644")
    assert (c.from_, c.link, c.parents, c.exclude, c.checksum) == (None, False, False, (), None)


def test_copy_flags():
    c = cmd("COPY --from=build --link --parents --exclude=*.md --exclude=tmp ./x/ /y/")
    assert (c.from_, c.link, c.parents, c.exclude) == ("build", True, True, ("*.md", "tmp"))
    assert cmd("COPY --link=false a b").link is False


def test_copy_json_form_keeps_spaces():
    c = cmd('COPY ["my file", "$D/other dir/"]', {"D": "/x"})
    assert c.sources == ("my file",) and c.dest == "/x/other dir/"


def test_copy_escaped_dollar():
    assert cmd("COPY \\$FOO /quux", {"FOO": "/bar"}).sources == ("$FOO",)


def test_add_flags():
    c = cmd("ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d "
            "https://example.com/x.tar.gz /")
    assert c.is_add and c.checksum.startswith("sha256:24454f")
    c = cmd("ADD --keep-git-dir=true --link git@git.example.com:foo/bar.git /bar")
    assert (c.keep_git_dir, c.link) == (True, True)


def test_copy_heredoc_sources():
    c = cmd("COPY <<EOF <<-'TWO' /etc/\nhello $X\nEOF\n\tworld\n\tTWO", {"X": "1"})
    assert c.sources == ()
    assert [(d.name, d.content, d.expand) for d in c.heredocs] == [
        ("EOF", "hello $X\n", True), ("TWO", "world\n", False)]
    assert c.dest == "/etc/"


@pytest.mark.parametrize("line,message", [
    ("COPY a", "COPY requires at least two arguments, but only one was provided. Destination could not be determined"),
    ("ADD a", "ADD requires at least two arguments, but only one was provided. Destination could not be determined"),
    ("COPY --checksum=x a b", "unknown flag: checksum"),
    ("COPY --keep-git-dir a b", "unknown flag: keep-git-dir"),
    ("ADD --from=x a b", "unknown flag: from"),
    ("ADD --parents a b", "unknown flag: parents"),
    ("COPY --from a b", "missing a value on flag: from"),
    ("COPY --link= a b", "missing a value on flag: link"),
    ("COPY --link=maybe a b", "expecting boolean value for flag link, not: maybe"),
    ("COPY --from=a --from=b x y", "duplicate flag specified: from"),
    ("COPY --chwon=1 a b", "unknown flag: chwon (did you mean chown?)"),
    ("COPY a <<EOF\nx\nEOF", "COPY cannot accept a heredoc as a destination"),
])
def test_copy_errors(line, message):
    assert error(line) == f"dockerfile parse error on line 1: {message}"


def test_error_line_points_at_the_instruction():
    df = parse("FROM a\nRUN ok\n\nCOPY \\\n  --bogus=1 a b\n")
    with pytest.raises(DockerfileError) as e:
        to_command(df.instructions[2], {}, df.escape)
    assert str(e.value) == "dockerfile parse error on line 4: unknown flag: bogus"
    assert (e.value.line, e.value.end_line) == (4, 5)


def test_expansion_error_is_reported_with_line():
    df = parse("FROM a\nWORKDIR ${X:?X must be set}\n")
    with pytest.raises(DockerfileError) as e:
        to_command(df.instructions[1], {}, df.escape)
    assert str(e.value) == 'failed to process "${X:?X must be set}": X: X must be set'
    assert e.value.line == 2


def test_backtick_escape_in_env():
    df = parse("# escape=`\nFROM a\nENV P=c:\\dir x=a`$b\n")
    c = to_command(df.instructions[1], {"b": "B"}, df.escape)
    assert c.pairs == (("P", "c:\\dir"), ("x", "a$b"))


# ------------------------------------------------------------------ stages and validation

def test_split_stages():
    df = parse("ARG BASE=alpine\nARG TAG\nFROM $BASE AS Build\nRUN a\nFROM build\nCOPY --from=build /x /x\n"
               "FROM scratch AS final\n")
    meta, stages = split_stages(df)
    assert [i.cmd for i in meta] == ["arg", "arg"]
    assert [(s.index, s.name, s.from_.line, [c.cmd for c in s.commands]) for s in stages] == [
        (0, "build", 3, ["run"]), (1, None, 5, ["copy"]), (2, "final", 7, [])]


def test_instruction_before_from():
    with pytest.raises(DockerfileError) as e:
        split_stages(parse("ARG A\nRUN x\nFROM a\n"))
    assert e.value.line == 2
    assert "no build stage in current context" in str(e.value)


def test_duplicate_stage_name():
    with pytest.raises(DockerfileError) as e:
        split_stages(parse("FROM a AS x\nFROM b AS X\n"))
    assert e.value.line == 2 and 'duplicate stage name "x"' in str(e.value)


def test_validate_finds_a_bad_later_line_without_expanding():
    validate(parse("FROM ${BASE:?}\nRUN --mount=type=$T,target=$X,size=$S x\nCOPY $A $B\n"))
    with pytest.raises(DockerfileError):
        validate(parse("FROM a\nRUN --mount=type=nope,target=/x x\n"))
    with pytest.raises(DockerfileError) as e:
        validate(parse("FROM a\nRUN ok\nRUN ok\nEXPOSE 80/bogus\n"))
    assert str(e.value) == "dockerfile parse error on line 4: invalid proto: bogus"


# ------------------------------------------------------------------ helpers

def test_predefined_platform_args():
    assert predefined_platform_args("linux/arm/v7", "linux/amd64") == {
        "TARGETPLATFORM": "linux/arm/v7", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7",
        "BUILDPLATFORM": "linux/amd64", "BUILDOS": "linux", "BUILDARCH": "amd64", "BUILDVARIANT": "",
    }
    args = predefined_platform_args("", "linux/x86_64")
    assert args["TARGETPLATFORM"] == args["BUILDPLATFORM"] == "linux/amd64"


@pytest.mark.parametrize("text,n", [("64m", 64 << 20), ("1g", 1 << 30), ("100", 100), ("2KiB", 2048),
                                    ("1.5k", 1536)])
def test_ram_in_bytes(text, n):
    assert ram_in_bytes(text) == n
