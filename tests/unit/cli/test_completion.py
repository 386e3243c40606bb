"""Shell completion: contrib/completion/ is what the CLI's specs generate, and bash completes
commands, subcommands and flags (bash runs the script for real)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from berth.cli import completion

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("shell", sorted(completion.SHELLS))
def test_contrib_files_are_current(shell: str) -> None:
    make, rel = completion.SHELLS[shell]
    assert (ROOT / "contrib" / "completion" / rel).read_text() == make(), "stale: run `make completion`"


def complete(line: str) -> list[str]:
    """What bash offers for ``line`` (the cursor at its end) with the generated script."""
    words = line.split(" ")
    script = (f"source {ROOT / 'contrib/completion/bash/berth'}\n"
              f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
              "berth() { return 1; }\n"  # no daemon: name lookups find nothing
              "_berth; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    out = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, text=True, check=True, cwd="/")
    return out.stdout.split()


def test_bash_completes_commands_and_flags() -> None:
    assert complete("berth ru") == ["run"]
    assert {"container", "system", "completion"} <= set(complete("berth "))
    assert complete("berth container l") == ["list", "logs", "ls"]
    assert complete("berth -H unix:///x sys") == ["system"]
    assert complete("berth system dial") == ["dial-stdio"]
    assert "--network" in complete("berth run --net")
    assert complete("berth container ls --fil") == ["--filter"]
    assert complete("berth --tlsv") == ["--tlsverify"]
    assert "--tlsverify" not in complete("berth run --tls")  # a command's flags, not the global ones
    files = {p.name for p in Path("/").iterdir()}
    assert set(complete("berth run --network ")) == files  # a flag's value: files (in /), not flags


@pytest.mark.parametrize("shell, check", [("zsh", ["zsh", "-n"]), ("fish", ["fish", "--no-execute"])])
def test_other_shells_parse_their_script(shell: str, check: list[str]) -> None:
    if shutil.which(check[0]) is None:
        pytest.fail(f"{shell} is not installed (.ci/run installs it)")
    rel = completion.SHELLS[shell][1]
    subprocess.run([*check, str(ROOT / "contrib" / "completion" / rel)], check=True, capture_output=True)
