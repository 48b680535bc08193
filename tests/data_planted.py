"""Planted documents for the data-pipeline tests: ordinary English and German prose written for
these tests, assembled into pages that pass the quality filters, plus near-copies, PII and bad
inputs. Kept apart from the tests so several test files can share it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

SENTENCES = [
    "The library opened a new reading room on the second floor last spring.",
    "Volunteers spent several weekends painting the walls and repairing the old oak shelves.",
    "Most visitors come in the afternoon, when the light from the tall windows is warm and even.",
    "A small cafe near the entrance sells coffee, tea and sandwiches made that morning.",
    "Children gather on Saturday mornings to listen to stories read aloud by a retired teacher.",
    "The building itself dates from the early years of the last century and has been restored twice.",
    "Its architect wanted a place where anyone could sit quietly and think without paying for the privilege.",
    "Today the collection includes maps, newspapers and letters written by people who lived in the valley.",
    "Researchers from the university often ask to see the letters, which describe floods, harvests and weddings.",
    "One of the librarians is slowly transcribing them so that they can be searched on a computer.",
    "Gardening is a patient hobby that rewards people who plan ahead and accept small failures.",
    "In early March the soil is still cold, so most seeds are started indoors on a bright windowsill.",
    "Tomatoes need plenty of sun, regular water and a sturdy stake to climb as they grow heavy with fruit.",
    "Beans are easier, and they even improve the soil by adding nitrogen that other plants can use later.",
    "A neighbour taught me to plant marigolds between the rows because their smell keeps some insects away.",
    "By the end of summer there are usually more cucumbers than the whole street can eat.",
    "We give the extra vegetables to the food bank, which is always grateful for fresh produce.",
    "In autumn the beds are covered with leaves and compost so that worms can work through the winter.",
    "Keeping a notebook of what grew well each year turns out to be more useful than any book.",
    "Every gardener learns that the weather will always have the final word.",
    "The train left the coast just after dawn and climbed slowly into the hills.",
    "Through the window we watched fishing boats shrink into bright specks on the grey water.",
    "An old man across the aisle pointed out the ruins of a castle that few travellers notice.",
    "He said his grandfather had worked on the railway when the tunnels were first cut through the rock.",
    "At the mountain station the air was thin and cold, and everyone reached for a coat.",
    "A narrow path led from the platform to a lake that reflected the snow on the peaks above.",
    "We walked around it in an hour, stopping often to watch the clouds move across the ridges.",
    "On the way back the conductor sold us hot chocolate from a flask he kept under his seat.",
    "It was the kind of journey that makes a long week at a desk seem very far away.",
    "When we reached the city again the streets were wet, noisy and strangely welcoming.",
]

QUIZ = [
    "Our weekly quiz started as a way for the office to take a break on Friday afternoons.",
    "Each round has ten questions about nature, history and the odd corners of geography.",
    "People answer on paper, and the winner chooses the biscuits for the following week.",
    "Nobody is allowed to look anything up, although arguments about the answers can last until Monday.",
    "Last month the hardest round was about animals, and the best team scored only four points.",
    "This page collects some of the questions that caused the longest discussions so far.",
]

BASE_PAGE = [
    "Bread is one of the oldest prepared foods, and every culture seems to have its own version.",
    "The simplest loaf needs only flour, water, salt and a little yeast, mixed and left to rise.",
    "During the first rise the yeast eats sugars in the flour and releases gas that stretches the dough.",
    "Kneading develops gluten, a network of proteins that traps that gas and gives the crumb its structure.",
    "A wet dough takes longer to handle but usually rewards the baker with larger, irregular holes.",
    "Many home bakers keep a sourdough starter, which is a living culture of wild yeast and bacteria.",
    "The starter must be fed with fresh flour and water every day, or kept in the fridge between bakes.",
    "Sourdough bread rises more slowly, and the long fermentation gives it a mild, pleasant sourness.",
    "The oven should be very hot, and a tray of water on the bottom shelf helps the crust to form.",
    "After baking, the loaf must cool on a rack for an hour before it is cut, however tempting it smells.",
    "Stale bread need not be wasted, since it makes excellent toast, crumbs and summer salads.",
    "Bakers argue endlessly about flour, hydration and timing, and that argument is half the fun.",
]
NEAR_COPY_EDITS = [("oldest", "most ancient"), ("simplest", "most basic"), ("little", "small amount of"),
                   ("stretches", "expands"), ("usually", "often"), ("wild", "natural"), ("mild", "gentle"),
                   ("very hot", "extremely hot"), ("excellent", "very good"), ("endlessly", "constantly"),
                   ("pleasant", "agreeable"), ("fresh", "new")]

GERMAN_PAGE = (
    "Die Stadtbibliothek hat im letzten Frühjahr einen neuen Lesesaal im zweiten Stock eröffnet. "
    "Freiwillige haben mehrere Wochenenden damit verbracht, die Wände zu streichen und die alten Regale zu reparieren. "
    "Die meisten Besucher kommen am Nachmittag, wenn das Licht durch die hohen Fenster warm und gleichmäßig ist. "
    "Ein kleines Café am Eingang verkauft Kaffee, Tee und belegte Brote, die am selben Morgen gemacht wurden.\n\n"
    "Am Samstagmorgen versammeln sich die Kinder, um Geschichten zu hören, die eine pensionierte Lehrerin vorliest. "
    "Das Gebäude stammt aus den ersten Jahren des letzten Jahrhunderts und wurde zweimal restauriert. "
    "Sein Architekt wollte einen Ort schaffen, an dem jeder ruhig sitzen und nachdenken kann, ohne dafür zu bezahlen. "
    "Heute umfasst die Sammlung Karten, Zeitungen und Briefe von Menschen, die im Tal gelebt haben.\n\n"
    "Forscher der Universität fragen oft nach den Briefen, die von Überschwemmungen, Ernten und Hochzeiten erzählen. "
    "Eine der Bibliothekarinnen schreibt sie langsam ab, damit man sie am Computer durchsuchen kann. "
    "Wer die Bibliothek besucht, sollte sich Zeit nehmen und auch die kleine Ausstellung im Keller ansehen."
)

EVAL_TEXT = ("Which of the following animals is known for carrying its young in a pouch on the front of "
             "its belly while hopping across the dry grasslands of Australia")

PII_LINE = "Write to jane.doe@example.org or call +1 (555) 123-4567; the server is at 192.168.10.20."

# National identifiers as people write them, one per sentence: (sentence, the identifier). Each
# passes its own validation (check digits, encoded birth date); the numbers are invented or the
# issuers' published specimens.
NATIONAL_IDS = [
    ("My National Insurance number is QQ123456C.", "QQ123456C"),
    ("NI number: QQ 12 34 56 C, as on the letter.", "QQ 12 34 56 C"),
    ("Please quote NI number AB 12 34 56 C when you write.", "AB 12 34 56 C"),
    ("Meine Steuer-ID lautet 65929970489.", "65929970489"),
    ("Steuerliche Identifikationsnummer: 86 095 742 719", "86 095 742 719"),
    ("Sozialversicherungsnummer 15 070649 C 103 (Rentenversicherung).", "15 070649 C 103"),
    ("Versicherungsnummer 65180539W513 auf dem Ausweis.", "65180539W513"),
    ("Numéro de sécurité sociale : 1 84 12 76 451 089 46.", "1 84 12 76 451 089 46"),
    ("Né en Corse, NIR 1 85 05 2A 004 006 76, carte Vitale à jour.", "1 85 05 2A 004 006 76"),
    ("Mon numéro de sécu est 255081416802538.", "255081416802538"),
    ("Nombre: Juan, DNI 12345678Z, domicilio en Madrid.", "12345678Z"),
    ("Con DNI 12345678-Z se puede reservar.", "12345678-Z"),
    ("El NIE X1234567L figura en la tarjeta.", "X1234567L"),
    ("Codice fiscale RSSMRA85T10A562S, residente a Roma.", "RSSMRA85T10A562S"),
    ("Il codice fiscale di lei è BNCLRA80A41H501D.", "BNCLRA80A41H501D"),
    ("Codice fiscale omocodico RSSMRA85T10A56NH assegnato dall'Agenzia.", "RSSMRA85T10A56NH"),
    ("Mijn BSN is 111222333.", "111222333"),
    ("Burgerservicenummer: 1112.22.333", "1112.22.333"),
    ("Numer PESEL 44051401359 podano we wniosku.", "44051401359"),
    ("PESEL: 02270803624", "02270803624"),
    ("CPF 111.444.777-35 cadastrado.", "111.444.777-35"),
    ("Informe o CPF: 11144477735", "11144477735"),
    ("マイナンバー：1234 5678 9018", "1234 5678 9018"),
    ("個人番号は123456789018です。", "123456789018"),
    ("公民身份号码 11010519491231002X 已登记。", "11010519491231002X"),
    ("身份证号 440301200002291237。", "440301200002291237"),
    ("СНИЛС 112-233-445 95 указан в анкете.", "112-233-445 95"),
    ("Номер СНИЛС: 11223344595", "11223344595"),
    ("ИНН 500100732259 физического лица.", "500100732259"),
]

# The same shapes failing validation, or valid only as digits and without the label their
# weak check needs: all stay as written.
ID_LOOKALIKES = [
    "Form DQ123456C and GB123456A are not National Insurance numbers.",   # prefixes never issued
    "Steuer-ID 65929970488 ist falsch abgeschrieben.",                    # check digit
    "Steuer-ID 12345556788 hat eine Ziffer dreimal hintereinander.",      # digit rule
    "Artikelnummer 65929970489 im Katalog.",                              # valid digits, no label
    "Versicherungsnummer 15 070649 C 104 ist ungültig.",                  # check digit
    "Versicherungsnummer 15071349C107 hat keinen 13. Monat.",             # birth month
    "Numéro de sécurité sociale : 1 84 12 76 451 089 47.",                # key
    "Référence produit 184127645108946 en stock.",                        # valid digits, no label
    "Pedido 12345678A enviado; lote 40012345-B.",                         # DNI letters
    "Pedido 12345678Z enviado.",                                          # valid letter, no label
    "NIE X1234567T no es válido.",
    "Codice fiscale RSSMRA85T10A562T con carattere di controllo errato.",
    "Codice fiscale RSSMRA85T35A562S: giorno 35 non esiste.",
    "BSN 111222334 klopt niet.",                                          # 11-test
    "Ordernummer 111222333 is verzonden.",                                # valid digits, no label
    "PESEL 44051401358 jest błędny.",
    "CPF 11144477736 e CPF 11111111111 são inválidos.",                   # check, repeated digits
    "マイナンバー：1234 5678 9012",                                          # check digit
    "Tracking number 123456789018 was emailed.",                          # valid digits, no label
    "身份证号 110105194912310021 校验码错误。",                               # check character
    "身份证号 440301200102301236 日期不存在。",                               # 30 February
    "СНИЛС 11223344596 с ошибкой.",
    "ИНН 500100732250 неверен.",
    "SKU 100200300400 ships in 3-5 days; batch 20240115, lot 1234 5678 9012.",
    "Invoice 20240115 for 1 234 567 items, total 12 345 678,90 EUR on 15.01.2024.",
]


def page(indices: list[int], extra: str = "") -> str:
    paras = []
    for start in range(0, len(indices), 4):
        paras.append(" ".join(SENTENCES[i] for i in indices[start:start + 4]))
    text = "\n\n".join(paras)
    return text + ("\n\n" + extra if extra else "")


def near_copies(n: int = 10) -> list[str]:
    out = []
    for k in range(n):
        text = " ".join(BASE_PAGE)
        for j in range(3):  # three different edits per copy
            old, new = NEAR_COPY_EDITS[(3 * k + j) % len(NEAR_COPY_EDITS)]
            text = text.replace(old, new, 1)
        out.append(text[:len(text) // 2] + "\n\n" + text[len(text) // 2:])
    return out


def write_corpus(folder: Path, blocked_domain: str) -> dict:
    """A local: folder with every planted case; returns what the tests check against."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [
        {"id": "good-library", "url": "https://library.example.org/about", "text": page(list(range(0, 10)))},
        {"id": "good-garden", "url": "https://garden.example.net/notes", "text": page(list(range(10, 20)), PII_LINE)},
        {"id": "blocked", "url": f"https://{blocked_domain}/page.html", "text": page(list(range(0, 12)))},
        {"id": "german", "url": "https://bibliothek.example.de/", "text": GERMAN_PAGE},
        {"id": "contaminated", "url": "https://quiz.example.com/",
         "text": " ".join(QUIZ) + "\n\nQuestion of the day: " + EVAL_TEXT + "? Answer below."},
    ]
    for k, text in enumerate(near_copies(10)):
        records.append({"id": f"bread-{k}", "url": f"https://bread{k}.example.com/recipe", "text": text})
    with open(folder / "pages.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    # bad inputs
    full = gzip.compress(page(list(range(0, 30))).encode() * 20)
    (folder / "truncated.txt.gz").write_bytes(full[: len(full) // 2])
    (folder / "latin1.txt").write_bytes("Grüße aus Zürich: ein Café, ein Bäcker und viel Schnee.".encode("latin-1"))
    (folder / "empty.txt").write_bytes(b"")
    (folder / "huge.txt").write_bytes(b"x" * (50 * 1024 * 1024))
    (folder / "nothing.html").write_text("<html><head><script>var a = 1;</script></head><body><div></div></body></html>")
    (folder / "travel.html").write_text("<html><head><title>Trip</title></head><body><nav>Home | About</nav><article>"
                                        + "".join(f"<p>{SENTENCES[i]}</p>" for i in range(20, 30))
                                        + "</article></body></html>")
    return {"records": records}
