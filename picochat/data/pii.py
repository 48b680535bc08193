"""PII scrubbing: e-mail addresses, phone numbers, IP addresses, payment card numbers (Luhn
checked), IBANs and national identifiers become typed placeholders.

    scrub_pii("mail me at ann@example.org") -> ("mail me at <EMAIL>", {"EMAIL": 1})

Regexes only, so it runs anywhere at text speed. Each candidate is validated (card numbers by
the Luhn check, IBANs by their mod-97 check, IPs by `ipaddress`, phone numbers by digit count
and grouping, national identifiers by their check digits and the dates they encode) so that
ordinary numbers, dates, prices and version strings stay as they are.

National identifiers (all `<GOV_ID>`), for the languages the pipeline can keep: US SSN, UK
National Insurance number, German Steuer-ID and Sozialversicherungsnummer, French NIR, Spanish
DNI/NIE, Italian codice fiscale, Dutch BSN, Polish PESEL, Brazilian CPF, Japanese My Number,
Chinese resident ID, Russian SNILS and personal INN. Where the check is weak for a bare run of
digits (one check digit or letter: 1 random code in 10 to 23 passes; PESEL's and the
Steuer-ID's rules: about 1 in 250), the number must also follow its label in the same line
("BSN", "DNI", "ИНН", "マイナンバー"...), as such numbers are written in practice.

Person names need a model (presidio with the offline spaCy model) and are not done here.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable

PLACEHOLDERS = {"EMAIL": "<EMAIL>", "PHONE": "<PHONE>", "IP": "<IP_ADDRESS>", "CARD": "<CARD_NUMBER>",
                "IBAN": "<IBAN>", "GOV_ID": "<GOV_ID>"}

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@(?:(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}|\[[0-9.]+\])(?![\w-])")
IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
CARD = re.compile(r"(?<![\d+.,-])(?:\d{4}([ -]?)\d{4}\1\d{4}\1\d{4}(?:\1?\d{1,3})?|\d{4}([ -]?)\d{6}\2\d{4,5})(?![\d-])")
SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
# HMRC allocates no prefix with D, F, I, Q, U or V (nor O second), nor BG, GB, NK, KN, TN, NT,
# ZZ; QQ is its specimen prefix, which forms and guides print where a person's number goes.
UK_NINO = re.compile(r"(?<![A-Za-z0-9])(?:(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]|QQ)"
                     r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])")
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


# --- national identifiers -------------------------------------------------------------------------
def _digits(s: str) -> list[int]:
    return [int(c) for c in s if c.isdigit()]


def _weighted(weights, digits) -> int:
    return sum(w * d for w, d in zip(weights, digits))


def _is_date(year: int, month: int, day: int) -> bool:
    try:
        datetime.date(year, month, day)
        return True
    except ValueError:
        return False


def iso7064_mod11_10(digits: list[int]) -> int:
    """The check digit of ISO 7064 MOD 11,10 (the German Steuer-ID's)."""
    product = 10
    for d in digits:
        product = ((d + product) % 10 or 10) * 2 % 11
    return (11 - product) % 10


def steuer_id_ok(s: str) -> bool:
    """11 digits, no leading 0; in the first ten exactly one digit repeats (twice, or three
    times but not three in a row), then the MOD 11,10 check digit."""
    d = _digits(s)
    head = d[:10]
    repeats = sorted(Counter(head).values())
    if d[0] == 0 or repeats not in ([1] * 8 + [2], [1] * 7 + [3]):
        return False
    if any(head[i] == head[i + 1] == head[i + 2] for i in range(8)):
        return False
    return iso7064_mod11_10(head) == d[10]


def svnr_ok(s: str) -> bool:
    """German Sozialversicherungsnummer: area, birth date DDMMYY, initial, serial, check digit;
    the initial counts as its two-digit place in the alphabet, the digit sums of the weighted
    digits add up to the check digit mod 10."""
    s = s.replace(" ", "")
    day, month = int(s[2:4]), int(s[4:6])
    if s[:2] == "00" or not (1 <= day <= 31 and 1 <= month <= 12):
        return False
    letter = ord(s[8]) - ord("A") + 1
    digits = [*map(int, s[:8]), letter // 10, letter % 10, *map(int, s[9:11])]
    total = sum(sum(divmod(w * d, 10)) for w, d in zip((2, 1, 2, 5, 7, 1, 2, 1, 2, 1, 2, 1), digits))
    return total % 10 == int(s[11])


def nir_ok(s: str) -> bool:
    """French NIR: sex, year, month (or 20-42 / 50-99 when unknown), département (2A/2B count
    as 19/18), commune, order, then the key 97 - number mod 97."""
    s = s.replace(" ", "").upper()
    month = int(s[3:5])
    if not (1 <= month <= 12 or 20 <= month <= 42 or 50 <= month <= 99):
        return False
    dept = {"2A": "19", "2B": "18"}.get(s[5:7], s[5:7])
    return 97 - int(s[:5] + dept + s[7:13]) % 97 == int(s[13:])


DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_ok(s: str) -> bool:
    """Spanish DNI (8 digits) or NIE (X/Y/Z as 0/1/2, then 7 digits): the letter is the number mod 23."""
    s = re.sub(r"[ -]", "", s)
    number = str("XYZ".index(s[0])) + s[1:-1] if s[0] in "XYZ" else s[:-1]
    return DNI_LETTERS[int(number) % 23] == s[-1]


CF_ODD = dict(zip("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                  (1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 1, 0, 5, 7, 9, 13, 15, 17, 19, 21,
                   2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23)))
CF_DIGIT_LETTERS = "LMNPQRSTUV"   # stand for 0-9 when two people would share a code


def codice_fiscale_ok(s: str) -> bool:
    """Italian codice fiscale: the day of birth (women +40) must exist, and the last letter is
    the sum of the first fifteen characters' values (odd and even places differ) mod 26."""
    day = "".join(str(CF_DIGIT_LETTERS.index(c)) if c in CF_DIGIT_LETTERS else c for c in s[9:11])
    if not (1 <= int(day) <= 31 or 41 <= int(day) <= 71):
        return False
    even = lambda c: int(c) if c.isdigit() else ord(c) - ord("A")
    total = sum(CF_ODD[c] if i % 2 == 0 else even(c) for i, c in enumerate(s[:15]))
    return chr(ord("A") + total % 26) == s[15]


def bsn_ok(s: str) -> bool:
    """Dutch BSN, the 11-test: 9..2 times the first eight digits, minus the last, is 0 mod 11."""
    d = _digits(s)
    return any(d) and (_weighted(range(9, 1, -1), d) - d[8]) % 11 == 0


def pesel_ok(s: str) -> bool:
    """Polish PESEL: birth date YYMMDD (the month carries the century: +80 1800s, +20 2000s...)
    and a weighted check digit."""
    d = _digits(s)
    month_code = d[2] * 10 + d[3]
    century = {0: 1900, 1: 2000, 2: 2100, 3: 2200, 4: 1800}[month_code // 20]
    if not _is_date(century + d[0] * 10 + d[1], month_code % 20, d[4] * 10 + d[5]):
        return False
    return (10 - _weighted((1, 3, 7, 9) * 3, d[:10]) % 10) % 10 == d[10]


def cpf_ok(s: str) -> bool:
    """Brazilian CPF: two mod-11 check digits; repeated digits (111.111.111-11) are not issued."""
    d = _digits(s)
    if len(set(d)) == 1:
        return False
    return all(_weighted(range(n + 1, 1, -1), d) * 10 % 11 % 10 == d[n] for n in (9, 10))


def my_number_ok(s: str) -> bool:
    """Japanese My Number: the 12th digit checks the first eleven, weighted 2..7, 2..6 from the right."""
    d = _digits(s)
    weights = (2, 3, 4, 5, 6, 7, 2, 3, 4, 5, 6)
    remainder = _weighted(weights, reversed(d[:11])) % 11
    return d[11] == (0 if remainder <= 1 else 11 - remainder)


CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_id_ok(s: str) -> bool:
    """Chinese resident ID: region, birth date YYYYMMDD, sequence, ISO 7064 MOD 11-2 check (X = 10)."""
    s = s.upper()
    if not (1900 <= int(s[6:10]) <= 2099 and _is_date(int(s[6:10]), int(s[10:12]), int(s[12:14]))):
        return False
    return "10X98765432"[_weighted(CN_ID_WEIGHTS, map(int, s[:17])) % 11] == s[17]


def snils_ok(s: str) -> bool:
    """Russian SNILS: 9..1 times the nine digits, mod 101 (100 counting as 0), is the last two.
    Numbers up to 001-001-998 were issued without a check, so they cannot be told from others."""
    d = _digits(s)
    if int("".join(map(str, d[:9]))) <= 1001998:
        return False
    return _weighted(range(9, 0, -1), d) % 101 % 100 == d[9] * 10 + d[10]


INN_WEIGHTS = ((7, 2, 4, 10, 3, 5, 9, 4, 6, 8), (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8))


def inn_ok(s: str) -> bool:
    """Russian personal INN (12 digits; companies have 10): two weighted mod-11 check digits."""
    d = _digits(s)
    return all(_weighted(w, d) % 11 % 10 == d[len(w)] for w in INN_WEIGHTS)


@dataclass(frozen=True)
class NationalId:
    name: str
    valid: Callable[[str], bool]
    label: re.Pattern | None = None   # when set, it must occur just before the number

    def labelled(self, words: str) -> "NationalId":
        return NationalId(self.name, self.valid, re.compile(words, re.I))


STEUER_ID = NationalId("DE Steuer-ID", steuer_id_ok).labelled(r"steuer|\bidnr|identifikationsnummer|\btin\b|\btax id")
SVNR = NationalId("DE Sozialversicherungsnummer", svnr_ok)
NIR = NationalId("FR NIR", nir_ok)
DNI = NationalId("ES DNI/NIE", dni_ok).labelled(r"\bdni\b|\bnif\b|\bnie\b|d\.n\.i|documento|identidad")
CODICE_FISCALE = NationalId("IT codice fiscale", codice_fiscale_ok)
BSN = NationalId("NL BSN", bsn_ok).labelled(r"\bbsn\b|burgerservicenummer|sofinummer")
PESEL = NationalId("PL PESEL", pesel_ok).labelled(r"\bpesel\b")
CPF = NationalId("BR CPF", cpf_ok)
MY_NUMBER = NationalId("JP My Number", my_number_ok).labelled(r"マイナンバー|個人番号|\bmy ?number\b")
CN_ID = NationalId("CN resident ID", cn_id_ok)
SNILS = NationalId("RU SNILS", snils_ok)
INN = NationalId("RU INN", inn_ok).labelled(r"\bинн\b|\binn\b")

# Each written shape with the identifiers that take it, tried in order. A bare run of digits
# whose check is weak needs a label; a shape with separators where the identifier puts them,
# or with a date or letters inside, is distinctive enough with its check alone.
ID_SHAPES = [
    (r"\d{11}", [STEUER_ID, PESEL, CPF.labelled(r"\bcpf\b"), SNILS.labelled(r"снилс|\bsnils\b")]),
    (r"\d{2} \d{3} \d{3} \d{3}", [STEUER_ID]),
    (r"\d{2} ?\d{6} ?[A-Z] ?\d{2} ?\d", [SVNR]),
    (r"[12] \d{2} \d{2} (?:\d{2}|2[AB]) \d{3} \d{3} \d{2}", [NIR]),   # as the carte Vitale prints it
    (r"[12]\d{4}(?:\d{2}|2[AB])\d{8}", [NIR.labelled(r"s[ée]curit[ée] sociale|\bs[ée]cu\b|\bnir\b|\binsee\b")]),
    (r"(?:\d{8}|[XYZ]-?\d{7})[ -]?[A-HJ-NP-TV-Z]", [DNI]),
    (r"[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]", [CODICE_FISCALE]),
    (r"\d{9}|\d{4}\.\d{2}\.\d{3}", [BSN]),
    (r"\d{3}\.\d{3}\.\d{3}-\d{2}", [CPF]),
    (r"\d{12}|\d{4}(?P<sep>[ -])\d{4}(?P=sep)\d{4}", [MY_NUMBER, INN]),
    (r"[1-8]\d{16}[\dXx]", [CN_ID]),
    (r"\d{3}-\d{3}-\d{3}[ -]\d{2}", [SNILS]),
]
# One scan for all shapes, not inside a longer number, word, decimal or path. The lookahead
# first lets most positions fail on one character (a scan per shape made PII 3x slower).
NATIONAL_ID = re.compile(
    r"(?=[0-9A-Z])(?<![\w+.,/])(?<!\d-)(?:"
    + "|".join(f"(?P<shape{i}>{shape})" for i, (shape, _) in enumerate(ID_SHAPES))
    + r")(?![\w/]|[.,-]\d)", re.ASCII)
LABEL_WINDOW = 40   # characters before a number searched for its label, within its line


def national_id(m: re.Match) -> NationalId | None:
    """The identifier a NATIONAL_ID match is, if any passes its label and check."""
    _, ids = ID_SHAPES[int(m.lastgroup.removeprefix("shape"))]   # the outermost group that matched
    window = max(m.start() - LABEL_WINDOW, m.string.rfind("\n", 0, m.start()) + 1)
    for nid in ids:
        if nid.label and not nid.label.search(m.string, window, m.start()):
            continue
        if nid.valid(m.group(0)):
            return nid
    return None


def _sub(pattern: re.Pattern, kind: str, text: str, counts: dict, check=None, on_match: bool = False) -> str:
    """Replace the matches of `pattern` that pass `check` (given the matched text, or the match
    itself when `on_match`) with `kind`'s placeholder, counting them."""
    def repl(m: re.Match) -> str:
        if check is not None and not check(m if on_match else m.group(0)):
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
    # before cards and phones: an 18-digit resident ID can pass Luhn, a spaced NIR looks like a phone
    text = _sub(NATIONAL_ID, "GOV_ID", text, counts, national_id, on_match=True)
    text = _sub(CARD, "CARD", text, counts, lambda s: luhn_ok(re.sub(r"\D", "", s)))
    text = _sub(SSN, "GOV_ID", text, counts)
    text = _sub(UK_NINO, "GOV_ID", text, counts)
    if "::" in text or text.count(":") >= 7:
        text = _sub(IPV6_CAND, "IP", text, counts, _ipv6_ok)
    text = _sub(IPV4, "IP", text, counts)
    text = _sub(PHONE_CAND, "PHONE", text, counts, phone_ok)
    return text, counts
