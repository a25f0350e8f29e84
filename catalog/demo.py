"""The sample catalogue of the demo: sellers, categories and listings with generated photos.

Each photo is a simple object drawn in one colour, so the demo's colour-words model
can tell whether the photo agrees with the text. A few listings are wrong on purpose
(the text names one colour, the photo shows another), and one photo is used by two
sellers, so the demo has something to flag.
"""

import hashlib
import io
import shutil
from decimal import Decimal
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image, ImageDraw, ImageFilter

from .models import Category, Listing

COLOURS = {
    "red": (205, 30, 35),
    "orange": (240, 130, 20),
    "yellow": (245, 215, 35),
    "green": (40, 160, 60),
    "blue": (30, 70, 200),
    "purple": (125, 45, 165),
    "pink": (240, 120, 180),
    "brown": (120, 75, 40),
    "black": (25, 25, 28),
    "white": (245, 245, 245),
    "grey": (128, 128, 128),
}

CATEGORIES = ["Kitchen", "Clothing", "Furniture", "Toys", "Electronics", "Garden", "Sports"]
SELLERS = ["alice", "bob", "carol", "dave"]

# (seller, title, description, category, price, colour of the photo, shape)
LISTINGS = [
    ("alice", "Red ceramic mug", "A bright red mug, 350 ml, dishwasher safe.", "Kitchen", "8.00", "red", "cup"),
    ("alice", "Blue enamel kettle", "Blue kettle for gas and induction hobs.", "Kitchen", "24.00", "blue", "cup"),
    ("alice", "Yellow lemon squeezer", "Yellow plastic citrus press.", "Kitchen", "5.50", "yellow", "disc"),
    ("alice", "Green salad bowl", "Large green bowl, bamboo fibre.", "Kitchen", "12.00", "green", "disc"),
    ("bob", "Blue denim jacket", "Classic blue denim jacket, size M.", "Clothing", "35.00", "blue", "shirt"),
    ("bob", "Red running shoes", "Lightweight red running shoes, size 42.", "Clothing", "49.00", "red", "shoe"),
    ("bob", "Black leather belt", "Black belt, 110 cm, steel buckle.", "Clothing", "15.00", "black", "bar"),
    ("bob", "Pink wool scarf", "Soft pink scarf, merino wool.", "Clothing", "18.00", "pink", "bar"),
    ("carol", "Brown oak bookshelf", "Solid brown oak shelf, five levels.", "Furniture", "120.00", "brown", "box"),
    ("carol", "Grey fabric sofa", "Three-seat grey sofa, washable covers.", "Furniture", "340.00", "grey", "box"),
    ("carol", "White bedside table", "Small white table with one drawer.", "Furniture", "45.00", "white", "box"),
    ("carol", "Orange plastic chair", "Stackable orange chair for kids.", "Furniture", "20.00", "orange", "box"),
    ("dave", "Yellow toy truck", "Yellow dump truck toy, 30 cm.", "Toys", "14.00", "yellow", "box"),
    ("dave", "Purple plush unicorn", "Soft purple unicorn, 40 cm.", "Toys", "16.00", "purple", "disc"),
    (
        "dave",
        "Black wireless headphones",
        "Over-ear black headphones, 30 h battery.",
        "Electronics",
        "79.00",
        "black",
        "disc",
    ),
    ("dave", "White phone charger", "White USB-C charger, 20 W.", "Electronics", "12.00", "white", "bar"),
    ("alice", "Green garden hose", "Green hose, 25 m, with spray nozzle.", "Garden", "30.00", "green", "disc"),
    ("bob", "Orange basketball", "Official size orange basketball.", "Sports", "25.00", "orange", "disc"),
    ("carol", "Blue yoga mat", "Blue non-slip yoga mat, 6 mm.", "Sports", "22.00", "blue", "bar"),
    ("dave", "Red clay flower pot", "Red terracotta pot, 25 cm.", "Garden", "9.00", "red", "cup"),
    # Deliberate mismatches: the text names one colour, the photo shows another.
    ("bob", "Red hiking boots", "Waterproof red hiking boots, size 44.", "Clothing", "60.00", "blue", "shoe"),
    ("carol", "Green velvet armchair", "Comfortable green velvet armchair.", "Furniture", "150.00", "orange", "box"),
    ("dave", "Yellow rain jacket", "Bright yellow rain jacket, hooded.", "Clothing", "40.00", "purple", "shirt"),
]

# A photo reused by another seller: dave lists alice's red mug with alice's photo.
REUSED_PHOTO = ("dave", "Ceramic mug, red", "Nice red mug, barely used.", "Kitchen", "6.00", "Red ceramic mug")


# The labelled set for the evaluation (moderation_evaluate): a CSV whose photos are
# drawn by draw_labelled_set from their names (colour-shape-n.jpg). It measures the
# colour-words demo model, which says nothing about a real CLIP model.
LABELLED_SET = Path(__file__).resolve().parent / "labelled" / "demo.csv"


def draw_labelled_set(folder: Path) -> Path:
    """Copy the demo's labelled set into ``folder`` and draw its photos beside it (JPEG,
    the catalogue's kind); returns the CSV's path there. Drawn again when missing."""
    folder.mkdir(parents=True, exist_ok=True)
    target = Path(shutil.copyfile(LABELLED_SET, folder / LABELLED_SET.name))
    with open(target, encoding="utf-8") as handle:
        names = [line.split(",", 1)[0] for line in handle.read().splitlines()[1:]]
    for name in names:
        if not (folder / name).exists():
            colour, shape, _n = name.removesuffix(".jpg").split("-")
            (folder / name).write_bytes(draw_photo(colour, shape, seed=name))
    return target


def draw_photo(colour: str, shape: str, *, seed: str, size: int = 384) -> bytes:
    """A JPEG photo of one object in ``colour`` on a light, slightly noisy background."""
    digest = hashlib.sha256(seed.encode()).digest()
    background = tuple(225 + digest[i] % 25 for i in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    rgb = COLOURS[colour]
    m = size // 6 + digest[3] % (size // 12)
    if shape == "disc":
        draw.ellipse([m, m, size - m, size - m], fill=rgb)
    elif shape == "cup":
        draw.rectangle([m, m + 20, size - 2 * m, size - m], fill=rgb)
        draw.ellipse([size - 2 * m - 20, size // 2 - 40, size - m + 10, size // 2 + 40], outline=rgb, width=18)
    elif shape == "shoe":
        draw.polygon(
            [(m, size - m), (m, size // 2), (size // 2, size // 2), (size - m, size - 2 * m), (size - m, size - m)],
            fill=rgb,
        )
    elif shape == "shirt":
        draw.polygon(
            [
                (m, m + 40),
                (size // 3, m),
                (2 * size // 3, m),
                (size - m, m + 40),
                (size - m - 30, m + 90),
                (2 * size // 3, m + 70),
                (2 * size // 3, size - m),
                (size // 3, size - m),
                (size // 3, m + 70),
                (m + 30, m + 90),
            ],
            fill=rgb,
        )
    elif shape == "bar":
        draw.rounded_rectangle([m // 2, size // 2 - m // 2, size - m // 2, size // 2 + m // 2], radius=12, fill=rgb)
    else:  # box
        draw.rectangle([m, m, size - m, size - m], fill=rgb)
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


@transaction.atomic
def load_demo_catalogue(*, seller_password: str) -> int:
    """Create the sample sellers (each with ``seller_password``, so that an app can get
    a token for one), categories and listings. Idempotent: the listings are made once,
    in one transaction, when the sample sellers have none; a listing a seller edited or
    deleted since is not made again (a restart made an edited title's listing anew,
    flagged as a repost). Returns how many were created."""
    User = get_user_model()
    sellers = {}
    for name in SELLERS:
        sellers[name], created = User.objects.get_or_create(username=name, defaults={"email": f"{name}@example.com"})
        if created:
            sellers[name].set_password(seller_password)
            sellers[name].save(update_fields=["password"])
    categories = {
        name: Category.objects.get_or_create(name=name, defaults={"slug": name.lower()})[0] for name in CATEGORIES
    }
    if Listing.objects.filter(seller__in=sellers.values()).exists():
        return 0
    created = 0
    photos = {}
    for seller, title, description, category, price, colour, shape in LISTINGS:
        photos[title] = draw_photo(colour, shape, seed=title)
        created += _create(sellers[seller], title, description, categories[category], price, photos[title])
    seller, title, description, category, price, source_title = REUSED_PHOTO
    created += _create(sellers[seller], title, description, categories[category], price, photos[source_title])
    return created


def _create(seller, title, description, category, price, photo: bytes) -> int:
    listing = Listing(seller=seller, title=title, description=description, category=category, price=Decimal(price))
    listing.image.save(f"{hashlib.sha256(photo).hexdigest()[:16]}.jpg", ContentFile(photo), save=False)
    listing.save()
    return 1
