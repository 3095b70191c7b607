# Statistics per task path (the dashboard's per-task table, docs/operations.md).
#
# The counted series gain the task's path, which changes the upsert's conflict target.
# Workers of the previous release still name offload_stat and its six-column target
# during a rolling deploy, so their table stays as it is (model LegacyStat) and this
# release counts into a new one, offload_series, with the task path. Maintenance moves
# offload_stat's rows into offload_series (task_path ""), and the readers sum both, so
# no count is lost or counted twice while both releases run. A later release drops
# offload_stat.
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('offload', '0014_bucket_starts'),
    ]

    operations = [
        migrations.RenameModel('TaskStat', 'LegacyStat'),
        migrations.AlterModelOptions(name='legacystat', options={}),
        migrations.CreateModel(
            name='TaskStat',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('backend', models.CharField(max_length=64)),
                ('minute', models.DateTimeField()),
                ('worker', models.CharField(blank=True, max_length=100)),
                ('queue_name', models.CharField(max_length=100)),
                ('priority', models.SmallIntegerField()),
                ('task_path', models.CharField(blank=True, default='', max_length=255)),
                ('outcome', models.CharField(max_length=10)),
                ('tasks', models.BigIntegerField(default=0)),
                ('ran', models.BigIntegerField(default=0)),
                ('wait_sum', models.FloatField(default=0.0)),
                ('run_sum', models.FloatField(default=0.0)),
                ('wait_le_2ms', models.BigIntegerField(default=0)),
                ('wait_le_5ms', models.BigIntegerField(default=0)),
                ('wait_le_10ms', models.BigIntegerField(default=0)),
                ('wait_le_25ms', models.BigIntegerField(default=0)),
                ('wait_le_50ms', models.BigIntegerField(default=0)),
                ('wait_le_100ms', models.BigIntegerField(default=0)),
                ('wait_le_250ms', models.BigIntegerField(default=0)),
                ('wait_le_500ms', models.BigIntegerField(default=0)),
                ('wait_le_1000ms', models.BigIntegerField(default=0)),
                ('wait_le_2500ms', models.BigIntegerField(default=0)),
                ('wait_le_5000ms', models.BigIntegerField(default=0)),
                ('wait_le_10000ms', models.BigIntegerField(default=0)),
                ('wait_le_30000ms', models.BigIntegerField(default=0)),
                ('wait_le_60000ms', models.BigIntegerField(default=0)),
                ('wait_le_300000ms', models.BigIntegerField(default=0)),
                ('wait_le_3600000ms', models.BigIntegerField(default=0)),
                ('run_le_2ms', models.BigIntegerField(default=0)),
                ('run_le_5ms', models.BigIntegerField(default=0)),
                ('run_le_10ms', models.BigIntegerField(default=0)),
                ('run_le_25ms', models.BigIntegerField(default=0)),
                ('run_le_50ms', models.BigIntegerField(default=0)),
                ('run_le_100ms', models.BigIntegerField(default=0)),
                ('run_le_250ms', models.BigIntegerField(default=0)),
                ('run_le_500ms', models.BigIntegerField(default=0)),
                ('run_le_1000ms', models.BigIntegerField(default=0)),
                ('run_le_2500ms', models.BigIntegerField(default=0)),
                ('run_le_5000ms', models.BigIntegerField(default=0)),
                ('run_le_10000ms', models.BigIntegerField(default=0)),
                ('run_le_30000ms', models.BigIntegerField(default=0)),
                ('run_le_60000ms', models.BigIntegerField(default=0)),
                ('run_le_300000ms', models.BigIntegerField(default=0)),
                ('run_le_3600000ms', models.BigIntegerField(default=0)),
            ],
            options={
                'verbose_name': 'task statistic',
                'db_table': 'offload_series',
                'constraints': [models.UniqueConstraint(
                    fields=('backend', 'minute', 'worker', 'queue_name', 'priority', 'task_path', 'outcome'),
                    name='offload_series_unique')],
            },
        ),
    ]
