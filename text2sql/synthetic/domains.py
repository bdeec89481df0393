"""The ten domains the synthetic databases are drawn from, and the small word lists their values come from.

A domain (company, school, library, ...) is two or three `TableSpec`s linked by foreign keys. Each spec
lists name variants for the table and its columns, the kind of every column and where its values come
from; database.py picks one variant of each and fills the rows. Nothing here is random.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# ----------------------------------------------------------------------------------------------------
# Value pools (small on purpose: a small vocabulary)

PEOPLE = ["Alice", "Bob", "Carla", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack", "Karen",
          "Leo", "Maria", "Nina", "Oscar", "Paul", "Quinn", "Rosa", "Sam", "Tina", "Umar", "Vera", "Walter",
          "Xena", "Yusuf", "Zoe", "Anna", "Ben", "Clara", "Dan", "Eva", "Felix", "Gina", "Hugo", "Ivan",
          "Julia", "Kevin", "Laura", "Mark", "Nora"]
CITIES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Tokyo", "Boston", "Denver", "Lima", "Oslo"]
COUNTRIES = ["France", "Spain", "Italy", "Japan", "Brazil", "Canada", "Egypt", "India", "Norway", "Peru"]
ADJECTIVES = ["Silent", "Golden", "Broken", "Hidden", "Bright", "Lost", "Frozen", "Wild", "Quiet", "Red",
              "Blue", "Dark", "Little", "Last", "Secret"]
NOUNS = ["River", "Moon", "City", "Garden", "Road", "Star", "Forest", "Dream", "Island", "Storm", "Bridge",
         "House", "Sky", "Song", "Winter"]
TITLES = [f"{a} {n}" for a in ADJECTIVES for n in NOUNS]


@dataclass
class ColumnSpec:
    names: list[str]           # name variants; a database picks one
    kind: str                  # "label" (unique text), "text" (category), "int", "real"
    values: object = None      # a list for label/text, (lo, hi, step) for numbers
    optional: bool = True      # may be left out of a database


@dataclass
class TableSpec:
    names: list[tuple[str, str, str]]  # (table name, singular noun, plural noun) variants
    columns: list[ColumnSpec]
    parents: list[str] = field(default_factory=list)  # key of the parent TableSpec for each foreign key


def column_spec(names: str | list[str], kind: str, values=None, optional: bool = True) -> ColumnSpec:
    """A ColumnSpec from one name or a list of name variants."""
    return ColumnSpec([names] if isinstance(names, str) else list(names), kind, values, optional)


DOMAINS: dict[str, dict[str, TableSpec]] = {
    "company": {
        "department": TableSpec([("department", "department", "departments"), ("division", "division", "divisions")], [
            column_spec("name", "label", ["Sales", "Research", "Finance", "Marketing", "Support", "Legal", "Design",
                                          "Logistics", "Security", "Training"], optional=False),
            column_spec(["city", "location"], "text", CITIES),
            column_spec("budget", "int", (100, 900, 10)),
            column_spec(["founded_year", "start_year"], "int", (1980, 2020, 1))]),
        "employee": TableSpec([("employee", "employee", "employees"), ("worker", "worker", "workers")], [
            column_spec("name", "label", PEOPLE, optional=False),
            column_spec("age", "int", (20, 65, 1)),
            column_spec(["salary", "wage"], "int", (30, 150, 1)),
            column_spec("hire_year", "int", (1995, 2024, 1)),
            column_spec(["city", "home_city"], "text", CITIES)], ["department"]),
    },
    "school": {
        "teacher": TableSpec([("teacher", "teacher", "teachers"), ("instructor", "instructor", "instructors")], [
            column_spec("name", "label", PEOPLE, optional=False),
            column_spec("subject", "text", ["Math", "History", "Physics", "Music", "Art", "Biology"]),
            column_spec("age", "int", (25, 65, 1)),
            column_spec(["salary", "pay"], "int", (30, 90, 1))]),
        "student": TableSpec([("student", "student", "students"), ("pupil", "pupil", "pupils")], [
            column_spec("name", "label", PEOPLE, optional=False),
            column_spec("grade", "int", (1, 12, 1)),
            column_spec("age", "int", (6, 18, 1)),
            column_spec(["city", "hometown"], "text", CITIES),
            column_spec(["score", "points"], "int", (40, 100, 1))], ["teacher"]),
    },
    "library": {
        "author": TableSpec([("author", "author", "authors"), ("writer", "writer", "writers")], [
            column_spec("name", "label", PEOPLE, optional=False),
            column_spec(["country", "nationality"], "text", COUNTRIES),
            column_spec("birth_year", "int", (1900, 1990, 1))]),
        "book": TableSpec([("book", "book", "books"), ("novel", "novel", "novels")], [
            column_spec("title", "label", TITLES, optional=False),
            column_spec("genre", "text", ["Drama", "Mystery", "Fantasy", "Poetry", "Horror", "Romance"]),
            column_spec(["pages", "page_count"], "int", (80, 900, 1)),
            column_spec("price", "real", (5, 60, 0.5)),
            column_spec(["publish_year", "year"], "int", (1950, 2024, 1))], ["author"]),
    },
    "music": {
        "artist": TableSpec([("artist", "artist", "artists"), ("singer", "singer", "singers")], [
            column_spec("name", "label", PEOPLE, optional=False),
            column_spec("country", "text", COUNTRIES),
            column_spec("genre", "text", ["Rock", "Jazz", "Pop", "Blues", "Folk", "Metal"]),
            column_spec("debut_year", "int", (1960, 2020, 1))]),
        "album": TableSpec([("album", "album", "albums"), ("record", "record", "records")], [
            column_spec("title", "label", TITLES, optional=False),
            column_spec(["release_year", "year"], "int", (1965, 2024, 1)),
            column_spec(["sales", "copies_sold"], "int", (1, 500, 1)),
            column_spec("rating", "int", (1, 10, 1))], ["artist"]),
    },
    "store": {
        "customer": TableSpec([("customer", "customer", "customers"), ("client", "client", "clients")], [
            column_spec("name", "label", PEOPLE, optional=False),
            column_spec("city", "text", CITIES),
            column_spec("age", "int", (18, 80, 1))]),
        "product": TableSpec([("product", "product", "products"), ("item", "item", "items")], [
            column_spec("name", "label", ["Lamp", "Chair", "Table", "Phone", "Camera", "Kettle", "Clock", "Radio",
                                          "Mirror", "Pillow", "Blender", "Heater", "Fan", "Printer", "Speaker"],
                        optional=False),
            column_spec("category", "text", ["Home", "Office", "Kitchen", "Audio", "Garden"]),
            column_spec("price", "real", (2, 400, 0.5)),
            column_spec(["stock", "quantity_in_stock"], "int", (0, 300, 1))]),
        "purchase": TableSpec([("purchase", "purchase", "purchases"), ("sale", "sale", "sales")], [
            column_spec("quantity", "int", (1, 20, 1), optional=False),
            column_spec(["purchase_year", "year"], "int", (2015, 2024, 1))], ["customer", "product"]),
    },
    "sports": {
        "team": TableSpec([("team", "team", "teams"), ("club", "club", "clubs")], [
            column_spec("name", "label", [f"{c} {a}" for c in CITIES for a in ["Lions", "Eagles", "Sharks", "Wolves"]],
                        optional=False),
            column_spec(["city", "home_city"], "text", CITIES),
            column_spec("founded_year", "int", (1880, 2010, 1))]),
        "player": TableSpec([("player", "player", "players"), ("athlete", "athlete", "athletes")], [
            column_spec("name", "label", PEOPLE, optional=False),
            column_spec("position", "text", ["Goalkeeper", "Defender", "Midfielder", "Forward"]),
            column_spec("age", "int", (17, 40, 1)),
            column_spec(["goals", "points"], "int", (0, 40, 1)),
            column_spec(["salary", "wage"], "int", (10, 300, 1))], ["team"]),
    },
    "hospital": {
        "doctor": TableSpec([("doctor", "doctor", "doctors"), ("physician", "physician", "physicians")], [
            column_spec("name", "label", PEOPLE, optional=False),
            column_spec("specialty", "text", ["Cardiology", "Surgery", "Pediatrics", "Neurology", "Oncology"]),
            column_spec(["experience_years", "years_of_service"], "int", (1, 40, 1))]),
        "patient": TableSpec([("patient", "patient", "patients")], [
            column_spec("name", "label", PEOPLE, optional=False),
            column_spec("age", "int", (1, 95, 1)),
            column_spec(["city", "hometown"], "text", CITIES),
            column_spec("weight", "int", (3, 120, 1))], ["doctor"]),
    },
    "movies": {
        "director": TableSpec([("director", "director", "directors")], [
            column_spec("name", "label", PEOPLE, optional=False),
            column_spec(["country", "nationality"], "text", COUNTRIES),
            column_spec("birth_year", "int", (1930, 1995, 1))]),
        "movie": TableSpec([("movie", "movie", "movies"), ("film", "film", "films")], [
            column_spec("title", "label", TITLES, optional=False),
            column_spec("genre", "text", ["Comedy", "Drama", "Action", "Horror", "Western", "Animation"]),
            column_spec(["release_year", "year"], "int", (1960, 2024, 1)),
            column_spec(["budget", "cost"], "int", (1, 250, 1)),
            column_spec("rating", "int", (1, 10, 1))], ["director"]),
    },
    "travel": {
        "airline": TableSpec([("airline", "airline", "airlines"), ("carrier", "carrier", "carriers")], [
            column_spec("name", "label", ["Skyway", "Aerolux", "Jetstar", "Blue Wings", "Polar Air", "Sun Express",
                                          "Nordic Jet", "Cloud Line", "Swift Air", "Ocean Air"], optional=False),
            column_spec("country", "text", COUNTRIES),
            column_spec(["fleet_size", "planes"], "int", (5, 300, 1))]),
        "flight": TableSpec([("flight", "flight", "flights")], [
            column_spec(["code", "flight_code"], "label", [f"FL{n}" for n in range(100, 200)], optional=False),
            column_spec("origin", "text", CITIES),
            column_spec("destination", "text", CITIES),
            column_spec("distance", "int", (200, 9000, 10)),
            column_spec("price", "int", (50, 1500, 1))], ["airline"]),
    },
    "zoo": {
        "keeper": TableSpec([("keeper", "keeper", "keepers"), ("caretaker", "caretaker", "caretakers")], [
            column_spec("name", "label", PEOPLE, optional=False),
            column_spec("age", "int", (20, 70, 1)),
            column_spec(["salary", "wage"], "int", (20, 80, 1))]),
        "animal": TableSpec([("animal", "animal", "animals")], [
            column_spec("name", "label", ["Rex", "Milo", "Luna", "Coco", "Kiwi", "Nala", "Simba", "Bubbles", "Ziggy",
                                          "Pepper", "Shadow", "Mango", "Oreo", "Biscuit", "Dotty", "Rocky", "Peanut",
                                          "Ginger", "Sunny", "Maple", "Olive", "Toby", "Bruno", "Daisy"],
                        optional=False),
            column_spec("species", "text", ["Lion", "Tiger", "Zebra", "Panda", "Koala", "Giraffe", "Penguin"]),
            column_spec("age", "int", (1, 30, 1)),
            column_spec("weight", "int", (5, 900, 1))], ["keeper"]),
    },
}
