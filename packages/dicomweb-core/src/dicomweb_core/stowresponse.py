"""The STOW-RS response (PS3.18 10.5.3): DICOM JSON, or DICOM XML when Accept asks for it."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

import orjson

from .ingest import StowOutcome

_RETRIEVE_URL = "00081190"
_FAILED_SOP_SEQ = "00081198"
_REFERENCED_SOP_SEQ = "00081199"
_REF_SOP_CLASS = "00081150"
_REF_SOP_INSTANCE = "00081155"
_FAILURE_REASON = "00081197"


def _ui(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def failure_warnings(outcome: StowOutcome, host: str) -> dict[str, str]:
    """Each failed part's reason as an HTTP ``Warning: 299`` (PS3.18 8.6.2 allows warnings on any
    response), so a client learns why, not only the FailureReason code. Bounded in size."""
    if not outcome.failed:
        return {}
    host = "".join(c for c in host if "!" <= c <= "~" and c != '"')[:100] or "dicomweb"
    values = []
    for f in outcome.failed[:20]:
        text = f"{f.sop_instance_uid or 'part'}: {f.reason}"[:300]
        text = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)
        values.append(f'299 {host} "{" ".join(text.split())}"')
    return {"Warning": ", ".join(values)}


def response_dataset(outcome: StowOutcome, *, wado_base: str, study_uid: str | None) -> dict[str, Any]:
    ds: dict[str, Any] = {}
    studies = {p.record.study_uid for p in outcome.stored}
    study = study_uid or (next(iter(studies)) if len(studies) == 1 else None)
    if study:
        ds[_RETRIEVE_URL] = {"vr": "UR", "Value": [f"{wado_base}/studies/{study}"]}
    if outcome.failed:
        ds[_FAILED_SOP_SEQ] = {
            "vr": "SQ",
            "Value": [
                {
                    _REF_SOP_CLASS: _ui(f.sop_class_uid),
                    _REF_SOP_INSTANCE: _ui(f.sop_instance_uid),
                    _FAILURE_REASON: {"vr": "US", "Value": [f.status]},
                }
                for f in outcome.failed
            ],
        }
    if outcome.stored:
        ds[_REFERENCED_SOP_SEQ] = {
            "vr": "SQ",
            "Value": [
                {
                    _REF_SOP_CLASS: _ui(p.record.sop_class_uid),
                    _REF_SOP_INSTANCE: _ui(p.record.sop_instance_uid),
                    _RETRIEVE_URL: {
                        "vr": "UR",
                        "Value": [
                            f"{wado_base}/studies/{p.record.study_uid}/series/{p.record.series_uid}"
                            f"/instances/{p.record.sop_instance_uid}"
                        ],
                    },
                }
                for p in outcome.stored
            ],
        }
    return ds


def to_json(ds: dict[str, Any]) -> bytes:
    return orjson.dumps(ds)


_KEYWORDS = {
    _RETRIEVE_URL: "RetrieveURL",
    _FAILED_SOP_SEQ: "FailedSOPSequence",
    _REFERENCED_SOP_SEQ: "ReferencedSOPSequence",
    _REF_SOP_CLASS: "ReferencedSOPClassUID",
    _REF_SOP_INSTANCE: "ReferencedSOPInstanceUID",
    _FAILURE_REASON: "FailureReason",
}


def to_xml(ds: dict[str, Any]) -> bytes:
    """PS3.19 Native DICOM Model XML for the (flat, known-keyword) STOW response."""

    def attrs(d: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for tag in sorted(d):
            elem = d[tag]
            vr = elem["vr"]
            out.append(f'<DicomAttribute tag="{tag}" vr="{vr}" keyword="{_KEYWORDS.get(tag, "")}">')
            for n, value in enumerate(elem.get("Value", []), start=1):
                if vr == "SQ":
                    out.append(f'<Item number="{n}">')
                    out.extend(attrs(value))
                    out.append("</Item>")
                else:
                    out.append(f'<Value number="{n}">{escape(str(value))}</Value>')
            out.append("</DicomAttribute>")
        return out

    body = "".join(attrs(ds))
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel>{body}</NativeDicomModel>\n'.encode()
