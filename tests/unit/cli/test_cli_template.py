"""The Go text/template subset used by --format."""

import pytest

from berth.cli._template import Template, TemplateError, go_float, go_str, render

CONTAINER = {
    "Id": "abc123",
    "State": {"Status": "exited", "ExitCode": 3, "Running": False, "Health": None},
    "Config": {"Hostname": "h1", "Labels": {"b": "2", "a": "1"}, "Env": ["A=1", "B=2"],
               "Cmd": ["echo", "hi"], "Entrypoint": None},
    "HostConfig": {"Memory": 0, "NanoCpus": 1500000000},
}


@pytest.mark.parametrize("tmpl, expected", [
    ("{{.Id}}", "abc123"),
    ("{{.State.Status}}", "exited"),
    ("{{.State.ExitCode}}", "3"),
    ("{{.State.Running}}", "false"),
    ("{{.State.Health}}", "<nil>"),
    ("{{.Config.Hostname}}", "h1"),
    ("{{.Config.Labels}}", "map[a:1 b:2]"),
    ("{{.Config.Cmd}}", "[echo hi]"),
    ("{{.Config.Entrypoint}}", "<nil>"),
    ("{{.Config.Nope}}", "<no value>"),
    ('{{json .Config.Labels}}', '{"b":"2","a":"1"}'),
    ('{{.Config.Cmd | json}}', '["echo","hi"]'),
    ('{{json .Config.Entrypoint}}', "null"),
    ('{{index .Config.Labels "a"}}', "1"),
    ('{{index .Config.Cmd 1}}', "hi"),
    ("{{range .Config.Env}}[{{.}}]{{end}}", "[A=1][B=2]"),
    ("{{range $i, $e := .Config.Env}}{{$i}}={{$e}};{{end}}", "0=A=1;1=B=2;"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}{{$v}}{{end}}", "a1b2"),
    ("{{range .Config.Nope}}x{{else}}empty{{end}}", "empty"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "down"),
    ("{{if eq .State.ExitCode 3}}three{{end}}", "three"),
    ("{{if .State.Running}}a{{else if .State.ExitCode}}b{{else}}c{{end}}", "b"),
    ("{{with .Config}}{{.Hostname}}{{end}}", "h1"),
    ('{{join .Config.Cmd ","}}', "echo,hi"),
    ("{{upper .State.Status}} {{lower \"ABC\"}} {{title \"hello world\"}}", "EXITED abc Hello World"),
    ("{{len .Config.Env}}", "2"),
    ("{{println .Id}}", "abc123\n"),
    ("{{println \"a\" 1}}", "a 1\n"),
    ('{{printf "%s-%d" .Id .State.ExitCode}}', "abc123-3"),
    ("{{.HostConfig.NanoCpus}}", "1500000000"),
    ("a {{- \" b \" -}} c", "a b c"),
    ("{{/* comment */}}x", "x"),
    ("{{$x := .Id}}{{$x}}", "abc123"),
    ("{{(index .Config.Env 0)}}", "A=1"),
    ("{{not .State.Running}} {{and 1 0}} {{or 0 2}}", "true 0 2"),
    ('{{split "a,b" ","}}', "[a b]"),
    ('{{pad "x" 1 2}}|{{truncate "abcdef" 3}}', " x  |abc"),
    ("{{.}}", "map[Config:map[Cmd:[echo hi] Entrypoint:<nil> Env:[A=1 B=2] Hostname:h1 "
              "Labels:map[a:1 b:2]] HostConfig:map[Memory:0 NanoCpus:1500000000] Id:abc123 "
              "State:map[ExitCode:3 Health:<nil> Running:false Status:exited]]"),
])
def test_render(tmpl: str, expected: str) -> None:
    assert render(tmpl, CONTAINER) == expected


@pytest.mark.parametrize("bad", ["{{.Id", "{{end}}", "{{if .Id}}x", "{{nosuchfunc .Id}}",
                                 '{{"unterminated}}'])
def test_errors(bad: str) -> None:
    with pytest.raises(TemplateError):
        Template(bad).execute(CONTAINER)


def test_objects_expose_methods_and_labels() -> None:
    class Row:
        def ID(self) -> str:
            return "x"

        def Label(self, key: str) -> str:
            return {"k": "v"}.get(key, "")

    assert render('{{.ID}} {{.Label "k"}}', Row()) == "x v"


@pytest.mark.parametrize("value, text", [
    (1.5, "1.5"), (2.0, "2"), (1e21, "1e+21"), (0.0001, "0.0001"), (1.5e-5, "1.5e-05"),
])
def test_go_float(value: float, text: str) -> None:
    assert go_float(value) == text


def test_go_str_scalars() -> None:
    assert go_str(None) == "<nil>"
    assert go_str(True) == "true"
    assert go_str([]) == "[]"
    assert go_str({}) == "map[]"
