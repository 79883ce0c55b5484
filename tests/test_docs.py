"""The commands the README and docs/ show cannot rot: every ```console block runs, command by
command, in a scratch directory holding the model the examples name (model.onnx, a BERT-like graph
with input_ids and attention_mask over a dynamic `seq`), with the installed `bench`; a command
exits 0 unless its line ends in `# exit N`. `bench run` gets `--quick` appended (a smoke run: the
flags, paths and files are what this checks, and the suite's 10-minute budget holds). Every
`bench ...` line of the other shell blocks (the fleet recipe, which needs machines) must parse
with the CLI's own argument parser. Every relative link between the pages points at a file."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\s*$")
# "# exit 4", or "# exit 0 or 1" where the answer is the machine's (an A/A compare beside a busy
# test worker can truly read slower: the documented exit codes, not a verdict, are what is checked)
_EXIT = re.compile(r"\s+# exit (\d+(?: or \d+)*)$")


def _blocks(page: Path) -> list[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of each fenced block."""
    blocks, lang, start, body = [], None, 0, []
    for n, line in enumerate(page.read_text().splitlines(), start=1):
        m = _FENCE.match(line)
        if m and lang is None:
            lang, start, body = m.group(1), n, []
        elif line.startswith("```") and lang is not None:
            blocks.append((lang, start, body))
            lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def _commands(lines: list[str], prompt: str) -> list[str]:
    """The commands of a block: lines after `prompt`, a trailing backslash joining the next."""
    out, pending = [], None
    for line in lines:
        if pending is not None:
            pending += " " + line.strip()
        elif line.startswith(prompt):
            pending = line[len(prompt):]
        else:
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
        else:
            out.append(pending)
            pending = None
    return out


CONSOLE = [pytest.param(page, start, _commands(lines, "$ "), id=f"{page.name}:{start}")
           for page in PAGES for lang, start, lines in _blocks(page) if lang == "console"]
SHELL_LINES = [pytest.param(page, cmd, id=f"{page.name}:{start}")
               for page in PAGES for lang, start, lines in _blocks(page) if lang == "sh"
               for cmd in _commands(lines, "") if cmd.startswith("bench ")]


def test_the_pages_hold_examples_to_check():
    assert len(CONSOLE) >= 4 and any(p.values[0].name == "README.md" for p in CONSOLE)


@pytest.fixture
def model(bert_model) -> Path:
    return bert_model


@pytest.mark.parametrize("page, start, commands", CONSOLE)
def test_console_examples_run(page, start, commands, model, tmp_path):
    shutil.copy(model, tmp_path / "model.onnx")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    assert commands, f"{page.name}:{start}: a console block with no $ command"
    for command in commands:
        m = _EXIT.search(command)
        expected = {int(code) for code in m.group(1).split(" or ")} if m else {0}
        command = _EXIT.sub("", command)
        argv = shlex.split(command)
        if argv[:2] == ["bench", "run"] and "--print-suite" not in argv and "--quick" not in argv:
            command = command.replace("bench run", "bench run --quick", 1)
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=280)
        assert done.returncode in expected, (f"{page.name}:{start}: `{command}` exited {done.returncode}\n"
                                             f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


@pytest.mark.parametrize("page, command", SHELL_LINES)
def test_shell_commands_parse(page, command):
    from bench.cli import parser

    argv = shlex.split(command.split(" #")[0])[1:]
    try:
        parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{page.name}: `{command}` does not parse (exit {exc.code})")


def test_relative_links_between_pages_resolve():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name}: link to {target} points at nothing"
