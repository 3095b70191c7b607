from decimal import Decimal

from django import forms

from loans import statements

INDUSTRIES = ["Bakery", "Café", "Construction", "Consulting", "Florist", "Hair salon", "Logistics",
              "Manufacturing", "Restaurant", "Retail", "Software", "Veterinary clinic"]


class ApplyForm(forms.Form):
    business_name = forms.CharField(max_length=120)
    owner_name = forms.CharField(max_length=120, label="Your name")
    email = forms.EmailField()
    industry = forms.ChoiceField(choices=[(i, i) for i in INDUSTRIES])
    years_in_business = forms.IntegerField(min_value=0, max_value=200)
    amount = forms.DecimalField(min_value=Decimal(1000), max_value=Decimal(500_000), decimal_places=2,
                                help_text="Between 1,000 and 500,000.")
    term_months = forms.TypedChoiceField(coerce=int, choices=[(m, f"{m} months") for m in (6, 12, 24, 36, 60)],
                                         initial=24, label="Term")
    purpose = forms.CharField(max_length=200)
    statement = forms.FileField(label="Bank statement (CSV)",
                                help_text="Columns date,description,amount,balance; at least 28 days.")

    def clean_statement(self):
        upload = self.cleaned_data["statement"]
        if upload.size > statements.MAX_BYTES:
            raise forms.ValidationError(f"The file is larger than {statements.MAX_BYTES // 1024 // 1024} MiB; "
                                        "export a shorter period.")
        content = upload.read()
        try:
            statements.parse(content)
        except statements.StatementError as exc:
            raise forms.ValidationError(str(exc)) from None
        self.statement_content = content
        return upload


class DecisionForm(forms.Form):
    action = forms.ChoiceField(choices=[("approve", "Approve"), ("decline", "Decline")])
    note = forms.CharField(max_length=500, required=False)
    request_key = forms.RegexField(regex=r"^[A-Za-z0-9_-]{8,64}$")


class QueueFilter(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "Any status")])
    grade = forms.ChoiceField(required=False, choices=[("", "Any grade")] + [(g, g) for g in "ABCDE"])
    q = forms.CharField(required=False, label="Search", max_length=100)

    def __init__(self, *args, **kwargs):
        from loans.models import Application

        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", "Any status"), *Application.Status.choices]
