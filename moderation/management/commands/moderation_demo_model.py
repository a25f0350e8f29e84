from django.core.management.base import BaseCommand, CommandError

from moderation.embedders.demo_model import MODEL_ID, build_colour_words_model


class Command(BaseCommand):
    help = (
        "Write the colour-words demo model (a tiny CLIP look-alike in the split ONNX layout that only "
        "understands colours) into a folder, to try the app without a real CLIP model. Needs the `onnx` "
        "package (pip install 'listing-moderation[onnx,demo]')."
    )
    # The checks would warn (moderation.W001) that the model folder this command is
    # about to write is missing.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "folder", help="Where to write it; point MODERATION['EMBEDDER']['OPTIONS']['model_dir'] here."
        )

    def handle(self, *args, folder, **options):
        try:
            written = build_colour_words_model(folder)
        except ImportError as exc:
            raise CommandError(
                f"{exc}. Install the demo's extras: pip install 'listing-moderation[onnx,demo]'."
            ) from None
        self.stdout.write(f"{MODEL_ID} written to {written}")
