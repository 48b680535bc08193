"""Questions nobody could answer from what the assistant has: live data, the user's private
facts, the future.

The labeling rule (docs/labeling.md, "Say I don't know"): an assistant with no clock, no
internet and no view of the user cannot know these, however they are asked, so the answer
says "I don't know", says why in a few words, and says where to find out. A made-up answer
is the failure this task catches. An answer checks out when it abstains (`abstains`); the
"eval" split asks in phrasings training never uses, about fresh subjects.
"""

from __future__ import annotations

import random
import re

from picochat.chat import assistant, user
from picochat.tasks.base import Problem, Task, phrasings

CITIES = ["Paris", "Lagos", "Lima", "Osaka", "Denver", "Hanoi", "Oslo", "Cairo", "Quito", "Perth",
          "Leeds", "Pune", "Bergen", "Tucson", "Kraków", "Dakar", "Busan", "Porto", "Calgary", "Tbilisi"]
COMPANIES = ["Apple", "Toyota", "Nestlé", "Siemens", "Netflix", "Samsung", "Shell", "Nike", "Sony", "Boeing"]
EVENTS = ["World Cup", "Tour de France", "Olympic marathon", "Eurovision Song Contest", "Super Bowl",
          "Wimbledon final", "Nobel Prize in Physics", "next general election", "chess world championship"]
RELATIONS = ["mother", "father", "sister", "brother", "best friend", "boss", "neighbour", "dog", "cat",
             "grandmother", "teacher", "landlord"]
PRIVATE = ["name", "birthday", "favourite food", "phone number", "age", "job"]

# (question, reason, where to find out), per kind; {city}, {company}, {event}, {year}, {rel}, {fact}
ASKS = {
    "live": {
        "train": ["What's the weather in {city} right now?", "Is it raining in {city} today?",
                  "What is {company}'s share price right now?", "What's the latest news about {company}?",
                  "What time is it in {city}?", "How bad is the traffic in {city} at the moment?",
                  "What's the exchange rate today?", "Who won the {event} last night?",
                  "What's the temperature outside?", "Is the museum in {city} open right now?"],
        "eval": ["Tell me today's forecast for {city}.", "How much does one share of {company} cost today?",
                 "What happened in {city} this morning?", "What is the current time in {city}?"],
    },
    "private": {
        "train": ["What is my {rel}'s {fact}?", "Where did I leave my keys?", "What's my password?",
                  "How old am I?", "What did I eat for dinner yesterday?", "What's my bank balance?",
                  "Where do I live?", "What am I wearing right now?", "What is my {rel}'s name?",
                  "When is my {rel}'s birthday?"],
        "eval": ["Do you know my {rel}'s {fact}?", "What colour is my car?",
                 "Which street did I grow up on?", "What did my {rel} tell me this morning?"],
    },
    "future": {
        "train": ["Who will win the {year} {event}?", "What will {company}'s share price be next week?",
                  "Will it rain in {city} on this day next year?", "What are next week's lottery numbers?",
                  "Who will win the {event}?", "What will the weather be in {city} a month from now?",
                  "How many people will live in {city} in {year}?"],
        "eval": ["Predict the winner of the {year} {event}.", "Which team is going to win the {event} in {year}?",
                 "Tell me what {company} will announce next year.", "What will happen in {city} in {year}?"],
    },
}
# Training also asks for each unknowable thing in every way of asking (phrasings), less the
# held-out wordings, so the model learns what cannot be known rather than a few sentences.
KNOWABLE_NEVER = {
    "live": ["the weather in {city} right now", "today's weather in {city}", "{company}'s share price right now",
             "the latest news about {company}", "the time in {city}", "the traffic in {city} at the moment",
             "today's exchange rate", "the score of tonight's game", "the temperature outside",
             "who won the {event} last night", "what is on TV tonight", "whether the shops in {city} are open now",
             "what is happening in {city} right now", "the news from {city} today",
             "the price of {company} stock today", "what {company} shares are worth right now",
             "the price of petrol in {city} today", "what {company} announced an hour ago",
             "how many people are in {city}'s stadium right now"],
    "private": ["my {rel}'s {fact}", "my password", "my bank balance", "my home address", "my shoe size",
                "my middle name", "my PIN", "what I had for breakfast", "where I parked my car",
                "where I was born", "which school I went to", "what my {rel} is doing now",
                "where I went on holiday last year", "who I met yesterday"],
    "future": ["who will win the {year} {event}", "{company}'s share price next week", "next week's lottery numbers",
               "the weather in {city} a month from now", "how many people will live in {city} in {year}",
               "who will win the {event}", "what {company} will sell in {year}", "the price of gold in {year}",
               "what will be in the news tomorrow", "who will win the {event} in {year}",
               "the weather in {city} on 1 May {year}", "what {company} will be worth in {year}",
               "who will lead {company} in {year}", "the population of {city} in {year}",
               "what {city} will be like in {year}", "the result of the {year} {event}",
               "how much a house in {city} will cost in {year}", "what {company} will launch next year",
               "what will be in the news in {city} in {year}"],
}
ASKING = ["Do you know {e}?", "Can you tell me {e}?", "Tell me {e}.", "I'd like to know {e}.",
          "Please find out {e}.", "Any idea about {e}?", "I need to know {e}.", "Could you look up {e}?",
          "Remind me: {e}?", "Give me {e}.", "I forgot {e}. Can you tell me?", "Guess {e}."]
MORE_PRIVATE = ["Where was I born?", "Which school did I go to?", "What did I dream about last night?",
                "Who did I meet yesterday?", "Where did I go on holiday last year?", "What is my job?",
                "Which city do I live in?", "What is my favourite song?"]
TRAIN_ASKS = {kind: asks["train"] + (MORE_PRIVATE if kind == "private" else [])
              + phrasings(ASKING, KNOWABLE_NEVER[kind], asks["eval"]) for kind, asks in ASKS.items()}

ANSWERS = {
    "live": ["I don't know: I have no internet access or live data, so I can't see what is happening "
             "now. A news site, a weather service or a live market source will have it.",
             "I don't know. I can't see live information such as today's news, prices or weather; "
             "please check a current source online.",
             "I don't know: I have no clock and no live data. A current website or app can tell you."],
    "private": ["I don't know: you haven't told me that, and I can't see anything about you beyond "
                "this conversation. If you tell me, I can use it.",
                "I don't know. I only know what you write in this chat, and you haven't told me that. "
                "You or the people around you would know.",
                "I don't know: I have no access to your personal information. Check your own notes, "
                "or tell me and I'll remember it for this conversation."],
    "future": ["I don't know: it hasn't happened yet, and nobody can know the future for certain. "
               "Check the results once it has happened.",
               "I don't know. That is in the future, so no one can know it yet; the news will report "
               "it when it happens.",
               "I don't know: I can't predict the future. An up-to-date source will have the answer "
               "once it is known."],
}
ABSTAIN = re.compile(r"\bI (?:don't|do not|can't|cannot) (?:know|tell)\b|\bI'm not sure\b|\bno one can know\b",
                     re.IGNORECASE)


def abstains(text: str) -> bool:
    """The answer says it does not know."""
    return bool(ABSTAIN.search(text))


class Unknowable(Task):
    name = "unknowable"
    splits = ("train", "eval")

    def problems(self, rng: random.Random, count: int, split: str = "train") -> list[Problem]:
        return [self._problem(rng, split) for _ in range(count)]

    def _problem(self, rng: random.Random, split: str) -> Problem:
        kind = rng.choice(sorted(ASKS))
        question = rng.choice(TRAIN_ASKS[kind] if split == "train" else ASKS[kind]["eval"]).format(
            city=rng.choice(CITIES), company=rng.choice(COMPANIES), event=rng.choice(EVENTS),
            year=rng.randint(2027, 2060), rel=rng.choice(RELATIONS), fact=rng.choice(PRIVATE))
        if split == "train" and rng.random() < 0.3:
            question = rng.choice(["Quick question: ", "Hi! ", "Please tell me: ", "Do you know? "]) + question
        solution = [assistant(rng.choice(ANSWERS[kind]))] if split == "train" else []
        return Problem([user(question)], "I don't know", solution, {"kind": kind})

    def check(self, problem: Problem, answer) -> bool:
        return abstains(answer.text)
