"""A starter configuration folder for a deployment outside the checkout (``mm7 init DIR``).

    DIR/gateway.toml        the shipped starter: works against ``mm7 simulate`` on this machine,
                            every key present (commented where unset), nothing secret in it
    DIR/dialects.toml       the deployment's own [dialects.NAME] (the shipped ones stay known)
    DIR/profiles/           its own content profiles (<name>.toml), overriding shipped ones
    DIR/personas/           its own simulator personas (``mm7 simulate`` run from DIR's parent)
    DIR/photo.jpg           a small sample image (``mm7 send ... --media conf/photo.jpg``)

Nothing is overwritten: a folder that already holds any of these files is refused, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mm7.core.shipped import shipped
from mm7.service.errors import ServiceError

__all__ = ["StarterExists", "write_starter"]

DIALECTS_STARTER = """\
# This deployment's own dialects: [dialects.NAME] tables of mm7.core.dialect.Dialect fields, with
# `extends` naming a built-in dialect (3gpp, mbuni, nokia, rel5-legacy, aggregator, openmarket)
# or a shipped one (strict-rel6, mbuni-compatible, sinch-like, kt-like, nokia-base64 ...). A name
# defined here overrides the shipped dialect of that name. For example:
#
# [dialects.carrier-a]
# extends = "3gpp"
# version = "REL-6-MM7-1-3"
# mm7_version = "6.5.0"
"""

FOLDER_NOTES = {
    "profiles": """\
# Content profiles of this deployment

A `<name>.toml` here is found by `profile = "<name>"` in gateway.toml before the profiles shipped
with mm7 (mms-300k, mms-600k, mms-1m, mms-3500k, oma-image-rich, aggregator-smil), and overrides
a shipped one of the same name. Start from a shipped file: `mm7 init` does not copy them.
""",
    "personas": """\
# Simulator personas of this deployment

A `<name>.toml` in `conf/personas` under the working directory is found by
`mm7 simulate --persona <name>` before the personas shipped with mm7 (`mm7 simulate personas`
lists them all), and overrides a shipped one of the same name.
""",
}


class StarterExists(ServiceError):
    """The folder already holds a file ``mm7 init`` would write."""


@dataclass(frozen=True, slots=True)
class Written:
    """What ``write_starter`` wrote, for the command to list."""

    files: tuple[Path, ...]


def write_starter(folder: Path) -> Written:
    """Write the starter configuration into ``folder`` (created if missing); refuse to
    overwrite any file (``StarterExists`` names the first one found)."""
    plan: dict[Path, str | bytes] = {
        folder / "gateway.toml": shipped("gateway.toml").read_text(encoding="utf-8"),
        folder / "dialects.toml": DIALECTS_STARTER,
        **{folder / name / "README.md": text for name, text in FOLDER_NOTES.items()},
        folder / "photo.jpg": shipped("samples", "photo.jpg").read_bytes(),
    }
    for path in plan:
        if path.exists():
            raise StarterExists(f"{path} exists already; nothing was written")
    for path, text in plan.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    return Written(tuple(plan))
