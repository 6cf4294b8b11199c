"""An index on market_data's time alone: the newest rows of all types (the admin's list)
are read from it instead of sorting the whole table. On PostgreSQL it is built on every
partition, and partitions attached later get it too."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("marketdata", "0006_lifecycle_schedules")]

    operations = [
        migrations.AddIndex(
            model_name="marketdata",
            index=models.Index(fields=["timestamp"], name="market_data_ts_idx"),
        ),
    ]
