"""Which language a shopper writes in, and the handover for a language the shop does not serve.

Detection uses lingua (its n-gram models ship inside the wheel), restricted to the languages
below: fewer candidates are faster and confuse short English less. About 0.3 ms a message
(p50 over the Bitext questions) once the models are loaded, which takes about 2 s
(``benchmarks/language.py``).

Short messages carry little evidence: "ok", "thx", "cheers", an order number or a product
name can look Polish, French, Dutch or German to any detector. So a message counts as
foreign only when the evidence is clear: it has enough letters once numbers, e-mail
addresses, links, codes and the shop's own words (brands, product names) are removed, and
the best unserved language is several times as likely as the best served one (less when the
message has letters English does not use, such as é, ß or ñ). Anything less is treated as a
served language and answered normally; a message in a script no served language uses
(Chinese, Japanese, Korean, Cyrillic) is reliable at any length.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

# ISO 639-1 codes the detector chooses among (lingua's names for them).
DETECTED = {
    "en": "ENGLISH",
    "zh": "CHINESE",
    "es": "SPANISH",
    "fr": "FRENCH",
    "de": "GERMAN",
    "it": "ITALIAN",
    "pt": "PORTUGUESE",
    "nl": "DUTCH",
    "pl": "POLISH",
    "ru": "RUSSIAN",
    "ja": "JAPANESE",
    "ko": "KOREAN",
    "tr": "TURKISH",
}

# The handover, in the shopper's language (a human colleague who speaks it takes over).
HANDOVER_TEXTS = {
    "en": (
        "I want to be sure you get the right answer, so I'm passing this conversation to a "
        "colleague from our support team. They will reply here shortly."
    ),
    "zh": "为了确保您得到准确的答复，我已将此对话转交给我们的客服同事，他们会尽快在这里回复您。",
    "es": (
        "Para asegurarnos de darle la respuesta correcta, paso esta conversación a un compañero "
        "de nuestro equipo de atención al cliente. Le responderá aquí en breve."
    ),
    "fr": (
        "Pour être sûr que vous obteniez la bonne réponse, je transmets cette conversation à un "
        "collègue de notre service client. Il vous répondra ici très bientôt."
    ),
    "de": (
        "Damit Sie die richtige Antwort bekommen, gebe ich dieses Gespräch an eine Kollegin oder "
        "einen Kollegen aus unserem Kundenservice weiter. Sie erhalten hier in Kürze eine Antwort."
    ),
    "it": (
        "Per essere sicuri di darle la risposta giusta, passo questa conversazione a un collega "
        "del nostro servizio clienti. Le risponderà qui a breve."
    ),
    "pt": (
        "Para garantir que recebe a resposta certa, vou passar esta conversa a um colega da "
        "nossa equipa de apoio ao cliente. Ele responderá aqui em breve."
    ),
    "nl": (
        "Om zeker te zijn dat u het juiste antwoord krijgt, geef ik dit gesprek door aan een "
        "collega van onze klantenservice. U krijgt hier binnenkort een antwoord."
    ),
    "pl": (
        "Aby mieć pewność, że otrzymasz właściwą odpowiedź, przekazuję tę rozmowę koledze z "
        "naszego działu obsługi klienta. Wkrótce odpowie tutaj."
    ),
    "ru": (
        "Чтобы вы точно получили правильный ответ, я передаю этот разговор коллеге из нашей "
        "службы поддержки. Он скоро ответит вам здесь."
    ),
    "ja": "正確にお答えするため、この会話をサポートチームの担当者に引き継ぎます。まもなくこちらで返信いたします。",
    "ko": "정확한 답변을 드리기 위해 이 대화를 고객 지원팀 동료에게 전달하겠습니다. 곧 이곳에서 답변드리겠습니다.",
    "tr": (
        "Doğru yanıtı aldığınızdan emin olmak için bu konuşmayı müşteri hizmetleri ekibimizden "
        "bir meslektaşıma aktarıyorum. Kısa süre içinde size buradan yanıt verecek."
    ),
}

# Removed before detection: they say nothing about the language.
_NOISE = re.compile(
    r"https?://\S+|www\.\S+|[\w.+-]+@[\w-]+\.[\w.-]+|#?\w*\d\w*",  # links, e-mails, codes and numbers
)
# Scripts whose languages no Latin-script language shares: reliable at any length.
_SCRIPTS = {
    "CJK": ("zh", "ja"),
    "HIRAGANA": ("ja",),
    "KATAKANA": ("ja",),
    "HANGUL": ("ko",),
    "CYRILLIC": ("ru",),
}


@dataclass(frozen=True)
class LanguageConfig:
    """What the detector trusts. The ratios were set on the 4,514 Bitext questions (typos
    included: "how can i file a reclaqmation" is 3.5 times as Italian as English) and on
    foreign shopper messages (lowest ratio 7.2 without accents, 2.5 with them)."""

    # Languages the shop answers in (ISO 639-1); the rest get a handover in their language.
    served: tuple[str, ...] = ("en",)
    # Letters (numbers, codes, links removed) a Latin-script message needs to count as foreign,
    # in one word at least ("lol ok" is two short words, not Polish).
    min_letters: int = 4
    # How many times as likely the best unserved language must be as the best served one.
    min_ratio: float = 5.0
    # The same for a message with letters outside ASCII (é, ü, ñ, ß, ¿...).
    min_ratio_accented: float = 2.0


@dataclass(frozen=True)
class Detection:
    language: str | None  # ISO 639-1 code, None when the message says too little
    confidence: float
    served: bool  # answer it (a served language, or not sure enough to say otherwise)


@cache
def _detector(codes: tuple[str, ...]):
    from lingua import Language, LanguageDetectorBuilder

    languages = [getattr(Language, DETECTED[c]) for c in codes]
    return LanguageDetectorBuilder.from_languages(*languages).with_preloaded_language_models().build()


def _script_languages(text: str) -> tuple[str, ...]:
    for char in text:
        if char.isalpha():
            name = unicodedata.name(char, "")
            for script, codes in _SCRIPTS.items():
                if name.startswith(script):
                    return codes
    return ()


class LanguageDetector:
    """``detect(message)``: the message's language and whether the shop answers it."""

    def __init__(self, config: LanguageConfig | None = None, vocabulary: Iterable[str] = ()) -> None:
        """``vocabulary``: the shop's own words (brands, product names), ignored in detection."""
        self.config = config or LanguageConfig()
        words = sorted({w.lower() for text in vocabulary for w in re.findall(r"\w+", text)}, key=len)
        self._vocabulary = (
            re.compile(r"\b(?:" + "|".join(map(re.escape, reversed(words))) + r")\b", re.I) if words else None
        )
        unknown = sorted(set(self.config.served) - set(DETECTED))
        if unknown:
            raise ValueError(f"served languages {unknown} are not among the detected ones {sorted(DETECTED)}")
        self._codes = tuple(sorted(DETECTED))
        self._by_name = {name: code for code, name in DETECTED.items()}

    def warm(self) -> LanguageDetector:
        """Load the language models now (about 2 s) rather than on the first message."""
        _detector(self._codes)
        return self

    def detect(self, text: str) -> Detection:
        served = self.config.served
        cleaned = _NOISE.sub(" ", text)
        if self._vocabulary is not None:
            cleaned = self._vocabulary.sub(" ", cleaned)
        letters = sum(ch.isalpha() for ch in cleaned)
        script = _script_languages(cleaned)
        longest = max((len(w) for w in re.findall(r"[^\W\d_]+", cleaned)), default=0)
        if letters == 0 or (not script and min(letters, longest) < self.config.min_letters):
            return Detection(None, 0.0, True)
        values = _detector(self._codes).compute_language_confidence_values(cleaned)
        confidence = {self._by_name[v.language.name]: v.value for v in values}
        best = max(confidence, key=confidence.get)
        if best in served:
            return Detection(best, confidence[best], True)
        if script and best in script:
            return Detection(best, confidence[best], False)
        served_best = max((confidence.get(c, 0.0) for c in served), default=0.0)
        accented = any(ch.isalpha() and not ch.isascii() for ch in cleaned)
        needed = self.config.min_ratio_accented if accented else self.config.min_ratio
        if confidence[best] >= needed * served_best:
            return Detection(best, confidence[best], False)
        return Detection(None, confidence[best], True)


def handover_text(language: str | None) -> str:
    """The handover in ``language`` (English when there is no text for it)."""
    return HANDOVER_TEXTS.get(language or "en", HANDOVER_TEXTS["en"])
