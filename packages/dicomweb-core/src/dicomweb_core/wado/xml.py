"""DICOM JSON (PS3.18 Annex F) to the Native DICOM Model XML (PS3.19 Annex A).

Works from the stored JSON, so XML metadata needs no object reads either. Bulk data stays a
reference (``<BulkData uri="..."/>``), inline binary stays base64 (``<InlineBinary>``).
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr

from pydicom.datadict import keyword_for_tag

_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_PN_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
_HEADER = '<?xml version="1.0" encoding="UTF-8"?>\n'
_ROOT_OPEN = '<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM">'


def _keyword(tag: str) -> str:
    try:
        return keyword_for_tag(int(tag, 16)) or ""
    except ValueError:
        return ""


def _value_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _person_name(out: list[str], number: int, value: Any) -> None:
    out.append(f'<PersonName number="{number}">')
    if isinstance(value, dict):
        for group in _PN_GROUPS:
            text = value.get(group)
            if not text:
                continue
            out.append(f"<{group}>")
            for name, component in zip(_PN_COMPONENTS, str(text).split("^"), strict=False):
                if component:
                    out.append(f"<{name}>{escape(component)}</{name}>")
            out.append(f"</{group}>")
    out.append("</PersonName>")


def _attributes(out: list[str], obj: dict[str, Any]) -> None:
    for tag in sorted(obj):
        elem = obj[tag]
        if not isinstance(elem, dict):
            continue
        vr = str(elem.get("vr", "UN"))
        keyword = _keyword(tag)
        kw = f" keyword={quoteattr(keyword)}" if keyword else ""
        out.append(f'<DicomAttribute tag="{tag}" vr="{vr}"{kw}>')
        if "BulkDataURI" in elem:
            out.append(f"<BulkData uri={quoteattr(str(elem['BulkDataURI']))}/>")
        elif "InlineBinary" in elem:
            out.append(f"<InlineBinary>{escape(str(elem['InlineBinary']))}</InlineBinary>")
        else:
            for number, value in enumerate(elem.get("Value") or [], start=1):
                if vr == "SQ":
                    out.append(f'<Item number="{number}">')
                    if isinstance(value, dict):
                        _attributes(out, value)
                    out.append("</Item>")
                elif vr == "PN":
                    _person_name(out, number, value)
                elif value is None:
                    out.append(f'<Value number="{number}"/>')
                else:
                    out.append(f'<Value number="{number}">{escape(_value_text(value))}</Value>')
        out.append("</DicomAttribute>")


def to_xml(obj: dict[str, Any]) -> bytes:
    """One data set (a DICOM JSON object) as a ``NativeDicomModel`` document."""
    out = [_HEADER, _ROOT_OPEN]
    _attributes(out, obj)
    out.append("</NativeDicomModel>\n")
    return "".join(out).encode("utf-8")
