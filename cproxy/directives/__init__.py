"""cproxy's directives: the registry, their value types, and the directive file loader.

See docs/ARCHITECTURE.md ("cproxy.directives") for the contract.
"""

from .config import Config, config_with, defaults, diff, load_config, save_changes
from .registry import DIRECTIVES, Directive, forms, lookup
from .types import Pattern, Rule, ip_allowed

__all__ = [
    "DIRECTIVES",
    "Config",
    "Directive",
    "Pattern",
    "Rule",
    "config_with",
    "defaults",
    "diff",
    "forms",
    "ip_allowed",
    "load_config",
    "lookup",
    "save_changes",
]
