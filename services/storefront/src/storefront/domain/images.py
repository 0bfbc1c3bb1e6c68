"""Product pictures drawn here, from the product's name and category: a shop needs images,
and no remote fetch is allowed. The same name and category always give the same picture."""

from __future__ import annotations

import hashlib
from xml.sax.saxutils import escape


def _hue(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=2).digest(), "big") % 360


def initials(name: str) -> str:
    words = [w for w in name.replace("-", " ").split() if w[:1].isalnum()]
    return "".join(w[0] for w in words[:2]).upper() or "?"


def product_svg(name: str, category: str) -> str:
    hue = _hue(category or "shop")
    accent = (hue + 40 + _hue(name) % 60) % 360
    label = escape(initials(name))
    caption = escape((category or "").replace("-", " ")[:24])
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 300" role="img">'
        '<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">'
        f'<stop offset="0" stop-color="hsl({hue},70%,88%)"/>'
        f'<stop offset="1" stop-color="hsl({accent},65%,72%)"/></linearGradient></defs>'
        '<rect width="400" height="300" fill="url(#g)"/>'
        f'<circle cx="200" cy="140" r="78" fill="hsl({hue},45%,30%)" fill-opacity=".12"/>'
        f'<text x="200" y="165" font-family="system-ui,sans-serif" font-size="72" '
        f'font-weight="700" text-anchor="middle" fill="hsl({hue},45%,22%)">{label}</text>'
        f'<text x="200" y="270" font-family="system-ui,sans-serif" font-size="20" '
        f'text-anchor="middle" fill="hsl({hue},40%,22%)">{caption}</text></svg>')
