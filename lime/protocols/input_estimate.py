"""How many input tokens a request will be billed for, estimated before it leaves. Pure: a parsed body in.

The reservation holds this estimate, and a request cut off before the upstream reported its usage is billed
by it (lime/money/settlement.py), so it must be close in both directions. The rules (docs/billing.md has the
measured table):

* **Text** (every string of the body that is not media, keys included, which stand in for the per-message
  overhead) is counted by the tokenizer Lime ships (tiktoken's ``cl100k_base``): CJK, code and JSON
  schemas count as they really do, not as bytes / 4, which under-reserved them by 25-60 %. Tokenizing costs
  50-120 µs per KiB, so past :data:`TOKENIZE_UP_TO` bytes of text (a coding agent's prompt is 30-60 KiB) a sample
  from each end is tokenized and the whole counted at the denser rate plus 10 %: at most ~0.5-1 ms of authz's CPU.
* **Media** is never counted by its base64 size (a 1.5 MB photo is not 500,000 tokens): an image counts
  :data:`IMAGE_TOKENS` (the providers' own formulas top out below it for the models Lime prices: Anthropic
  ~1,600, OpenAI's high-detail tiles ~1,450, its 32 px patches ~3,800); a PDF :data:`PDF_PAGE_TOKENS` per page
  (text plus the page's image), its pages counted in the file; audio by its decoded size
  (:data:`AUDIO_BYTES_PER_TOKEN`); a file or image given by id or URL, which the upstream fetches, counts
  :data:`IMAGE_TOKENS` or :data:`FILE_REFERENCE_TOKENS`.
* **Token ids** (embeddings' ``input`` as lists of integers) count one each.

The estimate names its images and its audio apart: a model whose provider counts an image above
:data:`IMAGE_TOKENS` holds it at the model's own number (:meth:`InputEstimate.with_image_tokens`, the price sheet's
``image_tokens``), and audio is held at the audio input price.

Known doubt: ``cl100k_base`` is GPT-4's encoding; OpenAI's newer ``o200k`` counts fewer tokens (the estimate
leans high) and Anthropic's tokenizer ~10-20 % more (Anthropic reports input at the start of every answer, so a
cut-off Anthropic request is billed by its own number, not by this).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, replace
from typing import Any

from lime.protocols.token_count import count_tokens

__all__ = [
    "AUDIO_BYTES_PER_TOKEN",
    "FILE_REFERENCE_TOKENS",
    "IMAGE_TOKENS",
    "PDF_PAGE_TOKENS",
    "TEXT_FILE_BYTES_PER_TOKEN",
    "TOKENIZE_UP_TO",
    "InputEstimate",
    "estimate_input",
]

IMAGE_TOKENS = 4_000
PDF_PAGE_TOKENS = 5_000
#: A PDF whose pages cannot be counted (object streams hide them): a page per this many bytes, at least one.
PDF_BYTES_PER_PAGE = 50_000
#: Decoded audio bytes per token: about 40 tokens a second of 16 kB/s audio, above what providers bill.
AUDIO_BYTES_PER_TOKEN = 400
#: A file by id or URL (the upstream fetches it; Lime cannot see its size): about ten PDF pages.
FILE_REFERENCE_TOKENS = 10 * PDF_PAGE_TOKENS
TOKENIZE_UP_TO = 8 * 1024
#: A text file sent as base64 (text/*, JSON, XML): bytes per token, above every script measured but hex and emoji.
TEXT_FILE_BYTES_PER_TOKEN = 2

_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?(?:;[\w=.-]+)*;base64,", re.ASCII)
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_PDF_COUNT = re.compile(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)|/Count\s+(\d+)[^>]*?/Type\s*/Pages\b")
#: Part types whose image or file the upstream fetches by reference (a URL or a file id).
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
_FILE_PARTS = frozenset({"file", "input_file", "document"})
_REFERENCE_KEYS = ("url", "file_id", "image_url", "file_url")


@dataclass(frozen=True)
class InputEstimate:
    text_tokens: int = 0
    #: Images, documents and audio, by their per-part bounds.
    media_tokens: int = 0
    media_parts: int = 0
    #: Files the upstream fetches by URL or id: counted at :data:`FILE_REFERENCE_TOKENS` each, though Lime cannot
    #: see their size (lime/money/overdraft.py bounds what that may leave unreserved).
    file_references: int = 0
    #: Of ``media_parts``: the images, inline or by reference, each counted at :data:`IMAGE_TOKENS`.
    images: int = 0
    #: Of ``media_tokens``: the audio's share.
    audio_tokens: int = 0

    @property
    def tokens(self) -> int:
        return max(1, self.text_tokens + self.media_tokens)

    def with_image_tokens(self, per_image: int | None) -> InputEstimate:
        """This estimate with each image counted at ``per_image`` tokens (a model's own formula) instead of
        :data:`IMAGE_TOKENS`; ``None``: unchanged."""
        if per_image is None or not self.images:
            return self
        return replace(self, media_tokens=self.media_tokens + self.images * (per_image - IMAGE_TOKENS))


def estimate_input(body: dict[str, Any]) -> InputEstimate:
    """The input tokens of a request body (a parsed JSON object), whatever its protocol."""
    walk = _Walk()
    walk.visit(body)
    return InputEstimate(_text_tokens("\n".join(walk.texts)) + walk.token_ids, walk.media_tokens, walk.media_parts,
                         walk.file_references, walk.images, walk.audio_tokens)


def _text_tokens(text: str) -> int:
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= TOKENIZE_UP_TO:
        return count_tokens(text)
    # Past the budget: tokenize a sample from each end (a system prompt in prose, then tool output in code) and
    # count the whole at the denser of the two rates, plus 10 %.
    half = TOKENIZE_UP_TO // 2
    head = count_tokens(encoded[:half].decode("utf-8", "ignore"))
    tail = count_tokens(encoded[-half:].decode("utf-8", "ignore"))
    return -(-len(encoded) * max(head, tail) * 11 // (half * 10))


class _Walk:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.token_ids = 0
        self.media_tokens = 0
        self.media_parts = 0
        self.file_references = 0
        self.images = 0
        self.audio_tokens = 0

    def visit(self, value: Any) -> None:
        # An explicit stack: a deeply nested body must not hit the recursion limit here. On authz's hot path:
        # one loop turn per JSON node, and a call only for the nodes that may be media.
        texts, stack = self.texts, [value]
        while stack:
            node = stack.pop()
            kind = type(node)
            if kind is str:
                if node.startswith("data:"):
                    self._string(node)
                else:
                    texts.append(node)
            elif kind is dict:
                if ("type" in node or "data" in node) and self._media_part(node):
                    continue
                texts.extend(node)  # the keys: they stand in for the per-message overhead
                stack.extend(node.values())
            elif kind is list:
                if node and type(node[0]) is int:
                    self.token_ids += len(node)  # a prompt given as token ids
                else:
                    stack.extend(node)

    def _media(self, counted: tuple[int, str]) -> None:
        tokens, kind = counted
        self.media_tokens += tokens
        self.media_parts += 1
        if kind == "image":
            self.images += 1
        elif kind == "audio":
            self.audio_tokens += tokens

    def _string(self, text: str) -> None:
        match = _DATA_URL.match(text)
        if match is None:
            self.texts.append(text)
        else:
            self._media(_media_tokens(match.group(1) or "", text[match.end():]))

    def _media_part(self, part: dict[str, Any]) -> bool:
        """Counts a part that carries or names media; ``False`` for anything else (walked on as text). Inline
        data URLs are left to the walk, which finds them wherever they sit."""
        # Anthropic's {"type": "base64", "media_type", "data"}; OpenAI's input_audio {"data", "format"}.
        data = part.get("data")
        if isinstance(data, str) and data:
            media_type, audio_format = part.get("media_type"), part.get("format")
            if isinstance(media_type, str):
                self._media(_media_tokens(media_type, data))
                return True
            if isinstance(audio_format, str):
                self._media(_media_tokens(f"audio/{audio_format}", data))
                return True
        kind = part.get("type")
        # A JSON schema's "type" may be a list (["string", "null"]) or an object: no media part, and no hashable key.
        if not isinstance(kind, str) or (kind not in _IMAGE_PARTS and kind not in _FILE_PARTS):
            return False
        references = _references(part)
        if not references or any(reference.startswith("data:") for reference in references):
            return False
        if kind in _IMAGE_PARTS:
            self._media((IMAGE_TOKENS, "image"))
        else:
            self._media((FILE_REFERENCE_TOKENS, "file"))
            self.file_references += 1
        return True


def _references(part: dict[str, Any]) -> list[str]:
    """The URLs and file ids a part names, at its top level or one object down (``image_url.url``, ``file.file_id``,
    ``source.url``)."""
    found = [value for key in _REFERENCE_KEYS if isinstance(value := part.get(key), str) and value]
    for key in ("image_url", "file", "source"):
        inner = part.get(key)
        if isinstance(inner, dict):
            found += [value for name in ("url", "file_id") if isinstance(value := inner.get(name), str) and value]
    return found


def _media_tokens(media_type: str, data: str) -> tuple[int, str]:
    """The tokens of one inline part, and what it is: ``image``, ``audio`` or ``file``."""
    kind = media_type.lower()
    if kind.startswith("image/") or not kind:
        return IMAGE_TOKENS, "image"
    decoded_size = len(data.rstrip("=")) * 3 // 4
    if kind == "application/pdf":
        return PDF_PAGE_TOKENS * _pdf_pages(data, decoded_size), "file"
    if kind.startswith("audio/"):
        return -(-decoded_size // AUDIO_BYTES_PER_TOKEN), "audio"
    if kind.startswith("text/") or kind in ("application/json", "application/xml"):
        return -(-decoded_size // TEXT_FILE_BYTES_PER_TOKEN), "file"
    return FILE_REFERENCE_TOKENS, "file"


def _pdf_pages(data: str, decoded_size: int) -> int:
    try:
        pdf = base64.b64decode(data)
    except (binascii.Error, ValueError):
        return max(1, decoded_size // PDF_BYTES_PER_PAGE)
    pages = len(_PDF_PAGE.findall(pdf))
    for first, second in _PDF_COUNT.findall(pdf):
        pages = max(pages, int(first or second))
    return pages if pages > 0 else max(1, decoded_size // PDF_BYTES_PER_PAGE)
