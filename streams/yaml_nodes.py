"""The topology file as values that remember their line, and the checks every section shares.

``streams.topology`` and each pattern parse their own sections with these, so a
problem anywhere in the file is reported the same way: file, line, dotted path,
what is wrong and the fix. Nothing here knows what a topic or an agent is.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file, pointing at the line to change."""

    file: str
    line: int
    """1-based; 0 when the problem is not on a line (file missing, namespace)."""
    where: str
    message: str
    fix: str

    def __str__(self) -> str:
        location = f"{self.file}:{self.line}" if self.line else self.file
        return ": ".join(filter(None, [location, self.where, f"{self.message}. Fix: {self.fix}."]))


@dataclass(frozen=True)
class Node:
    """A YAML value with its 1-based line and dotted path; a mapping entry carries its key's line."""

    value: Any
    """A scalar, ``list[Node]`` or ``dict[str, Node]``."""
    line: int
    where: str


@dataclass
class Report:
    """The problems found so far in one file."""

    file: str
    problems: list[Problem] = field(default_factory=list)

    def add(self, at: Node, message: str, fix: str) -> None:
        self.problems.append(Problem(self.file, at.line, at.where, message, fix))


@dataclass(frozen=True)
class Rule:
    """What a name must look like, and how to tell the user."""

    what: str
    pattern: re.Pattern[str]
    fix: str

    def check(self, name: str, at: Node, report: Report) -> bool:
        if self.pattern.fullmatch(name):
            return True
        report.add(at, f"{name!r} is not a valid {self.what}", self.fix)
        return False


LOWER_NAME = re.compile(r"[a-z][a-z0-9_-]*")
LOWER_NAME_FIX = "use lowercase letters, digits, '_' and '-', starting with a letter"


def read_nodes(path: Path, report: Report) -> Node | None:
    """The file as nodes; None (with the problem reported) when there is nothing to check."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        report.add(Node(None, 0, ""), f"cannot read the topology file: {exc}", "check the path")
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        root = None if node is None else _build(node, 1, "", report)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = Node(None, 0 if mark is None else mark.line + 1, "")
        report.add(at, f"invalid YAML: {getattr(exc, 'problem', None) or exc}", "correct the YAML syntax there")
        return None
    if root is None:
        report.add(Node(None, 0, ""), "the file is empty", "declare at least app:, topics: and agents:")
    return root


def _build(node: yaml.Node, line: int, where: str, report: Report) -> Node:
    """Plain values that keep a line for every key and item (``yaml.safe_load`` drops them)."""
    if isinstance(node, yaml.MappingNode):
        return Node(_build_mapping(node, where, report), line, where)
    if isinstance(node, yaml.SequenceNode):
        items = [_build(item, item.start_mark.line + 1, f"{where}[{i}]", report) for i, item in enumerate(node.value)]
        return Node(items, line, where)
    return Node(yaml.constructor.SafeConstructor().construct_object(node), line, where)


def _build_mapping(node: yaml.MappingNode, where: str, report: Report) -> dict[str, Node]:
    """Entries in file order; a repeated key is reported (PyYAML would silently keep the last)."""
    entries: dict[str, Node] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            report.add(Node(None, line, where), "a key must be a plain name", "write the key as a plain name")
            continue
        key = str(key_node.value)
        at = Node(key, line, _join(where, key))
        if key in entries:
            report.add(at, f"'{key}' is declared twice (first at line {entries[key].line})", "remove or rename one")
        else:
            entries[key] = _build(value_node, at.line, at.where, report)
    return entries


def as_mapping(node: Node | None, report: Report) -> dict[str, Node]:
    """A mapping's entries; null reads as empty (``name:`` with nothing after it)."""
    if node is None or node.value is None:
        return {}
    if isinstance(node.value, dict):
        return node.value
    report.add(node, f"expected a mapping, got {shown(node.value)}", "write `key: value` lines or {key: value}")
    return {}


def check_keys(fields: dict[str, Node], allowed: tuple[str, ...], report: Report) -> None:
    for key, node in fields.items():
        if key not in allowed:
            message = f"unknown key '{key}'{did_you_mean(key, allowed)}"
            report.add(node, message, f"use one of: {', '.join(allowed)}")


def required_key(owner: Node, fields: dict[str, Node], key: str, example: str, report: Report) -> Node | None:
    if key not in fields:
        report.add(owner, f"missing required key '{key}'", f"add `{key}: {example}`")
    return fields.get(key)


def check_defined(ref: Node, what: str, declared: Iterable[str], section: str, report: Report) -> bool:
    if ref.value in declared:
        return True
    message = f"{what} '{ref.value}' is not defined{did_you_mean(ref.value, declared)}"
    report.add(ref, message, f"declare it under {section} or correct the name")
    return False


def as_refs(node: Node | None, report: Report) -> list[Node]:
    """A list of names; a lone string counts as a list of one."""
    if node is None or node.value is None:
        return []
    items = [node] if isinstance(node.value, str) else node.value
    if not isinstance(items, list):
        report.add(node, f"expected a list of names, got {shown(node.value)}", "write [name, ...]")
        return []
    for item in (item for item in items if not isinstance(item.value, str)):
        report.add(item, f"expected a name, got {shown(item.value)}", "write the name as plain text")
    return [item for item in items if isinstance(item.value, str)]


def as_text(node: Node | None, rule: Rule, report: Report) -> str | None:
    if node is None:
        return None
    if not isinstance(node.value, str):
        report.add(node, f"expected a {rule.what}, got {shown(node.value)}", rule.fix)
        return None
    return node.value if rule.check(node.value, node, report) else None


def as_int(node: Node | None, minimum: int, report: Report) -> int:
    """A whole number >= minimum; absent means 1, the default of every count in the file."""
    if node is None:
        return 1
    if isinstance(node.value, int) and not isinstance(node.value, bool) and node.value >= minimum:
        return node.value
    message = f"expected a whole number >= {minimum}, got {shown(node.value)}"
    report.add(node, message, f"use a whole number >= {minimum}")
    return 1


def as_choice(node: Node | None, choices: tuple[str, ...], report: Report) -> str:
    """One of ``choices``; absent means the first."""
    if node is None:
        return choices[0]
    if node.value in choices:
        return str(node.value)
    message = f"{shown(node.value)} is not allowed{did_you_mean(str(node.value), choices)}"
    report.add(node, message, f"use one of: {', '.join(choices)}")
    return choices[0]


def as_list(node: Node | None, report: Report) -> list[Node]:
    if node is None:
        return []
    if not isinstance(node.value, list):
        report.add(node, f"expected a list, got {shown(node.value)}", "write a list, e.g. [1, 10, 60]")
        return []
    return list(node.value)


def as_seconds(node: Node | None, default: float, report: Report) -> float:
    """A duration in seconds (> 0)."""
    if node is None:
        return default
    if isinstance(node.value, int | float) and not isinstance(node.value, bool) and node.value > 0:
        return float(node.value)
    report.add(node, f"expected a number of seconds > 0, got {shown(node.value)}", "write e.g. 10 or 0.5")
    return default


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    return "a list" if isinstance(value, list) else repr(value)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
