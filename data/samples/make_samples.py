"""Write the realistic sample exports in data/samples/ (deterministic: seeded).

The run that consumes them pins its clock to 2026-11-21T06:00:00Z. Most event times fall between
2026-11-18T08:00Z and 2026-11-21T05:30Z in each vendor's local zone; about 5 % are older than
72 h (deferred), two or three lie in the future (rejected). About 3 % of cookies are malformed,
some rows have no session cookie, a few carry denied consent, a few transaction ids repeat, one
amount is unparseable, and in two cells a sales rep pasted an email address or a phone number into
a field that gets sent. Every name, email and phone number is fake (example.com, 555 numbers).

Run: `.venv/bin/python data/samples/make_samples.py` (rewrites the files next to this script).
"""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
CLOCK = datetime(2026, 11, 21, 6, 0, tzinfo=UTC)
WINDOW_START = datetime(2026, 11, 18, 8, 0, tzinfo=UTC)
WINDOW_END = datetime(2026, 11, 21, 5, 30, tzinfo=UTC)
MEASUREMENT_SUFFIX = "K7QW2ZP9LM"

FIRST = ["Ada", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea", "Milo", "Nia", "Otto", "Pia"]
LAST = ["Example", "Placeholder", "Sample", "Testwell", "Fictus", "Demo", "Mockford", "Dummy"]
COMPANIES = ["Acme Widgets", "Globex Testing", "Initech Demo", "Umbrella Sample", "Hooli Example", "Vandelay Mock", "Stark Fictional"]
REPS = ["Riley Rep", "Sam Seller", "Alex Account"]


class Faker:
    """Seeded fake people, cookies and times."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def person(self) -> tuple[str, str, str]:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        email = f"{first.lower()}.{last.lower()}{self.rng.randint(1, 99)}@example.com"
        phone = f"+1 555-01{self.rng.randint(0, 99):02d}"
        return f"{first} {last}", email, phone

    def event_time(self, i: int, n: int, *, old: set[int], future: set[int]) -> datetime:
        """Mostly inside the window; the indexes in `old` are 3–6 days back, in `future` hours ahead."""
        if i in old:
            return CLOCK - timedelta(days=self.rng.uniform(3.2, 6.0))
        if i in future:
            return CLOCK + timedelta(hours=self.rng.uniform(3, 30))
        span = (WINDOW_END - WINDOW_START).total_seconds()
        return WINDOW_START + timedelta(seconds=int(self.rng.uniform(0, span)))

    def ga_cookie(self, at: datetime, *, bad: bool) -> str:
        if bad:
            return self.rng.choice(["GA1.1.undefined", "GA1.1.12345", "undefined", "GA1.1.8877ab1.17x0", "null"])
        first_seen = int((at - timedelta(days=self.rng.uniform(0.1, 400))).timestamp())
        digits = self.rng.choice([9, 10])
        return f"GA1.1.{self.rng.randint(10 ** (digits - 1), 10**digits - 1)}.{first_seen}"

    def session_cookie(self, at: datetime) -> str:
        start = int(at.timestamp()) - self.rng.randint(45, 1500)
        last_hit = start + self.rng.randint(5, 40)
        n = self.rng.randint(1, 40)
        engaged = self.rng.randint(0, 1)
        if self.rng.random() < 0.4:
            return f"GS1.1.{start}.{n}.{engaged}.{last_hit}.0.0.0"
        return f"GS2.1.s{start}$o{n}$g{engaged}$t{last_hit}$j{self.rng.randint(0, 60)}$l0$h0"

    def money(self, low: float, high: float) -> float:
        return round(self.rng.uniform(low, high), 2)


def picks(rng: random.Random, n: int, count: int, exclude: set[int] = frozenset()) -> set[int]:
    return set(rng.sample([i for i in range(n) if i not in exclude], count))


def write_csv(path: Path, header: list[str], rows: list[list[str]], *, encoding: str = "utf-8", delimiter: str = ",",
              lineterminator: str = "\n", quoting: int = csv.QUOTE_MINIMAL, bom: bool = False, trailer: str = "") -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=lineterminator, quoting=quoting)
    writer.writerow(header)
    writer.writerows(rows)
    data = ("\ufeff" if bom else "") + buf.getvalue() + trailer
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode(encoding))


def us_amount(x: float) -> str:
    return f"{x:,.2f}"


def salesforce(fk: Faker) -> None:
    """Opportunity report export: UTF-8 with BOM, CRLF, every field quoted, dates M/D/YYYY (en_US)."""
    zone = ZoneInfo("America/New_York")
    n = 60
    rng = fk.rng
    old, future = picks(rng, n, 3), set()
    future = picks(rng, n, 1, old)
    bad_cookie = picks(rng, n, 2, old | future)
    no_session = picks(rng, n, 6, bad_cookie)
    denied = picks(rng, n, 3)
    header = ["Opportunity Owner", "Account Name", "Opportunity Name", "Stage", "Fiscal Period", "Amount",
              "Opportunity Currency", "Probability (%)", "Close Date", "Created Date", "Lead Source", "Type",
              "Opportunity ID", "Primary Contact", "Contact Email", "GA_Client_ID__c", "GA_Session_ID__c",
              "Analytics_Consent__c", "Ad_User_Data_Consent__c", "Ad_Personalization_Consent__c"]
    rows = []
    for i in range(n):
        at = fk.event_time(i, n, old=old, future=future)
        if i in future:  # date-only: "future" must be a later calendar day
            at = datetime(2026, 11, 23, 10, tzinfo=zone)
        elif i not in old:  # Close Date is date-only (midnight local): keep it inside the window (19th–21st)
            at = datetime(2026, 11, rng.choice([19, 20, 20, 21]), 10, tzinfo=zone)
        local = at.astimezone(zone)
        stage = rng.choices(["Closed Won", "Negotiation/Review", "Closed Lost", "Proposal/Price Quote"], [70, 12, 10, 8])[0]
        name, email, _ = fk.person()
        amount = us_amount(fk.money(800, 48000))
        if i == 17:
            amount = "12,5OO.00"  # a letter O typed for a zero: the one unparseable amount
        consent = "Denied" if i in denied else rng.choice(["Granted", "Granted", "Granted", ""])
        ad = "Denied" if i in denied else rng.choice(["Granted", "Denied", ""])
        opp_id = f"0065g00000{rng.randint(10**7, 10**8 - 1)}AA{rng.choice('ABCDEFGH')}"
        if i in (33, 51):
            opp_id = rows[5][12]  # the same opportunity exported twice
        rows.append([
            rng.choice(REPS), rng.choice(COMPANIES), f"{rng.choice(COMPANIES)} - renewal {2026 + i % 2}", stage,
            "Q4-2026", amount, rng.choice(["USD", "USD", "USD", "EUR"]), "100" if stage == "Closed Won" else "60",
            f"{local.month}/{local.day}/{local.year}", f"{local.month}/{max(1, local.day - 12)}/{local.year}",
            rng.choice(["Web", "Partner Referral", "Trade Show", "Advertisement"]), "Existing Business",
            opp_id, name, email, fk.ga_cookie(at, bad=i in bad_cookie),
            "" if i in no_session else fk.session_cookie(at), consent, ad, ad,
        ])
    write_csv(HERE / "crm" / "salesforce_opportunities.csv", header, rows, lineterminator="\r\n",
              quoting=csv.QUOTE_ALL, bom=True, trailer="\r\n\r\n\r\n")


def hubspot(fk: Faker) -> None:
    """Deals export: UTF-8, LF, dates 'YYYY-MM-DD HH:MM' in the portal's zone (Europe/London)."""
    zone = ZoneInfo("Europe/London")
    rng = fk.rng
    n = 50
    old = picks(rng, n, 3)
    future = picks(rng, n, 1, old)
    bad_cookie = picks(rng, n, 2, old | future)
    no_session = picks(rng, n, 5, bad_cookie)
    denied = picks(rng, n, 3)
    header = ["Record ID", "Deal Name", "Deal Stage", "Close Date", "Deal owner", "Amount", "Deal currency code",
              "Pipeline", "Create Date", "Associated Company", "Associated Contact", "Lead Source", "GA Client ID",
              "GA Session Cookie", "Analytics Consent", "Ad User Data Consent", "Ad Personalization Consent"]
    rows = []
    for i in range(n):
        at = fk.event_time(i, n, old=old, future=future).astimezone(zone)
        name, email, phone = fk.person()
        stage = rng.choices(["Closed Won", "Closed Lost", "Contract Sent", "Decision maker bought-in"], [72, 10, 10, 8])[0]
        lead_source = rng.choice(["Organic Search", "Paid Search", "Referrals", "Email Marketing", "Direct Traffic"])
        if i == 9:
            lead_source = phone  # a rep pasted the caller's number into a field that gets sent
        record_id = str(rng.randint(10**10, 10**11 - 1))
        if i == 40:
            record_id = rows[12][0]
        rows.append([
            record_id, f"{rng.choice(COMPANIES)} - annual plan", stage, at.strftime("%Y-%m-%d %H:%M"),
            rng.choice(REPS), f"{fk.money(300, 25000):.2f}".rstrip("0").rstrip("."), rng.choice(["GBP", "GBP", "EUR"]),
            "Sales Pipeline", (at - timedelta(days=rng.randint(5, 60))).strftime("%Y-%m-%d %H:%M"),
            rng.choice(COMPANIES), f"{name} ({email})", lead_source, fk.ga_cookie(at, bad=i in bad_cookie),
            "" if i in no_session else fk.session_cookie(at),
            "No" if i in denied else rng.choice(["Yes", "Yes", ""]),
            "No" if i in denied else rng.choice(["Yes", "No"]), "No" if i in denied else rng.choice(["Yes", "No"]),
        ])
    write_csv(HERE / "crm" / "hubspot_deals.csv", header, rows)


SHOPIFY_HEADER_LINE = (  # exactly as the vendor writes it
    "Name,Email,Financial Status,Paid at,Fulfillment Status,Fulfilled at,Accepts Marketing,Currency,Subtotal,"
    "Shipping,Taxes,Total,Discount Code,Discount Amount,Shipping Method,Created at,Lineitem quantity,Lineitem name,"
    "Lineitem price,Lineitem compare at price,Lineitem sku,Lineitem requires shipping,Lineitem taxable,"
    "Lineitem fulfillment status,Billing Name,Billing Street,Billing Address1,Billing Address2,Billing Company,"
    "Billing City,Billing Zip,Billing Province,Billing Country,Billing Phone,Shipping Name,Shipping Street,"
    "Shipping Address1,Shipping Address2,Shipping Company,Shipping City,Shipping Zip,Shipping Province,"
    "Shipping Country,Shipping Phone,Notes,Note Attributes,Cancelled at,Payment Method,Payment Reference,"
    "Refunded Amount,Vendor,Outstanding Balance,Employee,Location,Device ID,Id,Tags,Risk Level,Source,"
    "Lineitem discount,Tax 1 Name,Tax 1 Value,Tax 2 Name,Tax 2 Value,Tax 3 Name,Tax 3 Value,Tax 4 Name,"
    "Tax 4 Value,Tax 5 Name,Tax 5 Value,Phone,Receipt Number,Duties,Billing Province Name,Shipping Province Name,"
    "Payment ID,Payment Terms Name,Next Payment Due At,Payment References"
)
SHOPIFY_HEADER = SHOPIFY_HEADER_LINE.split(",")
PRODUCTS = [("FERN-1", "Botanical Fern Print", 16.00, "Paper & Co"), ("MUG-1", "Speckled Mug", 25.00, "Kiln Works"),
            ("TOTE-1", "Canvas Tote Bag", 20.00, "Paper & Co"), ("CNDL-3", "Cedar Candle, 3-wick", 34.50, "Wick House"),
            ("SCRF-2", 'Wool Scarf 70" Grey', 48.00, "Knit Lab"), ("CARD-6", "Greeting Cards (6 pack)", 12.00, "Paper & Co")]


def shopify(fk: Faker) -> None:
    """Orders export: one row per line item, order columns only on the first; cookies in Note Attributes."""
    zone = ZoneInfo("America/New_York")
    rng = fk.rng
    n = 64
    old = picks(rng, n, 3)
    future = picks(rng, n, 1, old)
    bad_cookie = picks(rng, n, 2, old | future)
    no_session = picks(rng, n, 5, bad_cookie)
    no_notes = picks(rng, n, 2, bad_cookie | no_session)
    col = {h: i for i, h in enumerate(SHOPIFY_HEADER)}
    rows: list[list[str]] = []
    first_rows: dict[str, list[list[str]]] = {}
    for i in range(n):
        at = fk.event_time(i, n, old=old, future=future).astimezone(zone)
        created = at - timedelta(seconds=rng.randint(2, 40))
        name, email, phone = fk.person()
        order_name = f"#{1001 + i}"
        lines = rng.sample(PRODUCTS, rng.choice([1, 1, 2, 2, 3, 4]))
        qty = [rng.choice([1, 1, 1, 2, 3]) for _ in lines]
        gross = sum(p[2] * q for p, q in zip(lines, qty, strict=True))
        # A sale price on the first line of every ninth order (Shopify's `Lineitem discount`: the whole
        # line's), and codes on the order; `Discount Amount` holds both, `Subtotal` is after both (as
        # Shopify's orders export writes it: after discounts, before shipping and taxes).
        line_discount = round(1.00 * qty[0], 2) if i % 9 == 4 else 0.0
        discount_code, discount = "", line_discount
        if rng.random() < 0.2:
            discount_code = rng.choice(["WELCOME10", "BFCM25", "FREESHIP"])
            discount = round(line_discount + (gross - line_discount) * 0.1, 2)
        subtotal = round(gross - discount, 2)
        if i == 21:
            discount_code = email  # pasted the customer's email as a "code"
        shipping = rng.choice([0.0, 5.0, 7.95])
        taxes = round(subtotal * 0.08875, 2)
        total = round(subtotal + shipping + taxes, 2)
        status = rng.choices(["paid", "refunded", "partially_refunded", "pending", "voided"], [85, 5, 5, 3, 2])[0]
        refunded = {"refunded": total, "partially_refunded": round(lines[0][2], 2)}.get(status, 0.0)
        notes = []
        if i not in no_notes:
            notes.append(f"_ga: {fk.ga_cookie(at, bad=i in bad_cookie)}")
            if i not in no_session:
                notes.append(f"_ga_{MEASUREMENT_SUFFIX}: {fk.session_cookie(at)}")
            notes.append(f"gift_wrap: {rng.choice(['yes', 'no'])}")
        stamp = at.strftime("%Y-%m-%d %H:%M:%S %z")
        for j, (product, q) in enumerate(zip(lines, qty, strict=True)):
            row = [""] * len(SHOPIFY_HEADER)
            row[col["Name"]] = order_name
            row[col["Email"]] = email
            row[col["Lineitem quantity"]] = str(q)
            row[col["Lineitem name"]] = product[1]
            row[col["Lineitem price"]] = f"{product[2]:.2f}"
            row[col["Lineitem sku"]] = product[0]
            row[col["Lineitem requires shipping"]] = "true"
            row[col["Lineitem taxable"]] = "true"
            row[col["Lineitem fulfillment status"]] = "pending"
            row[col["Vendor"]] = product[3]
            row[col["Lineitem discount"]] = f"{line_discount if j == 0 else 0.0:.2f}"
            row[col["Created at"]] = created.strftime("%Y-%m-%d %H:%M:%S %z")
            row[col["Id"]] = str(5550000000 + i) if j == 0 else ""
            if j == 0:
                for key, value in {
                    "Financial Status": status, "Paid at": stamp if status not in ("pending", "voided") else "",
                    "Fulfillment Status": "unfulfilled", "Accepts Marketing": rng.choice(["yes", "no"]),
                    "Currency": "USD", "Subtotal": f"{subtotal:.2f}", "Shipping": f"{shipping:.2f}",
                    "Taxes": f"{taxes:.2f}", "Total": f"{total:.2f}", "Discount Code": discount_code,
                    "Discount Amount": f"{discount:.2f}", "Shipping Method": "Standard",
                    "Billing Name": name, "Billing Street": f"{rng.randint(1, 99)} Fictional Lane",
                    "Billing City": "Testville", "Billing Zip": "00000", "Billing Province": "NY",
                    "Billing Country": "US", "Billing Phone": phone, "Shipping Name": name,
                    "Shipping Street": f"{rng.randint(1, 99)} Fictional Lane", "Shipping City": "Testville",
                    "Shipping Zip": "00000", "Shipping Province": "NY", "Shipping Country": "US",
                    "Note Attributes": "\n".join(notes),
                    "Cancelled at": stamp if status == "voided" else "", "Payment Method": "Shopify Payments",
                    "Payment Reference": f"c{rng.randint(10**9, 10**10)}.1", "Refunded Amount": f"{refunded:.2f}",
                    "Outstanding Balance": "0.00", "Risk Level": "Low", "Source": "web",
                    "Tax 1 Name": "NY State Tax 8.875%", "Tax 1 Value": f"{taxes:.2f}",
                    "Billing Province Name": "New York", "Shipping Province Name": "New York",
                    "Payment ID": f"r{rng.randint(10**9, 10**10)}", "Payment References": f"r{rng.randint(10**9, 10**10)}",
                }.items():
                    row[col[key]] = value
            rows.append(row)
        first_rows[order_name] = [r[:] for r in rows[-len(lines):]]
        if i == 47:  # an order exported again further down (duplicate transaction id)
            rows.extend(first_rows["#1013"])
    write_csv(HERE / "pos" / "shopify_orders_export.csv", SHOPIFY_HEADER, rows)


SQUARE_TX_HEADER_LINE = (  # exactly as the vendor writes it
    "Date,Time,Time Zone,Gross Sales,Discounts,Service Charges,Net Sales,Gift Card Sales,Tax,Tip,Partial Refunds,"
    "Total Collected,Source,Card,Card Entry Methods,Cash,Square Gift Card,Other Tender,Other Tender Type,Tender Note,"
    "Fees,Net Total,Transaction ID,Payment ID,Card Brand,PAN Suffix,Device Name,Staff Name,Staff ID,Details,"
    "Description,Event Type,Location,Dining Option,Customer ID,Customer Name,Customer Reference ID,Device Nickname,"
    "Third Party Fees,Deposit ID,Deposit Date,Deposit Details,Fee Percentage Rate,Fee Fixed Rate,Refund Reason,"
    "Discount Name,Transaction Status,Cash App,Order Reference ID,Fulfillment Note,Free Processing Applied,Channel,"
    "Unattributed Tips,Table Info,International Fee"
)
SQUARE_TX_HEADER = SQUARE_TX_HEADER_LINE.split(",")
SQUARE_ITEM_HEADER_LINE = (  # exactly as the vendor writes it
    "Date,Time,Time Zone,Category,Item,Qty,Price Point Name,SKU,Modifiers Applied,Gross Sales,Discounts,Net Sales,"
    "Tax,Transaction ID,Payment ID,Device Name,Notes,Details,Event Type,Location,Dining Option,Customer ID,"
    "Customer Name,Customer Reference ID,Unit,Count,GTIN,Itemization Type,Commission,Employee,Fulfillment Note,"
    "Channel,Token,Card Brand,PAN Suffix"
)
SQUARE_ITEM_HEADER = SQUARE_ITEM_HEADER_LINE.split(",")
MENU = [("Coffee", "Latte", "LAT-12", 5.25), ("Coffee", "Cold Brew", "CB-16", 4.75), ("Bakery", "Almond Croissant", "CRS-ALM", 4.50),
        ("Retail", "Whole Bean 1 lb", "BEAN-1LB", 18.00), ("Retail", "Ceramic Tumbler", "TMB-01", 32.00)]


def dollars(x: float) -> str:
    return f"-${-x:,.2f}" if x < 0 else f"${x:,.2f}"


def square(fk: Faker) -> None:
    """Transactions + item details exports (Pacific time), and the loyalty program's identity map."""
    zone = ZoneInfo("America/Los_Angeles")
    rng = fk.rng
    n = 48
    old = picks(rng, n, 2)
    future = picks(rng, n, 1, old)
    customers = [f"{''.join(rng.choices('ABCDEFGHJKMNPQRSTVWXYZ0123456789', k=26))}" for _ in range(18)]
    mapped = customers[:13]  # loyalty members who linked their web account
    tx_rows, item_rows = [], []
    col = {h: i for i, h in enumerate(SQUARE_TX_HEADER)}
    icol = {h: i for i, h in enumerate(SQUARE_ITEM_HEADER)}
    payments = []
    for i in range(n):
        at = fk.event_time(i, n, old=old, future=future).astimezone(zone)
        customer = rng.choice(customers) if rng.random() < 0.8 else ""
        cname = fk.person()[0] if customer else ""
        lines = rng.sample(MENU, rng.choice([1, 1, 2, 3]))
        qty = [rng.choice([1, 1, 2]) for _ in lines]
        gross = round(sum(p[3] * q for p, q in zip(lines, qty, strict=True)), 2)
        tax = round(gross * 0.0925, 2)
        tip = rng.choice([0.0, 0.0, 1.0, 2.0, round(gross * 0.18, 2)])
        total = round(gross + tax + tip, 2)
        tx_id = "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", k=29))
        pay_id = "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", k=29))
        payments.append((at, customer, cname, lines, qty, gross, tax, tip, total, tx_id, pay_id))
    refunds = rng.sample(range(n), 2)
    for i, (at, customer, cname, lines, qty, gross, tax, tip, total, tx_id, pay_id) in enumerate(payments):
        events = [("Payment", at, 1)]
        if i in refunds:
            events.append(("Refund", min(at + timedelta(hours=rng.randint(1, 6)), WINDOW_END), -1))
        for event, when, sign in events:
            local = when.astimezone(zone)
            row = [""] * len(SQUARE_TX_HEADER)
            values = {
                "Date": local.strftime("%Y-%m-%d"), "Time": local.strftime("%H:%M:%S"), "Time Zone": "Pacific Time (US & Canada)",
                "Gross Sales": dollars(sign * gross), "Discounts": "$0.00", "Service Charges": "$0.00",
                "Net Sales": dollars(sign * gross), "Gift Card Sales": "$0.00", "Tax": dollars(sign * tax),
                "Tip": dollars(sign * tip if sign > 0 else 0.0), "Partial Refunds": "$0.00",
                "Total Collected": dollars(sign * (total if sign > 0 else gross + tax)), "Source": "Point of Sale",
                "Card": dollars(sign * total), "Card Entry Methods": rng.choice(["Contactless", "EMV", "Swiped"]),
                "Cash": "$0.00", "Square Gift Card": "$0.00", "Other Tender": "$0.00",
                "Fees": dollars(-round(total * 0.026 + 0.1, 2) if sign > 0 else 0.0),
                "Net Total": dollars(sign * round(total * 0.974 - 0.1, 2)), "Transaction ID": tx_id,
                "Payment ID": pay_id if sign > 0 else pay_id[:-2] + "RF", "Card Brand": rng.choice(["Visa", "MasterCard", "American Express"]),
                "PAN Suffix": f"{rng.randint(0, 9999):04d}", "Device Name": "Front Counter iPad", "Staff Name": rng.choice(REPS),
                "Details": f"https://squareup.com/dashboard/sales/transactions/{tx_id}",
                "Description": ", ".join(f"{p[1]} x {q}" for p, q in zip(lines, qty, strict=True)),
                "Event Type": event, "Location": "Mission St Cafe", "Dining Option": rng.choice(["For Here", "To Go"]),
                "Customer ID": customer, "Customer Name": cname, "Transaction Status": "Complete", "Channel": "Mission St Cafe",
                "Refund Reason": "Returned goods" if sign < 0 else "",
            }
            if i == 30 and sign > 0:
                # not a number (in the purchase value, Net Sales, too): the transform must reject this row
                values["Total Collected"] = values["Net Sales"] = "$1,2O4.00"
            for key, value in values.items():
                row[col[key]] = value
            tx_rows.append(row)
            for product, q in zip(lines, qty, strict=True):
                item = [""] * len(SQUARE_ITEM_HEADER)
                for key, value in {
                    "Date": local.strftime("%Y-%m-%d"), "Time": local.strftime("%H:%M:%S"), "Time Zone": "Pacific Time (US & Canada)",
                    "Category": product[0], "Item": product[1], "Qty": f"{sign * q:.1f}", "Price Point Name": "Regular",
                    "SKU": product[2], "Gross Sales": dollars(sign * product[3] * q), "Discounts": "$0.00",
                    "Net Sales": dollars(sign * product[3] * q), "Tax": dollars(sign * round(product[3] * q * 0.0925, 2)),
                    "Transaction ID": tx_id, "Payment ID": pay_id, "Device Name": "Front Counter iPad", "Event Type": event,
                    "Location": "Mission St Cafe", "Customer ID": customer, "Customer Name": cname, "Unit": "",
                    "Count": str(q), "Itemization Type": "Physical Good", "Commission": "$0.00", "Channel": "Mission St Cafe",
                }.items():
                    item[icol[key]] = value
                item_rows.append(item)
    write_csv(HERE / "pos" / "square_transactions.csv", SQUARE_TX_HEADER, tx_rows)
    write_csv(HERE / "pos" / "square_item_details.csv", SQUARE_ITEM_HEADER, item_rows)
    id_rows = []
    for k, customer in enumerate(mapped):
        linked = WINDOW_START - timedelta(days=rng.randint(10, 300))
        cookie = fk.ga_cookie(linked, bad=(k == 4))
        id_rows.append([customer, cookie, linked.strftime("%Y-%m-%dT%H:%M:%SZ")])
    write_csv(HERE / "pos" / "customer_identity_map.csv", ["Square Customer ID", "GA Cookie", "Linked At"], id_rows)


def generic(fk: Faker) -> None:
    """A German desk's spreadsheet export: ';' delimited, cp1252, decimal comma, 'DD.MM.YYYY HH:MM'."""
    zone = ZoneInfo("Europe/Berlin")
    rng = fk.rng
    n = 40
    old = picks(rng, n, 2)
    future = picks(rng, n, 1, old)
    bad_cookie = picks(rng, n, 1, old | future)
    no_session = picks(rng, n, 4, bad_cookie)
    header = ["Auftrags-Nr", "Abschlussdatum", "Betrag", "Währung", "Kunde", "Ansprechpartner", "GA Client ID",
              "GA Sitzung", "Vertrieb", "Einwilligung Analyse", "Bemerkung"]
    rows = []
    for i in range(n):
        at = fk.event_time(i, n, old=old, future=future).astimezone(zone)
        name = fk.person()[0]
        amount = f"{fk.money(150, 9800):,.2f}".replace(",", "X").replace(".", ",").replace("X", ".")
        note = rng.choice(["", "Rückruf erwünscht", "Lieferung über Großhändler", "Zahlung per Überweisung"])
        rows.append([
            f"AB-2026-{4100 + i}" if i != 25 else "AB-2026-4103", at.strftime("%d.%m.%Y %H:%M"), amount, "EUR",
            rng.choice(["Müller Demo GmbH", "Bäckerei Beispiel KG", "Größe & Söhne Test AG", "Café Muster OHG"]),
            name, fk.ga_cookie(at, bad=i in bad_cookie), "" if i in no_session else fk.session_cookie(at),
            rng.choice(["Jörg Vertrieb", "Anja Außendienst"]), "nein" if i in (6, 19) else "ja", note,
        ])
    write_csv(HERE / "generic" / "closed_deals.csv", header, rows, encoding="cp1252", delimiter=";", lineterminator="\r\n")


STORES = [("Soho", "GB"), ("Manchester Arndale", "GB")]  # looked up in jobs/configs/stores.toml [locations]


def shopify_stores(fk: Faker) -> None:
    """A UK shop's orders export (issue 26): POS orders at two stores (the `Location` column) and a few
    online orders (no Location: GA places those from the site's own tag). Cookies as in the web shop's
    note attributes, written at the till when the customer shows the loyalty app."""
    zone = ZoneInfo("Europe/London")
    rng = fk.rng
    col = {h: i for i, h in enumerate(SHOPIFY_HEADER)}
    rows: list[list[str]] = []
    for i in range(14):
        at = fk.event_time(i, 14, old=set(), future=set()).astimezone(zone)
        store = "" if i in (4, 9) else STORES[i % 2][0]
        lines = rng.sample(PRODUCTS, rng.choice([1, 2]))
        subtotal = sum(p[2] for p in lines)
        taxes = round(subtotal * 0.2, 2)
        stamp = at.strftime("%Y-%m-%d %H:%M:%S %z")
        for j, product in enumerate(lines):
            row = [""] * len(SHOPIFY_HEADER)
            row[col["Name"]] = f"#UK{2001 + i}"
            row[col["Lineitem quantity"]] = "1"
            row[col["Lineitem name"]] = product[1]
            row[col["Lineitem price"]] = f"{product[2]:.2f}"
            row[col["Lineitem sku"]] = product[0]
            row[col["Vendor"]] = product[3]
            row[col["Created at"]] = stamp
            if j == 0:
                for key, value in {
                    "Financial Status": "paid", "Paid at": stamp, "Currency": "GBP", "Subtotal": f"{subtotal:.2f}",
                    "Shipping": "0.00", "Taxes": f"{taxes:.2f}", "Total": f"{subtotal + taxes:.2f}",
                    "Note Attributes": f"_ga: {fk.ga_cookie(at, bad=False)}\n_ga_{MEASUREMENT_SUFFIX}: {fk.session_cookie(at)}",
                    "Location": store, "Source": "pos" if store else "web", "Refunded Amount": "0.00",
                }.items():
                    row[col[key]] = value
            rows.append(row)
    write_csv(HERE / "pos" / "shopify_two_stores.csv", SHOPIFY_HEADER, rows)


def app_purchases(fk: Faker) -> None:
    """In-app purchases of an Android app stream (issue 26): the app instance id (32 hex digits,
    Firebase's getAppInstanceId()) instead of a _ga cookie; one row carries a truncated id."""
    rng = fk.rng
    rows = []
    for i in range(10):
        at = fk.event_time(i, 10, old=set(), future=set())
        instance = "".join(rng.choices("0123456789abcdef", k=32 if i != 6 else 31))
        rows.append([f"GPA.3381-{4410 + i}", at.strftime("%Y-%m-%dT%H:%M:%SZ"), f"{rng.choice([0.99, 2.99, 4.99, 9.99]):.2f}",
                     "GBP", instance, str(int(at.timestamp()) - rng.randint(30, 900))])
    (HERE / "app").mkdir(exist_ok=True)
    write_csv(HERE / "app" / "app_purchases.csv", ["Order ID", "Purchased At", "Price", "Currency", "App Instance ID",
                                                   "Session"], rows)


def main() -> None:
    fk = Faker(20261121)
    salesforce(fk)
    hubspot(fk)
    shopify(fk)
    square(fk)
    generic(fk)
    # Their own seeds: the files above stay byte for byte what they were.
    shopify_stores(Faker(26))
    app_purchases(Faker(2626))


if __name__ == "__main__":
    main()
