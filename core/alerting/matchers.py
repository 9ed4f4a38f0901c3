"""Label matchers in Alertmanager syntax (``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"``),
shared by silences and inhibition rules so both select alerts the same way."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_SYNTAX = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # one of = != =~ !~
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op in ("=", "!="):
            return (actual == self.value) == (self.op == "=")
        return (re.fullmatch(self.value, actual) is not None) == (self.op == "=~")

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matcher(text: str) -> Matcher:
    """A matcher from its text; ``ValueError`` says what is wrong."""
    found = _SYNTAX.match(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f'{text!r} is not a matcher (name="value", name!="value", name=~"re" or name!~"re")')
    name, op, value = found.groups()
    if "~" in op:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{text!r}: invalid regular expression: {exc}") from None
    return Matcher(name, op, value)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
