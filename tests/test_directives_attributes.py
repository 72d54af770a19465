"""`Config`'s attributes have static types, generated from the registry (issue #12).

mypy reads cproxy/directives/attributes.py (`ConfigAttributes`, which `Config` inherits),
so ``cfg.persist_timeout`` (misspelt) or a value used as the wrong type is a type error,
not an AttributeError in production.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path

from cproxy.directives import DIRECTIVES, defaults
from cproxy.directives.attributes import ConfigAttributes
from cproxy.directives.config import Config
from cproxy.directives.generate import attribute_type, render_attributes

ROOT = Path(__file__).resolve().parents[1]


def test_the_attributes_file_is_what_the_registry_generates() -> None:
    path = ROOT / "cproxy" / "directives" / "attributes.py"
    assert path.read_text(encoding="utf-8") == render_attributes()


def test_one_annotation_per_directive_with_its_parse_type() -> None:
    annotations = ConfigAttributes.__annotations__
    assert list(annotations) == [d.attr for d in DIRECTIVES.values()]
    for d in DIRECTIVES.values():
        assert annotations[d.attr] == attribute_type(d), d.name
    assert issubclass(Config, ConfigAttributes)


def test_every_default_has_its_declared_type() -> None:
    hints = typing.get_type_hints(ConfigAttributes)
    cfg = defaults()
    for d in DIRECTIVES.values():
        hint = hints[d.attr]
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            allowed = tuple(typing.get_origin(a) or a for a in typing.get_args(hint))
        else:
            allowed = (typing.get_origin(hint) or hint,)
        allowed = tuple(type(None) if a is None else a for a in allowed)
        assert isinstance(getattr(cfg, d.attr), allowed), d.name
