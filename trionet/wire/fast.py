"""Constructors for the frozen, slotted attrs classes the per-packet paths
make (headers and options): ``cls(...)`` sets each field through the frozen
class's ``__setattr__`` check, which costs more than the parse around it;
these set the slots directly and make the same objects."""

from __future__ import annotations

import attrs


def slot_constructor(cls, **constants):
    """A function taking every field of ``cls`` but those in ``constants``
    positionally (no defaults) and returning the instance; the fields in
    ``constants`` get those values. Generated code (as attrs makes
    __init__), one statement per field; ``cls`` may have no validators or
    converters."""
    fields = attrs.fields(cls)
    if any(a.validator is not None or a.converter is not None for a in fields):
        raise TypeError(f"{cls.__name__} validates or converts its fields")
    names = [a.name for a in fields]
    params = [n for n in names if n not in constants]
    namespace = {"_new": object.__new__, "_cls": cls}
    lines = [f"def make_{cls.__name__}({', '.join(params)}):", "    o = _new(_cls)"]
    for name in names:
        namespace[f"_set_{name}"] = cls.__dict__[name].__set__
        if name in constants:
            namespace[f"_value_{name}"] = constants[name]
            lines.append(f"    _set_{name}(o, _value_{name})")
        else:
            lines.append(f"    _set_{name}(o, {name})")
    lines.append("    return o")
    exec("\n".join(lines), namespace)  # noqa: S102 (our own text, as attrs does)
    return namespace[f"make_{cls.__name__}"]
