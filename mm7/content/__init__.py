"""Multimedia content: parts, SMIL presentations, carrier profiles and fitting (sans-I/O).

Builds on ``mm7.core`` only: the result of building is a ``mm7.core.mime.Part`` that the codec puts
under ``<Content href="cid:...">``.

    items = make_items([photo, "Hello", voice])
    content = to_part(build_presentation(items))      # SubmitReq(content=content)

- ``model``: ``MediaItem``, ``Slide``, ``Presentation`` and ``Layout``, shared by the rest;
- ``parts``: caller input to media items (type from the bytes, Content-ID, Content-Location);
- ``builder``: a presentation from items, to the multipart/related entity and back;
- ``smil``: SMIL written for a presentation, checked against the MMS rules, read back;
- ``profile``: what one MMSC accepts, as data (conf/profiles/<name>.toml);
- ``fit``: a presentation shrunk and converted to fit a profile, or refused clearly;
  ``images``: the Pillow work it needs (probe, bounded decode, smaller renditions);
- ``carriable``: whether a profile can ever carry an item (taken, or convertible here).

The modules import each other by module path, never through this face.
"""

from mm7.content.builder import (
    build_presentation,
    check_slides,
    default_slides,
    find_smil,
    from_part,
    to_part,
)
from mm7.content.fit import Change, FitError, FitResult, MediaError, fit_to_profile, link_fallback
from mm7.content.images import ImageError
from mm7.content.model import Layout, MediaItem, Presentation, Slide
from mm7.content.parts import ContentError, PartError, Source, make_item, make_items, text_source
from mm7.content.profile import Profile, ProfileError, available_profiles, load_profile
from mm7.content.smil import SmilError, check_smil, generate_smil, read_smil

__all__ = [
    "Change",
    "ContentError",
    "FitError",
    "FitResult",
    "ImageError",
    "Layout",
    "MediaError",
    "MediaItem",
    "PartError",
    "Presentation",
    "Profile",
    "ProfileError",
    "Slide",
    "SmilError",
    "Source",
    "available_profiles",
    "build_presentation",
    "check_slides",
    "check_smil",
    "default_slides",
    "find_smil",
    "fit_to_profile",
    "from_part",
    "generate_smil",
    "link_fallback",
    "load_profile",
    "make_item",
    "make_items",
    "read_smil",
    "text_source",
    "to_part",
]
