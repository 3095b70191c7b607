"""The tasks module of docs/testing.md (``myapp/tasks.py`` there): one task that sends
an email, tested by tests/test_testing_guide.py. Example::

    send_welcome.enqueue(user.pk)
"""

from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.tasks import task


@task(queue_name="emails", max_attempts=3)
def send_welcome(user_id):
    user = User.objects.get(pk=user_id)
    send_mail("Welcome", f"Hello {user.username}!", "shop@example.com", [user.email])
    return user.email
