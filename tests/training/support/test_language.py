"""Language detection: foreign messages get a handover in their language, short ones stay served."""

from __future__ import annotations

import pytest

from training.support.language import (
    DETECTED,
    HANDOVER_TEXTS,
    LanguageConfig,
    LanguageDetector,
    handover_text,
)

# What shoppers of an English shop type that any detector can take for another language.
SHORT_ENGLISH = [
    "ok", "OK!", "thx", "thanks", "cheers", "yes", "no", "sure", "bye", "hi", "cool", "perfect",
    "12345678", "order 12345678", "#00108", "order #A1234", "bob@example.com",
    "https://shop.example.com/p/i000017", "Lumen Desk Lamp", "Nike", "the second one",
    "Umbra Eco Dumbbell", "Kestrel Ultra Dumbbell", "Zephyr Soft Serum", "Orbit Bold Kite", "how can i file a reclaqmation", "delikveries to Japan",
    "how much", "and in blue?", "any cheaper?", "ok great", "no thanks", "thank you!",
]  # fmt: skip
FOREIGN = {
    "zh": ["我想取消订单", "你好", "我的包裹在哪里？", "可以退货吗"],
    "es": ["¿Dónde está mi pedido?", "Quiero devolver estas zapatillas", "gracias por la ayuda"],
    "fr": ["Je voudrais annuler ma commande", "Où est mon colis ?", "bonjour, vous livrez en Belgique ?"],
    "de": ["Wo ist meine Bestellung?", "Ich möchte die Jacke zurückgeben", "Bestellung stornieren bitte"],
    "it": ["Vorrei restituire questo articolo", "Dov'è il mio ordine?", "grazie mille"],
    "pt": ["Quero cancelar o meu pedido", "Onde está a minha encomenda?", "muito obrigado"],
    "nl": ["Waar is mijn bestelling?"],
    "ru": ["Где мой заказ?"],
    "ja": ["注文をキャンセルしたいです"],
    "ko": ["주문을 취소하고 싶어요"],
    "pl": ["Gdzie jest moje zamówienie?"],
    "tr": ["Siparişim nerede?"],
}


@pytest.fixture(scope="module")
def detector() -> LanguageDetector:
    return LanguageDetector().warm()


@pytest.mark.parametrize("message", SHORT_ENGLISH)
def test_short_messages_codes_and_product_names_are_served(detector, message):
    assert detector.detect(message).served, message


@pytest.mark.parametrize("language, message", [(lang, m) for lang, ms in FOREIGN.items() for m in ms])
def test_foreign_messages_are_detected_and_not_served(detector, language, message):
    found = detector.detect(message)
    assert (found.language, found.served) == (language, False), message


def test_the_shops_own_words_are_ignored():
    titles = ["Kestrel Ultra Lantern", "Kestrel Ultra Atlas"]
    plain = LanguageDetector()
    assert not any(plain.detect(t).served for t in titles)  # alone, they look foreign
    shop = LanguageDetector(vocabulary=titles)
    assert all(shop.detect(t).served for t in titles)
    assert shop.detect("do you have the Kestrel Ultra Lantern in stock?").served
    assert not shop.detect("Haben Sie die Kestrel Ultra Lantern noch auf Lager?").served


def test_english_sentences_are_served(detector):
    for message in ("Where is my parcel?", "I want to cancel order 12345678", "do you have running shoes?"):
        found = detector.detect(message)
        assert found.served and found.language == "en"


def test_a_served_language_is_answered():
    german_shop = LanguageDetector(LanguageConfig(served=("en", "de")))
    assert german_shop.detect("Wo ist meine Bestellung?").served
    assert not german_shop.detect("Où est mon colis ?").served
    with pytest.raises(ValueError, match="not among the detected"):
        LanguageDetector(LanguageConfig(served=("en", "xx")))


def test_every_detected_language_has_a_handover_in_that_language(detector):
    assert set(HANDOVER_TEXTS) == set(DETECTED)
    for language, text in HANDOVER_TEXTS.items():
        assert detector.detect(text).language == language, language
    assert handover_text("fr") == HANDOVER_TEXTS["fr"]
    assert handover_text(None) == handover_text("xx") == HANDOVER_TEXTS["en"]
