"""The binary-mode CloudEvents the service sends, checked against the cloudevents SDK's parser
(the reference implementation of the HTTP binding)."""

from __future__ import annotations

import orjson
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from dicomweb_core.events import IMAGE_STORED, StoreInfo, binary_message, image_event_body, new_event

STORE = StoreInfo("provider", "bucket", "http://wado.internal/wado-rs", "https://wado.example/wado-rs")


def stored_event(source: str) -> tuple[dict[str, str], bytes]:
    metadata = {
        "0020000D": {"vr": "UI", "Value": ["1.2.3"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]},
        "7FE00010": {"vr": "OW", "BulkDataURI": "http://x/bulk"},
    }
    body = image_event_body(
        metadata, transfer_syntax_uid="1.2.840.10008.1.2.1", object_name="studies/1.2.3/x", store=STORE
    )
    return binary_message(new_event(IMAGE_STORED, source, body))


def test_image_stored_event_parses_as_a_cloudevent_with_the_alvearie_attributes_and_no_others() -> None:
    headers, body = stored_event("img-ingest-stow.default.svc.cluster.local")
    event = from_binary(HTTPMessage(headers=headers, body=body), JSONFormat())
    assert event.get_specversion() == "1.0"
    assert event.get_type() == "ImageStoredEvent"
    assert event.get_source() == "img-ingest-stow.default.svc.cluster.local"
    assert event.get_id() == headers["ce-id"] and len(event.get_id()) == 36
    assert event.get_datacontenttype() == "application/json"
    # Alvearie's events carry no ce-time (nor any other optional attribute); the SDK's parser
    # fills in a time of its own, so the headers are checked.
    assert sorted(headers) == ["ce-id", "ce-source", "ce-specversion", "ce-type", "content-type"]
    data = event.get_data()
    assert isinstance(data, dict) and data == orjson.loads(body)
    assert data["image"]["elements"] == [
        {"group": "0010", "element": "0010", "vr": "PN", "value": "Doe^Jane"},
        {"group": "0020", "element": "000D", "vr": "UI", "value": "1.2.3"},
    ]
    assert data["store"]["objectName"] == "studies/1.2.3/x"


@pytest.mark.parametrize("source", ["urn:site one/stow", 'a"quoted"', "100%", "stów-ünïcode"])
def test_a_source_outside_printable_ascii_is_percent_encoded_and_decodes_back(source: str) -> None:
    headers, body = stored_event(source)
    # Every header value is sendable as-is: printable ASCII without space, '"' or a bare '%'.
    assert all(v.isascii() and v.isprintable() and " " not in v for v in headers.values())
    assert headers["ce-source"] != source
    event = from_binary(HTTPMessage(headers=headers, body=body), JSONFormat())
    assert event.get_source() == source
