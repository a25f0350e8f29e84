import os

from django.core.management.base import BaseCommand

from catalog.demo import load_demo_catalogue


class Command(BaseCommand):
    help = "Load the demo's sample sellers, categories and listings (with generated photos). Idempotent."

    def handle(self, *args, **options):
        created = load_demo_catalogue(seller_password=os.environ.get("DEMO_SELLER_PASSWORD", "demo-seller-pass"))
        self.stdout.write(f"Sample catalogue: {created} listings created.")
