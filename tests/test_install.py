"""The app as a host site installs it: the wheel built from this checkout, in a fresh
virtualenv, in a project made by `django-admin startproject` and set up with the files
of the README's "Installing into your own site", code blocks taken from the README
itself. Its own database on the test run's PostgreSQL server, its own `qcluster`.

Each step's time is printed (`pytest -s`) and written in the README."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from psycopg import sql

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

# The second app: a long app label and model name (their HNSW index names once failed
# models.E034), a default integer key, no Meta of its own.
LONG_APP = "marketplace_catalogue"
LONG_MODELS = """from django.db import models

from moderation.models import ModeratedModel
from moderation.registry import register
from moderation.uploads import ModeratedImageField


@register(text_fields=["name"], image_field="picture")
class ProductListingWithPhoto(ModeratedModel):
    name = models.CharField(max_length=100)
    picture = ModeratedImageField(upload_to="products/")
"""
LONG_URLS = """
from marketplace_catalogue.models import ProductListingWithPhoto

router.register(ProductListingWithPhoto.objects.all(), prefix="catalogue/")
"""

# Run in the new project with its own interpreter: the objects a seller saves.
SAVE = """
import io
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from PIL import Image
from ads.models import Ad
from marketplace_catalogue.models import ProductListingWithPhoto

def photo(rgb):
    buffer = io.BytesIO()
    Image.new("RGB", (96, 96), rgb).save(buffer, format="PNG")
    return ContentFile(buffer.getvalue(), name="photo.png")

seller = User.objects.create_superuser("seller", "seller@example.com", "pw-for-install")
Ad.objects.create(seller=seller, title="Red ceramic mug", category="Kitchen", photo=photo((205, 30, 35)))
Ad.objects.create(seller=seller, title="Red hiking boots", category="Clothing", photo=photo((30, 70, 200)))
ProductListingWithPhoto.objects.create(name="Green garden hose", picture=photo((40, 160, 60)))
"""

# The app's search endpoint and the admin's review queue, through Django's test client.
BROWSE = """
import json
from django.test import Client
from django.test.utils import setup_test_environment

setup_test_environment()
client = Client()
found = client.get("/api/search/text/", {"q": "red"})
catalogue = client.get("/api/catalogue/search/text/", {"q": "green"})
client.login(username="seller", password="pw-for-install")
queue = client.get("/admin/ads/adreview/")
print(json.dumps({
    "search": [hit["ad"]["text"] for hit in found.json()["results"]],
    "catalogue": [hit["productlistingwithphoto"]["text"] for hit in catalogue.json()["results"]],
    "queue_status": queue.status_code,
    "queue": queue.content.decode(),
}))
"""


def readme_block(first_line: str) -> str:
    """The README's install section code block that starts with ``first_line``."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Installing into your own site", 1)[1].split("\n## ", 1)[0]
    for block in re.findall(r"```(?:python|sh)\n(.*?)```", section, flags=re.DOTALL):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"the README's install section has no block starting with {first_line!r}")


class Steps:
    """Runs commands in the new project and times each step."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.venv = tmp_path / "venv"
        self.project = tmp_path / "project"
        self.times: dict[str, float] = {}
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "DATABASE_URL", "PYTHONPATH", "VIRTUAL_ENV", "MODERATION_", "Q_"))
        }
        self.env["PATH"] = f"{self.venv / 'bin'}:{self.env['PATH']}"

    def timed(self, name: str, *commands: list, cwd=None, timeout: float = 600) -> str:
        started = time.monotonic()
        outputs = []
        for command in commands:
            run = subprocess.run(
                [str(part) for part in command],
                cwd=cwd or self.project,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            assert run.returncode == 0, f"{command}:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
            outputs.append(run.stdout)
        self.times[name] = self.times.get(name, 0.0) + time.monotonic() - started
        return "".join(outputs)

    def manage(self, *args, settings: str | None = None) -> subprocess.CompletedProcess:
        env = {**self.env, **({"DJANGO_SETTINGS_MODULE": settings} if settings else {})}
        return subprocess.run(
            [self.venv / "bin" / "python", "manage.py", *args],
            cwd=self.project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )


@pytest.fixture
def host_database(django_db_blocker):
    """A new database on the test run's PostgreSQL server, dropped after: DATABASES["default"]."""
    with django_db_blocker.unblock():
        params = connection.get_connection_params()
    name = f"install_{uuid.uuid4().hex[:8]}"
    server = {key: params[key] for key in ("host", "port", "user") if key in params}
    server["password"] = params.get("password", "")
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "HOST": str(server["host"]),
        "PORT": str(server["port"]),
        "USER": server["user"],
        "PASSWORD": server["password"],
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def status_counts(database: dict, table: str) -> dict:
    with psycopg.connect(
        dbname=database["NAME"], host=database["HOST"], port=database["PORT"], user=database["USER"]
    ) as db:
        rows = db.execute(f"SELECT moderation_status, count(*) FROM {table} GROUP BY 1").fetchall()
    return dict(rows)


def test_a_new_site_installs_the_wheel_and_an_object_it_saves_is_scored_searchable_and_queued(tmp_path, host_database):
    steps = Steps(tmp_path)
    python = steps.venv / "bin" / "python"

    # The distribution: only moderation/ and its metadata, built outside the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "moderation", source / "moderation", ignore=shutil.ignore_patterns("__pycache__"))
    steps.timed(
        "build the wheel",
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", tmp_path / "dist", source],
        cwd=tmp_path,
    )
    [wheel] = (tmp_path / "dist").glob("listing_moderation-*.whl")
    files = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in files} == {"moderation", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "moderation/migrations/0001_vector_extension.py" in files
    assert "moderation/templates/admin/moderation/change_form.html" in files
    assert "moderation/static/moderation/admin.css" in files

    # One pip command, the README's (its folder argument is the wheel here).
    pip_line = next(line for line in readme_block("pip install").splitlines() if line.startswith("pip install"))
    extras = re.search(r"\[([a-z,]+)\]", pip_line).group(1)
    steps.timed("create the virtualenv", [sys.executable, "-m", "venv", steps.venv], cwd=tmp_path)
    steps.timed("pip install", [python, "-m", "pip", "install", "--quiet", f"{wheel}[{extras}]"], cwd=tmp_path)

    # A new project, set up with the README's blocks.
    steps.project.mkdir()
    steps.timed("startproject", [steps.venv / "bin" / "django-admin", "startproject", "shop", steps.project])
    steps.timed("startproject", [python, "manage.py", "startapp", "ads"], [python, "manage.py", "startapp", LONG_APP])
    (steps.project / "ads" / "models.py").write_text(readme_block("# ads/models.py"))
    (steps.project / "ads" / "admin.py").write_text(readme_block("# ads/admin.py"))
    (steps.project / LONG_APP / "models.py").write_text(LONG_MODELS)
    settings = steps.project / "shop" / "settings.py"
    settings.write_text(
        settings.read_text()
        + "\n"
        + readme_block("# settings.py")
        + f"\nINSTALLED_APPS += ['ads', {LONG_APP!r}]\n"
        + f"DATABASES = {{'default': {host_database!r}}}\n"
        + "Q_CLUSTER['poll'] = 0.2\n"  # the test waits for the cluster; the README's default is 10 s
    )
    urls = steps.project / "shop" / "urls.py"
    # The second model is registered before the README's router is mounted.
    mounted = readme_block("# urls.py").replace("urlpatterns +=", f"{LONG_URLS}\nurlpatterns +=")
    urls.write_text(urls.read_text() + "\n" + mounted)
    commands = [line.split() for line in readme_block("python manage.py").splitlines() if "&" not in line]
    build_model, makemigrations, migrate = commands[0], commands[1], commands[2]
    assert commands[3] == ["python", "manage.py", "runserver"]
    steps.timed("build the demo model", [python, *build_model[1:]])

    steps.timed(
        "check, makemigrations, migrate",
        [python, "manage.py", "check"],
        [python, *makemigrations[1:], LONG_APP],
        [python, *migrate[1:]],
    )

    steps.timed("save", [python, "manage.py", "shell", "-c", SAVE])
    cluster_log = (tmp_path / "qcluster.log").open("w")
    cluster = subprocess.Popen(
        [python, "manage.py", "qcluster"],
        cwd=steps.project,
        env=steps.env,
        stdout=cluster_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        started = time.monotonic()
        while status_counts(host_database, "ads_ad") != {"ok": 1, "flagged": 1} or status_counts(
            host_database, f"{LONG_APP}_productlistingwithphoto"
        ) != {"ok": 1}:
            assert time.monotonic() - started < 120, (tmp_path / "qcluster.log").read_text()[-4000:]
            assert cluster.poll() is None, (tmp_path / "qcluster.log").read_text()[-4000:]
            time.sleep(0.5)
        steps.times["scored by qcluster"] = time.monotonic() - started
    finally:
        cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait()

    browsed = steps.timed("search and the admin", [python, "manage.py", "shell", "-c", BROWSE])
    seen = json.loads(browsed.strip().splitlines()[-1])
    assert seen["search"] == ["Red ceramic mug"]  # public; the flagged one is not found
    assert seen["catalogue"] == ["Green garden hose"]
    assert seen["queue_status"] == 200
    assert "Red hiking boots" in seen["queue"]
    assert "Red ceramic mug" not in seen["queue"]

    # The same project on SQLite: the check's error, no traceback, nothing migrated.
    sqlite = steps.project / "shop" / "sqlite_settings.py"
    sqlite.write_text(
        "from .settings import *  # noqa\n"
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': BASE_DIR / 'db.sqlite3'}}\n"
    )
    for command in ("check", "migrate"):
        result = steps.manage(command, settings="shop.sqlite_settings")
        assert result.returncode != 0
        assert "moderation.E008" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
    assert not (steps.project / "db.sqlite3").exists() or "ads_ad" not in (
        steps.project / "db.sqlite3"
    ).read_bytes().decode("latin-1")

    print("\n" + "\n".join(f"{name}: {seconds:.1f} s" for name, seconds in steps.times.items()))
    print(f"total: {sum(steps.times.values()):.1f} s")
