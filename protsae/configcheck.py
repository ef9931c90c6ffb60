"""The config checked against config/schema.yaml, its defaults filled in, and errors in a few
lines: which key, where, what was expected (Snakemake's own message prints the whole schema and
config around the one line that matters). Light: the Snakefile imports it while it builds the
DAG."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config that does not match config/schema.yaml; the message names the key."""


def validate_config(config: dict, schema_path, configfiles) -> None:
    """Check ``config`` against the schema and fill in its defaults, in place, as
    `snakemake.utils.validate` does (JSON Schema 2020-12, ``default`` set on every object met),
    raising `ConfigError`. Snakemake's own reads the schema through its YAML template engine,
    0.3 s of every start, dry runs included; this reads it with the C YAML parser."""
    import jsonschema
    import yaml
    from jsonschema import Draft202012Validator, validators

    with open(schema_path, encoding="utf-8") as handle:
        schema = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        for name, property_schema in properties.items():
            if "default" in property_schema:
                instance.setdefault(name, property_schema["default"])
        yield from validate_properties(validator, properties, instance, subschema)

    validator = validators.extend(Draft202012Validator, {"properties": set_defaults})(schema)
    try:
        validator.validate(config)
    except jsonschema.ValidationError as invalid:
        raise schema_error(invalid, configfiles) from None


def schema_error(invalid, configfiles) -> ConfigError:
    """The short form of a jsonschema ``ValidationError``."""
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
