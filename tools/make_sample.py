"""Write mm7/conf/samples/photo.jpg: the small sample image the README's commands send.

    .venv/bin/python tools/make_sample.py

A 160x120 JPEG drawn with Pillow (a sky, a sun, hills: something a handset shows recognisably),
a few KB, so ``mm7 send --media conf/photo.jpg`` after ``mm7 init conf`` names a file that exists.
Run again only to change the picture; the file is committed and shipped as package data.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "mm7" / "conf" / "samples" / "photo.jpg"


def sample() -> bytes:
    """The sample photo's bytes (baseline JPEG, quality 80)."""
    image = Image.new("RGB", (160, 120))
    draw = ImageDraw.Draw(image)
    for y in range(80):  # the sky, lighter towards the horizon
        draw.line([(0, y), (159, y)], fill=(60 + y, 120 + y, 230))
    draw.ellipse([112, 12, 140, 40], fill=(255, 220, 90))
    draw.polygon([(0, 80), (50, 52), (100, 80)], fill=(70, 130, 70))
    draw.polygon([(60, 80), (120, 45), (160, 72), (160, 80)], fill=(50, 110, 60))
    draw.rectangle([0, 80, 159, 119], fill=(90, 160, 80))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(sample())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
