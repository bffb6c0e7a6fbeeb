from django.db import migrations


class Migration(migrations.Migration):
    """`LotEvent` and `Notification` are lot-level records: they move to the `lots` app (lots 0005).

    State only: the tables keep their names and rows.
    """

    dependencies = [
        ("bids", "0006_notification_email_queue"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="LotEvent"),
                migrations.DeleteModel(name="Notification"),
            ],
            database_operations=[],
        ),
    ]
