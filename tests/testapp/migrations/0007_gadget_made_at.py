import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("testapp", "0006_moderation_thresholds"),
    ]

    operations = [
        migrations.AddField(
            model_name="gadget",
            name="made_at",
            field=models.DateTimeField(auto_now_add=True, default=django.utils.timezone.now),
            preserve_default=False,
        ),
    ]
