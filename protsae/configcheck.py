"""Config errors in a few lines: which key, where, what was expected (Snakemake's own message
prints the whole schema and config around the one line that matters). Light: the Snakefile
imports it while it builds the DAG."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config that does not match config/schema.yaml; the message names the key."""


def schema_error(error: Exception, configfiles) -> ConfigError | None:
    """The short form of a failed `snakemake.utils.validate` (None when ``error`` holds no
    jsonschema validation error)."""
    # Snakemake raises its WorkflowError while handling jsonschema's ValidationError.
    invalid = error.__context__
    if not (hasattr(invalid, "validator") and hasattr(invalid, "absolute_path")):
        return None
    where = ".".join(str(part) for part in invalid.absolute_path) or "the top level"
    source = ", ".join(str(path) for path in configfiles) or "the config"
    subschema = invalid.schema if isinstance(invalid.schema, dict) else {}
    if invalid.validator == "additionalProperties" and isinstance(invalid.instance, dict):
        known = sorted(subschema.get("properties", {}))
        unknown = sorted(set(invalid.instance) - set(known))
        keys = ", ".join(f"{where}.{key}" if invalid.absolute_path else key for key in unknown)
        return ConfigError(f"{source}: unknown key {keys}; {where} takes: {', '.join(known)}")
    expected = []
    for word in ("type", "enum", "minimum", "maximum", "pattern"):
        if word in subschema:
            expected.append(f"{word} {subschema[word]}")
    lines = [f"{source}: {where}: {invalid.message}"]
    if expected:
        lines.append(f"  expected: {', '.join(expected)}")
    if subschema.get("description"):
        lines.append(f"  {where}: {' '.join(str(subschema['description']).split())}")
    return ConfigError("\n".join(lines))
