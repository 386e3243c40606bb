"""pflag-compatible parsing and docker's usage-error texts."""

import pytest

from berth.cli._flags import Flag, HelpRequested, Spec, UsageError


def spec() -> Spec:
    return Spec("ps [OPTIONS]", "List containers", [
        Flag("all", "a", "bool"), Flag("quiet", "q", "bool"), Flag("last", "n", "int", default=-1),
        Flag("filter", "f", "list"), Flag("format", "", "string"),
    ], max_args=0)


def test_forms() -> None:
    opts, args = spec().parse(["-aq", "-n3", "--filter=a=b", "-f", "c=d", "--format", "{{.ID}}"])
    assert opts["all"] and opts["quiet"] and opts["last"] == 3
    assert opts["filter"] == ["a=b", "c=d"]
    assert opts["format"] == "{{.ID}}"
    assert args == []
    opts, _ = spec().parse(["-n=5", "--all=false"])
    assert opts["last"] == 5 and opts["all"] is False


@pytest.mark.parametrize("argv, message", [
    (["--nosuch"], "unknown flag: --nosuch"),
    (["-z"], "unknown shorthand flag: 'z' in -z"),
    (["-n"], "flag needs an argument: 'n' in -n"),
    (["-n", "x"], 'invalid argument "x" for "-n, --last" flag: strconv.ParseInt: parsing "x": '
                  'invalid syntax'),
    (["--all=maybe"], 'invalid argument "maybe" for "-a, --all" flag: strconv.ParseBool: '
                      'parsing "maybe": invalid syntax'),
])
def test_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        spec().parse(argv)
    assert info.value.message == message
    assert info.value.flag_error


def test_error_text_like_docker() -> None:
    s = spec()
    with pytest.raises(UsageError) as info:
        s.parse(["--nosuch"])
    assert s.error_text(info.value) == (
        "unknown flag: --nosuch\n\nUsage:  berth ps [OPTIONS]\n\n"
        "Run 'berth ps --help' for more information")


def test_argument_counts() -> None:
    stop = Spec("stop [OPTIONS] CONTAINER [CONTAINER...]", "Stop", min_args=1)
    with pytest.raises(UsageError) as info:
        stop.parse([])
    assert not info.value.flag_error
    assert stop.error_text(info.value) == (
        "berth: 'berth stop' requires at least 1 argument\n\n"
        "Usage:  berth stop [OPTIONS] CONTAINER [CONTAINER...]\n\n"
        "See 'berth stop --help' for more information")
    rename = Spec("rename CONTAINER NEW_NAME", "Rename", min_args=2, max_args=2)
    with pytest.raises(UsageError, match="requires 2 arguments"):
        rename.parse(["a"])


def test_help_and_double_dash() -> None:
    with pytest.raises(HelpRequested):
        spec().parse(["--help"])
    with pytest.raises(HelpRequested):
        spec().parse(["-h"])
    top = Spec("top CONTAINER [ps OPTIONS]", "Top", min_args=1, interspersed=False)
    assert top.parse(["c", "-ef"])[1] == ["c", "-ef"]
    assert Spec("x [A]", "x").parse(["--", "-a"])[1] == ["-a"]
