"""bench/device_carry.py: the wheels the device machine is given, derived from a traced run.

The pure parts: modules to pinned distributions (at this environment's versions), the tracer,
the image list, the slimming of a wheel. No network, no training."""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import device_carry as dc  # noqa: E402

IMAGE = dc.read_names(dc.IMAGE_FILE)


def test_the_image_list_is_the_device_package_list_normalized():
    assert {"torch", "numpy", "pandas", "pyarrow", "scikit-learn", "typing-extensions", "click", "pip"} <= IMAGE
    assert not {"prefect", "fastapi", "sqlalchemy", "exchange-calendars"} & IMAGE
    assert len(IMAGE) == 197 and "2026-11-17" in dc.IMAGE_FILE.read_text()  # the list as read that day


def test_traced_modules_map_to_distributions_pinned_at_the_installed_versions():
    modules = {"exchange_calendars", "prefect", "fastapi", "sqlalchemy", "json", "os", "_csv", "spywatch", "flows",
               "tasks", "gpu_pool_check", "numpy", "torch", "yaml", "scipy", "pandas", "click", "sitecustomize",
               "no_such_module_here"}
    pins, report = dc.carried(modules, set(), IMAGE, project=dc.project_modules())
    assert pins["exchange-calendars"] == md.version("exchange_calendars")
    assert pins["fastapi"] == md.version("fastapi") and pins["sqlalchemy"] == md.version("sqlalchemy")
    assert pins["prefect"] == md.version("prefect")
    for name, version in pins.items():
        assert version == md.version(name), name
    # stdlib and the project are not distributions; torch and numpy are the image's
    assert not {"json", "os", "spywatch", "flows", "tasks"} & set(pins)
    assert report["never"] == ["numpy", "torch"]
    # the image's packages stay there, but for those pinned anyway (pandas, the CLI stack)
    assert "pyyaml" in report["in_image"] and "scipy" in report["in_image"] and "pyyaml" not in pins
    assert pins["pandas"] == md.version("pandas") and pins["click"] == md.version("click")
    assert {dc.normalize(p) for p in dc.PIN_ANYWAY} <= set(pins)  # pinned anyway, imported or not
    assert report["unmapped"] == ["no_such_module_here"]


def test_metadata_reads_and_optional_imports():
    pins, report = dc.carried({"dask", "prefect_dask", "httptools"}, {"text-unidecode"}, IMAGE,
                              project=dc.project_modules())
    assert pins["text-unidecode"] == md.version("text-unidecode")  # needed only through its metadata here
    assert {"dask", "prefect-dask", "httptools"} <= set(report["left_out"])
    assert not {"dask", "prefect-dask", "httptools"} & set(pins)


def test_project_modules_are_the_repositorys_own():
    names = dc.project_modules()
    assert {"spywatch", "flows", "tasks", "gpu_check", "gpu_pool_check", "machine", "automations"} <= names
    assert not {"prefect", "pandas", "torch"} & names


def test_the_tracer_records_every_import_of_a_child_process(tmp_path):
    trace = tmp_path / "trace"
    trace.mkdir()
    (trace / "sitecustomize.py").write_text(dc.SITECUSTOMIZE)
    code = ("import importlib, importlib.metadata as m; importlib.import_module('text_unidecode'); "
            "import colorsys; m.version('python-slugify'); "
            "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import wave'], check=True)")
    env = {**os.environ, "PYTHONPATH": str(trace)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    modules, metadata = dc.read_trace(trace)
    assert len(list(trace.glob("imports-*.txt"))) == 2  # the child's own file
    # text_unidecode comes through importlib.import_module, which raises no audit event for it
    assert {"text_unidecode", "colorsys", "wave", "importlib"} <= modules
    assert "python-slugify" in metadata or "python_slugify" in metadata


def test_slim_removes_the_named_entries_and_their_record_lines(tmp_path):
    wheel = tmp_path / "pandas-2.3.3-cp311-cp311-manylinux_2_28_x86_64.whl"
    record = "pandas/__init__.py,sha256=a,1\npandas/tests/test_x.py,sha256=b,2\npandas-2.3.3.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pandas/__init__.py", "x = 1\n")
        z.writestr("pandas/tests/test_x.py", "y = 2\n" * 1000)
        z.writestr("pandas-2.3.3.dist-info/RECORD", record)
    other = tmp_path / "prefect-3.8.8-py3-none-any.whl"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("prefect/tests/keep.py", "z = 3\n")
    assert dc.slim(wheel) > 0 and dc.slim(other) == 0
    with zipfile.ZipFile(wheel) as z:
        assert z.namelist() == ["pandas/__init__.py", "pandas-2.3.3.dist-info/RECORD"]
        assert z.read("pandas-2.3.3.dist-info/RECORD").decode() == (
            "pandas/__init__.py,sha256=a,1\npandas-2.3.3.dist-info/RECORD,,\n")
    with zipfile.ZipFile(other) as z:
        assert z.namelist() == ["prefect/tests/keep.py"]


@pytest.mark.parametrize("name,expected", [("Exchange_Calendars", "exchange-calendars"),
                                           ("ruamel.yaml", "ruamel-yaml"), ("typing_extensions", "typing-extensions")])
def test_normalize(name, expected):
    assert dc.normalize(name) == expected


def test_prefects_requirements_are_followed_with_their_extras():
    closure = dc.requires_closure("prefect")
    assert {"prefect", "fastapi", "sqlalchemy", "httpx", "python-slugify", "text-unidecode"} <= closure
    assert "h2" in closure  # through httpx[http2]
    assert not {"exchange-calendars", "pyluach", "spywatch"} & closure  # what the flows import beyond Prefect
