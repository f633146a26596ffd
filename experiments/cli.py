"""The front door of every entry point: tyro parsing with one-line errors, and one error handler.

`parse(cls, argv, default=...)` parses the command line into a dataclass with tyro (help from
the fields' comments and docstrings). A bad option or value ends as a `UsageError` whose message
is one line naming the closest valid option; `--help` returns None.

`front_door(body, argv)` runs an entry point: a `jaxrl_bayes.errors.UserError` (bad names,
files, values, run directories) prints ONE line `error: <message>` on stderr and returns 2. Its
traceback goes to the run directory's run.log when one exists, and to the terminal with
`--debug`. Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import io
import sys
import traceback
import typing
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar

import tyro

from jaxrl_bayes.errors import UserError

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130
T = TypeVar("T")


class UsageError(UserError):
    """A bad option or value on the command line."""


# ----------------------------------------------------------------------------- flags


def _flag_names(cls: type, prefix: str = "") -> dict[str, str]:
    """{normalized flag name: dotted field path} for every field of `cls` (nested dataclasses
    included), with tyro's aliases and the `no_` forms of booleans."""
    out: dict[str, str] = {}
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        path = prefix + f.name
        base = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
        if dataclasses.is_dataclass(base):
            out.update(_flag_names(base, path + "."))
            continue
        names = [path]
        for meta in getattr(tp, "__metadata__", ()):
            names += [a.lstrip("-").replace("-", "_") for a in (getattr(meta, "aliases", None) or ())]
        for n in names:
            out[n] = path
            if base is bool:
                head, _, last = n.rpartition(".")
                out[(head + "." if head else "") + "no_" + last] = path
    return out


def _normalize(token: str) -> str:
    return token[2:].split("=", 1)[0].replace("-", "_")


def given_fields(cls: type, argv: Sequence[str]) -> set[str]:
    """Dotted paths of the fields of `cls` that `argv` sets (e.g. {"agent.kth", "run.algo"})."""
    names = _flag_names(cls)
    return {names[_normalize(t)] for t in argv if t.startswith("--") and _normalize(t) in names}


def _check_unknown(cls: type, argv: Sequence[str]) -> None:
    names = _flag_names(cls)
    for t in argv:
        if t.startswith("--") and t != "--" and _normalize(t) not in names and _normalize(t) != "help":
            flag = t.split("=", 1)[0]
            close = difflib.get_close_matches(_normalize(t), list(names), n=1, cutoff=0.6)
            hint = f"; did you mean --{close[0]}?" if close else "; see --help for the options"
            raise UsageError(f"unknown option {flag}{hint}")


def _one_line(tyro_text: str) -> str:
    """The message of tyro's error text as one line: the first section under the title (tyro
    draws a box, or, where stdout is not UTF-8, a title line and dashed rules)."""
    lines = tyro_text.strip().splitlines()
    if lines and not lines[0].startswith("╭"):
        lines = lines[1:]  # the plain title line
    sections: list[list[str]] = [[]]
    for raw in lines:
        line = raw.strip().strip("│╭╮╰╯").strip()
        if not line.strip("─-").strip():
            sections.append([])
        elif not line.startswith("─"):  # a box's top border holds its title
            sections[-1].append(line)
    body = next((s for s in sections if s), [])
    return " ".join(body) or "invalid command line; see --help"


def parse(cls: type[T], argv: Sequence[str], *, default: Optional[T] = None, prog: str,
          description: str) -> Optional[T]:
    """Parses `argv` into `cls` with tyro; None when --help was printed.

    Raises:
      UsageError: an unknown option (naming the closest one) or a bad value, as one line.
    """
    argv = list(argv)
    if "-h" not in argv and "--help" not in argv:
        _check_unknown(cls, argv)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return tyro.cli(cls, args=argv, default=default, prog=prog, description=description,
                            use_underscores=True)
    except SystemExit as e:
        if not e.code:
            return None
        raise UsageError(_one_line(err.getvalue())) from None


# ----------------------------------------------------------------------------- errors


@dataclasses.dataclass
class Context:
    """What the error handler may use: the run directory once one exists."""

    run_dir: Optional[Path] = None


def front_door(body: Callable[[Context], int], argv: Sequence[str]) -> int:
    """Runs `body`; a UserError becomes one line on stderr and exit status 2 (see module doc)."""
    ctx = Context()
    try:
        return body(ctx)
    except UserError as e:
        tb = traceback.format_exc()
        log = ctx.run_dir / "run.log" if ctx.run_dir is not None else None
        if log is not None and log.is_file():
            with open(log, "a", encoding="utf-8") as f:
                f.write(tb)
        if "--debug" in argv:
            print(tb, file=sys.stderr, end="")
        message = " ".join(str(e).split())
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE

