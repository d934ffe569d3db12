"""Carrier content profiles: the shipped conf/profiles/*.toml load with the numbers they document,
and bad files are refused with an error naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mm7.content.profile import (
    PROFILE_DIRS,
    Profile,
    ProfileError,
    available_profiles,
    load_profile,
    parse_size,
)

CONF = Path(__file__).resolve().parents[1] / "mm7" / "conf" / "profiles"

#: name -> (max_message_bytes, count, box, smil_required, max_parts, transfer_encoding, on_no_fit)
SHIPPED = {
    "mms-300k": (300_000, "content", (1600, 1200), False, 20, "binary", "refuse"),
    "mms-600k": (600_000, "content", (1600, 1200), False, 20, "binary", "refuse"),
    "mms-1m": (1_000_000, "content", (2048, 1536), False, 30, "binary", "refuse"),
    "mms-3500k": (3_500_000, "content", (3264, 2448), False, 40, "binary", "refuse"),
    "aggregator-smil": (500_000, "swa", (1024, 768), True, 20, "base64", "link"),
    "oma-image-rich": (100_000, "content", (640, 480), False, 20, "binary", "refuse"),
}


def test_the_shipped_profiles_are_the_documented_ones() -> None:
    assert available_profiles([CONF]) == sorted(SHIPPED)
    assert CONF in [d.resolve() for d in PROFILE_DIRS]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_profile_numbers(name: str) -> None:
    size, count, box, smil, parts, cte, no_fit = SHIPPED[name]
    p = load_profile(name)
    assert p.name == name
    assert p.max_message_bytes == size
    assert p.count == count
    assert (p.max_image_width, p.max_image_height) == box
    assert p.smil_required is smil
    assert p.max_parts == parts
    assert p.transfer_encoding == cte
    assert p.on_no_fit == no_fit
    assert p.text_charset == "utf-8"
    assert p.description
    # every profile takes plain text and baseline JPEG, the OMA core formats
    assert p.allows("text/plain") and p.allows("image/jpeg")
    # nothing ships that takes BMP or WebP: handsets do not show them, so the fitter converts
    assert not p.allows("image/bmp") and not p.allows("image/webp")
    assert load_profile(CONF / f"{name}.toml") == p  # by path, the same profile


def test_oma_image_rich_keeps_to_the_oma_core_types() -> None:
    p = load_profile("oma-image-rich")
    assert not p.allows("image/png")  # PNG is in the richer classes only
    assert p.allows("image/vnd.wap.wbmp") and p.allows("audio/amr")
    assert not p.allows("video/3gpp") and not p.allows("audio/mpeg")


def test_allows_matches_wildcards_case_and_parameters() -> None:
    p = Profile("t", 1000, allowed_types=("image/*", "Text/Plain", "audio/amr"))
    assert p.allowed_types == ("image/*", "text/plain", "audio/amr")
    assert p.allows("image/jpeg") and p.allows("IMAGE/PNG")
    assert p.allows("text/plain; charset=utf-8")
    assert not p.allows("audio/mpeg") and not p.allows("video/3gpp")
    assert p.allows("application/smil")  # the presentation part is always allowed
    assert Profile("t", 1000, allowed_types=("*/*",)).allows("application/x-anything")
    assert load_profile("mms-3500k").allows("audio/ogg")  # "audio/*" there


def test_the_image_box_holds_in_either_orientation() -> None:
    p = Profile("t", 1000, max_image_width=1600, max_image_height=1200)
    assert p.fits_box(1600, 1200) and p.fits_box(1200, 1600)
    assert not p.fits_box(1601, 1200) and not p.fits_box(1200, 1601)
    assert not p.fits_box(1300, 1300)
    assert p.image_box(4000, 3000) == (1600, 1200)
    assert p.image_box(3000, 4000) == (1200, 1600)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("300 KB", 300_000),
        ("300KiB", 307_200),
        ("3.5 MB", 3_500_000),
        ("1 MiB", 1_048_576),
        ("500000 B", 500_000),
        ("123", 123),
        (4096, 4096),
    ],
)
def test_sizes_with_units(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["300 GB", "lots", "", True, 3.5, None])
def test_bad_sizes_are_refused_by_key(bad: object) -> None:
    with pytest.raises(ProfileError, match="max_message_bytes"):
        parse_size(bad, "max_message_bytes")


def write(tmp_path: Path, text: str, name: str = "carrier.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_minimal_file_takes_its_name_from_the_file(tmp_path: Path) -> None:
    p = load_profile(write(tmp_path, 'max_message_bytes = "128 KiB"\n', "cmcc-like.toml"))
    assert p.name == "cmcc-like"
    assert p.max_message_bytes == 131_072
    assert p.count == "content" and p.on_type_mismatch == "correct"


def test_a_name_is_looked_up_in_the_given_directories(tmp_path: Path) -> None:
    write(tmp_path, 'max_message_bytes = 1000\nname = "x"\n', "mine.toml")
    assert load_profile("mine", dirs=[tmp_path]).name == "x"
    with pytest.raises(ProfileError, match=r"no profile named 'nope'.*available: mine"):
        load_profile("nope", dirs=[tmp_path])


@pytest.mark.parametrize(
    ("text", "key", "detail"),
    [
        ("max_message_bytes = 1000\nmax_parts = 0\n", "max_parts", "positive integer"),
        ('max_message_bytes = 1000\nmax_parts = "20"\n', "max_parts", "an integer"),
        ('max_message_bytes = 1000\nsmil_required = "false"\n', "smil_required", "true/false"),
        ('max_message_bytes = 1000\ncount = "http"\n', "count", "content, swa"),
        ('max_message_bytes = 1000\non_no_fit = "drop"\n', "on_no_fit", "refuse, link"),
        ('max_message_bytes = 1000\ntoo_big = "drop"\n', "too_big", "refuse, link"),
        (
            'max_message_bytes = 1000\ntoo_big = "link"\non_no_fit = "refuse"\n',
            "too_big",
            "give one of the two",
        ),
        ('max_message_bytes = 1000\non_type_mismatch = "x"\n', "on_type_mismatch", "correct"),
        ('max_message_bytes = 1000\ntransfer_encoding = "gzip"\n', "transfer_encoding", "base64"),
        ('max_message_bytes = 1000\ntext_charset = "klingon"\n', "text_charset", "charset"),
        ('max_message_bytes = 1000\nallowed_types = ["jpeg"]\n', "allowed_types", "'jpeg'"),
        ("max_message_bytes = 1000\nallowed_types = []\n", "allowed_types", "at least one"),
        ('max_message_bytes = 1000\nallowed_types = "image/*"\n', "allowed_types", "list"),
        ('max_message_bytes = "big"\n', "max_message_bytes", "byte count"),
        ("max_parts = 3\n", "max_message_bytes", "missing"),
        ("max_message_bytes = 1000\nmax_size = 3\n", "max_size", "unknown key"),
    ],
)
def test_bad_values_name_the_file_and_the_key(
    tmp_path: Path, text: str, key: str, detail: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert key in message and detail in message


def test_too_big_is_the_file_name_of_on_no_fit(tmp_path: Path) -> None:
    assert load_profile(write(tmp_path, 'max_message_bytes = 1\ntoo_big = "link"\n')).on_no_fit == (
        "link"
    )
    older = write(tmp_path, 'max_message_bytes = 1\non_no_fit = "link"\n', "older.toml")
    assert load_profile(older).on_no_fit == "link"
    both = write(
        tmp_path, 'max_message_bytes = 1\non_no_fit = "link"\ntoo_big = "link"\n', "b.toml"
    )
    assert load_profile(both).on_no_fit == "link"
    assert load_profile(write(tmp_path, "max_message_bytes = 1\n", "d.toml")).on_no_fit == "refuse"


def test_broken_toml_and_missing_files_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "max_message_bytes = = 3\n")
    with pytest.raises(ProfileError, match=rf"^{path}: not valid TOML"):
        load_profile(path)
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profile(tmp_path / "absent.toml")
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'description = "caf\xe9"\nmax_message_bytes = 1\n')
    with pytest.raises(ProfileError, match=rf"^{latin}: not UTF-8"):
        load_profile(latin)
    with pytest.raises(ProfileError, match="neither a profile name nor a path"):
        load_profile("mms 300k!")


def test_profiles_are_frozen_and_compare_by_value() -> None:
    a = Profile("a", 1000, description="one")
    b = Profile("a", 1000, description="two")
    assert a == b  # the description is for people
    with pytest.raises(AttributeError):
        a.max_parts = 3  # type: ignore[misc]
