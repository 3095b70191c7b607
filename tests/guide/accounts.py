"""Application code of docs/testing.md (``myapp/accounts.py`` there): signing up
creates the user and enqueues the welcome email in one transaction. Example::

    sign_up("ada", "ada@example.com")
"""

from django.contrib.auth.models import User
from django.db import transaction

from tests.guide.tasks import send_welcome


def sign_up(username, email):
    with transaction.atomic():
        user = User.objects.create(username=username, email=email)
        send_welcome.enqueue(user.pk)  # written in this transaction: both or neither
    return user
