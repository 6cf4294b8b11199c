"""An index on the status history's time: the admin lists the newest first, and retention
removes the oldest, without reading the whole table."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("collectors", "0004_accounts")]

    operations = [
        migrations.AddIndex(
            model_name="collectorstatus",
            index=models.Index(fields=["-recorded_at"], name="collector_status_time_idx"),
        ),
    ]
