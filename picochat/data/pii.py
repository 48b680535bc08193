"""PII scrubbing: e-mail addresses, phone numbers, IP addresses, payment card numbers (Luhn
checked), IBANs and common government ID formats become typed placeholders.

    scrub_pii("mail me at ann@example.org") -> ("mail me at <EMAIL>", {"EMAIL": 1})

Regexes only, so it runs anywhere at text speed. Each candidate is validated (card numbers by
the Luhn check, IBANs by their mod-97 check, IPs by `ipaddress`, phone numbers by digit count
and grouping) so that ordinary numbers, dates, prices and version strings stay as they are.
Person names need a model (presidio with the offline spaCy model) and are not done here.
"""

from __future__ import annotations

import ipaddress
import re

PLACEHOLDERS = {"EMAIL": "<EMAIL>", "PHONE": "<PHONE>", "IP": "<IP_ADDRESS>", "CARD": "<CARD_NUMBER>",
                "IBAN": "<IBAN>", "GOV_ID": "<GOV_ID>"}

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@(?:(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}|\[[0-9.]+\])(?![\w-])")
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
CARD = re.compile(r"(?<![\d+.,-])(?:\d{4}([ -]?)\d{4}\1\d{4}\1\d{4}(?:\1?\d{1,3})?|\d{4}([ -]?)\d{6}\2\d{4,5})(?![\d-])")
SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
UK_NINO = re.compile(r"(?<![A-Za-z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])")
IPV6_CAND = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%\w+)?(?![\w:])")
IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\.?\d)")
PHONE_CAND = re.compile(r"""
    (?<![\w+/.,-])
    (?:(?:\+|00)\d{1,3}[ .\-\u00a0]?)?                           # country code
    (?:\d{1,2}[ .\-\u00a0]?)?                                   # trunk prefix, as in 8 (495) ...
    (?:\(\d{1,5}\)[ .\-\u00a0]?)?                               # area code in parentheses
    \d{1,8}(?:[ .\-\u00a0]\d{1,8}){0,5}
    (?![\w/]|[.,]\d)
""", re.X)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(s: str) -> bool:
    s = s.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False


def phone_ok(s: str) -> bool:
    digits = re.sub(r"\D", "", s)
    n = len(digits)
    if s.startswith("+") or s.startswith("00") and n >= 10:
        return 7 <= n <= 15
    if "(" in s:
        return 7 <= n <= 15
    groups = re.split(r"[ .\-\u00a0]", s)
    seps = set(re.findall(r"[ .\-\u00a0]", s))
    if len(groups) < 2:
        return False
    lens = [len(g) for g in groups]
    if len(groups[0]) <= 3 and all(x == 3 for x in lens[1:]) and seps <= {".", " ", "\u00a0"}:
        return False  # 1.000.000 / 1 000 000: thousands, not a phone
    if n == 13 and digits[:3] in ("978", "979"):
        return False  # ISBN
    if lens == [3, 4] and seps == {"-"}:
        return True  # 555-1234
    if groups[0].startswith("0") and 8 <= n <= 13 and len(groups[0]) <= 5:
        return True  # national format with trunk prefix: 020 7946 0958, 030-1234567
    if 10 <= n <= 13:
        if seps <= {" ", "\u00a0"}:
            return lens in ([3, 3, 4], [1, 3, 3, 4], [3, 3, 2, 2])
        return max(lens) <= 5 or lens in ([3, 7],)
    return False


def _sub(pattern: re.Pattern, kind: str, text: str, counts: dict, check=None) -> str:
    def repl(m: re.Match) -> str:
        if check is not None and not check(m.group(0)):
            return m.group(0)
        counts[kind] = counts.get(kind, 0) + 1
        return PLACEHOLDERS[kind]
    return pattern.sub(repl, text)


def _ipv6_ok(s: str) -> bool:
    if s.count(":") < 2 or not re.search(r"[0-9A-Fa-f]", s):
        return False
    try:
        ipaddress.IPv6Address(s.split("%")[0])
        return True
    except ValueError:
        return False


def scrub_pii(text: str) -> tuple[str, dict]:
    """Replace PII with typed placeholders; returns the new text and counts per type."""
    counts: dict[str, int] = {}
    if "@" in text:
        text = _sub(EMAIL, "EMAIL", text, counts)
    text = _sub(IBAN, "IBAN", text, counts, iban_ok)
    text = _sub(CARD, "CARD", text, counts, lambda s: luhn_ok(re.sub(r"\D", "", s)))
    text = _sub(SSN, "GOV_ID", text, counts)
    text = _sub(UK_NINO, "GOV_ID", text, counts)
    if "::" in text or text.count(":") >= 7:
        text = _sub(IPV6_CAND, "IP", text, counts, _ipv6_ok)
    text = _sub(IPV4, "IP", text, counts)
    text = _sub(PHONE_CAND, "PHONE", text, counts, phone_ok)
    return text, counts
