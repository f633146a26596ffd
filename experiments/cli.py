"""The front door of every entry point: tyro parsing with one-line errors, and one error handler.

`parse(cls, argv, default=...)` parses the command line into a dataclass with tyro (help from
the fields' comments and docstrings). A bad option or value ends as a `UsageError` whose message
is one line naming the closest valid option; `--help` returns None.

`front_door(body, argv)` runs an entry point: a `jaxrl_bayes.errors.UserError` (bad names,
files, values, run directories) prints ONE line `error: <message>` on stderr and returns 2. A
filesystem fault (an `OSError` such as a full disk or quota, a read-only or permission-denied
folder, a path through a file; see `FILESYSTEM_ERRNOS`) prints one line naming the path, what
is wrong and what to do, and returns 74 (`EXIT_IO`, sysexits' EX_IOERR), so scripts can tell
"fix the command" (2) from "fix the disk, then run it again" (74). Writers write by temporary
file + rename (`jaxrl_bayes.io.atomic_open`), so such a fault leaves every file as it was.
The traceback goes to the run directory's run.log when one exists (and can be written), and to
the terminal with `--debug`. Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import errno
import io
import os
import sys
import traceback
import typing
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar

import tyro

from jaxrl_bayes import components
from jaxrl_bayes.errors import UserError

EXIT_OK, EXIT_USAGE, EXIT_IO, EXIT_INTERRUPTED = 0, 2, 74, 130
T = TypeVar("T")


class UsageError(UserError):
    """A bad option or value on the command line."""


# ----------------------------------------------------------------------------- flags


def _flag_names(cls: type, prefix: str = "") -> dict[str, str]:
    """{normalized flag name: dotted field path} for every field of `cls` (nested dataclasses
    included), with tyro's aliases and the `no_` forms of booleans. A choice among components
    (`jaxrl_bayes.components`) is a flag of its own (`--agent.rollout persistent`)."""
    out: dict[str, str] = {}
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        path = prefix + f.name
        base = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
        if components.is_choice(base):
            out[path] = path
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


def given_fields(cls: type, argv: Sequence[str], default: Any = None) -> set[str]:
    """Dotted paths of the fields of `cls` that `argv` sets (e.g. {"agent.targets.kth", "run.algo"});
    the fields of a component are those of the member `argv` chooses (or `default` holds)."""
    probe = default if default is not None else _defaults(cls)
    if probe is not None:
        cls, _ = _specialize(cls, _choose(probe, argv)[0])
    names = _flag_names(cls)
    return {names[_normalize(t)] for t in argv if t.startswith("--") and _normalize(t) in names}


def _defaults(cls: type) -> Any:
    """`cls()`, or None where a field has no default."""
    try:
        return cls()
    except TypeError:
        return None


def option_groups(argv: Sequence[str]) -> list[list[str]]:
    """`argv` cut into options: each `--name` with the values that follow it."""
    groups: list[list[str]] = []
    for tok in argv:
        if tok.startswith("--") or not groups:
            groups.append([tok])
        else:
            groups[-1].append(tok)
    return groups


def choice_paths(obj: Any, prefix: str = "") -> dict[str, tuple[type, Any]]:
    """{dotted path: (choice base, chosen member)} of every choice in the dataclass `obj`."""
    out: dict[str, tuple[type, Any]] = {}
    types = components.field_types(type(obj))
    for f in dataclasses.fields(obj):
        value, path = getattr(obj, f.name), prefix + f.name
        base = typing.get_args(types[f.name])[0] if typing.get_origin(types[f.name]) is typing.Annotated else types[f.name]
        if components.is_choice(base):
            out[path] = (base, value)
        if dataclasses.is_dataclass(value):
            out.update(choice_paths(value, path + "."))
    return out


def _choose(default: Any, argv: Sequence[str]) -> tuple[Any, list[str]]:
    """`default` with the choices `argv` names (`--agent.rollout persistent`) made, and `argv`
    without those options. A member that is not chosen already starts at its defaults, with the
    fields it shares with the member it replaces."""
    argv, rest = list(argv), []
    i = 0
    while i < len(argv):
        token = argv[i]
        name = _normalize(token) if token.startswith("--") else ""
        choice = choice_paths(default).get(name)
        if choice is None:
            rest.append(token)
            i += 1
            continue
        if "=" in token:
            kind, i = token.split("=", 1)[1], i + 1
        elif i + 1 < len(argv):
            kind, i = argv[i + 1], i + 2
        else:
            raise UsageError(f"{token} needs one of: {', '.join(components.choices(choice[0]))}")
        try:
            default = components.replace_path(default, name, kind, token)
        except UserError as e:
            raise UsageError(str(e)) from None
    return default, rest


def _specialize(cls: type, default: Any) -> tuple[type, Any]:
    """(`cls` with each choice annotated as the member `default` holds, `default` as an instance
    of it): tyro then parses the chosen members' fields as plain nested dataclasses. `default`
    None: `cls` unchanged."""
    if default is None or not dataclasses.is_dataclass(cls):
        return cls, default
    types = components.field_types(cls)
    changed, values = [], {}
    for f in dataclasses.fields(cls):
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            sub_cls, sub = _specialize(type(value), value)
            values[f.name] = sub
            if sub_cls is not types[f.name]:
                hint = typing.get_type_hints(cls, include_extras=True)[f.name]
                meta = getattr(hint, "__metadata__", ())
                changed.append((f.name, typing.Annotated[(sub_cls, *meta)] if meta else sub_cls,
                                dataclasses.field(default=sub)))
        else:
            values[f.name] = value
    if not changed:
        return cls, default
    special = dataclasses.make_dataclass(cls.__name__, changed, bases=(cls,), frozen=True)
    special.__doc__, special.__module__, special._general = cls.__doc__, cls.__module__, cls
    return special, special(**values)


def _generalize(obj: Any) -> Any:
    """The instance of the declared class (`cls` of `_specialize`) that a specialized `obj` stands for."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return obj
    values = {f.name: _generalize(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    cls = getattr(type(obj), "_general", None)
    if cls is None or type(obj).__dict__.get("_general") is None:
        return dataclasses.replace(obj, **values) if values else obj
    return cls(**values)


def choices_help(default: Any) -> str:
    """One line per choice of `default`: its flag, members and current member."""
    return " ".join(f"--{path} {{{','.join(components.choices(base))}}} (now {value.kind});"
                    for path, (base, value) in choice_paths(default).items())


def _check_unknown(cls: type, argv: Sequence[str], default: Any = None) -> None:
    names = _flag_names(cls)
    chosen = choice_paths(default) if default is not None else {}
    for t in argv:
        if t.startswith("--") and t != "--" and _normalize(t) not in names and _normalize(t) != "help":
            flag = t.split("=", 1)[0]
            head, _, last = _normalize(t).rpartition(".")
            if head in chosen:  # a field of another member of a choice
                base, value = chosen[head]
                owners = [k for k, c in components.choices(base).items() if last in {f.name for f in dataclasses.fields(c)}]
                if owners:
                    raise UsageError(f"{flag} is a field of --{head} {' or '.join(owners)}, not of {value.kind!r} "
                                     f"(the one chosen): choose it with --{head} {owners[0]}, or drop {flag}")
            close = difflib.get_close_matches(_normalize(t), list(names), n=1, cutoff=0.6)
            section, _, last = _normalize(t).partition(".")
            by_last = {n.rsplit(".", 1)[-1]: n for n in names if n.startswith(section + ".") and "." in n}
            near = difflib.get_close_matches(last.rsplit(".", 1)[-1], list(by_last), n=1, cutoff=0.6)
            if near and (not close or difflib.SequenceMatcher(None, last.rsplit(".", 1)[-1], near[0]).ratio()
                         > difflib.SequenceMatcher(None, _normalize(t), close[0]).ratio()):
                close = [by_last[near[0]]]  # a flat or misspelt name: the field of that name in its component
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
          description: Optional[str] = None) -> Optional[T]:
    """Parses `argv` into `cls` with tyro; None when --help was printed. The --help text's
    description is `description`, by default `cls`'s docstring on one line.

    Raises:
      UsageError: an unknown option (naming the closest one) or a bad value, as one line.
    """
    argv = list(argv)
    if description is None:
        description = " ".join((cls.__doc__ or "").split())
    general = cls
    probe = default if default is not None else _defaults(cls)
    chosen = default  # unspecialized: its choices' declared bases name the other members of a choice
    if probe is not None and choice_paths(probe):
        default, argv = _choose(probe, argv)
        description = f"{description} Components (a choice, then its fields): {choices_help(default)}"
        chosen = default
        cls, default = _specialize(cls, default)
    if "-h" not in argv and "--help" not in argv:
        _check_unknown(cls, argv, chosen)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            out = tyro.cli(cls, args=argv, default=default, prog=prog, description=description,
                           use_underscores=True)
            return out if cls is general else _generalize(out)
    except SystemExit as e:
        if not e.code:
            return None
        raise UsageError(_one_line(err.getvalue())) from None


# ----------------------------------------------------------------------------- errors


# errno -> (what is wrong with the path, what to do about it)
_FS_FAULTS = {
    errno.ENOSPC: ("no space left on device", "free some space"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or raise the quota"),
    errno.EFBIG: ("file too large for the file system", "choose a location on another file system"),
    errno.EACCES: ("permission denied", "make it writable for you or choose another location"),
    errno.EPERM: ("operation not permitted", "make it writable for you or choose another location"),
    errno.EROFS: ("read-only file system", "choose a location on a writable file system"),
    errno.ENOTDIR: ("a part of this path is a file, not a folder", "choose another path"),
    errno.EISDIR: ("is a folder where a file was expected", "choose another path"),
    errno.ENOENT: ("no such file or folder (removed while in use?)", "check the path"),
    errno.ENAMETOOLONG: ("the name is too long", "choose a shorter path"),
    errno.ELOOP: ("too many levels of symbolic links", "fix the links"),
    errno.EIO: ("input/output error (a failing disk or network file system)", "check the disk"),
}
FILESYSTEM_ERRNOS = frozenset(_FS_FAULTS)


def is_filesystem_fault(e: BaseException) -> bool:
    """An OSError about a file or folder that the user fixes outside this program."""
    return isinstance(e, OSError) and e.errno in FILESYSTEM_ERRNOS


def filesystem_message(e: OSError, retry: str = "run the same command again") -> str:
    """The one line for a filesystem fault: the path, what is wrong, what to do (notes added to
    the error, e.g. which environment variable moves a cache, come after)."""
    what, fix = _FS_FAULTS[e.errno]
    path = os.fsdecode(e.filename) if isinstance(e.filename, (str, bytes, os.PathLike)) else "a file"
    reason = os.strerror(e.errno)  # not e.strerror: HDF5 puts a multi-line report there
    detail = f" ({reason})" if reason.lower() not in what.lower() else ""
    notes = "".join(f"; {n}" for n in getattr(e, "__notes__", ()))
    return f"{path}: {what}{detail}; {fix}{notes}, then {retry}"


@dataclasses.dataclass
class Context:
    """What the error handler may use: the run directory once one exists, and what to do
    after a filesystem fault is fixed (default: run the same command again)."""

    run_dir: Optional[Path] = None
    retry: str = "run the same command again"


def front_door(body: Callable[[Context], int], argv: Sequence[str]) -> int:
    """Runs `body`; a UserError becomes one line on stderr and exit status 2, a filesystem
    fault one line and exit status 74 (see module doc)."""
    ctx = Context()
    try:
        return body(ctx)
    except (UserError, OSError) as e:
        if not isinstance(e, UserError) and not is_filesystem_fault(e):
            raise  # not about a path the user can fix: a bug, keep its traceback
        tb = traceback.format_exc()
        log = ctx.run_dir / "run.log" if ctx.run_dir is not None else None
        try:
            if log is not None and log.is_file():
                with open(log, "a", encoding="utf-8") as f:
                    f.write(tb)
        except OSError:
            pass  # the disk that failed may be the one run.log is on
        if "--debug" in argv:
            print(tb, file=sys.stderr, end="")
        if isinstance(e, UserError):  # some are FileNotFoundErrors too: they keep their message
            message, code = str(e), EXIT_USAGE
        else:
            message, code = filesystem_message(e, ctx.retry), EXIT_IO
        message = " ".join(message.split())
        print(f"error: {message}", file=sys.stderr)
        return code
