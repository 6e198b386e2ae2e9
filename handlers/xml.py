"""Safe parsing of WeChat's flat ``<xml>`` documents.

defusedxml refuses DOCTYPE declarations, entities and external references before anything is
expanded; wechatpy's own parser (xmltodict over expat) never sees a body we did not accept.
"""

from __future__ import annotations

from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

# The platform nests at most four levels below <xml> (SendPicsInfo/PicList/item/PicMd5Sum);
# anything deeper is not from WeChat, and a limit keeps the walk below from ever recursing far.
MAX_DEPTH = 8


class BadXML(ValueError):
    """The body is not a WeChat XML document; the message says why (for a 400)."""


def parse_flat(body: bytes | str) -> dict[str, object]:
    """``<xml><A>1</A><B><C>2</C></B></xml>`` -> ``{"A": "1", "B": {"C": "2"}}``.

    Repeated children become lists. Raises BadXML for DTDs/entities, malformed XML, a root
    other than ``<xml>`` and elements nested more than ``MAX_DEPTH`` levels below it.
    """
    if not body or not body.strip():
        raise BadXML("empty body")
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise BadXML(
            f"DOCTYPE, entities and external references are not allowed ({type(exc).__name__})"
        ) from exc
    except (ParseError, ValueError, UnicodeError) as exc:
        raise BadXML(f"malformed XML: {exc}") from exc
    if root.tag != "xml":
        raise BadXML(f"root element must be <xml>, got <{root.tag[:40]}>")
    return _children(root, 1)


def _children(element, depth: int) -> dict[str, object]:  # noqa: ANN001 - ElementTree element
    if depth > MAX_DEPTH:
        raise BadXML(f"elements nested more than {MAX_DEPTH} levels deep")
    out: dict[str, object] = {}
    for child in element:
        value: object = _children(child, depth + 1) if len(child) else (child.text or "").strip()
        if child.tag in out:
            existing = out[child.tag]
            out[child.tag] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            out[child.tag] = value
    return out
