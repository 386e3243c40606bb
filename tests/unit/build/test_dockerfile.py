"""The Dockerfile parser: directives, continuations, comments, flags, JSON form, heredocs."""

import pytest

from berth.build.dockerfile import DockerfileError, Heredoc, parse
from berth.errors import InvalidArgument


def only(text):
    df = parse(text)
    assert len(df.instructions) == 1, df.instructions
    return df.instructions[0]


def cmds(text):
    return [(i.cmd, i.args) for i in parse(text).instructions]


# ------------------------------------------------------------------ directives

@pytest.mark.parametrize("text,directives,escape", [
    ("# syntax=docker/dockerfile:1\nFROM a\n", {"syntax": "docker/dockerfile:1"}, "\\"),
    ("# escape=`\nFROM a\n", {"escape": "`"}, "`"),
    ("# escape=\\\nFROM a\n", {"escape": "\\"}, "\\"),
    ("#ESCAPE = `\nFROM a\n", {"escape": "`"}, "`"),
    ("#   Escape   =   `   \nFROM a\n", {"escape": "`"}, "`"),
    ("# syntax=x\n# escape=`\n# check=skip=all\nFROM a\n",
     {"syntax": "x", "escape": "`", "check": "skip=all"}, "`"),
    # only before anything else: a blank line, a comment or an instruction ends them
    ("\n# escape=`\nFROM a\n", {}, "\\"),
    ("# a comment\n# escape=`\nFROM a\n", {}, "\\"),
    ("FROM a\n# escape=`\n", {}, "\\"),
    # an unknown directive is a comment and ends directive parsing
    ("# unknowndirective=x\n# escape=`\nFROM a\n", {}, "\\"),
    # not a directive (no value)
    ("# escape\nFROM a\n", {}, "\\"),
])
def test_directives(text, directives, escape):
    df = parse(text)
    assert df.directives == directives
    assert df.escape == escape


@pytest.mark.parametrize("text,message", [
    ("# escape=`\n# escape=\\\nFROM a\n",
     "dockerfile parse error on line 2: only one escape parser directive can be used"),
    ("# escape=x\nFROM a\n",
     "dockerfile parse error on line 1: invalid escape token 'x' does not match ` or \\"),
])
def test_directive_errors(text, message):
    with pytest.raises(DockerfileError) as e:
        parse(text)
    assert str(e.value) == message


def test_backtick_escape_windows_paths():
    # docs.docker.com/reference/dockerfile/#escape
    df = parse("# escape=`\n\nFROM microsoft/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\\n")
    assert [(i.cmd, i.args) for i in df.instructions] == [
        ("from", ("microsoft/nanoserver",)),
        ("copy", ("testfile.txt c:\\",)),
        ("run", ("dir c:\\",)),
    ]


def test_backslash_default_joins_the_windows_example():
    # Without the directive the trailing backslashes continue the lines (the docs' failure case).
    df = parse("FROM microsoft/nanoserver\nCOPY testfile.txt c:\\\\\nRUN dir c:\\\n")
    assert [(i.cmd, i.line) for i in df.instructions] == [("from", 1), ("copy", 2)]
    assert df.instructions[1].args == ("testfile.txt c:\\RUN dir c:",)


def test_backtick_continuation():
    i = only("# escape=`\nRUN echo a `\n  b\n")
    assert i.args == ("echo a   b",)
    assert (i.line, i.end_line) == (2, 3)


# ------------------------------------------------------------------ lines

def test_comments_blank_lines_and_case_insensitive_keywords():
    df = parse("\n# comment\n   # indented comment\nfrom busybox\n\n  Run echo hi  \nCMD  [\"a\"]\n")
    assert [(i.cmd, i.keyword, i.line) for i in df.instructions] == [
        ("from", "from", 4), ("run", "Run", 6), ("cmd", "CMD", 7)]
    assert df.instructions[1].args == ("echo hi",)
    assert df.instructions[1].original == "Run echo hi"


def test_continuation_joins_lines_and_keeps_line_numbers():
    text = "FROM a\nRUN apt-get update && \\\n    apt-get install -y \\\n      curl\nCMD x\n"
    df = parse(text)
    run = df.instructions[1]
    assert run.args == ("apt-get update &&     apt-get install -y       curl",)
    assert (run.line, run.end_line) == (2, 4)
    assert run.original == "RUN apt-get update &&     apt-get install -y       curl"
    assert df.instructions[2].line == 5


def test_continuation_skips_comment_lines():
    i = only("RUN echo a \\\n# comment inside\n  # indented comment\n  && echo b\n")
    assert i.args == ("echo a   && echo b",)
    assert i.end_line == 4


def test_empty_continuation_line_is_skipped_with_a_warning():
    df = parse("RUN echo a \\\n\n   \n  b\n")
    assert df.instructions[0].args == ("echo a   b",)
    assert len(df.warnings) == 1 and "Empty continuation line" in df.warnings[0]


def test_continuation_with_trailing_blanks_after_escape():
    assert only("RUN a \\  \t\n b\n").args == ("a  b",)


def test_continuation_at_end_of_file():
    assert only("RUN a \\").args == ("a",)


def test_crlf_and_bom():
    df = parse(b"\xef\xbb\xbf# escape=`\r\nFROM a\r\nRUN b `\r\n c\r\n")
    assert df.escape == "`"
    assert [(i.cmd, i.args) for i in df.instructions] == [("from", ("a",)), ("run", ("b  c",))]


def test_label_spanning_lines_docs_example():
    i = only('LABEL description="This text illustrates \\\nthat label-values can span multiple lines."\n')
    assert i.args == ('description="This text illustrates that label-values can span multiple lines."',)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "# syntax=x\n"])
def test_no_instructions(text):
    with pytest.raises(DockerfileError) as e:
        parse(text)
    assert str(e.value) == "file with no instructions"
    assert isinstance(e.value, InvalidArgument)


@pytest.mark.parametrize("text,message", [
    # BuildKit's hint: the closest keyword within edit distance 2, in the word's case
    ("FROM a\n\nFOO bar\n", "dockerfile parse error on line 3: unknown instruction: FOO (did you mean FROM?)"),
    ("FROM a\nfoo \\\n bar\n", "dockerfile parse error on line 2: unknown instruction: foo (did you mean from?)"),
    ("FROM a\nBOGUS x\n", "dockerfile parse error on line 2: unknown instruction: BOGUS"),
    ("FROM a\nCopy2 x\n", "dockerfile parse error on line 2: unknown instruction: Copy2 (did you mean copy?)"),
    ("FROM a\nCOPPY a b\n", "dockerfile parse error on line 2: unknown instruction: COPPY (did you mean COPY?)"),
    ("FROM a\nCMD [\"a\", 1]\n",
     "dockerfile parse error on line 2: when using JSON array syntax, arrays must be comprised of strings only"),
    ("RUN <<EOF\necho\n", "dockerfile parse error on line 1: unterminated heredoc"),
])
def test_parse_errors_carry_the_line(text, message):
    with pytest.raises(DockerfileError) as e:
        parse(text)
    assert str(e.value) == message
    assert e.value.line == int(message.split("line ")[1].split(":")[0])


# ------------------------------------------------------------------ JSON form

@pytest.mark.parametrize("line,args,is_json", [
    ('CMD ["echo", "hi"]', ("echo", "hi"), True),
    ('CMD   [ "a b" ,"c" ]  ', ("a b", "c"), True),
    ("CMD []", (), True),
    ('ENTRYPOINT ["/bin/sh", "-c"]', ("/bin/sh", "-c"), True),
    ('RUN ["/bin/echo", "\\u00e9"]', ("/bin/echo", "é"), True),
    ("CMD [echo, hi]", ("[echo, hi]",), False),        # not JSON: shell form
    ('CMD ["a"] b', ('["a"] b',), False),
    ("CMD ['a']", ("['a']",), False),
    ("CMD echo hi", ("echo hi",), False),
    ('COPY ["a b", "/c d/"]', ("a b", "/c d/"), True),
    ('ADD ["x", "/y"]', ("x", "/y"), True),
    ('VOLUME ["/data"]', ("/data",), True),
    ('SHELL ["powershell", "-command"]', ("powershell", "-command"), True),
    # instructions that have no JSON form keep the text
    ('ENV ["a"]', ('["a"]',), False),
    ('LABEL ["a"]', ('["a"]',), False),
    ('HEALTHCHECK CMD ["curl", "-f", "x"]', ("CMD", "curl", "-f", "x"), True),
    ("HEALTHCHECK CMD curl -f x", ("CMD curl -f x",), False),
    ("HEALTHCHECK NONE", ("NONE",), False),
    ("RUN", (), False),
])
def test_json_form_detection(line, args, is_json):
    i = only(line + "\n")
    assert i.args == args
    assert i.json is is_json


# ------------------------------------------------------------------ flags

@pytest.mark.parametrize("line,flags,args", [
    ("COPY --from=build a b", (("from", "build"),), ("a b",)),
    ("COPY --link a b", (("link", "true"),), ("a b",)),
    ("COPY --link=false a b", (("link", "false"),), ("a b",)),
    ("COPY --chown=\"a b\" x y", (("chown", "a b"),), ("x y",)),
    ("COPY --chown='1:2' --chmod=755 x y", (("chown", "1:2"), ("chmod", "755")), ("x y",)),
    ("RUN --mount=type=cache,target=/x --network=none echo", (("mount", "type=cache,target=/x"), ("network", "none")), ("echo",)),
    ("RUN echo --not-a-flag", (), ("echo --not-a-flag",)),
    ("RUN -- --x", (), ("--x",)),
    ("COPY --from=a -- --b c", (("from", "a"),), ("--b c",)),
    ("FROM --platform=$BUILDPLATFORM golang AS build", (("platform", "$BUILDPLATFORM"),), ("golang AS build",)),
    ('RUN --mount=type=secret,id=x ["cat", "/run/secrets/x"]', (("mount", "type=secret,id=x"),), ("cat", "/run/secrets/x")),
])
def test_flags(line, flags, args):
    i = only(line + "\n")
    assert i.flags == flags
    assert i.args == args
    assert len(i.raw_flags) == len(flags)


def test_raw_flags_keep_bare_flags():
    i = only("COPY --link --from x y\n")
    assert i.raw_flags == ("--link", "--from")


# ------------------------------------------------------------------ heredocs

def test_heredoc_run():
    i = only("RUN <<EOF\necho hello\necho world\nEOF\n")
    assert i.heredocs == (Heredoc("EOF", "echo hello\necho world\n", True, False),)
    assert i.args == ("<<EOF",)
    assert (i.line, i.end_line) == (1, 4)


def test_heredoc_then_more_instructions_with_correct_lines():
    df = parse("FROM a\nRUN <<EOF\nx\nEOF\nRUN y\n")
    assert [(i.cmd, i.line, i.end_line) for i in df.instructions] == [
        ("from", 1, 1), ("run", 2, 4), ("run", 5, 5)]


@pytest.mark.parametrize("opener,name,expand", [
    ("<<EOF", "EOF", True),
    ("<<'EOF'", "EOF", False),
    ('<<"EOF"', "EOF", False),
    ('<<E"O"F', "EOF", False),
    ("<<-EOF", "EOF", True),
    ("<<-'EOF'", "EOF", False),
    ("<<END_OF_FILE", "END_OF_FILE", True),
])
def test_heredoc_quoting_controls_expansion(opener, name, expand):
    i = only(f"RUN cat {opener}\n$HOME\n{name}\n")
    assert i.heredocs[0].name == name
    assert i.heredocs[0].expand is expand
    assert i.heredocs[0].content == "$HOME\n"


def test_heredoc_chomp_strips_leading_tabs():
    i = only("RUN <<-EOF\n\techo a\n\t\techo b\n  echo c\n\tEOF\n")
    doc = i.heredocs[0]
    assert doc.chomp
    assert doc.content == "echo a\necho b\n  echo c\n"


def test_heredoc_without_chomp_needs_exact_terminator():
    i = only("RUN <<EOF\n\tEOF\nEOF\n")
    assert i.heredocs[0].content == "\tEOF\n"


def test_multiple_heredocs_on_one_line():
    df = parse("FROM a\nRUN <<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2\nRUN x\n")
    run = df.instructions[1]
    assert [(d.name, d.content) for d in run.heredocs] == [("FILE1", "I am\nfirst\n"), ("FILE2", "I am\nsecond\n")]
    assert df.instructions[2].line == 9


def test_copy_heredoc():
    i = only("COPY <<EOF /app/config\nkey=value\nEOF\n")
    assert i.args == ("<<EOF /app/config",)
    assert i.heredocs == (Heredoc("EOF", "key=value\n", True, False),)


def test_copy_two_heredocs_docs_example():
    i = only("COPY <<robots.txt <<humans.txt /usr/share/nginx/html/\n(robots content)\nrobots.txt\n(humans content)\nhumans.txt\n")
    assert [d.name for d in i.heredocs] == ["robots.txt", "humans.txt"]


def test_heredoc_with_interpreter_and_fd():
    i = only("RUN python3 <<EOF\nprint('hi')\nEOF\n")
    assert i.heredocs[0].content == "print('hi')\n"
    i = only("RUN cat 3<<EOF\nx\nEOF\n")
    assert i.heredocs[0].fd == 3


def test_empty_heredoc():
    assert only("RUN <<EOF\nEOF\n").heredocs[0].content == ""


@pytest.mark.parametrize("line", [
    'RUN echo "<<EOF"',          # quoted: not a heredoc
    "RUN cat <<<EOF",            # here-string
    'RUN ["cat", "<<EOF"]',      # exec form never has heredocs
    "ENV a=<<EOF",               # only RUN/COPY/ADD
    "RUN echo a<<b",             # not a word of its own
])
def test_not_heredocs(line):
    assert only(line + "\n").heredocs == ()


def test_heredoc_keeps_continuation_characters_in_body():
    i = only("RUN <<EOF\necho a \\\n  b\n# not a comment\n\nEOF\n")
    assert i.heredocs[0].content == "echo a \\\n  b\n# not a comment\n\n"


def test_onbuild_heredoc():
    i = only("ONBUILD RUN <<EOF\necho x\nEOF\n")
    assert i.cmd == "onbuild"
    assert i.args == ("RUN <<EOF",)
    assert i.heredocs[0].content == "echo x\n"


# ------------------------------------------------------------------ ONBUILD

def test_onbuild_keeps_trigger_text():
    i = only("ONBUILD ADD . /app/src\n")
    assert (i.cmd, i.args) == ("onbuild", ("ADD . /app/src",))


def test_onbuild_trigger_json_is_checked():
    with pytest.raises(DockerfileError) as e:
        parse('ONBUILD CMD ["a", 1]\n')
    assert e.value.line == 1


def test_onbuild_unknown_trigger_is_accepted_at_parse_time():
    assert only("ONBUILD FOO bar\n").args == ("FOO bar",)


def test_whole_dockerfile():
    text = """# syntax=docker/dockerfile:1
ARG VERSION=latest
FROM busybox:$VERSION AS base
LABEL maintainer="me"
ENV PATH=/usr/local/bin:$PATH \\
    LANG=C.UTF-8
WORKDIR /app
COPY --chown=1000:1000 . .
RUN --mount=type=cache,target=/root/.cache \\
    echo build
EXPOSE 80/tcp 443
HEALTHCHECK --interval=30s CMD wget -q -O- localhost || exit 1
USER 1000
ENTRYPOINT ["/app/run"]
CMD ["--help"]
"""
    df = parse(text)
    assert [i.cmd for i in df.instructions] == [
        "arg", "from", "label", "env", "workdir", "copy", "run", "expose", "healthcheck",
        "user", "entrypoint", "cmd"]
    assert [i.line for i in df.instructions] == [2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 14, 15]
