"""Write tests/vectors/codename-format.json from app/crypto/codename.py (the format's owner).

    .venv/bin/python tests/make_codename_vectors.py

The browser module (app/web/js/mailbox-core.js) is checked against the same file
(tests/test_browser_bundle.py), so the check word and the numeric form cannot drift apart.
Rerun and commit after any change to the check word or the numeric form.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.crypto import codename
from app.crypto.codename import Codename, CodenameError

OUT = Path(__file__).resolve().parent / "vectors" / "codename-format.json"
# fixed secrets: both ends of the list, and a few in between
SECRETS = [
    (0, 0, 0, 0, 0, 0, 0),
    (7775, 7775, 7775, 7775, 7775, 7775, 7775),
    (3730, 1572, 1238, 5003, 2134, 7199, 5219),
    (1, 2, 3, 4, 5, 6, 7),
    (6000, 42, 777, 5123, 3888, 1944, 7000),
]
ARABIC_INDIC = str.maketrans("0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669")
PERSIAN = str.maketrans("0123456789", "\u06f0\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6\u06f7\u06f8\u06f9")
FULLWIDTH = str.maketrans("0123456789", "\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19")


def _case(text: str) -> dict:
    try:
        c = codename.parse(text)
    except CodenameError as err:
        return {"input": text, "kdf_input": None, "words": None, "numbers": None,
                "error": err.code}
    return {"input": text, "kdf_input": c.kdf_input, "words": c.as_words,
            "numbers": c.as_numbers, "error": None}


def _inputs(c: Codename) -> list[str]:
    """The written forms, what a witness may type instead, and one-word typos."""
    words, numbers = c.as_words.split(), c.as_numbers
    typo = list(words)
    typo[3] = codename.words()[(c.indices[3] + 1) % codename.LIST_SIZE]
    wrong_check = list(words)
    wrong_check[7] = codename.words()[(c.indices[7] + 4000) % codename.LIST_SIZE]
    digits = numbers.replace(" ", "")
    bad_digit = digits[:5] + str((int(digits[5]) + 1) % 10) + digits[6:]
    return [
        " ".join(words), "-".join(w.upper() for w in words), " ".join(words[:7]),
        numbers, digits, numbers.translate(ARABIC_INDIC), numbers.translate(PERSIAN),
        digits.translate(FULLWIDTH), "-".join(numbers.split()),
        " ".join(typo), " ".join(wrong_check), " ".join(words[:6]), bad_digit, digits[:-1],
    ]


def main() -> None:
    cases = [_case(text) for s in SECRETS for text in _inputs(Codename(s))]
    cases += [_case(t) for t in ("", "7776 " * 8, "1234 abacus", "abacus")]
    OUT.write_text(json.dumps(cases, ensure_ascii=False, indent=2) + "\n", "utf-8")
    print(f"wrote {len(cases)} codename format vectors to {OUT.name}")


if __name__ == "__main__":
    main()
