"""Load a realistic demo data set: a staff login and a few hundred applications with
generated bank statements.

Most applications are history (analysed, scored and decided at load time, spread
over the last twelve weeks); the newest are left ``submitted`` with their pipeline
enqueued, so the async server has real work the moment it starts.

    manage.py seed_demo --if-empty
"""

import random
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone
from rich.progress import Progress

from loans import bureau, scoring, statements, workflow
from loans.forms import INDUSTRIES
from loans.models import Applicant, Application, CashFlow, CreditReport, Decision, Document, Offer, Score

S = Application.Status
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Linus",
         "Radia", "Guido", "Katherine", "Tim", "Hedy", "John", "Sophie", "Dennis", "Karen", "Niklaus"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton",
        "Torvalds", "Perlman", "van Rossum", "Johnson", "Berners-Lee", "Lamarr", "McCarthy", "Wilson",
        "Ritchie", "Spärck Jones", "Wirth"]
WORDS = ["Corner", "Harbour", "Northside", "Oak", "Riverside", "Summit", "Blue Door", "Golden", "Maple",
         "Old Town", "Hilltop", "Lantern"]
PURPOSES = ["New oven and equipment", "Working capital for the busy season", "Second delivery van",
            "Shop refurbishment", "Hiring two staff", "Inventory for a new product line", "Refinance a card balance"]


class Command(BaseCommand):
    help = "Load demo data: a staff user and applications with generated bank statements."

    def add_arguments(self, parser):
        parser.add_argument("--applications", type=int, default=300)
        parser.add_argument("--pending", type=int, default=24,
                            help="how many of them are left submitted, for the async server to process")
        parser.add_argument("--if-empty", action="store_true", help="do nothing if applications exist")
        parser.add_argument("--staff-password", default="staff")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, applications, pending, if_empty, staff_password, seed, **options):
        # Two logins, so two underwriters can act on one application at once.
        if not User.objects.filter(username="staff").exists():
            User.objects.create_superuser("staff", "staff@example.com", staff_password)
        if not User.objects.filter(username="underwriter").exists():
            underwriter = User.objects.create_user("underwriter", "underwriter@example.com",
                                                   staff_password, is_staff=True)
            # The task dashboard: see tasks and retry a failed credit check (not pause queues).
            underwriter.user_permissions.add(*Permission.objects.filter(
                content_type__app_label="offload", codename__in=["view_taskrow", "change_taskrow"]))
        if if_empty and Application.objects.exists():
            self.stdout.write("Demo data already loaded.")
        else:
            self._load(applications, pending, seed)
        url = settings.LOANS_PUBLIC_URL.rstrip("/")
        self.stdout.write(self.style.SUCCESS(
            f"\nBack Office: {url}/  (apply as a business)\n"
            f"Staff pages: {url}/staff/  login staff / {staff_password}  (or underwriter / {staff_password})\n"
            f"Task dashboard: {url}/offload/\n"))

    def _load(self, applications, pending, seed):
        rng = random.Random(seed)
        staff = User.objects.get(username="staff")
        now = timezone.now()
        with Progress(transient=False) as progress:
            job = progress.add_task("Loading demo applications", total=applications)
            for i in range(applications):
                fresh = i >= applications - pending
                created = now - (timedelta(seconds=rng.uniform(0, 600)) if fresh
                                 else timedelta(days=rng.uniform(0.5, 84)))
                with transaction.atomic():
                    self._one(rng, i, created, staff, fresh)
                progress.advance(job)

    def _one(self, rng, i, created, staff, fresh):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        industry = rng.choice(INDUSTRIES)
        business = f"{rng.choice(WORDS)} {industry}" + (f" {i}" if rng.random() < 0.3 else "")
        csv_text = statements.generate(f"demo-{i}", months=rng.choice((3, 6, 12)), end=created.date())
        content = csv_text.encode()
        fields = dict(applicant={"business_name": business, "owner_name": f"{first} {last}",
                                 "email": f"{first.lower()}.{i}@example.com", "industry": industry,
                                 "years_in_business": rng.randint(0, 30)},
                      amount=Decimal(rng.choice((5, 10, 15, 25, 40, 60, 80, 120, 200)) * 1000),
                      term_months=rng.choice((12, 24, 36, 60)), purpose=rng.choice(PURPOSES))
        if fresh:
            application = workflow.submit(**fields, filename=f"statement-{i}.csv", content=content)
            Application.objects.filter(pk=application.pk).update(created_at=created)
            return
        applicant = Applicant.objects.create(**fields.pop("applicant"))
        application = Application.objects.create(applicant=applicant, created_at=created, **fields)
        Document.objects.create(application=application, filename=f"statement-{i}.csv", content=content)
        metrics = statements.analyse(statements.parse(content))
        CashFlow.objects.create(application=application, metrics=metrics)
        report = bureau.report_for(applicant.business_name, applicant.owner_name)
        CreditReport.objects.create(application=application, **report)
        value, grade, reasons = scoring.score(metrics, report, applicant.years_in_business)
        Score.objects.create(application=application, value=value, grade=grade, reasons=reasons)
        status = S.SCORED
        if created < timezone.now() - timedelta(days=2) or rng.random() < 0.5:
            terms = scoring.offer_terms(application.amount, application.term_months, grade, metrics)
            approve = bool(terms) and (grade in "ABC" or (grade == "D" and rng.random() < 0.3))
            Decision.objects.create(application=application, approved=approve, decided_by=staff,
                                    request_key=f"seed-{application.pk}")
            status = S.DECLINED
            if approve:
                offer = Offer.objects.create(application=application, **terms)
                status = S.OFFERED
                if rng.random() < 0.7:
                    status = S.ACCEPTED
                    offer.accepted_at = created + timedelta(days=rng.uniform(0.2, 3))
                    offer.save(update_fields=["accepted_at"])
                from loans import tasks

                workflow.start(application, tasks.make_offer_letter, False)  # history: no email
        Application.objects.filter(pk=application.pk).update(status=status)
