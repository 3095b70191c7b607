"""A run log: every execution of a logged task writes one row, so tests can count runs."""

from django.db import models


class Run(models.Model):
    key = models.CharField(max_length=100)
    task_id = models.CharField(max_length=40, blank=True)
    attempt = models.IntegerField(default=0)
    pid = models.IntegerField(default=0)
    started = models.DateTimeField(auto_now_add=True)
    ended = models.DateTimeField(null=True)


class Note(models.Model):
    """Business data written in the same transaction as an enqueue."""

    text = models.CharField(max_length=100)


class Counter(models.Model):
    """A row tasks add to: counts effects, not runs (exactly-once tests)."""

    name = models.CharField(max_length=50, unique=True)
    value = models.IntegerField(default=0)
