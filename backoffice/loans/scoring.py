"""Risk score and offer terms, from the cash-flow metrics and the credit report."""

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

GRADES = (("A", 740), ("B", 680), ("C", 620), ("D", 560), ("E", 0))
APR = {"A": Decimal("7.90"), "B": Decimal("10.50"), "C": Decimal("14.90"), "D": Decimal("21.00"),
       "E": Decimal("29.00")}


def score(metrics, report, years_in_business):
    """300–850 (higher is safer), a grade and the reasons that moved it most."""
    if metrics["avg_monthly_inflow"] <= 0:
        return 300, "E", ["no money coming in on the statement"]
    points = [("bureau score", (report["bureau_score"] - 680) * 0.55)]
    inflow = metrics["avg_monthly_inflow"] or 1.0
    points.append(("net cash flow", max(-60.0, min(60.0, metrics["avg_monthly_net"] / inflow * 400))))
    points.append(("days overdrawn", -min(80.0, metrics["negative_days"] * 0.8)))
    points.append(("overdraft fees", -min(40.0, metrics["overdraft_events"] * 2.0)))
    points.append(("revenue volatility", -min(40.0, (metrics["inflow_volatility"] or 0) * 60)))
    points.append(("stress test", -metrics["stress_overdraft_probability"] * 70))
    points.append(("revenue trend", max(-30.0, min(30.0, metrics["net_trend"] * 600))))
    points.append(("time in business", min(25.0, years_in_business * 4.0) - 10))
    points.append(("delinquencies", -report["delinquencies"] * 15.0))
    value = round(max(300, min(850, 680 + sum(p for _, p in points))))
    grade = next(g for g, low in GRADES if value >= low)
    reasons = [f"{name} {p:+.0f}" for name, p in sorted(points, key=lambda x: -abs(x[1]))[:4]]
    return value, grade, reasons


MIN_LOAN = Decimal(1000)
CENT = Decimal("0.01")


def offer_terms(requested, term_months, grade, metrics):
    """The loan offered: at most the request, and at most what a payment of a quarter
    of the average monthly inflow repays over the term (rounded down to hundreds).
    ``None`` when that is under MIN_LOAN: there is nothing to offer."""
    apr = APR[grade]
    rate = apr / Decimal(1200)
    factor = (rate * (1 + rate) ** term_months) / ((1 + rate) ** term_months - 1)
    affordable_payment = Decimal(str(max(0.0, metrics["avg_monthly_inflow"] * 0.25)))
    affordable = (affordable_payment / factor).quantize(Decimal("1E2"), ROUND_DOWN).quantize(CENT)
    amount = min(Decimal(str(requested)).quantize(CENT), affordable)
    if amount < MIN_LOAN:
        return None
    payment = (amount * factor).quantize(CENT, ROUND_HALF_UP)
    return {"amount": amount, "apr": apr, "term_months": term_months, "monthly_payment": payment}
