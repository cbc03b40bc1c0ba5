from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("models_registry", "0005_copy_run_and_snapshot_links")]

    operations = [
        migrations.RemoveField(model_name="modelversion", name="training_run_ref"),
        migrations.RemoveField(model_name="modelversion", name="dataset_snapshot_ref"),
    ]
