"""Parse XML with expat, refusing any DOCTYPE or entity declaration.

The refusal sits in the parser's own handlers, so it holds whatever the
encoding (a UTF-16 file hides ``<!DOCTYPE`` from a search of the raw bytes).
No DTD means no entity expansion ("billion laughs") and no external entities.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from xml.parsers import expat

from host_stm32mp1.readers.limits import Incomplete


class UnsafeXML(ValueError):
    pass


def _refuse(what):
    def handler(*_):
        raise UnsafeXML(f"XML with a {what} is refused (entity expansion and external entities)")
    return handler


def parse(data: bytes) -> ET.Element:
    """Bytes -> root element (namespaced tags as ``{uri}name``). Raises
    ValueError: malformed XML, or a DOCTYPE / entity declaration."""
    builder = ET.TreeBuilder()
    p = expat.ParserCreate(namespace_separator="}")
    p.StartDoctypeDeclHandler = _refuse("DOCTYPE")
    p.EntityDeclHandler = _refuse("entity declaration")
    p.UnparsedEntityDeclHandler = _refuse("entity declaration")
    p.ExternalEntityRefHandler = _refuse("external entity")

    def name(n: str) -> str:   # expat gives "uri}local"; ElementTree's form is "{uri}local"
        return "{" + n if "}" in n else n

    p.StartElementHandler = lambda tag, attrs: builder.start(
        name(tag), {name(k): v for k, v in attrs.items()})
    p.EndElementHandler = lambda tag: builder.end(name(tag))
    p.CharacterDataHandler = builder.data
    p.buffer_text = True
    try:
        p.Parse(data, True)
    except expat.ExpatError as e:
        if e.code in (expat.errors.codes[expat.errors.XML_ERROR_NO_ELEMENTS],
                      expat.errors.codes[expat.errors.XML_ERROR_UNCLOSED_TOKEN]) or \
                (e.code == expat.errors.codes[expat.errors.XML_ERROR_SYNTAX] and not data.strip()):
            raise Incomplete(f"malformed XML: {expat.errors.messages[e.code]}: the document ends "
                             f"early (line {e.lineno}, column {e.offset})") from None
        raise ValueError(f"malformed XML: {expat.errors.messages[e.code]}: line {e.lineno}, "
                         f"column {e.offset}") from None
    return builder.close()


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def children(el, name: str):
    return [c for c in el if local(c.tag) == name]


def attr(el, name: str, default=None):
    """Attribute by local name, case-insensitive (files in the wild vary)."""
    for k, v in el.attrib.items():
        if local(k).lower() == name.lower():
            return v
    return default
