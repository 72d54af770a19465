"""The install commands install pinned versions: what CI tested is what a new machine gets.

A requirement in setup.cfg that constraints.txt does not pin would be resolved afresh on
every new machine (redis-py 8 once broke a test that way while CI, seeing the machine's
redis-py 7, stayed green).
"""

from __future__ import annotations

import configparser
import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def pinned() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt pins exact versions only: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def requirements() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    lines += cfg["options.extras_require"]["test"].splitlines()
    return [Requirement(x) for x in (x.split("#")[0].strip() for x in lines) if x]


def test_every_requirement_is_pinned_at_a_version_it_allows() -> None:
    pins = pinned()
    for req in requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt (run scripts/lock)"
        assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])


def test_the_readme_and_the_test_script_install_with_the_constraints() -> None:
    readme = (ROOT / "README.md").read_text()
    install = re.search(r"## Install and run.*?```sh\n(.*?)\n```", readme, re.S)
    assert install is not None and "pip install -c constraints.txt ." in install.group(1)
    script = (ROOT / "scripts" / "test").read_text()
    assert re.search(r"pip install -q -c constraints\.txt -e '\.\[test\]'", script)
    # The tests' venv does not see the system's packages: it gets only what is pinned.
    assert "--system-site-packages" not in script


def build_requires() -> dict[str, str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        requires = tomllib.load(f)["build-system"]["requires"]
    pins: dict[str, str] = {}
    for line in requires:
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"build requirement not pinned exactly: {line}"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def closure(name: str) -> set[str]:
    """``name`` and everything it requires on this machine, as installed (markers applied)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = canonicalize_name(todo.pop())
        if current in seen:
            continue
        seen.add(current)
        for line in metadata.requires(current) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_the_build_requirements_are_the_pinned_versions_and_all_of_mypys() -> None:
    # pip builds the wheel (and compiles it with mypyc) in an isolated environment that
    # constraints.txt does not reach: pyproject.toml pins the same versions itself, and
    # every package mypy needs, so a fresh machine compiles with what CI compiled.
    pins, build = pinned(), build_requires()
    for name, version in build.items():
        assert pins.get(name) == version, f"{name}=={version} in pyproject.toml, not constraints"
    needed = closure("mypy") | {"setuptools", "wheel"}
    assert needed <= set(build), f"not pinned in pyproject.toml: {needed - set(build)}"
