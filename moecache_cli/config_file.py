"""`--config FILE`: any option of `simulate`, `run` and `compare` from a TOML file; flags on the command line win.

The file's keys are the options' names (`vram`, `per-layer` or `per_layer`, `prefetch-limit`, ...), and a
`[params]` table holds the policy parameters that `--param KEY=VALUE` gives. The values become this
invocation's defaults (click's `default_map`), so a flag typed on the command line replaces the file's
value. A key the command does not have is an error, never ignored. `data/configs/` holds examples.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from traces.errors import MoecacheError

PARAMS_TABLE = "params"


def apply_config(ctx: typer.Context, path: Path | None) -> Path | None:
    """Eager callback of --config: the file's values become the defaults of the command's other options."""
    if path is not None:
        ctx.default_map = {**(ctx.default_map or {}), **config_defaults(ctx.command, read_config(path), path)}
    return path


ConfigFile = Annotated[Path | None, typer.Option(
    "--config", help="TOML file with any of these options (keys as the long flags, policy parameters in a "
                     "\\[params] table; examples in data/configs/); flags given on the command line win.",
    is_eager=True, callback=apply_config, show_default=False)]


def read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise MoecacheError(f"{path}: no such config file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise MoecacheError(f"{path}: not valid TOML ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MoecacheError(f"{path}: cannot read the config file ({exc})") from None


def config_defaults(command, table: dict[str, Any], path: Path) -> dict[str, Any]:
    """{option name: value} for `command` from the file's table; unknown keys and misplaced lists are errors."""
    options, shown = {}, []
    for param in command.params:
        if param.param_type_name != "option" or param.name in ("config", "help"):
            continue
        long = next((o for o in param.opts if o.startswith("--")), f"--{param.name}")[2:]
        options[param.name] = options[long.replace("-", "_")] = param
        shown.append(f"[{PARAMS_TABLE}]" if param.name == "param" else long)
    defaults: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name == PARAMS_TABLE and isinstance(value, dict):
            name, value = "param", [f"{k}={v}" for k, v in value.items()]
        param = options.get(name)
        if param is None:
            raise MoecacheError(f"{path}: unknown key '{key}'; `moecache {command.name}` takes: "
                                f"{', '.join(sorted(shown))}")
        if param.name in defaults:
            raise MoecacheError(f"{path}: '{key}' is given twice")
        if param.multiple:
            value = value if isinstance(value, list) else [value]
        elif isinstance(value, (list, dict)):
            raise MoecacheError(f"{path}: '{key}' takes one value in `moecache {command.name}`, not {value!r}")
        defaults[param.name] = value
    return defaults
