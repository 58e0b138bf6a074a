"""The exceptions hebbref raises for bad input.

Every one is a ``ValueError`` subclass, so ``except ValueError`` catches them all,
and each message names what was expected and what was given.
"""


class HebbrefError(ValueError):
    """Base class of every error hebbref raises on purpose."""


class ConfigError(HebbrefError):
    """An unknown rule, preset, loss, initialisation, backend or layer description."""


class InputError(HebbrefError):
    """Data handed to a network do not fit it: shape, dtype, non-finite values, labels."""


class DataError(HebbrefError):
    """A dataset file is missing, truncated, corrupt, or fails its checksum."""


def choose(kind, name, options):
    """Return ``options[name]`` or raise a ConfigError listing the valid names.

    >>> choose("rule", "bp", {"bp": 1})
    1
    """
    try:
        return options[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in options)
        raise ConfigError(f"unknown {kind} {name!r}; expected one of {valid}") from None
