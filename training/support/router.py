"""The turn router: what the shopper's turn is, read with the turn before it.

A MiniLM encoder with a classification head over (this message, the shopper's previous
message). Goals: a support request, a product request, a question about a product already
shown, small talk, or out of scope (a language the shop does not serve is decided before,
by ``training.support.language``). Below ``threshold`` confidence the answer is a
clarifying question, not a guess.

Training data (``router_examples``), built here and documented there: Bitext questions,
ABCD-flow questions and follow-up details for support; product requests, refinements and
product questions composed from written templates over the catalog's vocabulary and general
shop words; written small-talk and out-of-scope phrases. The dev set
(``training.support.dev_set``) is never trained on; its dev half sets the threshold and
guided every choice of data and settings.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.support.encoder import resolve_encoder

LABELS = ("support", "product_request", "product_question", "small_talk", "out_of_scope")
CLARIFY = (
    "Sorry, I'm not sure I understood. Are you looking for a product, asking about one I showed "
    "you, or do you need help with an order?"
)

# Written phrases, composed at random (``_compose``): "{a|b|}" picks one of its choices ("" is
# one), "{noun}" and the other named slots take a word of the catalog or of the lists below.
# Written for the general case by the team; nothing here is copied from the dev set.

# Small talk: greetings, thanks, acknowledgements, goodbyes, chat about the chat itself.
SMALL_TALK = (
    "hi", "hello", "hey", "hey there", "hi there", "hiya", "good morning", "good afternoon",
    "good evening", "morning!", "yo", "hello again",
    "thanks", "thank you", "thanks a lot", "thank you so much", "thx", "ty", "cheers", "much appreciated",
    "many thanks", "thanks a bunch", "thank you very much", "appreciate it", "thanks for your help",
    "ok", "okay", "k", "alright", "got it", "sure", "cool", "great", "perfect", "nice", "awesome",
    "fine", "understood", "makes sense", "no worries", "never mind", "sounds good", "fair enough",
    "i see", "oh ok", "right", "gotcha", "excellent", "wonderful", "good to know", "that helps",
    "lol", "lol ok", "haha", "haha ok", "hehe", "just kidding", "oops", "my bad", "sorry",
    "bye", "goodbye", "see you", "see ya", "have a nice day", "have a good one", "take care",
    "that's all", "that's it", "nothing else", "no, that's everything", "bye for now", "talk later",
    "you too", "same to you", "how are you?", "how are you today?", "how's it going", "what's up",
    "you're helpful", "great job", "you're the best", "nice chatting", "are you a bot?",
    "are you a real person?", "what's your name?", "I'll think about it", "maybe later",
    "I'll wait", "ok I'll wait", "let me think", "hold on", "one sec", "wait a moment", "hmm",
    "I'll come back later", "not right now", "no thanks", "nope", "yes", "yeah", "yep",
)  # fmt: skip
_SMALL_TALK_JOINED = (
    "{ack}, {thanks}", "{ack} {thanks}", "{thanks}, {bye}", "{ack}, {bye}", "{thanks}!", "{ack}!",
    "{thanks}, {closing}", "{ack}, {closing}", "{greeting}!", "{greeting}, {how}",
    "{thanks} {closing}", "{ack}, {thanks}, {bye}",
)  # fmt: skip
_ACKS = ("ok", "okay", "alright", "great", "cool", "perfect", "nice", "awesome", "got it", "sure",
         "fair enough", "understood", "haha ok", "lol", "ok then", "oh", "wonderful", "sweet")  # fmt: skip
_THANKS = ("thanks", "thank you", "thanks a lot", "thx", "ty", "cheers", "many thanks",
           "thank you so much", "appreciate it", "thanks for the help")  # fmt: skip
_BYES = ("bye", "goodbye", "see you", "bye bye", "take care", "have a nice day", "cya", "later")
_CLOSINGS = ("that's all", "I'll think about it", "that's everything", "I'll wait", "nothing else",
             "you've been helpful", "I'll come back later", "I'm good", "all sorted", "have a good day")  # fmt: skip
_GREETINGS = ("hi", "hello", "hey", "good morning", "good evening", "hi there", "hey there")
_HOW = ("how are you?", "how's it going?", "how are you doing today?", "how's your day?")

OUT_OF_SCOPE = (
    "what's the weather in {city}?", "will it rain in {city} tomorrow", "is it cold in {city} today",
    "what is the capital of {country}?", "who won the game last night?", "who won the {sport} match",
    "what's the score of the {sport} game", "when does the {sport} season start", "tell me a joke",
    "tell me a fun fact", "write me a poem about {thing}", "write a story about {thing}",
    "what's {a} times {b}?", "what is {a} plus {b}", "solve {a}x + {b} = 0",
    "can you do my homework?", "help me with my essay on {thing}", "who is the president of {country}?",
    "recommend a good restaurant in {city}", "where can I eat nearby", "best bars in {city}?",
    "what time is it in {city}?", "how old is the universe", "how far is the moon",
    "translate hello into {language}", "how do you say thank you in {language}",
    "what's the meaning of life", "can you book me a flight to {city}?", "book a hotel in {city}",
    "call me a taxi", "order me a pizza", "who wrote Hamlet?", "who painted the Mona Lisa",
    "how do I fix my car", "my car won't start", "how do I cook {food}?", "give me a recipe for {food}",
    "sing me a song", "do you know a good doctor in {city}?", "I have a headache, what should I take?",
    "what's the population of {country}?", "is {thing} healthy?", "how many calories in {food}",
    "what's the stock price of {company}?", "should I buy bitcoin", "what's the news today",
    "who will win the election", "write some python code for me", "how do I learn to code",
    "what movie should I watch tonight", "what's on TV tonight", "explain quantum physics",
    "what's the best phone plan", "how do I file my taxes", "can you give me legal advice",
    "where is the nearest train station", "how tall is Mount Everest", "what year did WW2 end",
    "do aliens exist?", "what's your favourite colour", "can you hack my ex's account",
    "how do I get to {city}", "what's the exchange rate for the euro", "play some music",
)  # fmt: skip
_CITIES = ("Paris", "Toronto", "Berlin", "Sydney", "Chicago", "Madrid", "Tokyo", "Dublin", "London",
           "Lisbon", "Boston", "Mumbai", "Cairo", "Oslo")  # fmt: skip
_COUNTRIES = ("Australia", "Canada", "Brazil", "Japan", "Kenya", "Norway", "Peru", "India", "Mexico",
              "Egypt", "Spain", "Germany")  # fmt: skip
_THINGS = ("the sea", "autumn", "cats", "coffee", "chocolate", "the moon", "running", "pizza", "dogs",
           "love", "history", "the ocean", "sugar", "red wine")  # fmt: skip
_FOODS = ("pasta", "pancakes", "lasagna", "rice", "a curry", "an omelette", "banana bread")
_SPORTS = ("football", "basketball", "tennis", "baseball", "hockey", "cricket")
_COMPANIES = ("Apple", "Tesla", "Google", "Amazon", "Microsoft")
_OUT_OF_SCOPE_PREFIXES = ("", "", "", "random question, ", "btw ", "hey, ", "unrelated but ",
                          "quick question: ", "off topic, ", "also, ")  # fmt: skip

# Product requests: ask for products, or narrow/change the last request ("cheaper", "not X").
PRODUCT_REQUESTS = (
    "do you have {noun}s?", "do you sell {noun}s", "do you carry {noun}s?", "got any {noun}s?",
    "I'm looking for a {noun}", "I'm looking for {adj} {noun}s", "looking for a {noun}",
    "I'm after a {noun}", "I'm searching for a {noun}", "I want to buy a {noun}", "I want a {noun}",
    "I'd like a {noun}", "I'd like to buy some {noun}s", "I need a {adj} {noun}", "I need a new {noun}",
    "show me {noun}s", "show me some {adj} {noun}s", "can you show me {noun}s?", "find me a {noun}",
    "can you find me a {adj} {noun}", "any {brand} {noun}s?", "any {noun}s?", "{noun}s?", "{noun}",
    "{adj} {noun}", "a {noun}", "a {adj} {noun} please", "{noun}s please", "{brand} {noun}",
    "{noun} under {price} dollars", "{noun}s under ${price}", "a {noun} for less than {price}",
    "something from {category}", "what do you have in {category}?", "anything in {category}",
    "do you sell {category} stuff?", "show me your {category} range", "what {noun}s do you have?",
    "I want a {noun} from {brand}", "show me {adj} {noun}s under ${price}", "a {noun} please",
    "looking for a gift, maybe a {noun}", "I need a gift for my {person}", "a present for my {person}",
    "what would you recommend for my {person}?", "gift ideas for a {person}?", "something for my {person}",
    "what can I get for a {person} who likes {hobby}?", "I need something for {hobby}",
    "recommend me a {noun}", "can you recommend a good {noun}?", "what's a good {noun}?",
    "what {noun} would you suggest", "which {noun} should I buy?", "best {noun}s you have?",
    "do you have any {adj} {noun}s in stock?", "is there a {noun} from {brand}?",
    "I need {noun}s for my {room}", "something for the {room}", "a {noun} for the {room}",
    "kids {noun}", "{noun} for kids", "{noun} for a {person}", "cheap {noun}s", "{adj} {noun}s for {hobby}",
)  # fmt: skip
_REFINEMENTS = (
    "something cheaper", "something cheaper please", "anything cheaper?", "cheaper ones?",
    "show me cheaper ones", "cheaper than those", "something cheaper than these",
    "something less expensive", "those are too expensive", "too pricey, anything else?",
    "not {brand} please", "not {brand}", "no {brand}", "anything but {brand}", "without {brand}",
    "I don't like {brand}", "any other brands?", "other brands please", "a different brand",
    "what about {noun}s instead", "how about a {noun}", "and {noun}s?", "and a {noun}", "also a {noun}",
    "then a {noun}", "ok then a {noun}", "maybe a {noun}", "or a {noun}", "what about {brand}?",
    "in the {sub} range?", "only {sub}", "from the {sub} range", "I'd rather have a {brand} one",
    "do you have it from {brand}?", "from {brand}", "only {brand}", "{brand} ones", "by {brand}?",
    "under {price}", "under ${price}", "below {price} dollars", "less than {price}", "max {price}",
    "up to ${price}", "my budget is {price}", "around {price} dollars", "between {price} and {price2}",
    "which ones are under ${price}", "which of them are under {price}?", "any under {price}?",
    "any {adj} ones?", "a {adj} one", "{adj}", "{adj} ones", "{adj} ones only", "only {adj} ones",
    "{adj} please", "something {adj}er", "more {adj}", "the {adj} kind", "a bigger one", "a smaller one",
    "show me more", "more options please", "any others?", "show me other ones", "something else",
    "something different", "more like the first one", "similar ones?", "in {colour}?", "a {colour} one",
)  # fmt: skip
_PRODUCT_PREFIXES = ("", "", "", "", "ok, ", "ok now ", "also, ", "and ", "hi, ", "hey, ", "hmm, ",
                     "actually, ", "while I'm here, ", "one more thing, ", "ok, now ", "great, ",
                     "thanks, ", "cool. ", "so ", "well, ", "oh and ")  # fmt: skip
_PERSONS = ("mum", "dad", "niece", "nephew", "son", "daughter", "wife", "husband", "friend", "boss",
            "grandma", "teenager", "toddler", "girlfriend", "boyfriend", "colleague")  # fmt: skip
_HOBBIES = ("cooking", "reading", "gardening", "hiking", "the gym", "music", "camping", "yoga",
            "travel", "gaming", "painting", "cycling")  # fmt: skip
_ROOMS = ("kitchen", "living room", "bedroom", "office", "garden", "bathroom", "patio", "car")
# Shop words beside the catalog's, so the router learns the form of a request, not a word list.
_SHOP_NOUNS = (
    "laptop", "phone case", "tablet", "mouse", "monitor", "tv", "watch", "backpack", "wallet",
    "umbrella", "sunglasses", "dress", "shirt", "jeans", "boot", "sock", "glove", "pillow", "rug",
    "candle", "frying pan", "knife set", "teapot", "towel", "chair", "desk", "mirror", "board game",
    "doll", "toy car", "lego set", "notebook", "pen", "diary", "biography", "cookbook", "thriller",
    "tent", "sleeping bag", "bike", "football", "tennis ball", "skateboard", "watering can", "shovel",
    "flower pot", "bird feeder", "lipstick", "face mask", "moisturiser", "hair dryer", "razor",
    "perfume", "earring", "necklace", "ring", "bracelet", "jumper", "coat", "sandal", "handbag",
)  # fmt: skip

# Product questions: a fact about a product already shown ("the second one", "it", by name).
PRODUCT_QUESTIONS = (
    "how much is {ref}?", "how much is {ref}", "what does {ref} cost?", "what's the price of {ref}",
    "price of {ref}?", "{ref}, how much?", "how expensive is {ref}?", "cost of {ref}?",
    "is {ref} in stock?", "is {ref} available?", "do you have {ref} in stock", "is {ref} sold out?",
    "can I get {ref} today?", "{ref}, is it in stock?", "is {ref} still available",
    "what brand is {ref}?", "who makes {ref}?", "which brand makes {ref}", "who publishes {ref}?",
    "who's the maker of {ref}", "which company makes {ref}?", "what's the brand of {ref}",
    "tell me about {ref}", "tell me more about {ref}", "what is {ref}?", "what is {ref} exactly?",
    "describe {ref}", "details on {ref}?", "what's {ref} made of?", "what is {ref} made of?",
    "{ref}, what is it made of?", "what's special about {ref}?", "is {ref} any good?",
    "what size is {ref}?", "how big is {ref}?", "what are the dimensions of {ref}?", "does {ref} fit a {person}?",
    "does {ref} come in {colour}?", "what colours does {ref} come in?", "is {ref} {adj}?",
    "does {ref} work with my {device}?", "is {ref} compatible with {device}s?", "how heavy is {ref}",
    "does {ref} come from {brand}?", "is {ref} from {brand}?", "is {ref} a {brand}?",
    "and {ref}?", "what about {ref}?", "and the price of {ref}?", "{ref}?", "{ref} - price?",
    "which one is the cheapest?", "what's the cheapest one?", "which is cheaper, {ref} or {ref2}?",
    "what's the difference between {ref} and {ref2}?", "which one is the best?", "which one would you pick?",
    "which of those is in stock?", "are any of them in stock?", "which of them is from {brand}?",
    "how much are the {noun}s in your list", "how much are those?", "are they in stock?",
    "how much", "and the price?", "the price?", "price?", "in stock?", "available?", "brand?",
    "how much is it", "is it in stock?", "is it available?", "who makes it?", "what brand is it?",
    "what is it made of?", "is it any good?", "what size is it?", "does it come in {colour}?",
    "how much do they cost?", "are those {brand}?", "what's it like?", "how much does it cost",
)  # fmt: skip
_REFS = ("the {ord} one", "the {ord}", "the {ord} {noun}", "{ord} one", "number {n}", "item {n}",
         "option {n}", "#{n}", "the {brand} one", "the {brand} {noun}", "the {adj} {noun}", "that one",
         "this one", "that {noun}", "the {noun}", "the cheapest one", "the last one")  # fmt: skip
_ORDINALS = ("first", "second", "third", "fourth", "1st", "2nd", "3rd", "last")
_COLOURS = ("black", "blue", "red", "white", "green", "grey", "pink", "navy")
_DEVICES = ("iphone", "laptop", "android phone", "tv", "mac", "car", "printer")
_QUESTION_PREFIXES = ("", "", "", "", "ok, ", "and ", "ok and ", "so ", "nice, ", "hmm, ", "great, ",
                      "cool, ", "thanks, ", "quick question, ")  # fmt: skip

# Support turns beside Bitext's questions: ABCD's flows (``abcd-kb/ontology.json``: promo
# codes, stains, wrong size, billing, membership, site trouble...) in shoppers' words; the
# details a shopper gives once asked (order number, email); questions about a shown product
# that are service, not facts of the catalog (gift wrap, delivery, returns).
SUPPORT = (
    "my promo code doesn't work", "the discount code says it's expired", "the coupon isn't applied",
    "the shirt I got has a stain", "the jacket arrived damaged", "the item is broken",
    "it's the wrong size, can I exchange it?", "the colour is not what I ordered", "I got the wrong item",
    "I was charged twice", "there's a fee I don't recognise on my bill", "I was billed for something I never bought",
    "I returned it but was still charged", "the price dropped the day after I bought it",
    "I saw it cheaper on another site, do you price match?", "when will it be back in stock?",
    "how much is shipping?", "how much does delivery cost", "when will my package arrive?",
    "my package is missing", "my parcel never arrived", "the tracking hasn't updated in days",
    "how do I cancel my membership", "what does the gold membership include", "when is my bill due?",
    "how much do I owe on my subscription", "can I get an extension on my payment?",
    "the website is really slow", "my cart won't update", "the search isn't showing anything",
    "my credit card keeps getting declined", "I can't log in", "I forgot my username",
    "I need to reset my two-factor authentication", "I need to change my phone number on my account",
    "please update my name on the account", "can I change the address on my order?",
    "I want to add an item to my order", "can I remove something from my order?",
    "what's your return policy?", "how long do refunds take?", "where's my refund?",
    "do you ship internationally?", "do you deliver on weekends?", "do you offer express shipping?",
    "what are your opening hours?", "how can I reach customer service?", "can I talk to a human?",
    "I want to speak to a manager", "I want to file a complaint", "how do I leave a review?",
    "do you have a store near {city}?", "do you ship to {country}?", "can I pick it up in store?",
    "is there a warranty?", "do you do gift cards?", "how do I use a gift card", "what payment methods do you accept?",
    "can I pay with {payment}?", "do you take {payment}", "can I pay in instalments?",
    # The shop's own contact facts: "what's your name?" is small talk, "what's your number?" is not.
    "do you have a phone number?", "give me your phone number", "can I call you?", "is there a number I can call?",
    "what's your email address?", "what email can I write to?", "how do I contact you?",
    "how can I get in touch?", "what's your customer service number", "where are you located?",
    "what's your address?", "do you have a live chat?", "what's your website?", "when are you open?",
)  # fmt: skip
_SUPPORT_DETAILS = (
    "it's order {order}", "order {order}", "#{order}", "order number {order}", "the order number is {order}",
    "my order is {order}", "{order}", "it was order {order}", "the order id is {order}",
    "my email is {email}", "{email}", "it's {email}", "the email on the account is {email}",
    "my name is {name}", "it's under {name}", "account id {account}", "my account is {account}",
    "the invoice number is INV-{account}", "invoice INV-{account}", "my phone number is {phone}",
    "I ordered it on {day}", "it was last {day}", "I paid by {payment}", "yes, {order}",
    "I already tried that", "it still doesn't work", "I didn't get the email", "nothing arrived yet",
    "it's been two weeks", "the reset link doesn't work", "I did, but nothing happened",
)  # fmt: skip
_ABOUT_SHOWN = (
    "can you gift wrap it?", "can I get it delivered by {day}?", "how fast can you ship it?",
    "can I return it if it doesn't fit?", "do you ship it to {country}?", "how long is the delivery for it?",
    "can I pay for it with {payment}?", "can I pay for it in instalments?", "can I order it for pick-up?",
    "what's the return window for that?", "how long will it take to arrive?", "is shipping free for it?",
    "how do I order it?", "can you send it as a gift?", "can I change the delivery address for it?",
)  # fmt: skip
_SUPPORT_PREFIXES = ("", "", "", "", "", "hi, ", "hello, ", "hey, ", "also, ", "and ", "actually, ",
                     "ok, ", "one more thing: ", "quick question, ", "please help, ", "thanks. ")  # fmt: skip
_NAMES = ("Maria Lopez", "John Smith", "Aisha Khan", "Tom Becker", "Li Wei", "Sara Rossi")
_PAYMENTS = ("PayPal", "Apple Pay", "a credit card", "Visa", "Mastercard", "Klarna", "bank transfer")
_DAYS = ("Friday", "Monday", "the weekend", "tomorrow", "Christmas", "the 3rd")


def _compose(template: str, rng: random.Random, v: dict) -> str:
    """``template`` with each "{a|b}" choice made and each named slot filled at random."""

    def noun() -> str:
        pool = v["nouns"] if rng.random() < 0.6 or not _SHOP_NOUNS else _SHOP_NOUNS
        return rng.choice(pool).lower()

    slots = {
        "noun": noun,
        "adj": lambda: rng.choice(v["adjectives"]).lower(),
        "brand": lambda: rng.choice(v["brands"]),
        "category": lambda: rng.choice(v["categories"]),
        "sub": lambda: rng.choice(v["subcategories"]).lower(),
        "price": lambda: str(rng.choice((10, 15, 20, 25, 30, 40, 50, 60, 75, 100, 150, 200))),
        "price2": lambda: str(rng.choice((80, 120, 250, 300))),
        "ord": lambda: rng.choice(_ORDINALS),
        "n": lambda: str(rng.randint(1, 5)),
        "colour": lambda: rng.choice(_COLOURS),
        "device": lambda: rng.choice(_DEVICES),
        "person": lambda: rng.choice(_PERSONS),
        "hobby": lambda: rng.choice(_HOBBIES),
        "room": lambda: rng.choice(_ROOMS),
        "city": lambda: rng.choice(_CITIES),
        "country": lambda: rng.choice(_COUNTRIES),
        "thing": lambda: rng.choice(_THINGS),
        "food": lambda: rng.choice(_FOODS),
        "sport": lambda: rng.choice(_SPORTS),
        "company": lambda: rng.choice(_COMPANIES),
        "language": lambda: rng.choice(("French", "Spanish", "German", "Italian", "Japanese")),
        "a": lambda: str(rng.randint(3, 99)),
        "b": lambda: str(rng.randint(3, 99)),
        "order": lambda: str(rng.randint(10**6, 10**9 - 1)).zfill(rng.choice((8, 9))),
        "account": lambda: str(rng.randint(10**4, 10**6)),
        "phone": lambda: f"555-{rng.randint(1000, 9999)}",
        "email": lambda: (
            f"{rng.choice(('ana', 'j.smith', 'kim99', 'lee.w', 'tom_b'))}@example.{rng.choice(('com', 'org', 'net'))}"
        ),
        "name": lambda: rng.choice(_NAMES),
        "payment": lambda: rng.choice(_PAYMENTS),
        "day": lambda: rng.choice(_DAYS),
        "ack": lambda: rng.choice(_ACKS),
        "thanks": lambda: rng.choice(_THANKS),
        "bye": lambda: rng.choice(_BYES),
        "closing": lambda: rng.choice(_CLOSINGS),
        "greeting": lambda: rng.choice(_GREETINGS),
        "how": lambda: rng.choice(_HOW),
        "ref": lambda: _compose(rng.choice(_REFS), rng, v),
        "ref2": lambda: _compose(rng.choice(_REFS), rng, v),
    }

    slots["nouns"] = lambda: _plural(noun())

    def replace(match: re.Match) -> str:
        body = match.group(1)
        return rng.choice(body.split("|")) if "|" in body else slots[body]()

    return re.sub(r"\{([^{}]*)\}", replace, template.replace("{noun}s", "{nouns}"))


def _plural(noun: str) -> str:
    if noun.endswith("s"):  # "headphones", "seeds", "glass"
        return noun
    return noun + ("es" if noun.endswith(("sh", "ch", "x")) else "s")


def _casing(text: str, rng: random.Random) -> str:
    """How shoppers type: sometimes a capital first letter, sometimes no final punctuation."""
    roll = rng.random()
    if roll < 0.3:
        text = text[:1].upper() + text[1:]
    elif roll < 0.4:
        text = text.lower()
    if rng.random() < 0.25:
        text = text.rstrip("?!.")
    return text


def _support_questions(bitext: Path, limit: int, rng: random.Random) -> list[str]:
    import csv

    with bitext.open(newline="", encoding="utf-8") as handle:
        questions = [row["instruction"] for row in csv.DictReader(handle)]
    rng.shuffle(questions)
    return questions[:limit]


def router_examples(
    bitext: Path, vocabulary: dict, per_label: int = 600, seed: int = 0
) -> list[tuple[str, str, int]]:
    """(message, previous shopper message or "", label index), ``per_label`` of each label.

    ``vocabulary``: the catalog's words: categories, subcategories, brands, adjectives,
    nouns (``data_contracts.synthetic`` for the synthetic shop); general shop words are mixed
    in. Each label is drawn from its own written sources, composed with a prefix ("ok, ",
    "also, "...) and typed the way shoppers type:

    - support: Bitext questions (60%), ABCD-flow questions (15%), questions about a product
      just shown that are service (10%; after a product turn), and the details a shopper gives
      once asked (15%; after a support question);
    - product_request: requests (60%) and refinements of the last request (40%; after a
      product turn: "cheaper", "not Acme", "deluxe", "and a hat");
    - product_question: facts about a shown product, always after a product turn;
    - small_talk: written phrases and composed thanks / acknowledgements / goodbyes;
    - out_of_scope: written questions the shop cannot help with.

    Turns without a fixed predecessor follow a random earlier message half of the time, so
    the router reads the turn itself and uses the previous one where it matters.
    """
    rng = random.Random(seed)
    v = vocabulary

    def compose(template: str) -> str:
        return _casing(_compose(template, rng, v), rng)

    def product_turn() -> str:
        table = PRODUCT_REQUESTS if rng.random() < 0.7 else _REFINEMENTS
        return compose(rng.choice(table))

    bitext_questions = iter(_support_questions(bitext, per_label, rng))
    rows: list[tuple[str, str | None, str]] = []  # previous None: drawn from the pool below
    for _ in range(per_label):
        roll = rng.random()
        if roll < 0.6 and (question := next(bitext_questions, None)) is not None:
            rows.append((rng.choice(_SUPPORT_PREFIXES) + question, None, "support"))
        elif roll < 0.75:
            rows.append((compose(rng.choice(_SUPPORT_PREFIXES) + rng.choice(SUPPORT)), None, "support"))
        elif roll < 0.85:
            rows.append((compose(rng.choice(_ABOUT_SHOWN)), product_turn(), "support"))
        else:
            asked = compose(rng.choice(SUPPORT))
            rows.append((compose(rng.choice(_SUPPORT_DETAILS)), asked, "support"))
    for _ in range(per_label):
        if rng.random() < 0.6:
            text = compose(rng.choice(_PRODUCT_PREFIXES) + rng.choice(PRODUCT_REQUESTS))
            rows.append((text, None, "product_request"))
        else:
            text = compose(rng.choice(_PRODUCT_PREFIXES[:12]) + rng.choice(_REFINEMENTS))
            rows.append((text, product_turn(), "product_request"))
    for _ in range(per_label):
        text = compose(rng.choice(_QUESTION_PREFIXES) + rng.choice(PRODUCT_QUESTIONS))
        previous = product_turn() if rng.random() < 0.8 else compose(rng.choice(PRODUCT_QUESTIONS))
        rows.append((text, previous, "product_question"))
    for _ in range(per_label):
        table = SMALL_TALK if rng.random() < 0.5 else _SMALL_TALK_JOINED
        rows.append((compose(rng.choice(table)), None, "small_talk"))
    for _ in range(per_label):
        text = compose(rng.choice(_OUT_OF_SCOPE_PREFIXES) + rng.choice(OUT_OF_SCOPE))
        rows.append((text, None, "out_of_scope"))
    pool = [text for text, _, _ in rows]
    out = []
    for text, previous, label in rows:
        if previous is None:
            previous = rng.choice(pool) if rng.random() < 0.5 else ""
        out.append((text, previous, LABELS.index(label)))
    rng.shuffle(out)
    return out


@dataclass
class RouterConfig:
    """Training settings of the router."""

    encoder: str = "minilm"
    max_length: int = 48
    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-4
    seed: int = 0
    # Below this top-class probability the router asks a clarifying question.
    threshold: float = 0.5
    # The embeddings and this many lower encoder layers stay as pretrained (cheaper steps;
    # the templated data cannot teach them much); 0 trains them all.
    frozen_layers: int = 2
    # Cross-entropy label smoothing: templated data is easy to fit, dialogues are not.
    label_smoothing: float = 0.1
    # Share of the steps over which the learning rate warms up; it then decays linearly to 0.
    warmup: float = 0.1


class Router(nn.Module):
    """``predict(messages, previous)`` → (label, confidence) per message."""

    def __init__(self, model: nn.Module, tokenizer, max_length: int = 48, threshold: float = 0.5):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.threshold = threshold

    @classmethod
    def from_encoder(cls, spec: str, max_length: int = 48) -> Router:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging

        folder = resolve_encoder(spec)
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()  # a fresh head on an encoder checkpoint is expected
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, num_labels=len(LABELS), local_files_only=True
            )
        finally:
            logging.set_verbosity(verbosity)
        return cls(model, AutoTokenizer.from_pretrained(folder, local_files_only=True), max_length)

    def logits(self, messages: list[str], previous: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            messages,
            [p or "" for p in previous],
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )
        return self.model(**batch).logits  # (B, len(LABELS))

    @torch.inference_mode()
    def probabilities(self, messages: list[str], previous: list[str], batch: int = 64) -> np.ndarray:
        self.model.eval()
        out = [
            torch.softmax(self.logits(messages[i : i + batch], previous[i : i + batch]), -1).numpy()
            for i in range(0, len(messages), batch)
        ]
        return np.concatenate(out) if out else np.zeros((0, len(LABELS)))

    def predict(self, messages: list[str], previous: list[str]) -> list[tuple[str | None, float]]:
        """The label per message, or None (ask a clarifying question) below the threshold."""
        probs = self.probabilities(messages, previous)
        best = probs.argmax(1)
        return [
            (LABELS[b] if p[b] >= self.threshold else None, float(p[b]))
            for b, p in zip(best, probs, strict=True)
        ]


def train_router(router: Router, examples: list[tuple[str, str, int]], config: RouterConfig) -> Router:
    """Fine-tune the encoder's upper layers and the head with label-smoothed cross-entropy
    for ``config.steps`` steps (linear warm-up and decay)."""
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    _freeze_lower_layers(router.model, config.frozen_layers)
    parameters = [p for p in router.model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=config.lr)
    warmup = max(1, int(config.warmup * config.steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda step: min(
            (step + 1) / warmup, max(0.0, (config.steps - step) / max(1, config.steps - warmup))
        ),
    )
    router.model.train()
    for _ in range(config.steps):
        batch = rng.sample(examples, min(config.batch_size, len(examples)))
        logits = router.logits([b[0] for b in batch], [b[1] for b in batch])
        loss = nn.functional.cross_entropy(
            logits, torch.tensor([b[2] for b in batch]), label_smoothing=config.label_smoothing
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    router.model.eval()
    for p in router.model.parameters():
        p.requires_grad_(True)
    return router


def _freeze_lower_layers(model: nn.Module, layers: int) -> None:
    """No gradients for the embeddings and the first ``layers`` transformer layers, the top
    layer always left to train (BERT-style encoders; other models train whole)."""
    base = getattr(model, "base_model", model)
    blocks = getattr(getattr(base, "encoder", None), "layer", None)
    if layers <= 0 or blocks is None or not hasattr(base, "embeddings"):
        return
    for module in (base.embeddings, *list(blocks)[: min(layers, len(blocks) - 1)]):  # the top one trains
        for p in module.parameters():
            p.requires_grad_(False)


def macro_accuracy(gold: list[str], predicted: list[str | None]) -> tuple[float, dict[str, float]]:
    """Mean over goals of the share of turns routed right (a clarifying question is not right)."""
    per = {}
    for label in sorted(set(gold)):
        rows = [p == g for g, p in zip(gold, predicted, strict=True) if g == label]
        per[label] = sum(rows) / len(rows)
    return float(np.mean(list(per.values()))), per


def choose_threshold(gold: list[str], probs: np.ndarray, candidates=(0.0, 0.3, 0.4, 0.5, 0.6, 0.7)) -> float:
    """The threshold with the best macro accuracy on (dev) turns; ties go to the higher one."""
    best, best_score = 0.0, -1.0
    for t in candidates:
        predicted = [LABELS[b] if p[b] >= t else None for b, p in zip(probs.argmax(1), probs, strict=True)]
        score = macro_accuracy(gold, predicted)[0]
        if score >= best_score:
            best, best_score = t, score
    return best
