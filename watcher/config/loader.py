"""Loading a configuration: YAML, then `${VAR}` expansion, then validation into `Config`.

YAML duplicate keys are errors. `${VAR}` / `${VAR:-default}` expand from the environment. Every
problem found is reported at once, each line naming its key path and what was expected
(`packages[2].ecosystem: expected 'npm' or 'pypi', got 'rubygems'`); a secret's value never appears.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from watcher.config.schema import Config, config_model
from watcher.errors import ConfigError
from watcher.sections import MULTI_PROBLEMS


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, except a key given twice in one mapping is an error instead of last-wins."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _format_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def expand_env(
    data: object, env: Mapping[str, str], path: tuple[str | int, ...] = ()
) -> tuple[object, list[str]]:
    """Expand `${VAR}` / `${VAR:-default}` in every string of a parsed YAML tree (`$$` is a literal
    `$`). As in a shell, `:-` uses the default when the variable is unset or empty."""
    problems: list[str] = []
    if isinstance(data, dict):
        out: dict[Any, Any] = {}
        for key, value in data.items():
            out[key], sub = expand_env(value, env, (*path, str(key)))
            problems += sub
        return out, problems
    if isinstance(data, list):
        items = []
        for index, value in enumerate(data):
            item, sub = expand_env(value, env, (*path, index))
            items.append(item)
            problems += sub
        return items, problems
    if not isinstance(data, str) or "$" not in data:
        return data, problems

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if default is not None and not value:
            return default
        if value is None:
            problems.append(
                f"{_format_path(path)}: environment variable {name} is not set "
                f"(write ${{{name}:-default}} to give a default)"
            )
            return ""
        return value

    return _VAR.sub(replace, data), problems


def _strip_type(tp: Any) -> Any:
    """Unwrap Annotated[...] and X | None down to X."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [arg for arg in get_args(tp) if arg is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _type_at(loc: tuple[str | int, ...]) -> Any:
    """The declared type at a key path of the configuration (None where unknown)."""
    tp: Any = config_model()
    for part in loc:
        tp = _strip_type(tp)
        origin = get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif origin in (list, tuple):
            tp = get_args(tp)[0]
        elif origin is dict:
            tp = get_args(tp)[1]
        else:
            return None
    return _strip_type(tp)


def _show(value: object, secret: bool) -> str:
    if secret:
        return "<hidden>"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _describe_error(error: Mapping[str, Any]) -> Iterator[str]:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    message: str = error["msg"]
    kind: str = error["type"]
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
        if message.startswith(MULTI_PROBLEMS):
            yield from message.removeprefix(MULTI_PROBLEMS).splitlines()
            return
        # a model-level validator names the offending key at the start of its message
        if re.match(r"[a-z_]+: ", message):
            key, _, message = message.partition(": ")
            loc = (*loc, key)
        yield f"{_format_path(loc)}: {message}"
        return
    path = _format_path(loc)
    if kind == "missing":
        yield f"{path}: required key missing"
        return
    if kind == "too_short":
        count = error.get("ctx", {}).get("min_length", 1)
        yield f"{path}: expected at least {count} entr{'y' if count == 1 else 'ies'}"
        return
    if kind == "extra_forbidden":
        parent = _type_at(loc[:-1])
        known = (
            list(parent.model_fields)
            if isinstance(parent, type) and issubclass(parent, BaseModel)
            else []
        )
        hint = ""
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        if close:
            hint = f"; did you mean {close[0]!r}?"
        elif known:
            hint = f" (expected one of: {', '.join(known)})"
        yield f"{path}: unknown key{hint}"
        return
    secret = _type_at(loc) is SecretStr
    if message.startswith("Input should be "):
        message = "expected " + message.removeprefix("Input should be ")
    else:
        message = message[:1].lower() + message[1:]
    yield f"{path}: {message}, got {_show(error.get('input'), secret)}"


def _yaml_problem(source: str, exc: yaml.MarkedYAMLError) -> str:
    """`FILE:LINE:COLUMN: not valid YAML: problem (context at line L, column C)`: the file the
    operator edits, not PyYAML's "<unicode string>"."""
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    text = f"{where}: not valid YAML: {exc.problem or exc.context or 'syntax error'}"
    if exc.context and exc.problem and exc.context_mark is not None:
        at = exc.context_mark
        text += f" ({exc.context} at line {at.line + 1}, column {at.column + 1})"
    return text


def _literal_api_tokens(data: dict[Any, Any]) -> list[str]:
    """API tokens written into the file instead of taken from the environment: refused, so a
    bearer credential never sits in a config file or a repository."""
    server = data.get("server")
    tokens = server.get("api_tokens") if isinstance(server, dict) else None
    problems = []
    for index, entry in enumerate(tokens if isinstance(tokens, list) else []):
        value = entry.get("token") if isinstance(entry, dict) else None
        if isinstance(value, str) and "${" not in value:
            problems.append(
                f"server.api_tokens[{index}].token: expected the token from the environment "
                "(${VAR}), not written in the file (value hidden)"
            )
    return problems


def parse_config(
    text: str, *, source: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    """Validate a YAML document into a `Config`, or raise ConfigError listing every problem."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(_yaml_problem(source, exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {_show(data, False)}"
        )
    literal = _literal_api_tokens(data)
    data, problems = expand_env(data, os.environ if env is None else env)
    problems = literal + problems
    # a key whose variable is unset is reported once, not again as an empty value
    unset = {line.partition(": ")[0] for line in problems}
    config: Config | None = None
    try:
        config = config_model().model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # a list whose entries are invalid is also "too short" after validation: say it once
        failing = {tuple(e["loc"][:n]) for e in errors for n in range(1, len(e["loc"]))}
        for error in errors:
            loc = tuple(error["loc"])
            if error["type"] == "too_short" and loc in failing:
                continue
            if _format_path(loc) not in unset:
                problems.extend(_describe_error(error))
    if problems or config is None:
        count = len(problems)
        lines = "\n".join(f"  {line}" for line in problems)
        raise ConfigError(
            f"{source}: {count} configuration error{'s' if count != 1 else ''}:\n{lines}"
        )
    return config


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from None
    return parse_config(text, source=str(path), env=env)
