"""Documents the async server makes: the offer letter (PDF, fpdf2) and the portfolio
report's chart (SVG, matplotlib)."""

import io

from django.utils import timezone


def _unicode_fonts(pdf):
    """DejaVu Sans (shipped with matplotlib): names in Latin, Greek and Cyrillic scripts
    print, where the PDF core fonts know only Latin-1 and would fail the task. (Glyphs
    DejaVu lacks, such as CJK, come out blank, with a warning in the log.)"""
    from pathlib import Path

    import matplotlib

    fonts = Path(matplotlib.get_data_path()) / "fonts/ttf"
    pdf.add_font("DejaVu", "", fonts / "DejaVuSans.ttf")
    pdf.add_font("DejaVu", "B", fonts / "DejaVuSans-Bold.ttf")


def offer_letter(application, offer):
    from fpdf import FPDF

    applicant = application.applicant
    pdf = FPDF(format="A4")
    _unicode_fonts(pdf)
    pdf.set_title(f"Loan offer {application.reference}")
    pdf.set_author("Offload Lending Back Office")
    pdf.set_creation_date(timezone.now())
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 18)
    pdf.cell(0, 12, "Loan offer", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", size=11)
    pdf.cell(0, 7, f"Reference {application.reference}  ·  {timezone.now():%d %B %Y}",
             new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.multi_cell(0, 6, f"Dear {applicant.owner_name},\n\nThank you for applying on behalf of "
                         f"{applicant.business_name}. We are pleased to offer the loan below. "
                         "The offer is valid for 30 days from the date of this letter.")
    pdf.ln(4)
    rows = [("Loan amount", f"{offer.amount:,.2f}"), ("Annual percentage rate", f"{offer.apr}%"),
            ("Term", f"{offer.term_months} months"), ("Monthly payment", f"{offer.monthly_payment:,.2f}"),
            ("Total repayable", f"{offer.total_repayable:,.2f}"), ("Purpose", application.purpose)]
    with pdf.table(col_widths=(60, 110), text_align=("LEFT", "RIGHT")) as table:
        for label, value in rows:
            table.row((label, value))
    pdf.ln(6)
    pdf.multi_cell(0, 6, "To accept, open your application's status page and choose Accept offer. "
                         "Funds are usually paid within two working days of acceptance.")
    return bytes(pdf.output())


def volume_chart(weeks):
    """``weeks``: [(week start, applications, accepted amount)] → SVG text."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=100)
    ax = fig.add_subplot()
    labels = [w.strftime("%d %b") for w, _, _ in weeks]
    ax.bar(labels, [n for _, n, _ in weeks], color="#90cdf4", label="applications")
    ax.set_ylabel("applications")
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    twin = ax.twinx()
    twin.plot(labels, [float(a) / 1000 for _, _, a in weeks], color="#2f855a", marker="o",
              label="accepted (thousands)")
    twin.set_ylabel("accepted, thousands")
    ax.set_title("Applications and accepted volume by week")
    fig.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out = io.StringIO()
    fig.savefig(out, format="svg")
    return out.getvalue()
