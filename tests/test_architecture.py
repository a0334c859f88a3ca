"""docs/ARCHITECTURE.md names only what exists: every `etl.…` name, signature, file path and `mpetl`
command it quotes in backticks is checked against the code (importlib, inspect, click).

Why: the doc is the contract between stages; when a signature changes and the doc does not, the next
engineer follows the doc into a TypeError. What is checked, for a backticked quote:

- `etl.a.b` resolves (module, then attributes); `etl.a.f(x, *, y=1)` also has x first, y keyword-only
  with default 1, and no other required parameter (`...` leaves the rest open); `()`: none required;
- `name(args)` without a module, in a section whose heading quotes a class (`etl.load.Ledger`), is
  that class's method (or a name of its module), checked the same way but for defaults (`x=1` there
  is an argument in a call);
- `etl/…` paths exist; `mpetl CMD --opt` names a command and its options.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import REPO

DOC = REPO / "docs" / "ARCHITECTURE.md"
TICKS = re.compile(r"`([^`]+)`")
CALL = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)\((?P<args>.*)\)(?:\s*->\s*\S+)?$", re.S)
DOTTED = re.compile(r"^etl(?:\.\w+)+$")
OWNER = re.compile(r"`(etl(?:\.\w+)+)`")
_MISSING = object()


@dataclass(frozen=True)
class Quote:
    text: str
    section: str
    owner: str | None  # a class quoted in the section's heading


def quotes() -> list[Quote]:
    found, section, owner = [], "", None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            section = line.lstrip("# ").strip()
            heads = [name for name in OWNER.findall(line) if inspect.isclass(_resolve(name, default=None))]
            owner = heads[0] if heads else None
            continue
        found += [Quote(text.strip(), section, owner) for text in TICKS.findall(line)]
    return found


def _resolve(dotted: str, default: Any = _MISSING) -> Any:
    """`etl.a.b.c` → the module `etl.a.b` (longest importable prefix), then its attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            if default is _MISSING:
                raise AssertionError(f"`{dotted}`: {'.'.join(parts[:cut])} has no {'.'.join(parts[cut:])}") from None
            return default
        return obj
    if default is _MISSING:
        raise AssertionError(f"`{dotted}`: no such module")
    return default


def _doc_params(args: str) -> list[tuple[str, str | None, bool]]:
    """(name, literal default or None, keyword-only) for each parameter the doc writes ('...': others)."""
    params, kw_only = [], False
    for raw in [a.strip() for a in args.split(",") if a.strip()]:
        if raw == "*":
            kw_only = True
            continue
        if raw.startswith("..."):
            continue  # "others here": the required-parameter check is skipped for this quote
        name, _, default = raw.partition("=")
        name = name.split(":")[0].strip()
        params.append((name, default.strip() or None, kw_only))
    return params


def _check_signature(quote: str, target: Any, args: str) -> None:
    call = target.__init__ if inspect.isclass(target) and not _is_dataclass_like(target) else target
    signature = inspect.signature(call)
    actual = {n: p for n, p in signature.parameters.items() if n != "self"}
    written = _doc_params(args)
    if not re.search(r"(^|,)\s*\.\.\.", args):  # all of them: a caller following the doc must not miss a required one
        required = [n for n, p in actual.items() if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        missing = [n for n in required if n not in {w[0] for w in written}]
        assert not missing, f"`{quote}`: the code also requires {missing}"
    positional = [n for n, p in actual.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    in_order = [name for name, default, kw_only in written if not kw_only and default is None]
    assert in_order == positional[:len(in_order)], f"`{quote}`: positional parameters are {positional}"
    for name, default, kw_only in written:
        assert name in actual, f"`{quote}`: no parameter {name!r} (has {list(actual)})"
        param = actual[name]
        if kw_only:
            assert param.kind is param.KEYWORD_ONLY, f"`{quote}`: {name!r} is not keyword-only"
        if default not in (None, "...") and quote.startswith("etl."):  # a definition; a bare call shows arguments
            try:
                value = ast.literal_eval(default)
            except (ValueError, SyntaxError):
                continue  # an expression or a placeholder, not a literal: only the name is checked
            assert param.default == value, f"`{quote}`: {name!r} defaults to {param.default!r}, not {default}"


def _is_dataclass_like(cls: type) -> bool:
    return hasattr(cls, "__dataclass_fields__")


def _check(quote: Quote) -> None:
    text = quote.text
    if text.startswith("etl/"):
        assert (REPO / text.split()[0]).exists(), f"`{text}`: no such file"
        return
    if text.startswith("mpetl "):
        _check_command(text)
        return
    call = CALL.match(text)
    if call:
        name = call["name"]
        if name.startswith("etl."):
            _check_signature(text, _resolve(name), call["args"])
        elif quote.owner is not None:
            owner = _resolve(quote.owner)
            target = getattr(owner, name, None) or _resolve(f"{owner.__module__}.{name}", default=None) or \
                _resolve(f"{quote.owner.rsplit('.', 1)[0]}.{name}", default=None)
            assert target is not None, f"`{text}` ({quote.section}): {quote.owner} has no {name}"
            _check_signature(text, target, call["args"])
        return
    if DOTTED.match(text):
        _resolve(text)


def _check_command(text: str) -> None:
    from etl.cli import main

    words = text.split()
    command = main.commands.get(words[1])
    assert command is not None, f"`{text}`: no command {words[1]!r}"
    options = {opt for param in command.params for opt in param.opts}
    for word in words[2:]:
        if word.startswith("--"):
            assert word in options, f"`{text}`: `mpetl {words[1]}` has no {word}"


CHECKED = [q for q in quotes() if q.text.startswith(("etl", "mpetl ")) or (CALL.match(q.text) and q.owner)]


def test_the_doc_quotes_code_at_all():
    """The check below can fail: it finds the quotes (a doc without any would pass it vacuously)."""
    assert len(CHECKED) >= 30
    assert any(CALL.match(q.text) and q.owner for q in CHECKED), "no method quoted under a class heading"


@pytest.mark.parametrize("quote", CHECKED, ids=[q.text[:60] for q in CHECKED])
def test_every_quoted_name_and_signature_exists(quote):
    _check(quote)


def test_a_drifted_signature_is_caught():
    """The checker itself: a wrong parameter, a wrong default and a missing name each fail."""
    for wrong in ("etl.shard.Shard.parse(spec)", "etl.destination.max_age_micros(config, margin=1)",
                  "etl.commandline.NoSuchThing", "mpetl run --no-such-option"):
        with pytest.raises(AssertionError):
            _check(Quote(wrong, "test", None))
    with pytest.raises(AssertionError):
        _check(Quote("plan(events, oldest_sendable_micros)", "test", "etl.load.Ledger"))
