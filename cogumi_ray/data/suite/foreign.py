"""Non-English rows for curation's language filter: real sentences in five languages.

Each language has a word problem, a short writing task and a capital-city question, long enough
(15+ words) that an offline language detector is confident about them.
"""

from __future__ import annotations

import random

from cogumi_ray.data.suite.vocab import NAMES

# lang -> (objects, [(country, capital)], [(instruction, response)]); slots: name, obj, a, b, c,
# country, capital.
Pairs = tuple[tuple[str, str], ...]
LANGS: dict[str, tuple[tuple[str, ...], Pairs, Pairs]] = {
    "es": (
        ("manzanas", "galletas", "flores", "monedas", "piedras", "naranjas"),
        (("Francia", "París"), ("Alemania", "Berlín"), ("Italia", "Roma"), ("Japón", "Tokio")),
        (
            ("¿Cuántas {obj} tiene ahora {name} si compra {a} en el mercado y después recibe {b} "
             "más de su hermana pequeña?",
             "Ahora {name} tiene {c} {obj} en total, porque {a} más {b} son {c}."),
            ("Escribe una frase corta sobre por qué es importante beber agua todos los días.",
             "Beber agua todos los días ayuda al cuerpo a mantenerse sano y con mucha energía."),
            ("¿Cuál es la capital de {country}? Responde solamente con el nombre de la ciudad, "
             "por favor.",
             "La capital de {country} es {capital}, una ciudad muy bonita y llena de historia."),
        ),
    ),
    "fr": (
        ("pommes", "biscuits", "fleurs", "pièces", "cailloux", "oranges"),
        (("l'Allemagne", "Berlin"), ("l'Espagne", "Madrid"), ("l'Italie", "Rome"),
         ("la Norvège", "Oslo")),
        (
            ("Combien de {obj} a {name} s'il en achète {a} puis en reçoit encore {b} de son ami ?",
             "{name} a {c} {obj} au total, car {a} plus {b} font {c}."),
            ("Écris une phrase courte pour expliquer pourquoi il faut dormir suffisamment.",
             "Dormir suffisamment chaque nuit aide le corps et l'esprit à bien se reposer."),
            ("Quelle est la capitale de {country} ? Réponds avec un seul mot, s'il te plaît.",
             "La capitale de {country} est {capital}, bien sûr."),
        ),
    ),
    "de": (
        ("Äpfel", "Kekse", "Blumen", "Münzen", "Steine", "Orangen"),
        (("Frankreich", "Paris"), ("Spanien", "Madrid"), ("Italien", "Rom"),
         ("Österreich", "Wien")),
        (
            ("Wie viele {obj} hat {name}, wenn er {a} kauft und dann noch {b} von der Schwester "
             "bekommt?", "{name} hat insgesamt {c} {obj}, weil {a} plus {b} gleich {c} ist."),
            ("Schreibe einen kurzen Satz darüber, warum es wichtig ist, jeden Tag spazieren "
             "zu gehen.",
             "Jeden Tag spazieren zu gehen hält den Körper gesund und macht den Kopf frei."),
            ("Was ist die Hauptstadt von {country}? Bitte antworte mit nur einem Wort.",
             "Die Hauptstadt von {country} ist natürlich {capital}."),
        ),
    ),
    "it": (
        ("mele", "caramelle", "monete", "conchiglie", "matite", "arance"),
        (("Francia", "Parigi"), ("Spagna", "Madrid"), ("Germania", "Berlino"), ("Grecia", "Atene")),
        (
            ("Quante {obj} ha {name} se ne compra {a} e poi ne riceve altre {b} dalla nonna?",
             "{name} ha {c} {obj} in tutto, perché {a} più {b} fa {c}."),
            ("Scrivi una frase breve che spieghi perché è utile leggere un libro ogni settimana.",
             "Leggere un libro ogni settimana arricchisce la mente e migliora il vocabolario."),
            ("Qual è la capitale della {country}? Rispondi con una sola parola, per favore.",
             "La capitale della {country} è {capital}, una città molto antica."),
        ),
    ),
    "pt": (
        ("maçãs", "bolachas", "moedas", "flores", "pedras", "laranjas"),
        (("França", "Paris"), ("Espanha", "Madrid"), ("Alemanha", "Berlim"), ("Itália", "Roma")),
        (
            ("Quantas {obj} tem {name} se comprar {a} e depois ganhar mais {b} do irmão?",
             "{name} tem {c} {obj} no total, porque {a} mais {b} são {c}."),
            ("Escreva uma frase curta explicando por que é bom praticar esportes com os amigos.",
             "Praticar esportes com os amigos faz bem para a saúde e fortalece a amizade."),
            ("Qual é a capital da {country}? Responda com uma só palavra, por favor.",
             "A capital da {country} é {capital}, uma cidade muito bonita."),
        ),
    ),
}


def foreign_pair(rng: random.Random, lang: str) -> tuple[str, str, str]:
    """(instruction, response, domain) in `lang`."""
    objs, capitals, templates = LANGS[lang]
    which = rng.randrange(len(templates))
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    country, capital = rng.choice(capitals)
    slots = {"name": rng.choice(NAMES), "obj": rng.choice(objs), "a": a, "b": b, "c": a + b,
             "country": country, "capital": capital}
    q, r = templates[which]
    return q.format(**slots), r.format(**slots), ("math", "general", "general")[which]
