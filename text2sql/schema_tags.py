"""Schema tags: the model names tables and columns by short tags, and the tags are mapped back to real names.

Why: a small model trained on some domains must write table and column names it has never seen (held-out
domains, a user's own database). Copying an arbitrary identifier means reproducing a run of BPE pieces
(`dishName` -> `d`, `ish`, `Name`) that the model may never have written. With tags, every database's
tables are `tab1, tab2, ...` and its column names `col1, col2, ...`: a closed set of tokens that the
model writes on every training example. The prompt says which tag is which, in words, and the question
carries the tags of the schema items it names (schema linking, text2sql/linking.py):

    <|schema|> tab1 wards: col1 ward id int pk, col2 ward name text, col3 grade text | tab2 doctors: ...
    <|question|> Which wards (tab1) have grade (col3) A or E
    <|sql|> SELECT col2 FROM tab1 WHERE col3 IN ('A', 'E') <|end|>

so choosing a column is mostly "copy the tag next to the word", which does not depend on the domain.
Names are written as lower-case words (`dishName`, `dish_name` -> "dish name"), the same tokens as the
question's words. After decoding, `from_tags` puts the real names back and the SQL runs on the database.

The mapping is a bijection on *names* (case-insensitive, as SQLite compares them): tables get tags in
schema order; every distinct column name gets one tag, so `ward_id` in two tables is `col1` in both.
Renaming names one-to-one keeps every query's meaning (the same columns collide, the same ones are
ambiguous), so the rewrite needs no scope analysis: it is lexical, outside string literals. Tags depend
only on the schema, never on the question, so every question of one database shares them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from text2sql.linking import identifier_words, link_spans, value_spans
from text2sql.schema import Column, Schema, Table, compact_type

TABLE_TAG = "tab"
COLUMN_TAG = "col"

# SQL lexemes: 'string' ('' escapes), "quoted" / `quoted` / [quoted] identifiers, words, anything else.
_LEXEME = re.compile(r"""'(?:[^']|'')*'?|"(?:[^"]|"")*"?|`[^`]*`?|\[[^\]]*\]?|[A-Za-z_][A-Za-z0-9_]*|\s+|.""")
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Words that are SQL when unquoted: never renamed even if a table or column bears the name.
KEYWORDS = frozenset("""select from where and or not in as on join inner left outer cross natural by group
order having limit offset union intersect except all distinct asc desc like between is null case when then
else end exists""".split())
FUNCTIONS = frozenset("count sum avg min max cast".split())  # renamed only when not called: `count(` stays


def readable(name: str, given: str = "") -> str:
    """An identifier as the words a question uses: 'dishName' / 'dish_name' -> 'dish name'. `given` is a
    source's own wording of it (Spider's tables.json: 'StuID' -> 'student id'), used when there is one."""
    return " ".join(identifier_words(given or name)) or name.lower()


def _unquote(lexeme: str) -> str | None:
    """The name inside a quoted identifier lexeme, or None when it is not one."""
    if len(lexeme) >= 2 and (lexeme[0], lexeme[-1]) in (('"', '"'), ("`", "`"), ("[", "]")):
        return lexeme[1:-1].replace('""', '"') if lexeme[0] == '"' else lexeme[1:-1]
    return None


def _quote_if_needed(name: str) -> str:
    return name if _PLAIN.match(name) and name.lower() not in KEYWORDS | FUNCTIONS else '"' + name.replace('"', '""') + '"'


def _rename(sql: str, mapping: dict[str, str], quote) -> str:
    """Replace every identifier of `sql` whose lower-case name is in `mapping` (not string literals, not
    function names, not unquoted keywords)."""
    lexemes = _LEXEME.findall(sql)
    out = []
    for i, lx in enumerate(lexemes):
        name = _unquote(lx)
        if name is None and _PLAIN.match(lx) and lx.lower() not in KEYWORDS:
            j = i + 1
            while j < len(lexemes) and lexemes[j].isspace():
                j += 1
            if not (j < len(lexemes) and lexemes[j] == "("):  # a function call, not a name
                name = lx
        new = mapping.get(name.lower()) if name is not None else None
        out.append(quote(new) if new is not None else lx)
    return "".join(out)


@dataclass(frozen=True)
class SchemaTags:
    """The tags of one schema: `tag_of[name.lower()]`, `name_of[tag]`, and the schema with tags for names
    (what the SQL constraint checks the model's output against)."""
    schema: Schema
    tagged: Schema
    tag_of: dict
    name_of: dict

    def to_tags(self, sql: str) -> str:
        """Gold SQL with real names -> the same SQL over tags (training targets)."""
        return _rename(sql, self.tag_of, lambda tag: tag)

    def from_tags(self, sql: str) -> str:
        """Decoded SQL over tags -> SQL over the real names (quoted where a name needs it)."""
        return _rename(sql, self.name_of, _quote_if_needed)

    def real_column(self, table_tag: str, column_tag: str) -> tuple[str, str]:
        """(table, column) real names of a tagged pair; unknown tags come back unchanged."""
        return self.name_of.get(table_tag.lower(), table_tag), self.name_of.get(column_tag.lower(), column_tag)

    def annotate(self, question: str, values: dict | None = None) -> str:
        """The question with the tags of the schema items it names after the words that name them, and
        (with `values`, text2sql.linking.read_text_values) `=tag` after a value stored in that column:
        'Which wards have grade A in Paris' -> 'Which wards (tab1) have grade (col3) A in Paris (=col7)'."""
        names = link_spans(self.schema, question)
        found = [(a, b, sorted({self.tag_of[(c if c is not None else t).lower()] for t, c in items}, key=_tag_key), "")
                 for a, b, items in names]
        for a, b, cols in value_spans(question, values or {}, [(a, b) for a, b, _ in names]):
            found.append((a, b, sorted({self.tag_of[c.lower()] for _, c in cols}, key=_tag_key), "="))
        out, last = [], 0
        for start, end, tags, mark in sorted(found):
            out.append(question[last:end] + " (" + " ".join(mark + t for t in tags) + ")")
            last = end
        return "".join(out) + question[last:]

    def table_text(self, table: Table, with_types: bool = True) -> str:
        """`tab1 wards: col1 ward id int pk, col2 ward name text, col5 ward id int fk tab1` (one table)."""
        cols = []
        for c in table.columns:
            parts = [self.tag_of[c.name.lower()], readable(c.name, c.readable)]
            if with_types and c.type:
                parts.append(compact_type(c.type))
            if c.primary_key:
                parts.append("pk")
            if c.references:
                parts.append("fk " + self.tag_of.get(c.references[0].lower(), c.references[0]))
            cols.append(" ".join(parts))
        return f"{self.tag_of[table.name.lower()]} {readable(table.name, table.readable)}: " + ", ".join(cols)

    def schema_text(self, tables: list[Table], with_types: bool = True) -> str:
        return " | ".join(self.table_text(t, with_types) for t in tables)


def _tag_key(tag: str) -> tuple[str, int]:
    m = re.match(r"([a-z]+)(\d+)$", tag)
    return (m.group(1), int(m.group(2))) if m else (tag, 0)


def schema_tags(schema: Schema) -> SchemaTags:
    """The tags of `schema` (cached by the schema's content)."""
    return _schema_tags(_freeze(schema))


def _freeze(schema: Schema):
    return tuple((t.name, tuple((c.name, c.type, c.primary_key, c.references, c.readable) for c in t.columns),
                  t.readable) for t in schema.tables)


@lru_cache(maxsize=256)
def _schema_tags(frozen) -> SchemaTags:
    schema = Schema([Table(t, [Column(*c) for c in cols], readable) for t, cols, readable in frozen])
    tag_of: dict[str, str] = {}
    for t in schema.tables:
        tag_of.setdefault(t.name.lower(), f"{TABLE_TAG}{len(tag_of) + 1}")
    n_tables = len(tag_of)
    for t in schema.tables:
        for c in t.columns:
            if c.name.lower() not in tag_of:  # a column named like a table shares the table's tag
                tag_of[c.name.lower()] = f"{COLUMN_TAG}{len(tag_of) - n_tables + 1}"
    name_of = {}
    for t in schema.tables:  # the first spelling of a name wins (names compare case-insensitively)
        name_of.setdefault(tag_of[t.name.lower()], t.name)
        for c in t.columns:
            name_of.setdefault(tag_of[c.name.lower()], c.name)
    tagged = Schema([Table(tag_of[t.name.lower()], [
        Column(tag_of[c.name.lower()], c.type, c.primary_key,
               (tag_of.get(c.references[0].lower(), c.references[0]), tag_of.get(c.references[1].lower(), c.references[1]))
               if c.references else None) for c in t.columns]) for t in schema.tables])
    return SchemaTags(schema, tagged, tag_of, name_of)
