"""Typer parameter coercion without pydantic, for the plain parameter types geogate uses.

Typer (0.29) turns every command-line value into its annotated type through a pydantic
``TypeAdapter``, so the first parameter a command reads imports pydantic: 55-80 ms of a
``geogate check`` that should take well under 250 ms. Strings, paths and lists of them need
no validation library: :func:`use_plain_coercion` gives such parameters a coercion that does
what Typer's adapters do for them (text as given, paths through Typer's own path checks).

It relies on Typer's lazily built ``_runtime_param`` slot (Typer is pinned in
pyproject.toml). If a Typer release changes that, the parameters keep Typer's own coercion:
slower, never wrong. ``tests/cli/test_startup.py`` fails if pydantic comes back on the
check path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

from typer import _click, _coercion, _param_types, core


class _PlainRuntimeParam(_coercion.RuntimeParam):
    """Coercion of ``str``, ``bool``, ``Path`` and ``list`` of str or Path without a
    TypeAdapter; a value of another kind (a flag's text from an environment variable) goes
    to Typer's own coercion."""

    def _coerce_value(self, value: Any, param: core._TyperParameter, ctx: Any) -> Any:
        annotation: Any = self.annotation
        if get_origin(annotation) is list:
            (item_type,) = get_args(annotation)
            items = value if isinstance(value, list | tuple) else [value]
            return [self._one(item_type, item, param, ctx) for item in items]
        return self._one(annotation, value, param, ctx)

    def _one(self, annotation: Any, value: Any, param: core._TyperParameter, ctx: Any) -> Any:
        if annotation is str and isinstance(value, str):
            return value
        if annotation is bool and isinstance(value, bool):
            return value
        if annotation is not Path:  # anything unusual: Typer's own (pydantic) coercion
            typer_own = _coercion.build_runtime_param(
                _coercion.TypeDescriptor(
                    annotation=annotation, parameter_info=self.parameter_info, file_annotation=None
                )
            )
            return typer_own._coerce_value(value, param=param, ctx=ctx)
        # Path: Typer's own checks (exists, dash, resolve ...), handed a Path already so
        # that it does not build a TypeAdapter for the conversion.
        path = value if isinstance(value, Path) else Path(value)
        return _param_types.coerce_cli_path(
            path, self.parameter_info, path_type=Path, param=param, ctx=ctx
        )


def _is_plain(annotation: Any) -> bool:
    if annotation is str or annotation is Path or annotation is bool:
        return True
    if get_origin(annotation) is list:
        args = get_args(annotation)
        return len(args) == 1 and (args[0] is str or args[0] is Path)
    return False


def use_plain_coercion(command: Any) -> int:
    """Give every plain parameter (``str``, ``bool``, ``Path``, lists of str or Path; no custom
    parser) of ``command`` and its sub-commands a coercion that does not import pydantic.

    ``command`` is the click command Typer builds (``typer.main.get_command(app)``). Returns
    how many parameters were changed (0 when this Typer does not have the expected shape).
    """
    changed = 0
    params = list(getattr(command, "params", ()))
    # The --help option is made on first use; make it now to give it the plain coercion too.
    get_help_option = getattr(command, "get_help_option", None)
    if get_help_option is not None:
        help_option = get_help_option(_click.Context(command))
        if help_option is not None:
            params.append(help_option)
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if (
            isinstance(param, core._TyperParameter)
            and getattr(param, "_runtime_param", 1) is None
            and descriptor is not None
            and descriptor.file_annotation is None
            and descriptor.parameter_info.parser is None
            and _is_plain(descriptor.annotation)
        ):
            param._runtime_param = _PlainRuntimeParam(
                parameter_info=descriptor.parameter_info, annotation=descriptor.annotation
            )
            changed += 1
    for sub in getattr(command, "commands", {}).values():
        changed += use_plain_coercion(sub)
    return changed
