"""The word lists the synthetic databases are composed from, and which of them only the test sees.

A *theme* is a group of entities that sensibly relate (a hospital has doctors, doctors have patients);
a database composes two or three entities of one theme into tables linked by foreign keys, and gives each
table a label column (its name, title or code) and a few *attributes* (numbers with a range, or a text
category with a value pool). About 40 themes x 4-6 entities x ~90 attributes x four naming styles give
thousands of distinct schemas.

Held out for testing (`HELD_OUT_THEMES`, `HELD_OUT_ATTRIBUTES`): every fourth theme and every fourth
attribute, by position in these lists. Training databases never use a held-out theme's entity words
nor a held-out attribute, and test databases of held-out domains use only those, so no table or column
name of such a test database occurs anywhere in training (identifiers are built from these words; the
key columns are named after their entity too: `ship_id`, not `id`). A model must read the names off the
schema, not recall them.
"""
from __future__ import annotations

from dataclasses import dataclass

# ----------------------------------------------------------------------------------------------------
# Value pools

PEOPLE = ["Alice", "Bob", "Carla", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack", "Karen",
          "Leo", "Maria", "Nina", "Oscar", "Paul", "Quinn", "Rosa", "Sam", "Tina", "Umar", "Vera", "Walter",
          "Xena", "Yusuf", "Zoe", "Anna", "Ben", "Clara", "Dan", "Eva", "Felix", "Gina", "Hugo", "Ivan",
          "Julia", "Kevin", "Laura", "Mark", "Nora"]
ADJECTIVES = ["Silent", "Golden", "Broken", "Hidden", "Bright", "Lost", "Frozen", "Wild", "Quiet", "Red",
              "Blue", "Dark", "Little", "Last", "Secret"]
NOUNS = ["River", "Moon", "City", "Garden", "Road", "Star", "Forest", "Dream", "Island", "Storm", "Bridge",
         "House", "Sky", "Song", "Winter"]
TITLES = [f"{a} {n}" for a in ADJECTIVES for n in NOUNS]
THINGS = ["Nova", "Atlas", "Orion", "Vega", "Zephyr", "Comet", "Echo", "Falcon", "Ember", "Summit", "Harbor",
          "Meadow", "Pioneer", "Aurora", "Cobalt", "Delta", "Juniper", "Lumen", "Mosaic", "Nimbus", "Onyx",
          "Pebble", "Quartz", "Raven", "Sierra", "Tango", "Umber", "Velvet", "Willow", "Yonder"]
PLACES = [f"{a} {n}" for a in ["North", "South", "East", "West", "Old", "New", "Upper", "Lower"]
          for n in ["Park", "Hill", "Bay", "Square", "Gate", "Field"]]
LABEL_POOLS = {"person": PEOPLE, "title": TITLES, "thing": THINGS, "place": PLACES}  # "code": made up per table

CITIES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Tokyo", "Boston", "Denver", "Lima", "Oslo", "Cairo",
          "Dublin"]
COUNTRIES = ["France", "Spain", "Italy", "Japan", "Brazil", "Canada", "Egypt", "India", "Norway", "Peru",
             "Kenya", "Chile"]

# ----------------------------------------------------------------------------------------------------
# Themes: (singular, plural, label kind, label word) per entity. A table's label column is named
# "<entity>_<label word>" (ship_name) and questions call it by the label word ("the name of each ship").


@dataclass(frozen=True)
class Entity:
    singular: str
    plural: str
    label_kind: str   # person | title | thing | place | code
    label_word: str   # name | title | code


def _entities(spec: str) -> tuple[Entity, ...]:
    """'doctor/doctors:person:name, ward/wards:place:name' -> Entities."""
    out = []
    for item in spec.split(","):
        nouns, kind, word = item.strip().split(":")
        singular, plural = nouns.split("/")
        out.append(Entity(singular, plural, kind, word))
    return tuple(out)


THEMES: dict[str, tuple[Entity, ...]] = {
    "company": _entities("department/departments:thing:name, employee/employees:person:name, "
                         "project/projects:title:title, office/offices:place:name"),
    "school": _entities("teacher/teachers:person:name, student/students:person:name, course/courses:title:title, "
                        "classroom/classrooms:code:code"),
    "library": _entities("author/authors:person:name, book/books:title:title, publisher/publishers:thing:name, "
                         "reader/readers:person:name"),
    "shipping": _entities("port/ports:place:name, ship/ships:thing:name, captain/captains:person:name, "
                          "cargo/cargoes:code:code, voyage/voyages:code:code"),
    "music": _entities("artist/artists:person:name, album/albums:title:title, label/labels:thing:name, "
                       "concert/concerts:title:title"),
    "retail": _entities("customer/customers:person:name, product/products:thing:name, store/stores:place:name, "
                        "supplier/suppliers:thing:name"),
    "sports": _entities("team/teams:thing:name, player/players:person:name, coach/coaches:person:name, "
                        "stadium/stadiums:place:name, match/matches:code:code"),
    "hospital": _entities("doctor/doctors:person:name, patient/patients:person:name, ward/wards:place:name, "
                          "nurse/nurses:person:name"),
    "cinema": _entities("director/directors:person:name, movie/movies:title:title, studio/studios:thing:name, "
                        "actor/actors:person:name"),
    "aviation": _entities("airline/airlines:thing:name, flight/flights:code:code, pilot/pilots:person:name, "
                          "airport/airports:place:name, aircraft/aircraft:code:code"),
    "zoo": _entities("keeper/keepers:person:name, animal/animals:thing:name, enclosure/enclosures:place:name, "
                     "species/species:title:name"),
    "restaurant": _entities("chef/chefs:person:name, dish/dishes:title:name, restaurant/restaurants:thing:name, "
                            "waiter/waiters:person:name"),
    "farming": _entities("farm/farms:place:name, farmer/farmers:person:name, field/fields:code:code, "
                         "crop/crops:thing:name, tractor/tractors:code:code"),
    "museum": _entities("museum/museums:thing:name, exhibit/exhibits:title:title, curator/curators:person:name, "
                        "gallery/galleries:place:name"),
    "banking": _entities("bank/banks:thing:name, branch/branches:place:name, account/accounts:code:code, "
                         "client/clients:person:name, loan/loans:code:code"),
    "theater": _entities("theater/theaters:thing:name, play/plays:title:title, performer/performers:person:name, "
                         "playwright/playwrights:person:name"),
    "transit": _entities("route/routes:code:code, bus/buses:code:code, driver/drivers:person:name, "
                         "station/stations:place:name"),
    "hotel": _entities("hotel/hotels:thing:name, room/rooms:code:code, guest/guests:person:name, "
                       "manager/managers:person:name"),
    "publishing": _entities("magazine/magazines:title:title, editor/editors:person:name, "
                            "article/articles:title:title, journalist/journalists:person:name"),
    "gaming": _entities("developer/developers:thing:name, game/games:title:title, gamer/gamers:person:name, "
                        "tournament/tournaments:title:name"),
    "science": _entities("laboratory/laboratories:thing:name, scientist/scientists:person:name, "
                         "experiment/experiments:code:code, instrument/instruments:thing:name"),
    "real_estate": _entities("agency/agencies:thing:name, agent/agents:person:name, house/houses:place:name, "
                             "buyer/buyers:person:name"),
    "fitness": _entities("gym/gyms:thing:name, trainer/trainers:person:name, member/members:person:name, "
                         "workout/workouts:title:name"),
    "automotive": _entities("manufacturer/manufacturers:thing:name, car/cars:thing:model, dealer/dealers:thing:name, "
                            "mechanic/mechanics:person:name"),
    "university": _entities("faculty/faculties:thing:name, professor/professors:person:name, "
                            "seminar/seminars:title:title, researcher/researchers:person:name"),
    "energy": _entities("plant/plants:thing:name, turbine/turbines:code:code, engineer/engineers:person:name, "
                        "grid/grids:place:name"),
    "charity": _entities("charity/charities:thing:name, donor/donors:person:name, campaign/campaigns:title:title, "
                         "volunteer/volunteers:person:name"),
    "space": _entities("launch_site/launch_sites:place:name, mission/missions:title:name, astronaut/astronauts:person:name, "
                       "rocket/rockets:thing:name, satellite/satellites:code:code"),
    "fashion": _entities("designer/designers:person:name, brand/brands:thing:name, garment/garments:code:code, "
                         "boutique/boutiques:place:name"),
    "veterinary": _entities("clinic/clinics:place:name, vet/vets:person:name, pet/pets:thing:name, "
                            "owner/owners:person:name"),
    "brewing": _entities("brewery/breweries:thing:name, beer/beers:title:name, brewer/brewers:person:name, "
                         "pub/pubs:place:name"),
    "mining": _entities("mine/mines:place:name, miner/miners:person:name, mineral/minerals:thing:name, "
                        "shaft/shafts:code:code"),
    "postal": _entities("post_office/post_offices:place:name, courier/couriers:person:name, "
                        "parcel/parcels:code:code, depot/depots:place:name"),
    "astronomy": _entities("observatory/observatories:place:name, telescope/telescopes:thing:name, "
                           "astronomer/astronomers:person:name, comet/comets:title:name"),
    "winery": _entities("vineyard/vineyards:place:name, wine/wines:title:name, winemaker/winemakers:person:name, "
                        "cellar/cellars:code:code"),
    "fire_service": _entities("firehouse/firehouses:place:name, firefighter/firefighters:person:name, "
                              "engine/engines:code:code, incident/incidents:code:code"),
    "orchestra": _entities("orchestra/orchestras:thing:name, conductor/conductors:person:name, "
                           "musician/musicians:person:name, symphony/symphonies:title:title"),
    "gardening": _entities("nursery/nurseries:thing:name, gardener/gardeners:person:name, plant/plants:thing:name, "
                           "greenhouse/greenhouses:code:code"),
    "ferry": _entities("harbor/harbors:place:name, ferry/ferries:thing:name, sailor/sailors:person:name, "
                       "crossing/crossings:code:code"),
    "bakery": _entities("bakery/bakeries:thing:name, baker/bakers:person:name, cake/cakes:title:name, "
                        "oven/ovens:code:code"),
}

# ----------------------------------------------------------------------------------------------------
# Attributes: (name, kind, values). Numbers: (lo, hi, step); text: a category pool.


@dataclass(frozen=True)
class Attribute:
    name: str     # snake_case words, e.g. "founded_year"; questions read it as "founded year"
    kind: str     # int | real | text
    values: tuple


def _num(name, lo, hi, step=1, kind="int") -> Attribute:
    return Attribute(name, kind, (lo, hi, step))


def _cat(name, *values) -> Attribute:
    return Attribute(name, "text", tuple(values))


ATTRIBUTES: tuple[Attribute, ...] = (
    _num("age", 18, 90), _cat("city", *CITIES), _num("price", 2, 400, 0.5, "real"), _num("capacity", 10, 500),
    _num("rating", 1, 10), _cat("country", *COUNTRIES), _num("weight", 1, 900), _cat("color", "Red", "Blue",
                                                                                        "Green", "Black", "White", "Yellow", "Grey"),
    _num("founded_year", 1900, 2020), _cat("status", "Active", "Closed", "Pending", "Open", "Retired"),
    _num("budget", 100, 900, 10), _num("height", 1, 300),
    _cat("category", "Standard", "Premium", "Basic", "Deluxe", "Economy"), _num("score", 0, 100),
    _num("cost", 5, 900, 0.5, "real"), _cat("region", "North", "South", "East", "West", "Central"),
    _num("length", 1, 500), _cat("size", "Small", "Medium", "Large", "Huge", "Tiny"), _num("salary", 20, 200),
    _num("floors", 1, 60), _cat("genre", "Drama", "Mystery", "Fantasy", "Poetry", "Horror", "Comedy"),
    _num("seats", 2, 80), _num("duration", 1, 300), _cat("material", "Wood", "Steel", "Glass", "Stone", "Plastic"),
    _num("population", 100, 90000, 100), _num("speed", 10, 300), _cat("language", "English", "French", "Spanish",
                                                                      "German", "Hindi", "Arabic"),
    _num("distance", 1, 5000, 10), _num("quantity", 1, 100), _cat("make", "Acme", "Globex", "Initech", "Umbrella",
                                                                  "Stark", "Wayne"),
    _num("stock", 0, 300), _num("pages", 50, 900), _cat("shape", "Round", "Square", "Oval", "Flat", "Long"),
    _num("fee", 1, 200, 0.5, "real"), _num("wins", 0, 50), _cat("continent", "Europe", "Asia", "Africa", "America",
                                                                "Oceania"),
    _num("losses", 0, 50), _num("visits", 1, 400), _cat("season", "Spring", "Summer", "Autumn", "Winter"),
    _num("headcount", 1, 300), _num("ranking", 1, 100), _cat("weekday", "Monday", "Tuesday", "Wednesday", "Thursday",
                                                           "Friday"),
    _num("volume", 1, 100), _num("depth", 1, 400), _cat("currency", "Euro", "Dollar", "Yen", "Pound", "Rupee"),
    _num("area", 10, 900), _num("level", 1, 20), _cat("grade", "A", "B", "C", "D", "E"),
    _num("rate", 0.5, 10, 0.1, "real"), _num("priority", 1, 5), _cat("style", "Modern", "Classic", "Rustic",
                                                                    "Minimal", "Gothic"),
    _num("calories", 50, 900, 10), _num("temperature", -20, 45), _cat("zone", "Alpha", "Bravo", "Charlie", "Echo"),
    _num("width", 1, 300), _num("votes", 0, 1000), _cat("channel", "Online", "Phone", "Mail", "Store"),
    _num("views", 0, 9000, 10), _num("enrollment", 10, 900), _cat("platform", "Web", "Mobile", "Desktop",
                                                                  "Console"),
    _num("hours", 1, 80), _num("discount", 0, 50, 0.5, "real"), _cat("method", "Cash", "Card", "Transfer",
                                                                     "Voucher"),
    _num("tickets_sold", 0, 5000, 10), _num("birth_year", 1930, 2005), _cat("format", "Digital", "Print", "Audio",
                                                                           "Video"),
    _num("balance", 0, 9000, 0.5, "real"), _num("mileage", 0, 9000, 10), _cat("origin", "Local", "Imported",
                                                                             "Regional"),
    _num("income", 10, 900, 0.5, "real"), _num("release_year", 1950, 2024), _cat("nationality", *COUNTRIES),
    _num("experience_years", 0, 40), _num("goals", 0, 40), _cat("condition", "New", "Used", "Refurbished",
                                                                "Damaged"),
    _num("tax", 0, 40, 0.5, "real"), _num("points", 0, 100),
    _num("altitude", 0, 4000, 10), _num("lifespan", 1, 80), _cat("habitat", "Forest", "Desert", "Ocean",
                                                                 "Mountain", "Grassland"),
)

HELD_OUT_THEMES = frozenset(name for i, name in enumerate(THEMES) if i % 4 == 3)
HELD_OUT_ATTRIBUTES = frozenset(a.name for i, a in enumerate(ATTRIBUTES) if i % 4 == 3)


def themes_for(held_out: bool) -> list[str]:
    """The themes a split may use: the held-out ones for the held-out-domain test, the others otherwise."""
    return [t for t in THEMES if (t in HELD_OUT_THEMES) == held_out]


def attributes_for(held_out: bool) -> list[Attribute]:
    return [a for a in ATTRIBUTES if (a.name in HELD_OUT_ATTRIBUTES) == held_out]


def theme_words(theme: str) -> set[str]:
    """Every word an identifier of this theme's tables can be built from."""
    words = set()
    for e in THEMES[theme]:
        words |= set(e.singular.split("_")) | set(e.plural.split("_"))
    return words


# ----------------------------------------------------------------------------------------------------
# Invented words: some training databases name their tables and columns with made-up words. A model
# cannot memorise those; it has to copy names from the schema, which is what a database it never saw
# asks of it.

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kl", "pl",
           "st", "tr", "sk", "sn", "fl"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]
_CODAS = ["", "", "", "n", "r", "l", "s", "k", "m", "t", "x"]
_LABEL_KINDS = [("person", "name"), ("thing", "name"), ("title", "title"), ("place", "name"), ("code", "code")]


# words an invented one must not be: every real word of the lists above and SQL's keywords
_TAKEN = ({w for ents in THEMES.values() for e in ents for w in (e.singular, e.plural, e.label_word)}
          | {w for a in ATTRIBUTES for w in a.name.split("_")}
          | {"select", "from", "where", "like", "limit", "order", "group", "having", "union", "intersect", "except",
             "join", "between", "distinct", "count", "table", "index", "values", "case", "else", "then", "when",
             "null", "true", "false", "default", "delete", "drop", "insert", "update", "into", "cast", "glob",
             "match", "regexp", "raise", "abort", "offset", "natural", "using", "outer", "inner", "left", "right"})


def invented_word(rng) -> str:
    """A pronounceable made-up word of two or three syllables ('brelan', 'zoukamit'), never a real word
    of these lists (so a held-out name cannot appear in training by chance) nor an SQL keyword."""
    while True:
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                       for _ in range(rng.choice([2, 2, 3])))
        if word not in _TAKEN and word + "s" not in _TAKEN:
            return word


def invented_entities(rng, n: int) -> list[Entity]:
    out = []
    for _ in range(n):
        word = invented_word(rng)
        kind, label = rng.choice(_LABEL_KINDS)
        out.append(Entity(word, word + "s", kind, label))
    return out


def invented_attributes(rng, n: int) -> list[Attribute]:
    """Made-up attribute names over the real attributes' value kinds and ranges."""
    out = []
    for _ in range(n):
        model = rng.choice(ATTRIBUTES)
        name = "_".join(invented_word(rng) for _ in range(rng.choice([1, 1, 2])))
        out.append(Attribute(name, model.kind, model.values))
    return out
