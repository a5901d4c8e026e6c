"""Word tables the task templates draw from.

Large pools matter: every clean item must differ from every other by enough character 3-grams that
curation's near-duplicate step (Jaccard 0.8) never merges two distinct tasks.
"""

from __future__ import annotations

NAMES: tuple[str, ...] = (
    "Ana", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jade", "Kai", "Lena",
    "Milo", "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tess", "Umar", "Vera", "Wes", "Xena",
    "Yuri", "Zoe", "Abel", "Bea", "Cole", "Dana", "Emil", "Flor", "Gia", "Hugo", "Iris", "Joel",
    "Kira", "Leo", "Maya", "Nico", "Olga", "Paul", "Rita", "Saul", "Tara", "Ugo", "Vik", "Wren",
    "Adam", "Bruno", "Clara", "Diego", "Elsa", "Felix", "Greta", "Hans", "Ines", "Jonas", "Karl",
    "Lucia", "Marco", "Nina", "Oscar", "Petra", "Ravi", "Sofia", "Theo", "Uma", "Victor", "Wanda",
    "Yasmin", "Zane", "Alma", "Boris", "Celia", "Dario", "Edith", "Frank", "Gwen", "Hector",
    "Ingrid", "Jorge", "Kofi", "Linus", "Mira", "Nadia", "Otto", "Priya", "Rolf", "Selma",
)

# Countable things for word problems (plural forms are regular: thing + "s").
OBJECTS: tuple[str, ...] = (
    "apple", "pencil", "marble", "sticker", "book", "card", "coin", "shell", "cookie", "balloon",
    "stamp", "button", "candle", "ticket", "flower", "ribbon", "orange", "brick", "cup", "egg",
    "kite", "lemon", "magnet", "napkin", "peach", "puzzle", "rock", "sock", "spoon", "toy",
    "bottle", "bead", "crayon", "feather", "jar", "leaf", "notebook", "plate", "ring", "stone",
)

# Plain nouns/adjectives for word transformations (lowercase ASCII, 3-10 letters).
WORDS: tuple[str, ...] = (
    "apple", "river", "garden", "pocket", "silver", "window", "candle", "forest", "planet",
    "rabbit", "tiger", "yellow", "bridge", "castle", "dragon", "engine", "falcon", "guitar",
    "harbor", "island", "jacket", "kettle", "ladder", "mirror", "needle", "orange", "pepper",
    "quartz", "rocket", "saddle", "tunnel", "velvet", "walnut", "zipper", "anchor", "basket",
    "cactus", "dinner", "eagle", "feather", "glove", "hammer", "igloo", "jungle", "koala",
    "lemon", "magnet", "nectar", "oyster", "parrot", "quiet", "ribbon", "salmon", "tomato",
    "umbrella", "violin", "wizard", "yogurt", "zebra", "blanket", "cookie", "donkey", "finger",
    "ginger", "hollow", "insect", "jigsaw", "kitten", "lizard", "meadow", "napkin", "pillow",
    "puzzle", "shadow", "sponge", "timber", "turkey", "valley", "wallet", "copper", "desert",
    "marble", "pirate", "sunset", "thunder", "button", "cotton", "market", "spider", "winter",
    "bottle", "circle", "flower", "hunter", "lantern", "monkey", "pencil", "rubber", "stone",
    "table", "water", "cloud", "grape", "horse", "light", "music", "night", "ocean", "paper",
    "plant", "smile", "train", "whale", "bread", "chair", "dream", "field", "honey", "money",
    "piano", "queen", "storm", "tooth", "voice", "world", "beach", "clock", "drum", "frog",
)

ANTONYMS: tuple[tuple[str, str], ...] = (
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
    ("up", "down"), ("early", "late"), ("full", "empty"), ("hard", "soft"), ("high", "low"),
    ("long", "short"), ("old", "young"), ("open", "closed"), ("rich", "poor"), ("strong", "weak"),
    ("wet", "dry"), ("loud", "quiet"), ("thick", "thin"), ("heavy", "light"), ("clean", "dirty"),
    ("win", "lose"), ("buy", "sell"), ("push", "pull"), ("first", "last"), ("inside", "outside"),
    ("true", "false"), ("near", "far"), ("begin", "end"), ("cheap", "expensive"),
    ("safe", "dangerous"),
    ("north", "south"), ("east", "west"), ("day", "night"), ("give", "take"), ("love", "hate"),
    ("smooth", "rough"), ("sweet", "sour"), ("wide", "narrow"), ("brave", "afraid"),
    ("awake", "asleep"),
)

CAPITALS: tuple[tuple[str, str], ...] = (
    ("France", "Paris"), ("Spain", "Madrid"), ("Italy", "Rome"), ("Germany", "Berlin"),
    ("Japan", "Tokyo"), ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"),
    ("Peru", "Lima"), ("Chile", "Santiago"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Greece", "Athens"), ("Poland", "Warsaw"), ("Portugal", "Lisbon"), ("Austria", "Vienna"),
    ("Ireland", "Dublin"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
    ("India", "New Delhi"),
    ("China", "Beijing"), ("Russia", "Moscow"), ("Mexico", "Mexico City"), ("Brazil", "Brasilia"),
    ("Argentina", "Buenos Aires"), ("Australia", "Canberra"), ("Turkey", "Ankara"),
    ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Cuba", "Havana"), ("Hungary", "Budapest"),
    ("Belgium", "Brussels"), ("Morocco", "Rabat"), ("Nigeria", "Abuja"), ("Ghana", "Accra"),
    ("Colombia", "Bogota"), ("Iceland", "Reykjavik"), ("Nepal", "Kathmandu"), ("Qatar", "Doha"),
)

DAYS: tuple[str, ...] = (
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
)

CITIES: tuple[str, ...] = (
    "Paris", "London", "Tokyo", "Berlin", "Madrid", "Rome", "Oslo", "Cairo", "Lima", "Boston",
    "Denver", "Seattle", "Austin", "Dublin", "Vienna", "Prague", "Lisbon", "Athens", "Sydney",
    "Toronto", "Chicago", "Miami", "Nairobi", "Mumbai", "Seoul", "Bangkok", "Hanoi", "Quito",
    "Zurich", "Munich", "Milan", "Porto", "Krakow", "Helsinki", "Reykjavik", "Havana", "Dakar",
    "Amsterdam", "Brussels", "Geneva", "Hamburg", "Naples", "Seville", "Valencia", "Warsaw",
    "Budapest", "Belgrade", "Bucharest", "Istanbul", "Ankara", "Tunis", "Accra", "Lagos",
    "Kampala", "Harare", "Durban", "Perth", "Auckland", "Manila", "Jakarta", "Osaka", "Kyoto",
    "Beijing", "Shanghai", "Taipei", "Delhi", "Karachi", "Dubai", "Doha", "Tehran", "Baku",
    "Montreal", "Vancouver", "Houston", "Dallas", "Phoenix", "Portland", "Atlanta", "Detroit",
    "Santiago", "Bogota", "Caracas", "Montevideo", "Cusco", "Oaxaca", "Tijuana", "Calgary",
)

NUMBER_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
)
TENS_WORDS: tuple[str, ...] = (
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
)


def number_to_words(n: int) -> str:
    """0..9999 in English words ("three hundred forty-two"); used by tasks and their answers."""
    if not 0 <= n <= 9999:
        raise ValueError(f"number_to_words supports 0..9999, got {n}")
    if n < 20:
        return NUMBER_WORDS[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return TENS_WORDS[tens] + (f"-{NUMBER_WORDS[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{NUMBER_WORDS[hundreds]} hundred" + (f" {number_to_words(rest)}" if rest else "")
    thousands, rest = divmod(n, 1000)
    return f"{NUMBER_WORDS[thousands]} thousand" + (f" {number_to_words(rest)}" if rest else "")
