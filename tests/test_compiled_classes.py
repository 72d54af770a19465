"""What the compiled build (setup.py's mypyc) keeps of the classes it compiles.

mypyc turns a class of a compiled module into a native class, whose class-level values
become defaults of instance attributes (read through a descriptor on the class). A class
that derives from a class defined in Python (an exception under ``cproxy.errors``) cannot
be native, and there mypyc silently drops a class attribute that overrides the base's:
``status = 504`` on a subclass of ``OriginError`` read 502 once compiled, and a parent
that never answered got the wrong page. This test reads every class-level literal of the
compiled modules back from the class and requires the value written in the source. On the
sources it passes by construction; under scripts/test-compiled it is the check.
"""

from __future__ import annotations

import ast
import enum
import importlib
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compiled_modules() -> list[str]:
    """The paths in setup.py's COMPILED list."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMPILED":
            return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py has no COMPILED list")


def class_literals(source: str) -> list[tuple[str, str, object]]:
    """(class, attribute, value) for every ``name = literal`` in a top-level class body."""
    found = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target, value = stmt.targets[0], stmt.value
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                target, value = stmt.target, stmt.value
            else:
                continue
            if not isinstance(target, ast.Name) or target.id == "__slots__":
                continue
            try:
                found.append((node.name, target.id, ast.literal_eval(value)))
            except ValueError:
                continue  # not a literal: nothing to compare with
    return found


def test_the_compiled_list_names_modules_that_exist() -> None:
    modules = compiled_modules()
    assert len(modules) >= 20
    for path in modules:
        assert (ROOT / path).is_file(), path


def test_class_attributes_keep_their_values_in_every_compiled_module() -> None:
    lost = []
    for path in compiled_modules():
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        for class_name, attribute, written in class_literals((ROOT / path).read_text()):
            value = getattr(getattr(module, class_name), attribute, "<missing>")
            if isinstance(value, types.GetSetDescriptorType | types.MemberDescriptorType):
                continue  # a native class's instance default, or a slot: read per instance
            if isinstance(value, enum.Enum):
                value = value.value
            if value != written:
                lost.append(f"{path}: {class_name}.{attribute} = {written!r} reads {value!r}")
    assert not lost, "\n".join(lost)


# Where a compiled class's bases may come from: cproxy and the standard library, whose
# types mypy always has. A base from another package is known to mypy only when that
# package is installed where the wheel is built, which a fresh install's isolated build
# is not: the store's LRU subclass of cachetools was compiled blind there and crashed.
_STANDARD_BASES = {"builtins", "abc", "collections.abc", "enum", "typing", "_collections_abc"}


def test_compiled_classes_derive_only_from_our_classes_and_the_standard_librarys() -> None:
    foreign = []
    for path in compiled_modules():
        name = path.removesuffix(".py").replace("/", ".")
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if not isinstance(cls, type) or cls.__module__ != name:
                continue
            for base in cls.__mro__[1:]:
                home = base.__module__
                if not (home == "cproxy" or home.startswith("cproxy.") or home in _STANDARD_BASES):
                    foreign.append(f"{path}: {cls.__name__} derives from {home}.{base.__name__}")
    assert not foreign, "\n".join(foreign)
