"""``mm7 init DIR``: a starter configuration folder that loads as it is, whose own dialects,
profiles and personas add to and override the ones shipped inside the package, and that is never
written over."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from mm7.content.profile import load_profile
from mm7.core.shipped import shipped
from mm7.service.config.loader import load_config
from mm7.service.starter import write_starter
from mm7.simulator.personas import load_persona, persona_names
from tests.helpers.cli import assert_one_line_failure, run

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def test_init_writes_a_folder_that_loads_and_finds_the_shipped_pieces(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "conf"
    code, out, err = run(capsys, "init", str(folder))
    assert (code, err) == (0, "")
    assert f"wrote {folder / 'gateway.toml'}" in out and "mm7 serve --config" in out
    config = load_config(folder / "gateway.toml", env={})
    link = config.link("simulator")
    # the profile and the dialect come from the package, not from a checkout's conf/
    assert link.profile is not None and link.profile.name == "mms-600k"
    assert (folder / "profiles" / "README.md").is_file()
    assert (folder / "personas" / "README.md").is_file()
    # the sample photo the README's `mm7 send ... --media conf/photo.jpg` sends
    photo = folder / "photo.jpg"
    assert photo.read_bytes() == shipped("samples", "photo.jpg").read_bytes()
    with Image.open(photo) as image:
        assert image.format == "JPEG" and image.size == (160, 120)
    assert 1_000 < photo.stat().st_size < 10_000
    assert f"wrote {photo}" in out


def test_the_shipped_sample_is_what_its_script_draws() -> None:
    # the committed photo is the script's output (re-run tools/make_sample.py after a change)
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_sample", TOOLS / "make_sample.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with (
        Image.open(io.BytesIO(module.sample())) as drawn,
        Image.open(shipped("samples", "photo.jpg")) as committed,
    ):
        assert drawn.size == committed.size
        diff = ImageChops.difference(drawn.convert("RGB"), committed.convert("RGB"))
        assert max(high for _, high in diff.getextrema()) <= 8  # JPEG encoders may differ a little


def test_the_readme_quick_start_sends_a_file_that_init_writes(tmp_path: Path) -> None:
    readme = (TOOLS.parent / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## What it is", 1)[0]
    assert "mm7 init conf" in quick
    assert re.findall(r"--media (\S+)", quick), "the quick start sends a photo"
    # every file the README's commands and snippets name is there after mm7 init conf
    media = set(re.findall(r"--media ([\w./-]+\.\w+)", readme))
    media |= set(re.findall(r'open\("([\w./-]+)"', readme))
    assert "conf/photo.jpg" in media
    write_starter(tmp_path / "conf")
    for name in media:
        assert (tmp_path / name).is_file(), name
    assert "/ui" in quick  # the simulator's page is named


def test_init_never_writes_over_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "dialects.toml").write_text("# mine\n")
    code, out, err = run(capsys, "init", str(folder))
    assert "dialects.toml exists already" in assert_one_line_failure(code, out, err, "init")
    assert (folder / "dialects.toml").read_text() == "# mine\n"
    assert not (folder / "gateway.toml").exists()  # nothing at all was written


def test_the_deployment_s_dialects_and_profiles_add_to_and_override_the_shipped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "conf"
    run(capsys, "init", str(folder))
    # a dialect of its own extending a shipped one, and a shipped name overridden
    (folder / "dialects.toml").write_text(
        '[dialects.carrier-a]\nextends = "mbuni-compatible"\nnotes = "ours"\n'
        '[dialects.strict-rel6]\nextends = "3gpp"\nversion = "REL-6-MM7-1-2"\n'
    )
    # a profile overriding the shipped mms-600k
    shipped = load_profile("mms-600k")
    half = shipped.max_message_bytes // 2
    (folder / "profiles" / "mms-600k.toml").write_text(
        f'description = "ours"\nmax_message_bytes = {half}\n'
    )
    text = (folder / "gateway.toml").read_text()
    text = text.replace('dialect = "3gpp"', 'dialect = "carrier-a"', 1)
    (folder / "gateway.toml").write_text(text)
    config = load_config(folder / "gateway.toml", env={})
    link = config.link("simulator")
    assert link.link.dialect.name == "carrier-a"
    assert link.link.dialect.version.token == "REL-5-MM7-1-0"  # from the shipped parent
    assert link.profile is not None
    assert link.profile.max_message_bytes == half


def test_personas_of_the_working_directory_override_the_shipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped_names = persona_names()
    assert {"strict-3gpp", "mbuni-digest"} <= set(shipped_names)
    (tmp_path / "conf" / "personas").mkdir(parents=True)
    (tmp_path / "conf" / "personas" / "strict-3gpp.toml").write_text(
        'description = "ours"\n[dialect]\nextends = "3gpp"\n'
    )
    (tmp_path / "conf" / "personas" / "own.toml").write_text('[dialect]\nextends = "mbuni"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MM7_PERSONAS_DIR", raising=False)
    assert set(persona_names()) == {*shipped_names, "own"}
    assert load_persona("strict-3gpp").description == "ours"
    assert load_persona("own").dialect.name != "3gpp"
    assert os.getcwd() == str(tmp_path)
