import django.core.serializers.json
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def move_content_types(apps, schema_editor):
    """Admin permissions and log entries on these models follow them to `lots`."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="bids", model__in=["lotevent", "notification"]).update(app_label="lots")


def move_content_types_back(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="lots", model__in=["lotevent", "notification"]).update(app_label="bids")


class Migration(migrations.Migration):
    """`LotEvent` and `Notification` move here from `bids` (bids 0007): state only, the tables keep their names."""

    dependencies = [
        ('lots', '0004_lot_alias'),
        ('bids', '0007_lot_records_move_to_lots'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='LotEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('seq', models.PositiveBigIntegerField()),
                        ('type', models.CharField(max_length=32)),
                        ('text', models.TextField()),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('lot', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='events', to='lots.lot')),
            ],
            options={
                'db_table': 'bids_lotevent',
                'ordering': ['lot', 'seq'],
                'constraints': [models.UniqueConstraint(fields=('lot', 'seq'), name='lot_event_seq_unique')],
            },
        ),
        migrations.CreateModel(
            name='Notification',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('type', models.CharField(max_length=32)),
                ('payload', models.JSONField(encoder=django.core.serializers.json.DjangoJSONEncoder)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('email_state', models.CharField(choices=[('pending', 'Pending'), ('sent', 'Sent'), ('skipped', 'Skipped'), ('failed', 'Failed')], db_default='pending', default='pending', max_length=8)),
                ('email_attempts', models.PositiveSmallIntegerField(db_default=0, default=0)),
                ('email_next_try_at', models.DateTimeField(blank=True, null=True)),
                ('email_error', models.CharField(blank=True, db_default='', default='', max_length=500)),
                ('emailed_at', models.DateTimeField(blank=True, null=True)),
                ('lot', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='lots.lot')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'db_table': 'bids_notification',
                'ordering': ['-id'],
                'indexes': [models.Index(fields=['user', '-id'], name='bids_notifi_user_id_62aa32_idx'), models.Index(condition=models.Q(('email_state', 'pending')), fields=['email_next_try_at', 'id'], name='notification_email_pending')],
                'constraints': [models.CheckConstraint(condition=models.Q(('email_state__in', ['pending', 'sent', 'skipped', 'failed'])), name='notification_email_state_valid'), models.CheckConstraint(condition=models.Q(models.Q(('email_state', 'sent'), ('emailed_at__isnull', False)), models.Q(models.Q(('email_state', 'sent'), _negated=True), ('emailed_at__isnull', True)), _connector='OR'), name='notification_emailed_at_iff_sent')],
            },
        ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, move_content_types_back),
    ]
