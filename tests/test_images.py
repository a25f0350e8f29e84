"""Safe decoding of untrusted photos: each hostile or odd input gives the right error or RGB."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from moderation.embedders import PermanentEmbedError
from moderation.embedders.images import to_rgb
from moderation.models import ModerationStatus
from tests.helpers import decode_image, image_bytes, score_now


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def decode_error(data: bytes, **options) -> str:
    with pytest.raises(PermanentEmbedError) as caught:
        decode_image(data, **options)
    return caught.value.code


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_allowed_formats_decode_to_rgb(fmt):
    image = decode_image(image_bytes((200, 30, 30), fmt=fmt))
    assert image.mode == "RGB"
    assert image.size == (64, 64)
    r, g, _b = image.getpixel((32, 32))
    assert r > 150
    assert g < 80


def test_a_format_outside_the_allow_list_is_refused():
    assert decode_error(image_bytes(fmt="BMP")) == "image_format"
    assert decode_error(image_bytes(fmt="PNG"), formats=["JPEG"]) == "image_format"


def test_bytes_that_are_not_an_image_are_refused():
    assert decode_error(b"<html>definitely not a photo</html>") == "image_format"
    assert decode_error(b"") == "image_empty"


def test_too_many_pixels_are_refused_before_decoding():
    big = encode(Image.new("1", (6000, 5000)), "PNG")  # tiny file, 30 megapixels
    assert len(big) < 100_000
    assert decode_error(big, max_pixels=20_000_000) == "image_pixels"


def test_a_decompression_bomb_is_refused():
    bomb = encode(Image.new("1", (20000, 20000)), "PNG")  # 400 megapixels, past Pillow's own limit
    assert decode_error(bomb, max_pixels=10**12) == "image_pixels"


def test_too_many_bytes_are_refused():
    assert decode_error(image_bytes(), max_bytes=10) == "image_too_large"


def half_of(fmt: str) -> bytes:
    """A noisy photo in ``fmt`` cut to half its bytes, as an interrupted upload leaves it."""
    data = encode(Image.effect_noise((256, 256), 60).convert("RGB"), fmt)
    return data[: len(data) // 2]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_a_file_cut_to_half_is_refused_as_truncated(fmt):
    assert decode_error(half_of(fmt)) == "image_truncated"


def decode_message(data: bytes) -> tuple[str, str]:
    with pytest.raises(PermanentEmbedError) as caught:
        decode_image(data)
    return caught.value.code, str(caught.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_a_file_cut_short_anywhere_is_refused_as_truncated(fmt):
    data = encode(Image.effect_noise((64, 64), 60).convert("RGB"), fmt)
    # Every cut from inside the signature to the last byte: in the headers (a JPEG's
    # first 177 bytes were "Truncated File Read." and "cannot load this image.", code
    # image_corrupt; a GIF's first 791, its palette, image_format), in the picture,
    # before its end marker. A cut that leaves the whole picture decodes.
    codes = {}
    for length in range(2, len(data)):
        try:
            decode_image(data[:length])
        except PermanentEmbedError as error:
            codes.setdefault(error.code, length)
    assert set(codes) == {"image_truncated"}, codes


def test_decoder_messages_are_ours_not_pillows():
    jpeg = encode(Image.effect_noise((64, 64), 60).convert("RGB"), "JPEG")
    assert decode_message(jpeg[:6]) == (
        "image_truncated",
        "The image is truncated: the file ends before the picture does.",
    )
    assert decode_message(half_of("WEBP"))[1] == "The image is truncated: the file ends before the picture does."
    code, message = decode_message(png_with_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(bytes(50 * 1024 * 1024))))
    assert code == "image_corrupt"
    assert message == "The image could not be decoded: the file is damaged or not a valid image."
    assert "MAX_TEXT_CHUNK" not in message


def png_with_chunk(kind: bytes, payload: bytes) -> bytes:
    """A valid 8x8 PNG with one more chunk before its pixels, CRC and all."""
    data = encode(Image.new("RGB", (8, 8), (200, 30, 30)), "PNG")
    chunk = struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr_end = 8 + 4 + 4 + 13 + 4
    return data[:ihdr_end] + chunk + data[ihdr_end:]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_a_stored_file_cut_to_half_puts_the_listing_in_error_without_retry(fmt, demo_moderation, listing_factory):
    listing = listing_factory(stored_image=half_of(fmt))
    score_now(listing)
    assert listing.moderation_status == ModerationStatus.ERROR
    assert listing.moderation_error == "image_truncated"
    assert listing.moderation_retry_at is None


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    upright = decode_image(encode(image, "JPEG", exif=exif.tobytes()))
    assert upright.size == (20, 40)
    assert upright.getpixel((10, 5))[0] > 200  # red is now on top


def test_cmyk_is_converted_to_rgb():
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG")
    image = decode_image(data)
    assert image.mode == "RGB"
    assert image.getpixel((8, 8))[0] > 200


def test_palette_transparency_becomes_white():
    image = Image.new("P", (16, 16), 0)
    image.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    image.info["transparency"] = 0
    decoded = decode_image(encode(image, "PNG", transparency=0))
    assert decoded.getpixel((8, 8)) == (255, 255, 255)


def test_la_transparency_becomes_white():
    decoded = decode_image(encode(Image.new("LA", (16, 16), (0, 0)), "PNG"))
    assert decoded.getpixel((8, 8)) == (255, 255, 255)


def test_sixteen_bit_greyscale_keeps_its_tones():
    square = np.full((64, 64), 65535, dtype=np.uint16)
    square[16:48, 16:48] = 32768
    decoded = decode_image(encode(Image.fromarray(square), "PNG"))
    assert decoded.getpixel((32, 32)) == (128, 128, 128)
    assert decoded.getpixel((2, 2)) == (255, 255, 255)
    uniform = decode_image(encode(Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16)), "PNG"))
    assert uniform.getpixel((8, 8)) == (255, 255, 255)


def test_thirty_two_bit_integer_samples_are_read_as_sixteen_bit():
    # Pillow has opened 16-bit greyscale PNGs as mode "I" (older versions, some encoders).
    image = Image.fromarray(np.full((8, 8), 32768, dtype=np.int32))
    assert image.mode == "I"
    assert to_rgb(image).getpixel((4, 4)) == (128, 128, 128)


def test_a_sixteen_bit_grey_photo_agrees_with_its_text_like_the_eight_bit_one(demo_moderation, listing_factory, photo):
    grey = np.asarray(Image.open(io.BytesIO(photo("grey", "cup"))).convert("L"), dtype=np.uint16)
    eight = listing_factory(title="Grey mug", stored_image=encode(Image.fromarray(grey.astype(np.uint8)), "PNG"))
    score_now(eight)
    # Scored apart: beside the first, the same picture and title would be its seller's
    # repost, or another seller's duplicate.
    eight.delete()
    sixteen = listing_factory(title="Grey mug", stored_image=encode(Image.fromarray(grey * 257), "PNG"))
    score_now(sixteen)
    assert eight.moderation_status == sixteen.moderation_status == ModerationStatus.OK
    assert sixteen.consistency_score == pytest.approx(eight.consistency_score, abs=0.01)


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    array = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (8, 1))
    decoded = decode_image(encode(Image.fromarray(array), "PNG"))
    row = [decoded.getpixel((x, 4))[0] for x in (0, 32, 63)]
    assert row[0] < 10
    assert 100 < row[1] < 160
    assert row[2] > 245


def test_one_bit_images_are_converted():
    assert decode_image(encode(Image.new("1", (16, 16), 1), "PNG")).getpixel((0, 0)) == (255, 255, 255)


def test_an_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(data).getpixel((8, 8))[0] > 200


def test_jpeg_draft_mode_decodes_large_photos_at_a_reduced_size():
    data = encode(Image.new("RGB", (2048, 1536), (10, 200, 10)), "JPEG")
    image = decode_image(data, draft_size=224)
    assert 224 <= min(image.size) < 768
    assert decode_image(data).size == (2048, 1536)
