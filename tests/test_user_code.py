"""A user's model code is hostile by accident (issue 26): a factory's module written as a script
exits at import, parses sys.argv, prints, leaves a thread running, or its forward asks for more
memory than the machine has. Each is run for real: a tiny torch factory module beside a suite file
in tmp_path, `bench run --json` in its own process, as a user (or a CI job) runs it."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import psutil
import pytest

from tests.helpers import tiny_suite, write_suite

ROOT = Path(__file__).parents[1]
MODULE = "hostile"  # the factory's module, written beside the suite file

# A model whose forward the tests make misbehave; MODEL_TAIL ends every module.
MODEL_TAIL = """
import torch


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x):
        FORWARD_HOOK(x)
        return self.linear(x)


def build():
    FACTORY_HOOK()
    return Model(), torch.zeros(1, 4)
"""


def _module(head: str, forward: str = "pass", factory: str = "pass") -> str:
    """A factory module: `head` runs at import; `forward` in each forward (x in scope), `factory`
    when the factory is called."""
    hooks = (f"\n\ndef FORWARD_HOOK(x):\n{textwrap.indent(textwrap.dedent(forward), '    ')}\n"
             f"\n\ndef FACTORY_HOOK():\n{textwrap.indent(textwrap.dedent(factory), '    ')}\n")
    return textwrap.dedent(head) + hooks + MODEL_TAIL


def _line_of(source: str, needle: str) -> int:
    return next(i for i, line in enumerate(source.splitlines(), 1) if needle in line)


def _bench(tmp_path: Path, module: str, batch_sizes: str = "[1]") -> tuple[int, str, str, dict | None]:
    """`bench run suite.toml --out DIR --json` in its own process: (exit code, stdout, stderr, the
    run's run.json or None when no run directory was made)."""
    (tmp_path / f"{MODULE}.py").write_text(module)
    suite = write_suite(tmp_path, tiny_suite(model=f"{MODULE}:build", targets='["torch"]', batch_sizes=batch_sizes))
    out = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # The timeout only guards the test against a hang; nothing here asserts a time.
    done = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(suite), "--out", str(out), "--json"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240)
    runs = sorted(out.glob("*/run.json"))
    return done.returncode, done.stdout, done.stderr, json.loads(runs[0].read_text()) if runs else None


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("bench: "), stderr
    return lines[0]


# --- a module that ends the process ----------------------------------------------------------

ARGPARSE_REQUIRED = """
import argparse
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
ARGS = parser.parse_args()
"""

PARENT_EXITS = {
    # what the module does -> (its head, forward, factory; the call the line names; the line's marker; while)
    "sys.exit at import": ("import sys\nsys.exit(0)\n", "pass", "pass", "sys.exit(0)", "sys.exit(0)",
                           f"while its module '{MODULE}' was imported"),
    "os._exit at import": ("import os\nos._exit(0)\n", "pass", "pass", "os._exit(0)", "os._exit(0)",
                           f"while its module '{MODULE}' was imported"),
    "argparse at import, an argument required": (ARGPARSE_REQUIRED, "pass", "pass", "sys.exit(2)", "parse_args()",
                                                 f"while its module '{MODULE}' was imported"),
    "os._exit in the factory": ("import os\n", "pass", "os._exit(3)", "os._exit(3)", "os._exit(3)",
                                "while the factory ran"),
    "SystemExit in forward": ("", "raise SystemExit('done')", "pass", "sys.exit('done')", "SystemExit('done')",
                              "while the model was prepared"),
}


@pytest.mark.parametrize("case", list(PARENT_EXITS))
def test_a_module_that_exits_in_the_parent_is_one_line_and_exit_2(tmp_path, case):
    """It ended `bench` with its own code (0: read as a pass in CI) and no line; now it is bad
    input found before anything ran: the model, the call, where, and nothing measured."""
    head, forward, factory, call, marker, phase = PARENT_EXITS[case]
    module = _module(head, forward, factory)
    code, out, err, run = _bench(tmp_path, module)
    assert code == 2, err
    line = _one_line(err)
    where = f"{tmp_path / (MODULE + '.py')}:{_line_of(module, marker)}"
    assert f"bench: model '{MODULE}:build': its code called {call} at {where} {phase}" in line, line
    assert "nothing was measured" in line
    if case.startswith("argparse"):  # what argparse printed is the module's output: its last line is quoted
        assert "the following arguments are required: --lr" in line
    assert out == "" and run is None


def test_a_module_that_parses_argv_sees_a_clean_command_line(tmp_path):
    """argparse at import saw the harness's `run suite.toml --out ... --json` and exited 2 with its
    own usage line; it now sees the script name alone, in the parent and in every worker."""
    seen = tmp_path / "argv.jsonl"
    module = _module(f"""
        import argparse, json, multiprocessing, sys
        parser = argparse.ArgumentParser()
        parser.add_argument("--width", type=int, default=4)
        ARGS = parser.parse_args()
        with open({str(seen)!r}, "a") as fh:
            fh.write(json.dumps({{"worker": multiprocessing.parent_process() is not None, "argv": sys.argv}}) + "\\n")
        """)
    code, out, err, run = _bench(tmp_path, module)
    assert code == 0, err
    assert json.loads(out)["run_id"] == run["run_id"]
    assert [c["status"] for c in run["cells"]] == ["ok"]
    records = [json.loads(line) for line in seen.read_text().splitlines()]
    assert {r["worker"] for r in records} == {False, True}  # imported in the parent and in workers
    assert all(len(r["argv"]) == 1 for r in records), records


def test_what_the_model_prints_stays_off_stdout(tmp_path):
    """print and a C extension's printf (both fd 1) at import, in the factory and in every forward
    mixed thousands of lines into `bench run --json`'s stdout. The parent's go to stderr; a worker's
    to its cell's log, whose tail a failed cell keeps in run.json."""
    module = _module("""
        import ctypes
        print("IMPORT-CHATTER (print)")
        ctypes.CDLL(None).printf(b"IMPORT-CHATTER (printf)\\n")
        """, forward="""
        print(f"FORWARD-CHATTER at batch {x.shape[0]}")
        ctypes.CDLL(None).printf(b"FORWARD-CHATTER (printf)\\n")
        if x.shape[0] == 4:
            raise ValueError("this model refuses a batch of 4")
        """, factory='print("FACTORY-CHATTER")')
    code, out, err, run = _bench(tmp_path, module, batch_sizes="[1, 4]")
    assert code == 3, err
    # json.loads refuses anything before or after the document: stdout is the run's JSON alone
    # (the chatter is in it only where run.json quotes a failed cell's log)
    assert json.loads(out) == run
    # the parent imported, called and ran the model while it prepared it: the user sees that output
    for said in ("IMPORT-CHATTER (print)", "IMPORT-CHATTER (printf)", "FACTORY-CHATTER"):
        assert said in err
    ok, refused = sorted(run["cells"], key=lambda c: c["batch_size"])
    assert ok["status"] == "ok"
    assert (refused["status"], refused["failure_kind"]) == ("failed", "error")
    assert "ValueError: this model refuses a batch of 4" in refused["reason"]
    assert "FORWARD-CHATTER at batch 4" in refused["stderr_tail"]
    assert "FORWARD-CHATTER (printf)" in refused["stderr_tail"]


# --- an exit in a worker ---------------------------------------------------------------------

IN_WORKER = "import ctypes, multiprocessing, os, sys\nWORKER = multiprocessing.parent_process() is not None\n"
WORKER_EXITS = {
    "sys.exit at import": ("if WORKER:\n    sys.exit(0)\n", "pass", "sys.exit(0)",
                           "called sys.exit(0) at {where} while its module 'hostile' was imported"),
    "os._exit in forward": ("", "if WORKER:\n    os._exit(0)\n", "os._exit(0)",
                            "called os._exit(0) at {where} while the cell's unit ran"),
    "a native exit() in forward": ("", "if WORKER:\n    ctypes.CDLL(None)._exit(0)\n", None,
                                   "worker exited with code 0 before it returned a result"),
}


@pytest.mark.parametrize("case", list(WORKER_EXITS))
def test_an_exit_in_a_worker_is_a_crashed_cell_with_its_reason(tmp_path, case):
    """A worker that ended without a result must not read as a pass nor hang the run: its cell
    fails as a crash saying what the code did, and where (a native exit cannot be caught in the
    process, and is told by its exit code)."""
    head, forward, marker, expected = WORKER_EXITS[case]
    module = _module(IN_WORKER + head, forward)
    code, out, err, run = _bench(tmp_path, module)
    assert code == 3, err
    assert "Traceback" not in err
    assert json.loads(out)["run_id"] == run["run_id"]
    (cell,) = run["cells"]
    assert (cell["status"], cell["failure_kind"]) == ("failed", "crash"), cell["reason"]
    where = f"{tmp_path / (MODULE + '.py')}:{_line_of(module, marker)}" if marker else ""
    assert expected.format(where=where) in cell["reason"], cell["reason"]
    assert run["status"] == "complete"


# --- a thread left running -------------------------------------------------------------------


def test_a_thread_the_module_leaves_running_holds_no_process_of_the_run(tmp_path):
    """A non-daemon thread started at import, in the parent and in each worker: the run completes,
    every cell measured, and no process of it stays behind."""
    pids = tmp_path / "pids"
    module = _module(f"""
        import os, threading, time

        def _forever():
            while True:
                time.sleep(0.05)

        threading.Thread(target=_forever, name="user-thread").start()
        with open({str(pids)!r}, "a") as fh:
            fh.write(f"{{os.getpid()}}\\n")
        """)
    code, out, err, run = _bench(tmp_path, module)
    assert code == 0, err
    assert json.loads(out)["run_id"] == run["run_id"]
    assert run["status"] == "complete" and [c["status"] for c in run["cells"]] == ["ok"]
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) >= 2  # the parent and at least one worker imported it
    assert not [p for p in started if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def _answer_then_leave_a_thread(job: str) -> str:
    threading.Thread(target=threading.Event().wait, name="never-ends").start()  # not a daemon
    return job


def test_a_worker_exits_by_itself_once_it_has_answered(tmp_path):
    """multiprocessing's exit joins non-daemon threads: a worker that answered would wait forever
    for the one its code left (the harness killed it two seconds later). It leaves on its own."""
    from bench.runner.isolation import _child

    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(_answer_then_leave_a_thread, "done", send, str(tmp_path / "log"),
                                            os.getpid()))
    proc.start()
    send.close()
    try:
        assert recv.recv() == ("ok", "done")
        proc.join(120)  # a guard against a hang, not a measured time: it exits at once
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()


# --- a forward that asks for more memory than there is ---------------------------------------


def test_a_forward_asking_for_more_memory_than_the_machine_has_is_out_of_memory(tmp_path):
    """torch's CPU allocator refuses with a RuntimeError ("can't allocate memory"), not an
    OutOfMemoryError: the cell is out_of_memory (a batch sweep stops on it), not `error`."""
    module = _module("", forward="torch.empty(1 << 48, dtype=torch.uint8)  # 256 TiB: past any address space")
    code, out, err, run = _bench(tmp_path, module)
    assert code == 3, err
    assert json.loads(out)["run_id"] == run["run_id"]
    (cell,) = run["cells"]
    assert (cell["status"], cell["failure_kind"]) == ("failed", "out_of_memory"), cell["reason"]
    assert "out of memory at batch 1" in cell["reason"] and "can't allocate memory" in cell["reason"]


def test_the_allocators_words_for_no_memory_are_out_of_memory():
    import torch

    from bench.backends.devices import is_out_of_memory

    with pytest.raises(RuntimeError) as refused:
        torch.empty(1 << 48, dtype=torch.uint8)
    assert is_out_of_memory(refused.value)
    assert is_out_of_memory(OSError(12, "Cannot allocate memory"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
