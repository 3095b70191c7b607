"""Bank statements: generate (demo data, load tests), parse (uploads) and analyse
(the async server's CPU work).

A statement is a CSV file with a header and one line per transaction::

    date,description,amount,balance
    2026-01-02,CARD SALES SETTLEMENT,1834.20,12034.20
    2026-01-02,RENT - UNIT 4,-2400.00,9634.20

``amount`` is signed (money in is positive); ``balance`` is the running balance after
the line. Lines must be in date order.
"""

import csv
import io
import itertools
import math
import random
import statistics
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

COLUMNS = ("date", "description", "amount", "balance")
MAX_BYTES = 2 * 1024 * 1024
MIN_DAYS = 28
MAX_DAYS = 2 * 366
#: Largest amount or balance accepted (a small business; also keeps floats finite).
MAX_AMOUNT = Decimal("1e9")
OVERDRAFT_WORDS = {"NSF", "OVERDRAFT", "RETURNED"}
STRESS_PATHS, STRESS_DAYS = 2000, 90


class StatementError(ValueError):
    """The file is not a statement we can read; the message says where and how to fix it."""


@dataclass(frozen=True)
class Line:
    day: date
    description: str
    amount: Decimal
    balance: Decimal


def parse(data):
    """``bytes`` or ``str`` → list of :class:`Line`, or :class:`StatementError`."""
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            raise StatementError(f"The file is {len(data) // 1024} KiB; statements up to "
                                 f"{MAX_BYTES // 1024 // 1024} MiB are accepted. Export a shorter period.")
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise StatementError("The file is not UTF-8 text. Export the statement as CSV "
                                 "(not Excel or PDF) and upload that.") from None
    reader = csv.reader(io.StringIO(data))
    try:
        return _lines(reader)
    except csv.Error as exc:  # e.g. an unclosed quote, or a field over the csv module's limit
        raise StatementError(f"Line {reader.line_num}: the file is not valid CSV ({exc}). "
                             "Export the statement as CSV again.") from None


def _lines(reader):
    header = next(reader, None)
    if header is None:
        raise StatementError("The file is empty. Export the statement as CSV and upload it again.")
    names = [h.strip().lower() for h in header]
    if names[:4] != list(COLUMNS):
        raise StatementError(f"Line 1 must be the header {','.join(COLUMNS)}; found "
                             f"{','.join(header)[:80]!r}. Export the statement as CSV with these columns.")
    lines, latest = [], date.today() + timedelta(days=1)  # a day's slack for time zones
    for number, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < 4:
            raise StatementError(f"Line {number} has {len(row)} columns; expected 4 ({','.join(COLUMNS)}).")
        try:
            day = date.fromisoformat(row[0].strip())
        except ValueError:
            raise StatementError(f"Line {number}: {row[0][:20]!r} is not a date; use YYYY-MM-DD.") from None
        try:
            amount, balance = Decimal(row[2].strip()), Decimal(row[3].strip())
        except InvalidOperation:
            raise StatementError(f"Line {number}: amount and balance must be numbers like -12.50 "
                                 f"(found {row[2][:20]!r}, {row[3][:20]!r}).") from None
        for value in (amount, balance):
            if not value.is_finite() or abs(value) > MAX_AMOUNT or value.as_tuple().exponent < -2:
                raise StatementError(f"Line {number}: {value!s:.20} is not an amount we accept: at most "
                                     f"{MAX_AMOUNT:,.0f} with at most 2 decimal places.")
        if day > latest:
            raise StatementError(f"Line {number}: {day} is in the future.")
        if lines and day < lines[-1].day:
            raise StatementError(f"Line {number}: {day} comes before the line above it; "
                                 "lines must be in date order.")
        lines.append(Line(day, row[1].strip()[:200], amount, balance))
    if not lines:
        raise StatementError("The file has a header but no transactions.")
    days = (lines[-1].day - lines[0].day).days + 1
    if days < MIN_DAYS:
        raise StatementError(f"The statement covers {days} days; at least {MIN_DAYS} are needed. "
                             "Export three months or more.")
    if days > MAX_DAYS:
        raise StatementError(f"The statement covers {days} days; at most {MAX_DAYS} are accepted. "
                             "Export the last twelve months.")
    return lines


def analyse(lines):
    """Cash-flow metrics an underwriter reads: monthly inflow and outflow, balances,
    overdraft signals, how steady revenue is and where it is heading."""
    months = {}
    for line in lines:
        bucket = months.setdefault((line.day.year, line.day.month), [Decimal(0), Decimal(0)])
        bucket[0 if line.amount > 0 else 1] += abs(line.amount)
    inflows = [float(m[0]) for m in months.values()]
    outflows = [float(m[1]) for m in months.values()]
    nets = [i - o for i, o in zip(inflows, outflows, strict=True)]
    # End-of-day balances, carried over days without transactions.
    closing = {}
    for line in lines:
        closing[line.day] = float(line.balance)
    day, end, balance, balances = lines[0].day, lines[-1].day, float(lines[0].balance), []
    while day <= end:
        balance = closing.get(day, balance)
        balances.append(balance)
        day += timedelta(days=1)
    mean_inflow = statistics.fmean(inflows)
    return {
        "months": len(months),
        "transactions": len(lines),
        "avg_monthly_inflow": round(mean_inflow, 2),
        "avg_monthly_outflow": round(statistics.fmean(outflows), 2),
        "avg_monthly_net": round(statistics.fmean(nets), 2),
        "avg_daily_balance": round(statistics.fmean(balances), 2),
        "min_balance": round(min(balances), 2),
        "negative_days": sum(1 for b in balances if b < 0),
        "overdraft_events": sum(1 for line in lines if OVERDRAFT_WORDS & set(line.description.upper().split())),
        # Coefficient of variation of monthly inflow: 0 is perfectly steady.
        "inflow_volatility": round(statistics.pstdev(inflows) / mean_inflow, 3) if mean_inflow else None,
        # Least-squares slope of monthly net cash flow, as a share of mean inflow per month.
        "net_trend": round(_slope(nets) / mean_inflow, 4) if mean_inflow and len(nets) > 1 else 0.0,
        "stress_overdraft_probability": stress(balances),
    }


def stress(balances, *, paths=STRESS_PATHS, days=STRESS_DAYS, seed=0):
    """Share of simulated next-``days`` paths in which the balance goes below zero:
    each path replays days drawn at random (with replacement) from the statement's
    own daily net flows, starting from today's balance. The CPU-heavy part."""
    flows = [b - a for a, b in itertools.pairwise(balances)] or [0.0]
    rng, start, broke = random.Random(seed), balances[-1], 0
    choices = rng.choices
    for _ in range(paths):
        balance = start
        for flow in choices(flows, k=days):
            balance += flow
            if balance < 0:
                broke += 1
                break
    return round(broke / paths, 4)


def _slope(values):
    xs = range(len(values))
    mx, my = statistics.fmean(xs), statistics.fmean(values)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, values, strict=True)) / den if den else 0.0


INCOME = ("CARD SALES SETTLEMENT", "TRANSFER FROM CUSTOMER", "STRIPE PAYOUT", "CASH DEPOSIT",
          "INVOICE PAYMENT")
COSTS = (("PAYROLL", 0.35), ("RENT", 0.12), ("SUPPLIER INVOICE", 0.25), ("UTILITIES", 0.03),
         ("INSURANCE", 0.02), ("CARD PROCESSING FEES", 0.02), ("SOFTWARE SUBSCRIPTIONS", 0.01))


def generate(seed, *, months=12, monthly_revenue=None, health=None, end=None):
    """A plausible statement (CSV text) for a small business: seasonal daily sales,
    payroll twice a month, rent, suppliers; an unhealthy business overspends and may
    go overdrawn (and pay NSF fees). Deterministic for a given ``seed``."""
    rng = random.Random(seed)
    revenue = monthly_revenue or rng.choice((18_000, 35_000, 60_000, 120_000, 250_000)) * rng.uniform(0.7, 1.3)
    health = rng.uniform(0.0, 1.0) if health is None else health
    spend = 1.0 - 0.16 * health  # share of revenue spent: 0.84 (healthy) … 1.0
    end = end or date.today()
    start = end - timedelta(days=round(months * 30.44))
    balance = revenue * rng.uniform(0.1, 0.6)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)

    def write(day, text, amount):
        nonlocal balance
        amount = round(amount, 2)
        balance = round(balance + amount, 2)
        writer.writerow([day.isoformat(), text, f"{amount:.2f}", f"{balance:.2f}"])
        if balance < 0 and amount < 0 and rng.random() < 0.5:
            write(day, "NSF FEE", -35.0)

    day, trend = start, rng.uniform(-0.15, 0.25) * (health - 0.3)
    while day <= end:
        progress = (day - start).days / max(1, (end - start).days)
        season = 1 + 0.15 * math.sin(2 * math.pi * (day.timetuple().tm_yday / 365.0))
        daily = revenue / 30.44 * season * (1 + trend * progress)
        if day.weekday() < 6:
            for _ in range(rng.randint(1, 3)):
                write(day, rng.choice(INCOME), daily / 2 * rng.uniform(0.5, 1.5))
        for text, share in COSTS:
            due = {"PAYROLL": day.day in (1, 15), "RENT": day.day == 1}.get(text, day.day == 5 + len(text) % 20)
            if due:
                parts = 2 if text == "PAYROLL" else 1
                write(day, text, -revenue * share * spend / parts * rng.uniform(0.9, 1.1))
        if rng.random() < 0.08:
            write(day, "OWNER DRAW", -revenue * 0.05 * rng.uniform(0.5, 1.5) * (1.3 - health))
        day += timedelta(days=1)
    return out.getvalue()
