from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("moderation", "0005_heartbeat"),
    ]

    operations = [
        migrations.CreateModel(
            name="Drain",
            fields=[
                ("label", models.CharField(max_length=100, primary_key=True, serialize=False)),
                ("queued_at", models.DateTimeField(null=True)),
            ],
        ),
    ]
