"""The configuration forms, derived from the directive registry.

Each distinct ``Directive.form`` path (``("Server Configuration", "System Management",
"Performance")``) is one page, holding its directives in registry order; the paths also
make the navigation tree. Nothing here describes a directive again: the label, the
value, the default, the unit, the help text and the kind of input all come from the
registry entry and its value type.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cproxy.directives.config import defaults
from cproxy.directives.registry import Directive
from cproxy.directives.types import Choice, RuleList, Switch, ValueType


def slugify(part: str) -> str:
    """``"System Management"`` -> ``"system-management"`` (for URLs)."""
    return re.sub(r"[^a-z0-9]+", "-", part.lower()).strip("-")


# Which input a value type gets; the first class in the type's MRO found here wins.
_WIDGETS: dict[type[ValueType], str] = {
    RuleList: "rules",  # the ordered rule editor (add, remove, move), see app.py
    Switch: "switch",  # on/off radio buttons
    Choice: "choice",  # a select of Choice.choices
}


def widget_for(directive: Directive) -> str:
    """The input kind for ``directive``: rules, switch, choice, textarea or text."""
    for cls in type(directive.type).__mro__:
        widget = _WIDGETS.get(cls)
        if widget is not None:
            return widget
    return "textarea" if directive.type.multiline else "text"


@dataclass(frozen=True)
class FormPage:
    """One configuration form: its path in the tree and its directives."""

    path: tuple[str, ...]
    directives: tuple[Directive, ...]

    @property
    def title(self) -> str:
        """The last element of the path, e.g. "Performance"."""
        return self.path[-1]

    @property
    def slug(self) -> str:
        """The URL path below /config/, e.g. "server-configuration/system-management/..."."""
        return "/".join(slugify(part) for part in self.path)

    @property
    def url(self) -> str:
        """The page's address in the admin."""
        return f"/config/{self.slug}"

    def names(self) -> list[str]:
        """The directive names on this page, in registry order."""
        return [d.name for d in self.directives]


@dataclass
class NavNode:
    """A node of the navigation tree: a group title, a page, or both."""

    title: str
    page: FormPage | None = None
    children: list[NavNode] = field(default_factory=list)

    def child(self, title: str) -> NavNode:
        """The child named ``title``, created (at the end) when missing."""
        for node in self.children:
            if node.title == title:
                return node
        node = NavNode(title)
        self.children.append(node)
        return node


@dataclass(frozen=True)
class FormTree:
    """All form pages (by slug, in registry order) and the navigation tree over them."""

    pages: dict[str, FormPage]
    nav: NavNode


def build_form_tree(grouped: Mapping[tuple[str, ...], Sequence[Directive]]) -> FormTree:
    """Build the pages and the navigation from directives grouped by form path.

    ``grouped`` is ``cproxy.directives.registry.forms()``: forms in order of first
    appearance in the registry, directives in registry order.
    """
    pages: dict[str, FormPage] = {}
    root = NavNode("Configuration")
    for path, members in grouped.items():
        page = FormPage(path, tuple(members))
        if page.slug in pages:  # two paths differing only in punctuation
            raise ValueError(f"form paths {path} and {pages[page.slug].path} collide")
        pages[page.slug] = page
        node = root
        for part in path:
            node = node.child(part)
        node.page = page
    return FormTree(pages, root)


def generation(config: Any, names: Sequence[str]) -> str:
    """A fingerprint of the current values of ``names``.

    Every form carries the fingerprint of the values it was rendered from; a post whose
    fingerprint no longer matches was built on values someone else has since changed,
    and is refused instead of silently overwriting their change.
    """
    digest = hashlib.sha256()
    for name in names:
        digest.update(f"{name}\0{config.text(name)}\n".encode())
    return digest.hexdigest()[:20]


@dataclass(frozen=True)
class Field:
    """What a template needs to show one directive's input."""

    directive: Directive
    widget: str
    value: str  # the text in the input: current value, or what the user submitted
    current: str  # the running value's canonical text
    default: str
    error: str | None = None

    @property
    def name(self) -> str:
        """The directive name (also the input's name)."""
        return self.directive.name

    @property
    def modified(self) -> bool:
        """True when the running value differs from the default."""
        return self.current != self.default

    @property
    def choices(self) -> tuple[str, ...]:
        """The words a choice or switch may take."""
        if isinstance(self.directive.type, Choice):
            return self.directive.type.choices
        if isinstance(self.directive.type, Switch):
            return ("on", "off")
        return ()


def build_fields(
    page: FormPage,
    config: Any,
    submitted: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> list[Field]:
    """The fields of ``page``: submitted values (after an error) or the running ones."""
    # The registry keeps defaults as a user types them; the form shows the canonical text.
    default = defaults()
    fields = []
    for directive in page.directives:
        current = config.text(directive.name)
        value = current
        if submitted is not None and directive.name in submitted:
            value = submitted[directive.name]
        fields.append(
            Field(
                directive=directive,
                widget=widget_for(directive),
                value=value,
                current=current,
                default=default.text(directive.name),
                error=(errors or {}).get(directive.name),
            )
        )
    return fields
