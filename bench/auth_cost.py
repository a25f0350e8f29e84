"""What authenticating an API request costs: a token, a session and HTTP Basic, in one run.

The same request (``GET /api/listings/``, a seller's own listings, none) through
Django's test client in this process, with the demo's settings (Django's default
password hasher, PBKDF2 with its full iteration count), on a test database made
for the run and dropped after it. Basic re-hashes the password on every request; a
token is one indexed lookup, a session one lookup of the session row. Prints the
median per request and the ratios to the token's.

    .venv/bin/python bench/auth_cost.py [--requests 20]
"""

import argparse
import base64
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def median_seconds(client, requests: int, **headers) -> float:
    """Median seconds of ``requests`` GETs of the seller's listings; each must be a 200."""
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        response = client.get("/api/listings/", **headers)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.content
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment
    from rest_framework.authtoken.models import Token

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        user = get_user_model().objects.create_user("bench-seller", password="a long enough password")
        token = Token.objects.create(user=user)
        session = Client()
        session.force_login(user)
        basic = base64.b64encode(b"bench-seller:a long enough password").decode()
        results = {
            "token": median_seconds(Client(), args.requests, HTTP_AUTHORIZATION=f"Token {token.key}"),
            "session": median_seconds(session, args.requests),
            "basic": median_seconds(Client(), args.requests, HTTP_AUTHORIZATION=f"Basic {basic}"),
        }
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    for name, seconds in results.items():
        print(f"{name:8} {seconds * 1000:8.1f} ms per request  {seconds / results['token']:6.1f} x token")


if __name__ == "__main__":
    main()
