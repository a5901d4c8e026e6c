"""Automation: turn a request into one tool-call JSON object, checked field by field.

Response format (always): `{"tool": NAME, "args": {...}}` as compact json.dumps output with the
argument keys in the tool's declared order. metadata["call"] holds the expected object.
Easy = one argument copied from the request; medium = two or three arguments, some mapped
(unit names, 'off' -> brightness 0); hard = values that need conversion (hours to minutes,
12-hour to 24-hour time, month names to ISO dates, currency names to codes, number words).
"""

from __future__ import annotations

import json
import random
from typing import Any

from cogumi_ray.data.suite.base import Makers, Task, tagged
from cogumi_ray.data.suite.vocab import CITIES, NAMES, NUMBER_WORDS, WORDS

GENRES = ("jazz", "rock", "blues", "classical", "reggae", "pop", "folk", "metal", "soul", "disco",
          "country", "techno", "salsa", "opera", "punk", "swing", "gospel", "ambient", "funk",
          "grunge", "house", "trance", "samba", "tango", "bluegrass", "flamenco", "ska", "lounge",
          "bossa nova", "hip hop", "drum and bass", "dubstep", "motown", "zydeco", "polka",
          "cumbia", "afrobeat", "k-pop", "synthwave", "baroque", "bebop", "chillwave")
ROOMS = ("kitchen", "bedroom", "office", "garage", "hallway", "bathroom", "living room", "attic",
         "basement", "porch", "nursery", "study")
CHORES = ("buy milk", "call the bank", "water the plants", "feed the cat", "pay rent",
          "book a dentist visit", "take out the trash", "pick up the kids", "send the report",
          "walk the dog", "renew my passport", "charge the car", "order printer ink",
          "return the library books", "clean the fridge", "check the mail", "bake bread",
          "stretch", "drink water", "review the budget")
RESTAURANTS = ("Luigi's", "The Green Fork", "Sakura", "Casa Blanca", "Blue Lagoon", "Taj Palace",
               "The Corner Bistro", "Golden Dragon", "Le Petit Cafe", "Olive Garden House",
               "Smokehouse 55", "Noodle Bar", "The Oyster Shack", "Harbor Grill")
CURRENCIES = (("dollars", "USD"), ("euros", "EUR"), ("pounds", "GBP"), ("yen", "JPY"),
              ("francs", "CHF"), ("rupees", "INR"), ("pesos", "MXN"), ("won", "KRW"))
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")


def _call(q: str, tool: str, args: dict[str, Any]) -> Task:
    call = {"tool": tool, "args": args}
    return Task(q, json.dumps(call, ensure_ascii=False), {"call": call})


def _topic(rng: random.Random, k: int) -> str:
    return " ".join(rng.sample(WORDS, k))


@tagged("automation.weather")
def weather(rng: random.Random) -> Task:
    city = rng.choice(CITIES)
    q = rng.choice(["What's the weather in {c}?", "Get the weather for {c}.",
                    "Check the weather in {c}.", "How is the weather in {c} today?"])
    return _call(q.format(c=city), "get_weather", {"city": city})


@tagged("automation.timer")
def timer(rng: random.Random) -> Task:
    m = rng.randint(1, 90)
    q = rng.choice(["Set a timer for {m} minutes.", "Start a {m} minute timer.",
                    "Timer for {m} minutes, please."])
    return _call(q.format(m=m), "set_timer", {"minutes": m})


@tagged("automation.play")
def play(rng: random.Random) -> Task:
    g = rng.choice(GENRES)
    q = rng.choice(["Play some {g} music.", "Put on {g}.", "I want to hear {g}."])
    return _call(q.format(g=g), "play_music", {"genre": g})


@tagged("automation.call")
def call(rng: random.Random) -> Task:
    name = rng.choice(NAMES)
    q = rng.choice(["Call {n}.", "Phone {n} now.", "Give {n} a call.", "Ring {n}."])
    return _call(q.format(n=name), "call_contact", {"name": name})


@tagged("automation.search")
def search(rng: random.Random) -> Task:
    topic = _topic(rng, 2)
    q = rng.choice(["Search the web for {t}.", "Look up {t} online.", "Find {t} on the web."])
    return _call(q.format(t=topic), "search_web", {"query": topic})


@tagged("automation.email")
def email(rng: random.Random) -> Task:
    name, subject = rng.choice(NAMES), _topic(rng, 2).capitalize()
    q = rng.choice(['Send an email to {n} with the subject "{s}".',
                    'Email {n} about "{s}".', 'Write {n} an email titled "{s}".'])
    return _call(q.format(n=name, s=subject), "send_email", {"to": name, "subject": subject})


@tagged("automation.weather_unit")
def weather_unit(rng: random.Random) -> Task:
    city, unit = rng.choice(CITIES), rng.choice(["celsius", "fahrenheit"])
    q = rng.choice(["What's the weather in {c} in {u}?", "Give me the {u} temperature in {c}."])
    q = q.format(c=city, u=unit.capitalize())
    return _call(q, "get_weather", {"city": city, "unit": unit})


@tagged("automation.light")
def light(rng: random.Random) -> Task:
    room = rng.choice(ROOMS)
    if rng.random() < 0.3:
        return _call(f"Turn off the lights in the {room}.", "set_light",
                     {"room": room, "brightness": 0})
    p = rng.choice(range(10, 101, 5))
    q = rng.choice(["Set the {r} lights to {p} percent.", "Dim the {r} lights to {p}%."])
    return _call(q.format(r=room, p=p), "set_light", {"room": room, "brightness": p})


@tagged("automation.reminder")
def reminder(rng: random.Random) -> Task:
    chore, h, m = rng.choice(CHORES), rng.randint(0, 23), rng.choice(range(0, 60, 5))
    t = f"{h:02d}:{m:02d}"
    q = rng.choice(["Remind me to {c} at {t}.", "Set a reminder at {t} to {c}."])
    return _call(q.format(c=chore, t=t), "set_reminder", {"text": chore, "time": t})


@tagged("automation.convert")
def convert(rng: random.Random) -> Task:
    (_, a), (_, b) = rng.sample(CURRENCIES, 2)
    amount = rng.randint(5, 999)
    q = rng.choice(["Convert {x} {a} to {b}.", "How much is {x} {a} in {b}?"])
    return _call(q.format(x=amount, a=a, b=b), "convert_currency",
                 {"amount": amount, "from": a, "to": b})


@tagged("automation.timer_hours")
def timer_hours(rng: random.Random) -> Task:
    h, m = rng.randint(1, 5), rng.randint(1, 59)
    q = rng.choice(["Set a timer for {h} hours and {m} minutes.",
                    "Start a timer of {h} h {m} min."])
    return _call(q.format(h=h, m=m), "set_timer", {"minutes": h * 60 + m})


def _h24(h12: int, pm: bool) -> int:
    return (h12 % 12) + (12 if pm else 0)


@tagged("automation.book_table")
def book_table(rng: random.Random) -> Task:
    place, n = rng.choice(RESTAURANTS), rng.randint(2, 12)
    h, m, pm = rng.randint(1, 12), rng.choice([0, 15, 30, 45]), rng.random() < 0.7
    said = f"{h}:{m:02d} {'pm' if pm else 'am'}"
    q = f"Book a table at {place} for {NUMBER_WORDS[n]} people at {said}."
    return _call(q, "book_table",
                 {"restaurant": place, "people": n, "time": f"{_h24(h, pm):02d}:{m:02d}"})


@tagged("automation.reminder_12h")
def reminder_12h(rng: random.Random) -> Task:
    chore, h, m, pm = rng.choice(CHORES), rng.randint(1, 12), rng.choice(range(0, 60, 5)), \
        rng.random() < 0.5
    q = f"Remind me to {chore} at {h}:{m:02d} {'pm' if pm else 'am'}."
    return _call(q, "set_reminder", {"text": chore, "time": f"{_h24(h, pm):02d}:{m:02d}"})


@tagged("automation.convert_names")
def convert_names(rng: random.Random) -> Task:
    (na, a), (nb, b) = rng.sample(CURRENCIES, 2)
    amount = rng.randint(5, 999)
    q = rng.choice(["How many {nb} is {x} {na}?", "Change {x} {na} into {nb}."])
    return _call(q.format(x=amount, na=na, nb=nb), "convert_currency",
                 {"amount": amount, "from": a, "to": b})


@tagged("automation.event")
def event(rng: random.Random) -> Task:
    title = _topic(rng, 2).title()
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    minutes = rng.choice([15, 30, 45, 60, 90, 120])
    q = (f'Schedule "{title}" on {MONTHS[month - 1]} {day}, 2025 for {minutes} minutes.')
    return _call(q, "create_event",
                 {"title": title, "date": f"2025-{month:02d}-{day:02d}", "duration": minutes})


MAKERS: Makers = {
    "easy": (weather, timer, play, call, search),
    "medium": (email, weather_unit, light, reminder, convert),
    "hard": (timer_hours, book_table, reminder_12h, convert_names, event),
}
