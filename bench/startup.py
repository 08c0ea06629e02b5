"""Benchmark: the fixed cost of `inboxd run --once` on an empty folder.

A private Dovecot holds one empty INBOX.  Each round runs `inboxd run
--once` twice as a subprocess: first on a store that does not exist yet
(the first start: the store is created), then again on that store, now
current (every later start).  For each it prints the wall time from fork
to exit and the process's CPU time (user + system, of the process and its
children: the parser worker's start is part of the cost), best of the
rounds; CPU time is the steadier figure on a busy machine.  `--import`
also times `python -c "import inboxd.daemon"` the same way.

The code is byte-compiled first (`compileall`, what a pip install does):
the environment sets PYTHONDONTWRITEBYTECODE, and without byte-code every
run would compile inboxd's sources again.  `--code DIR` runs the inboxd
found in DIR (e.g. `git archive <commit> | tar -x -C DIR`), to compare a
change before and after in one run.

Usage: python bench/startup.py [--code DIR] [--rounds R] [--import]   (default: 5 rounds)
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import write_config  # noqa: E402
from inboxd.testing.dovecot import Dovecot  # noqa: E402


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, default=ROOT, help="the source tree whose inboxd runs")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--import", dest="imports", action="store_true", help="also time `import inboxd.daemon`")
    args = ap.parse_args()
    code = args.code.resolve()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(code / "inboxd")], check=True)
    env = dict(os.environ, PYTHONPATH=str(code))
    results: dict[str, list[tuple[float, float]]] = {"import inboxd.daemon": [], "first start (new store)": [],
                                                     "later start (current store)": []}
    with tempfile.TemporaryDirectory(prefix="inboxd-bench-") as tmpdir:
        tmp = Path(tmpdir)
        tmp.chmod(0o711)
        with Dovecot(tmp / "dovecot") as dovecot:
            dovecot.add_user("bench", "secret")
            config = write_config(tmp, dovecot)
            argv = [sys.executable, "-m", "inboxd", "--config", str(config), "run", "--once"]
            for _ in range(args.rounds):
                if args.imports:
                    results["import inboxd.daemon"].append(
                        timed([sys.executable, "-c", "import inboxd.daemon"], env, tmp))
                for leftover in tmp.glob("inboxd.db*"):
                    leftover.unlink()
                results["first start (new store)"].append(timed(argv, env, tmp))
                results["later start (current store)"].append(timed(argv, env, tmp))
    print(f"code {code}, best of {args.rounds} rounds (wall s / CPU s):")
    for name, runs in results.items():
        if runs:
            print(f"  {name:30} {min(w for w, _ in runs):6.2f} s wall  {min(c for _, c in runs):6.2f} s CPU")


if __name__ == "__main__":
    main()
