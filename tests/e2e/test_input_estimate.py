"""The input estimate through Envoy with the official SDKs: a photo is reserved as an image, not as its base64
(bytes / 4 made a 1.5 MB photo 500,000 tokens: refused by any package with a tokens-per-minute limit below that)."""

from __future__ import annotations

import base64

from lime.catalog import Limits
from tests.e2e.conftest import Gateway
from tests.e2e.test_billing import record

PHOTO = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 6000).decode()  # ~1.5 MB as a data URL


def test_a_photo_fits_a_package_whose_tpm_is_far_below_its_base64_size(gateway: Gateway) -> None:
    tenant = gateway.new_tenant(["chat-a", "claude"], limits=Limits(tpm=20_000, default_max_output_tokens=256))
    completion = gateway.openai(tenant).chat.completions.with_raw_response.create(model="chat-a", messages=[
        {"role": "user", "content": [{"type": "text", "text": "What is in this photo?"},
                                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PHOTO}"}}]}])
    assert completion.status_code == 200
    message = gateway.anthropic(tenant).messages.create(model="claude", max_tokens=256, messages=[
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PHOTO}},
            {"type": "text", "text": "What is in this photo?"}]}])
    assert message.content
    row = record(gateway, completion.headers["x-request-id"])
    assert row["outcome"] == "complete" and row["cost"] > 0
