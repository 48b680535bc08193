"""PII scrubbing: e-mail addresses, phone numbers, IP addresses and card numbers in many written
formats become placeholders (at least 99% of this list), national identifiers of the languages
the pipeline keeps all do (planted in tests/data_planted.py), while ordinary numbers, dates,
prices, versions and identifier look-alikes that fail validation stay exactly as they were."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from data_planted import ID_LOOKALIKES, NATIONAL_IDS, page

from picochat.data.pii import LABEL_WINDOW, luhn_ok, scrub_pii

PII = [  # (text containing one item, expected placeholder)
    ("Mail me at ann@example.org today.", "<EMAIL>"),
    ("Contact: John.Smith+news@mail.example.co.uk", "<EMAIL>"),
    ("Reply to first_last-99@sub.domain.io please", "<EMAIL>"),
    ("Old style: root@[192.168.0.1] was used", "<EMAIL>"),
    ("Send it to UPPER.CASE@EXAMPLE.COM now", "<EMAIL>"),
    ("Call +1 (555) 123-4567 now", "<PHONE>"),
    ("Call 555.123.4567 after six", "<PHONE>"),
    ("Our number is (555) 123-4567.", "<PHONE>"),
    ("Toll free: 1-800-555-0199", "<PHONE>"),
    ("Dial 555-1234 for the front desk", "<PHONE>"),
    ("London office +44 (0)20 7946 0958", "<PHONE>"),
    ("Tel. 020 7946 0958", "<PHONE>"),
    ("Berlin: +49 30 1234567", "<PHONE>"),
    ("Handy 0176 12345678", "<PHONE>"),
    ("Festnetz 030-1234567", "<PHONE>"),
    ("Paris +33 1 23 45 67 89", "<PHONE>"),
    ("International 0033 1 23 45 67 89", "<PHONE>"),
    ("Tokyo +81-3-1234-5678", "<PHONE>"),
    ("Moscow +7 495 123-45-67", "<PHONE>"),
    ("Moscow 8 (495) 123-45-67", "<PHONE>"),
    ("Sydney (02) 9876 5432", "<PHONE>"),
    ("Mumbai +91 98765 43210", "<PHONE>"),
    ("Beijing +86 10 1234 5678", "<PHONE>"),
    ("Compact +15551234567 works too", "<PHONE>"),
    ("US style 555 123 4567 also", "<PHONE>"),
    ("Server 192.168.1.1 is down.", "<IP_ADDRESS>"),
    ("Gateway at 10.0.0.254, port 8080", "<IP_ADDRESS>"),
    ("IPv6 2001:db8::8a2e:370:7334 answered", "<IP_ADDRESS>"),
    ("Link-local fe80::1ff:fe23:4567:890a works", "<IP_ADDRESS>"),
    ("Full 2001:0db8:85a3:0000:0000:8a2e:0370:7334 form", "<IP_ADDRESS>"),
    ("Loopback ::1 only", "<IP_ADDRESS>"),
    ("Visa 4111 1111 1111 1111 expires soon", "<CARD_NUMBER>"),
    ("Card 4111-1111-1111-1111", "<CARD_NUMBER>"),
    ("MasterCard 5500005555555559", "<CARD_NUMBER>"),
    ("Amex 3782 822463 10005", "<CARD_NUMBER>"),
    ("Discover 6011 0009 9013 9424 on file", "<CARD_NUMBER>"),
    ("SSN 078-05-1120", "<GOV_ID>"),
    ("NI number AB 12 34 56 C", "<GOV_ID>"),
    ("IBAN GB82 WEST 1234 5698 7654 32", "<IBAN>"),
    ("IBAN DE89370400440532013000", "<IBAN>"),
]

KEEP = [
    "On 2024-01-15 we paid $1,234.56 for 3 items.",
    "Meeting at 12:30:45 on 12/31/2023 and again on 15.01.2024.",
    "Python 3.11.7 has about 1,000,000 users and pi is 3.14159.",
    "The population was 1 234 567 in 1999.",
    "Order 12345 costs 99.99 EUR, room 101, page 42.",
    "Version 1.2.3 was released; see section 4.5.6.",
    "It cost 1.000.000 euros, or € 1.234,56 per month.",
    "Scores of 12 15 18 20 22 were recorded in 2020.",
    "The ISBN 978-3-16-148410-0 is printed on the back.",
    "A 4111 line and 2 cats; the year 1066; 7 days a week.",
    "Temperatures ranged from -5 to 30 degrees, 50% humidity.",
    "Chapter 3, verse 16; items 10-20; ratio 3:2.",
]


def test_pii_formats_become_placeholders():
    hits = 0
    misses = []
    for text, placeholder in PII:
        out, counts = scrub_pii(text)
        if placeholder in out and sum(counts.values()) == 1:
            hits += 1
        else:
            misses.append((text, out))
    assert len(PII) >= 30
    assert hits / len(PII) >= 0.99, misses


def test_ordinary_numbers_dates_prices_stay():
    for text in KEEP:
        assert scrub_pii(text) == (text, {}), text


def test_luhn():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    # a Luhn-invalid 16-digit number is not a card
    assert "<CARD_NUMBER>" not in scrub_pii("Order 4111 1111 1111 1112 shipped")[0]


def test_several_in_one_text_are_counted():
    out, counts = scrub_pii("a@b.org, c@d.org; 10.1.2.3 and +1 (555) 123-4567")
    assert counts == {"EMAIL": 2, "IP": 1, "PHONE": 1}
    assert out == "<EMAIL>, <EMAIL>; <IP_ADDRESS> and <PHONE>"


def test_each_national_id_becomes_one_placeholder():
    for sentence, identifier in NATIONAL_IDS:
        assert scrub_pii(sentence) == (sentence.replace(identifier, "<GOV_ID>"), {"GOV_ID": 1}), sentence


def test_national_id_lookalikes_that_fail_validation_stay():
    for sentence in ID_LOOKALIKES:
        assert scrub_pii(sentence) == (sentence, {}), sentence


def test_planted_page_loses_its_identifiers_and_nothing_else():
    paragraphs = [s for s, _ in NATIONAL_IDS] + ID_LOOKALIKES
    text = page(list(range(0, 12)), "\n\n".join(paragraphs))
    expected = page(list(range(0, 12)), "\n\n".join([s.replace(i, "<GOV_ID>") for s, i in NATIONAL_IDS] + ID_LOOKALIKES))
    assert scrub_pii(text) == (expected, {"GOV_ID": len(NATIONAL_IDS)})


def test_weak_checks_need_their_label_close_by():
    far = "BSN" + " filler" * (LABEL_WINDOW // 7 + 1) + " 111222333"
    assert scrub_pii(far) == (far, {})
    assert scrub_pii("bsn: 111222333")[1] == {"GOV_ID": 1}   # labels in any case
    assert scrub_pii("BSN\n111222333")[1] == {}               # and in the number's own line
