"""An incremental SQL checker that lets the model write only SQL this database accepts (PICARD-style).

Three layers, each cheap because the one below it is memoised:

1. A recursive-descent parser over SQL *lexemes* (words, numbers, strings, operators) for the SQLite subset
   that Spider and the synthetic generator use: SELECT [DISTINCT] with aggregates and arithmetic; FROM with
   JOIN ... ON column pairs and aliases (T1..T9); WHERE with AND/OR/NOT, comparisons, LIKE, BETWEEN, IN (a
   list or a subquery), IS [NOT] NULL; GROUP BY, HAVING, ORDER BY ASC/DESC, LIMIT; UNION/INTERSECT/EXCEPT;
   nested SELECTs (correlated ones see the outer tables). It runs on a *prefix*: when it reaches the end of
   the lexemes it records what could come next (the "expected" set, collected from every optional
   construct it passes on the way out, as completion in a recursive-descent parser does) instead of failing.
   The parser knows the schema, so the expected identifiers are the tables of the database, the columns
   of the tables in scope (qualified by their alias when one was given) and aliases that are consistent
   with what the SELECT list already used. Columns written before FROM are checked when FROM ends:
   each must then resolve to exactly one table in scope (SQLite's "ambiguous column" and "no such column"
   are errors). Aggregates are refused in WHERE, ON and GROUP BY and inside another aggregate.
2. A character-level state machine on top (`SQLPrefixChecker.feed`): the state is (lexeme prefix id,
   lexer mode, partial lexeme). A word must stay a prefix of an expected word, a string literal a prefix
   of a value the question or the compared column holds (`ValueSource`), a number a prefix of a number of
   the question or inside the column's range. `can_end` says whether the text so far is complete SQL.
3. Tokens (`TokenTrie`, `SQLConstraint`): every vocabulary id's decoded text goes into a character trie,
   built once per tokenizer; the allowed next ids are those whose trie path the state machine can walk
   (the outlines / llama.cpp-grammar idea). Sub-trees die at their first impossible character, so one
   step visits a few hundred trie nodes, not the whole vocabulary; states and masks are memoised, so
   beams that share a prefix share the work. `<|end|>` is allowed only where the SQL is complete; no other
   control token ever is, and neither is `;`, so no second statement can be written.

Values (the "where do literals come from" rule): a string literal is a span of the question that starts
and ends at word boundaries, or a value of the compared column (first `MAX_COLUMN_VALUES` distinct values);
a LIKE pattern is `%`-separated pieces of the question or of the column's values; a number is one written
in the question or (compared with a column) inside the column's [min, max] (at most 2 decimals); counts
and LIMIT may also use the integers 0..10. For decoding (exact_case, the default) tables and columns are
written only as the schema spells them, keywords and aliases in upper or lower case, strings as the
question or the column writes them and in single quotes; exact_case=False checks SQLite's own
case-insensitive rules (Spider's gold). Identifiers that need quoting (spaces, dashes) are not offered.

Rules beyond SQLite's own, so that every decode runs and none runs away: at most 5 tables in one FROM
(a table twice needs distinct names); a bare column named in ON never becomes ambiguous through a later
join; the join rules (issue 11: the Spider model's runaway self-joins ran out of memory or time): no comma
joins, ON is `x = y (AND x = y)*` over columns of two different bindings, each pair a foreign key and its
key, two foreign keys to one key, two columns of one name, or a primary key and a column of its type (in a
schema that declares no key: two columns of one type), no pair twice, every table joined to the ones
before it when its ON ends (a JOIN without ON, at most 3 in a row, is joined by the next ON), a table at
most 3 times in one FROM; aggregates only over their own query's columns, with no subquery inside; one
NOT per predicate; 3 arithmetic operators per expression; 2 SELECTs nested below the top one; 4 nested
brackets; ORDER BY / GROUP BY never start with a number, even behind brackets or a minus (SQLite reads
them as positions).
The token budget (SQLConstraint, max_tokens): near the end of the decode's steps (or earlier, where the
completion is already long) only ids that leave a completion short enough to finish in time are allowed
(SQLPrefixChecker.completion).

Known gaps (reported by tests/test_sql_constraint.py on Spider): subqueries in FROM, functions other than
the five aggregates, CASE, CAST, `AS` names in the SELECT list.
"""
from __future__ import annotations

import heapq
import re
from collections import OrderedDict
from bisect import bisect_left
from decimal import Decimal
from dataclasses import dataclass, field
from pathlib import Path

from text2sql.schema import Schema, compact_type

MAX_COLUMN_VALUES = 5000       # distinct values read per column (bounded scan)
ALIASES = tuple(f"t{i}" for i in range(1, 10))
AGGREGATES = ("count", "sum", "avg", "min", "max")
SET_OPS = ("union", "intersect", "except")
COMPARISONS = ("=", "!=", "<>", "<", ">", "<=", ">=")
ARITHMETIC = ("+", "-", "*", "/")
SMALL_INTS = tuple(str(i) for i in range(11))
KEYWORDS = frozenset(("select", "distinct", "from", "where", "group", "by", "having", "order", "asc", "desc",
                      "limit", "join", "on", "as", "and", "or", "not", "like", "between", "in", "is", "null")
                     + AGGREGATES + SET_OPS)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMBER_IN_TEXT = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])")
_NUMBER_PREFIX = re.compile(r"^\d+(\.\d*)?$")
_NUMBER = re.compile(r"^\d+(\.\d+)?$")
WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
DIGITS = frozenset("0123456789")
OP_CHARS = frozenset("<>=!")
SINGLE_PUNCT = frozenset("(),*+-/")
SPACES = frozenset(" ")  # one space between lexemes (no tabs, newlines, comments or runs of spaces)
MAX_TABLES = 5  # tables in one FROM (Spider train joins at most 5; more is a runaway cross join)
MAX_SAME_TABLE = 3  # bindings of one table in one FROM (Spider train: at most 3, a friend-of-a-friend chain)
MAX_DEFERRED = 3  # JOINs in a row without ON (a later ON joins them all; Spider train writes up to 3)
MAX_DEPTH = 4  # nested parentheses (conditions, subqueries, IN lists): a decode must be able to close them
MAX_SUBQUERIES = 2  # SELECTs nested below the top one, one inside the other (Spider train: at most 2)
MAX_ARITHMETIC = 3  # + - * / in one expression (Spider train uses at most 2)
MAX_DECIMALS = 2  # decimals of a number taken from a column's range rather than written somewhere
# the completer (SQLPrefixChecker.completion): how often one path may use a piece that opens more to close,
# and the words it never needs
EXPANSIONS = {"join": 4, "and": 3, "select": 1, "in": 1, "(": 1, "*": 1, ",": 4}
_NOT_FOR_COMPLETION = frozenset(("select", "in", "like", "between", "distinct", "not", "or", "as", "is",
                                 "and", "join", "where", "group", "having", "order", "limit", "asc", "desc",
                                 "union", "intersect", "except", "count", "sum", "avg", "min", "max"))


# ----------------------------------------------------------------------------------------------------
# Where literals may come from


@dataclass(frozen=True)
class StrSpec:
    column: tuple[str, str] | None  # (table, column), lower case, or None
    like: bool = False
    exclude: frozenset = frozenset()  # stored values already in this IN list (question_decides)


@dataclass(frozen=True)
class NumSpec:
    column: tuple[str, str] | None
    small_ints: bool = False  # counts and LIMIT: 0..10 allowed too
    exclude: frozenset = frozenset()  # question numbers ruled out here (question_decides: IN lists, BETWEEN)
    above: float | None = None        # BETWEEN's upper bound: above the lower one (question_decides)


@dataclass
class _ColumnValues:
    texts: list[str]          # distinct values as text (lower case unless exact_case), sorted
    joined: str               # "\n".join(texts) in lower case, for LIKE's substring tests
    exact: frozenset[str]
    low: float | None = None  # numeric range when every value is a number
    high: float | None = None


class ValueSource:
    """The literals a query may contain: spans of the question, and (with a database) column values."""

    def __init__(self, question: str, db_path: str | Path | None = None, real_names=None, exact_case: bool = True,
                 question_decides: bool = False):
        # exact_case: a string is copied as the question or the column writes it (SQLite's = is
        # case-sensitive); LIKE pieces (case-insensitive in SQLite) are compared in lower case either way
        self.exact = exact_case
        self.question = question if exact_case else question.lower()
        self.question_lower = question.lower()
        self.db_path = Path(db_path) if db_path else None
        # (table, column) as the schema names them -> as the database does (schema tags: tab1.col3 -> real)
        self.real_names = real_names
        self.numbers = frozenset(_NUMBER_IN_TEXT.findall(question))
        self._columns: dict[tuple[str, str], _ColumnValues | None] = {}
        self._viable: dict = {}
        self._named: dict[tuple[str, str], list[str] | None] = {}
        # literals the question decides (named_values, number_complete): on for decoding (text2sql/decoding.py)
        self.question_decides = question_decides

    def column(self, col: tuple[str, str] | None) -> _ColumnValues | None:
        if col is None or self.db_path is None:
            return None
        if col not in self._columns:
            self._columns[col] = self._read(*(self.real_names(*col) if self.real_names else col))
        return self._columns[col]

    def _read(self, table: str, column: str) -> _ColumnValues | None:
        from text2sql.sql_exec import open_readonly

        q = lambda s: '"' + s.replace('"', '""') + '"'  # noqa: E731
        try:
            conn = open_readonly(self.db_path)
        except (OSError, ValueError):
            return None
        try:
            rows = conn.execute(f"SELECT DISTINCT {q(column)} FROM {q(table)} LIMIT {MAX_COLUMN_VALUES}").fetchall()
        except Exception:  # a bad file or a schema that changed: no column values, the question still counts
            return None
        finally:
            conn.close()
        values = [r[0] for r in rows if r[0] is not None]
        texts = sorted({str(v) if self.exact else str(v).lower() for v in values})
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        low = high = None
        if values and len(nums) == len(values):
            low, high = float(min(nums)), float(max(nums))
        return _ColumnValues(texts, "\n".join(texts).lower(), frozenset(texts), low, high)

    # strings ------------------------------------------------------------------------------------------
    def _question_span(self, text: str, complete: bool) -> bool:
        """text occurs in the question starting at a word boundary (and, if complete, ending at one)."""
        return self._span_in(self.question, text, complete)

    @staticmethod
    def _span_in(q: str, text: str, complete: bool) -> bool:
        start = q.find(text)
        while start >= 0:
            end = start + len(text)
            if (start == 0 or not q[start - 1].isalnum() or not text[:1].isalnum()) and (
                    not complete or end == len(q) or not q[end].isalnum() or not text[-1:].isalnum()):
                return True
            start = q.find(text, start + 1)
        return False

    def named_values(self, col: tuple[str, str] | None) -> list[str] | None:
        """When the question writes one of the column's stored values as whole words ("captains from Asia"),
        it says which value it means: then only the stored values the question writes (in any case) are
        offered, beside spans of the question, so a model's favourite value from training ('America')
        cannot replace the question's 'Asia'. None (every stored value offered) when it writes none."""
        values = self.column(col)
        if values is None:
            return None
        if not self.question_decides:
            return None
        if col not in self._named:
            words = [v for v in values.texts if len(v) >= 2 and self._span_in(self.question_lower, v.lower(), True)]
            self._named[col] = sorted(words) if any(self._question_span(v, complete=True) for v in words) else None
        return self._named[col]

    def stored_completions(self, spec: StrSpec, content: str, n: int = 2) -> list[str]:
        """The n shortest stored values of the compared column that a string written as `content` so far may
        still become (SQLPrefixChecker.completion: a stored value the question does not write)."""
        values = self.column(spec.column)
        if values is None:
            return []
        c = content if self.exact else content.lower()
        texts = self._offered(spec, values)
        i = bisect_left(texts, c)
        found = []
        while i < len(texts) and texts[i].startswith(c) and len(found) < 64:
            found.append(texts[i])
            i += 1
        return sorted(found, key=len)[:n]

    def _offered(self, spec: StrSpec, values: _ColumnValues) -> list[str]:
        named = self.named_values(spec.column)
        texts = values.texts if named is None else named
        return [t for t in texts if t not in spec.exclude] if spec.exclude else texts

    def _like_pieces_from_question(self, c: str, complete: bool) -> bool:
        """question_decides: a LIKE pattern's pieces are words of the question ('%Sam%', 'S%', '%63'), whole
        words once written (the last piece may still be growing unless `complete`)."""
        *done, last = c.lower().split("%")
        return all(not p or self._span_in(self.question_lower, p, True) for p in done) and (
            not last or self._span_in(self.question_lower, last, complete))

    def string_viable(self, spec: StrSpec, content: str) -> bool:
        key = (spec, content)
        out = self._viable.get(key)
        if out is None:
            out = self._viable[key] = self._string_viable(spec, content)
        return out

    def _string_viable(self, spec: StrSpec, content: str) -> bool:
        c = content if self.exact else content.lower()
        if not c:
            return True
        values = self.column(spec.column)
        if spec.like:
            if self.question_decides:
                return self._like_pieces_from_question(c, complete=False)
            return all(not p or p in self.question_lower or (values is not None and p in values.joined)
                       for p in c.lower().split("%"))
        if self._question_span(c, complete=False) and (not spec.exclude or self._span_grows_past(c, spec.exclude)):
            return True
        if values is not None:
            texts = self._offered(spec, values)
            i = bisect_left(texts, c)
            return i < len(texts) and texts[i].startswith(c)
        return False

    def string_complete(self, spec: StrSpec, content: str) -> bool:
        c = content if self.exact else content.lower()
        if not c.strip("%"):
            return False
        if spec.like:
            if self.question_decides:
                return self._like_pieces_from_question(c, complete=True)
            return self.string_viable(spec, content)
        if c in spec.exclude:
            return False
        values = self.column(spec.column)
        return self._question_span(c, complete=True) or (
            values is not None and c in values.exact and (self.named_values(spec.column) is None
                                                          or c in self.named_values(spec.column)))

    def _span_grows_past(self, c: str, exclude: frozenset) -> bool:
        """Some whole-word span of the question that starts with `c` (at a word start) is not in `exclude`:
        a string may go on growing only where it can still end on an allowed value (no dead end)."""
        q = self.question
        start = q.find(c)
        while start >= 0:
            if start == 0 or not q[start - 1].isalnum() or not c[:1].isalnum():
                for end in range(start + len(c), len(q) + 1):
                    if (end == len(q) or not q[end].isalnum() or not q[end - 1].isalnum()) and \
                            q[start:end] not in exclude:
                        return True
            start = q.find(c, start + 1)
        return False

    # numbers ------------------------------------------------------------------------------------------
    def _candidates(self, spec: NumSpec):
        for n in (*self.numbers, *(SMALL_INTS if spec.small_ints else ())):
            if n not in spec.exclude and (spec.above is None or float(n) > spec.above):
                yield n

    def number_viable(self, spec: NumSpec, text: str) -> bool:
        if not _NUMBER_PREFIX.match(text):
            return False
        if any(n.startswith(text) for n in self._candidates(spec)):
            return True
        values = None if self.question_decides and self.numbers else self.column(spec.column)  # number_complete
        if values is None:
            return False
        i = bisect_left(values.texts, text)  # a stored value that is a number (not '35th Prize': no dead end)
        while i < len(values.texts) and values.texts[i].startswith(text):
            if _NUMBER.match(values.texts[i]):
                return True
            i += 1
        if values.low is None:
            return False
        if text.startswith("0") and len(text) > 1 and text[1] != ".":
            return False
        # the numbers `text` can still become, [lo, top] (exact decimals: 2.99 < 3, no float rounding), meet the
        # column's range: "2" with a range [3, 6] is no prefix (2.99 at most), a dead end before
        step = Decimal(1).scaleb(-MAX_DECIMALS)
        if "." in text:  # a number from the column's range has at most 2 decimals (no runaway 21.069696...)
            d = len(text) - text.index(".") - 1
            if d > MAX_DECIMALS:
                return False
            lo = Decimal(text.rstrip(".") or "0")
            top = lo + Decimal(1).scaleb(-d) - step if d < MAX_DECIMALS else lo
            return lo <= values.high and top >= values.low
        p = int(text)
        if p == 0:  # "0" can only become 0 or 0.xx (no leading zeros)
            return values.low <= 1 - step and values.high >= 0
        for k in range(0, 16):  # p followed by k more digits, and decimals: [p*10^k, (p+1)*10^k - 0.01]
            lo, top = p * 10 ** k, (p + 1) * 10 ** k - step
            if lo > values.high:
                return False
            if top >= values.low:
                return True
        return False

    def number_complete(self, spec: NumSpec, text: str) -> bool:
        if text.endswith("."):
            return False
        if text in set(self._candidates(spec)):
            return True
        # question_decides: a question that writes numbers says which ones it means; a number is then one of
        # them (or a small count), never another from the column's range ("over 1690" cannot become "> 590")
        values = None if self.question_decides and self.numbers else self.column(spec.column)
        if values is None:
            return False
        if text in values.exact:
            return True
        if values.low is None or ("." in text and len(text) - text.index(".") - 1 > MAX_DECIMALS):
            return False
        try:
            return values.low <= float(text) <= values.high
        except ValueError:
            return False


# ----------------------------------------------------------------------------------------------------
# The schema, in the form the parser asks about


class SchemaIndex:
    """Lower-case table and column names of a schema (only names SQL can write without quotes), the
    spellings each may be written in, and the alias names (T1..T9, minus any that a table or column is
    called: a schema whose names are tags such as t1/c3 gets A1..A9 instead)."""

    # Indexes shared by the checkers of one schema (SchemaIndex.shared): their caches (the FROM-clause
    # searches behind satisfiable, the join and ON words) depend on the schema alone, never on the question
    # or the database's values, so every question asked of a database reuses what earlier ones found. On
    # the main job's held-out split (250 questions over a few databases) the satisfiability search was a
    # third of the parser's time when each question started from an empty index.
    _SHARED: "OrderedDict[tuple, SchemaIndex]" = OrderedDict()
    SHARED_MAX = 32

    @classmethod
    def shared(cls, schema: Schema) -> "SchemaIndex":
        """The index of this schema's content (names, types, keys), built once and kept for the last
        SHARED_MAX schemas."""
        key = tuple((t.name, tuple((c.name, c.type, c.primary_key, c.references) for c in t.columns))
                    for t in schema.tables)
        index = cls._SHARED.get(key)
        if index is None:
            index = cls._SHARED[key] = cls(schema)
            while len(cls._SHARED) > cls.SHARED_MAX:
                cls._SHARED.popitem(last=False)
        else:
            cls._SHARED.move_to_end(key)
        return index

    @classmethod
    def clear_shared(cls) -> None:
        """Forget the shared indexes (a benchmark timing each decode mode from cold; tests that compare
        against fresh caches)."""
        cls._SHARED.clear()

    def __init__(self, schema: Schema):
        self.columns: dict[str, tuple[str, ...]] = {}
        self.spell: dict[str, set] = {}  # lower-case name -> the schema's own spellings of it
        for t in schema.tables:
            if _IDENT.match(t.name) and t.name.lower() not in self.columns:
                self.columns[t.name.lower()] = tuple(dict.fromkeys(
                    c.name.lower() for c in t.columns if _IDENT.match(c.name)))
                self.spell.setdefault(t.name.lower(), set()).add(t.name)
                for c in t.columns:
                    if _IDENT.match(c.name):
                        self.spell.setdefault(c.name.lower(), set()).add(c.name)
        self.tables = tuple(self.columns)
        self.colset = {t: frozenset(cols) for t, cols in self.columns.items()}  # (for membership tests)
        # keys and types, for the join rules (keyed): primary keys, foreign keys (t, c) -> (t2, c2), and
        # "num" / "text" for columns whose declared type says so
        self.pks: set[tuple[str, str]] = set()
        self.refs: dict[tuple[str, str], tuple[str, str]] = {}
        self.kinds: dict[tuple[str, str], str] = {}
        for t in schema.tables:
            for c in t.columns:
                key = (t.name.lower(), c.name.lower())
                if c.primary_key:
                    self.pks.add(key)
                if c.references:
                    self.refs[key] = (c.references[0].lower(), c.references[1].lower())
                kind = compact_type(c.type)
                self.kinds[key] = "num" if kind in ("int", "real", "bool") else "text" if kind == "text" else ""
        self.has_keys = bool(self.pks or self.refs)
        self._partners: dict = {}
        self._joinable: dict = {}
        self._hops: dict = {}
        self.on_cache: dict = {}
        self.sat_cache: dict = {}
        self.join_cache: dict = {}
        self.tables_cache: dict = {}  # join_key -> the tables FROM may name next (_Parser.table_ref)
        self.alias_cache: dict = {}  # (join_key, table) -> (its allowed aliases, whether it may go without one)
        self.words_cache: dict = {}
        self.parse_cache: dict = {}  # (lexemes, exact case, question_decides) -> Options (SQLPrefixChecker.options)
        self.from_cache: dict = {}  # SELECT-list references -> (span lengths, {FROM lexemes and the next: scope})
        self.all_columns = tuple(sorted({c for cols in self.columns.values() for c in cols}))
        self.tables_with: dict[str, tuple[str, ...]] = {
            c: tuple(t for t in self.tables if c in self.columns[t]) for c in self.all_columns}
        self.aliases = tuple(a for a in ALIASES if a not in self.spell)
        if len(self.aliases) < len(ALIASES):
            self.aliases = tuple(a for a in (f"a{i}" for i in range(1, 10)) if a not in self.spell) or self.aliases
        self.speller = Spellings(self.spell, self.aliases)
        # before FROM, any column of any table may be named, bare or qualified by its table or an alias
        self.pre_from_words = frozenset(self.all_columns) | frozenset(
            f"{t}.{c}" for t in self.tables for c in self.columns[t]) | frozenset(
            f"{a}.{c}" for a in self.aliases for c in self.all_columns)

    # joins ----------------------------------------------------------------------------------------------
    def keyed(self, ta: str, ca: str, tb: str, cb: str) -> bool:
        """Whether ON may compare column ca of a binding of table ta with column cb of another binding of tb:
        a foreign key and the column it references, two foreign keys to one column, two columns of one name,
        or a primary key and a column of its type (numbers with numbers, text with text). A schema that
        declares no key at all: any two columns of one type."""
        a, b = (ta, ca), (tb, cb)
        ka, kb = self.kinds.get(a, ""), self.kinds.get(b, "")
        same_type = not (ka and kb and ka != kb)
        if not self.has_keys:
            return same_type
        ra, rb = self.refs.get(a), self.refs.get(b)
        if ra == b or rb == a or (ra is not None and ra == rb) or ca == cb:
            return True
        return (a in self.pks or b in self.pks) and same_type

    def partners(self, t: str, c: str, u: str) -> tuple[str, ...]:
        """The columns of table u that ON may compare t.c with (keyed)."""
        key = (t, c, u)
        out = self._partners.get(key)
        if out is None:
            out = self._partners[key] = tuple(c2 for c2 in self.columns[u] if self.keyed(t, c, u, c2))
        return out

    def joinable(self, t: str, u: str) -> bool:
        """Some column of t may be compared with some column of u in ON (u may be t: a self-join)."""
        key = (t, u)
        out = self._joinable.get(key)
        if out is None:
            out = self._joinable[key] = any(self.partners(t, c, u) for c in self.columns[t])
        return out

    def hops(self, t: str, u: str) -> int | None:
        """Joins from t to u through joinable tables (1: t joins u itself), or None."""
        dist = self._hops.get(t)
        if dist is None:
            dist, frontier = {t: 0}, [t]
            while frontier:
                nxt = []
                for x in frontier:
                    for y in self.tables:
                        if y not in dist and self.joinable(x, y):
                            dist[y] = dist[x] + 1
                            nxt.append(y)
                frontier = nxt
            self._hops[t] = dist
        if u == t:
            return 1 if self.joinable(t, t) else None
        return dist.get(u)

    def spellings(self, word: str) -> frozenset:
        """The exact texts a lower-case word may be written as (Spellings)."""
        return self.speller(word)


class Spellings:
    """The exact texts a lower-case word may be written as: a keyword or an alias in upper or lower case
    (SELECT, select, T1, t1; never SeLeCt), a table or column only as the schema spells it. Its own object
    (not the SchemaIndex's) so that Options can hold it without a reference cycle through the index's
    caches (decoding pauses the cyclic garbage collector)."""

    def __init__(self, spell: dict, aliases: tuple):
        self.spell, self.aliases, self.cache = spell, aliases, {}

    def __call__(self, word: str) -> frozenset:
        out = self.cache.get(word)
        if out is None:
            q, dot, c = word.rpartition(".")
            if dot:
                out = frozenset(a + "." + b for a in self(q) for b in self.spell.get(c, ()))
            else:
                out = set(self.spell.get(word, ()))
                if word in KEYWORDS or word in self.aliases:
                    out |= {word, word.upper()}
                out = frozenset(out)
            self.cache[word] = out
        return out


# ----------------------------------------------------------------------------------------------------
# The lexeme parser


class _EndOfInput(Exception):
    """The prefix ended where something is required: the expected set is complete."""


class _Reject(Exception):
    """The prefix cannot be continued into valid SQL."""


@dataclass
class Expected:
    words: set = field(default_factory=set)
    puncts: set = field(default_factory=set)
    strings: list = field(default_factory=list)
    numbers: list = field(default_factory=list)
    end: bool = False


@dataclass
class _Scope:
    parent: "_Scope | None"
    bindings: list = field(default_factory=list)  # [(name used in SQL, table)], in FROM order
    aliased: set = field(default_factory=set)     # tables that were given an alias
    pending: list = field(default_factory=list)   # [(qualifier or None, column)] named before FROM
    bare: set = field(default_factory=set)        # unqualified columns named in ON clauses
    pending_agg: list = field(default_factory=list)  # the pending references inside an aggregate
    links: list = field(default_factory=list)     # [((binding, column), (binding, column))]: ON's pairs
    no_on: int = 0                                # JOINs in a row without ON (joined by a later ON)
    in_from: bool = False
    from_done: bool = False
    aggregates: bool = False  # an aggregate in the SELECT list or a GROUP BY
    width: int | None = None  # result columns (None: unknown, a * was selected)

    def binding(self, name):
        for b, t in self.bindings:
            if b == name:
                return t
        return None


class _Parser:
    def __init__(self, index: SchemaIndex, values: ValueSource, lexemes: tuple):
        self.index, self.values, self.lex, self.i = index, values, lexemes, 0
        self.exp = Expected()
        self.depth = 0
        self.no_numbers = False  # set for the first primary of an ORDER BY / GROUP BY term
        self.agg_scope = None  # the scope whose aggregate call's argument is being read
        # (string exclude, number exclude, number above) for the next primary's literal: the question_decides
        # rules of IN lists and BETWEEN (predicate); taken by the first primary that follows
        self.literal_rule = None

    # token helpers -------------------------------------------------------------------------------------
    def eof(self) -> bool:
        return self.i >= len(self.lex)

    def peek(self):
        return self.lex[self.i]

    def accept_word(self, *words) -> str | None:
        if self.i >= len(self.lex):  # (eof and peek inlined: the parser's most frequent calls)
            self.exp.words.update(words)
            return None
        kind, text = self.lex[self.i]
        if kind == "w" and text in words:
            self.i += 1
            return text
        return None

    def expect_word(self, *words) -> str:
        w = self.accept_word(*words)
        if w is None:
            raise _EndOfInput if self.eof() else _Reject
        return w

    def accept_punct(self, *puncts) -> str | None:
        if self.i >= len(self.lex):
            self.exp.puncts.update(puncts)
            return None
        kind, text = self.lex[self.i]
        if kind == "p" and text in puncts:
            self.i += 1
            return text
        return None

    def expect_punct(self, *puncts) -> str:
        p = self.accept_punct(*puncts)
        if p is None:
            raise _EndOfInput if self.eof() else _Reject
        return p

    # grammar ---------------------------------------------------------------------------------------------
    def parse(self):
        self.query(None)
        if self.eof():
            self.exp.end = True
            return
        raise _Reject

    def nesting(self, scope) -> int:
        n = 0
        while scope is not None:
            n, scope = n + 1, scope.parent
        return n

    def query(self, parent, single=False):
        """single: a subquery used as a value (one result column)."""
        if self.nesting(parent) > MAX_SUBQUERIES:
            raise _Reject
        scope = self.select_core(parent, 1 if single else None)
        compound = False
        # the parts of a compound select have as many result columns as the first (not known after a *)
        while scope.width and self.accept_word(*SET_OPS):
            scope = self.select_core(parent, scope.width)
            compound = True
        # after a compound, SQLite wants ORDER BY terms that name result columns: not offered
        if not compound and self.accept_word("order"):
            self.expect_word("by")
            while True:  # aggregates only where the query aggregates (SQLite: "misuse of aggregate")
                self.positional_guard()
                self.expr(scope, agg=scope.aggregates and not compound)
                self.accept_word("asc", "desc")
                if not self.accept_punct(","):
                    break
        if self.accept_word("limit"):
            self.number(NumSpec(None, small_ints=True))

    def select_core(self, parent, width=None) -> _Scope:
        """width: the number of result columns it must have (None: any)."""
        self.expect_word("select")
        scope = _Scope(parent)
        self.accept_word("distinct")
        items, star = 0, False
        while True:
            if width is None and self.accept_punct("*"):
                star = True
            else:
                self.expr(scope, agg=True, star_ok=True)
            items += 1
            if width is not None and items < width:
                self.expect_punct(",")
                continue
            if width is not None or not self.accept_punct(","):
                break
        scope.width = None if star else items
        self.expect_word("from")
        self.read_from(scope)
        if self.accept_word("where"):
            self.condition(scope, agg=False)
        if self.accept_word("group"):
            scope.aggregates = True
            self.expect_word("by")
            while True:
                self.positional_guard()
                self.expr(scope, agg=False)
                if not self.accept_punct(","):
                    break
            if self.accept_word("having"):
                self.condition(scope, agg=True)
        return scope

    def read_from(self, scope: _Scope):
        """from_clause, memoised (SchemaIndex.from_cache) for a complete FROM of the outermost query: every
        later lexeme re-reads the clause (its join rules and satisfiability checks were ~40% of the parser's
        time). What such a FROM does depends only on the SELECT list's references (pending, pending_agg; bare
        is empty before FROM), its own lexemes and the one after them (which decides that it ends): no
        literal, no outer query, and nothing is expected of a clause that ends before the input does."""
        if scope.parent is not None or scope.bare:
            return self.from_clause(scope)
        start = self.i
        key = (tuple(scope.pending), tuple(scope.pending_agg))
        lengths, spans = self.index.from_cache.get(key, ((), None))
        for n in lengths:
            # (the whole span: near the end of the input a slice is shorter than n, and may equal a shorter
            # span whose last lexeme ended its FROM, where this one's FROM would read on)
            after = spans.get(self.lex[start:start + n]) if start + n <= len(self.lex) else None
            if after is not None:
                bindings, aliased, links, bare, no_on = after
                scope.bindings, scope.aliased, scope.links = list(bindings), set(aliased), list(links)
                scope.bare, scope.no_on = set(bare), no_on
                scope.in_from = scope.from_done = True
                self.i = start + n - 1  # (the lexeme after the FROM is the next one read)
                return
        self.from_clause(scope)
        if self.i < len(self.lex):  # complete, and ended by a lexeme that is there: memoise
            lengths, spans = self.index.from_cache.setdefault(key, ([], {}))
            n = self.i - start + 1  # the FROM's lexemes and the one after
            spans[self.lex[start:start + n]] = (tuple(scope.bindings), frozenset(scope.aliased),
                                                tuple(scope.links), frozenset(scope.bare), scope.no_on)
            if n not in lengths:
                lengths.append(n)

    def from_clause(self, scope: _Scope):
        """FROM t [[AS] a] (JOIN t [[AS] a] [ON pairs])*: the join rules. No comma joins. Every table is joined
        to the ones before it: ON is `x = y (AND x = y)*`, each pair compares columns of two different
        bindings that keyed allows (on_words), no pair twice, and when an ON ends the pairs so far join
        every binding to every other. A JOIN without ON (at most MAX_DEFERRED in a row) is joined by the
        next ON; FROM cannot end before."""
        scope.in_from = True
        self.table_ref(scope)
        while True:
            # another table only when one can join without making a SELECT-list column ambiguous
            connected = self.connected(scope)
            can_join = len(scope.bindings) < MAX_TABLES and (connected or scope.no_on < MAX_DEFERRED) and \
                self.some_table_may_join(scope)
            joined = can_join and self.accept_word("join")
            if not joined:
                if not connected:  # (an ON is still to come)
                    raise _EndOfInput if self.eof() else _Reject
                if self.eof():  # FROM may end here only if the SELECT list's columns resolve now
                    if self.pending_resolved(scope) and self.finish_from(scope):
                        scope.from_done = True
                        return
                    raise _EndOfInput
                if not (self.pending_resolved(scope) and self.finish_from(scope)):
                    raise _Reject
                scope.from_done = True
                return
            self.table_ref(scope)
            if self.accept_word("on"):
                self.on_condition(scope)
                scope.no_on = 0
            else:
                scope.no_on += 1

    # the join rules ------------------------------------------------------------------------------------
    def components(self, scope: _Scope) -> dict:
        """binding -> a representative of the bindings the ON pairs so far join it to."""
        rep = {b: b for b, _ in scope.bindings}

        def find(x):
            while rep[x] != x:
                x = rep[x]
            return x

        for (a, _), (b, _) in scope.links:
            rep[find(a)] = find(b)
        return {b: find(b) for b in rep}

    def connected(self, scope: _Scope) -> bool:
        return len(set(self.components(scope).values())) <= 1

    def on_condition(self, scope: _Scope):
        """pair (AND pair)*: while some binding is not joined to the others, each pair joins two bindings not
        yet joined (and AND must follow until all are); then AND only while a pair not yet written is left
        (a second key column: ON a.x = b.x AND a.y = b.y)."""
        while True:
            self.on_pair(scope)
            if not self.connected(scope):
                self.expect_word("and")
            elif not (self.on_words(scope, None) and self.accept_word("and")):
                return

    def on_pair(self, scope: _Scope):
        left = self.on_column(scope, None)
        self.expect_punct("=")
        right = self.on_column(scope, left)
        scope.links.append((left, right))

    def on_column(self, scope: _Scope, left):
        words = self.on_words(scope, left)
        if self.eof():
            self.exp.words.update(words)
            raise _EndOfInput
        kind, text = self.peek()
        if kind != "w" or text not in words:
            raise _Reject
        self.i += 1
        self.column_ref(scope, text)  # (what any column name is checked for: bare names in ON)
        return words[text]

    def on_words(self, scope: _Scope, left) -> dict:
        """{column word: (binding, column)} that may be one side of an ON pair (left: the other side, or None
        for the first): a column of a binding of this FROM that keyed allows with a column of another
        binding, in a pair this FROM has not written yet; while the bindings are not all joined, of a
        binding not joined to it yet. Bare names where one binding has the column and the SELECT list
        resolves."""
        bare_ok = self.pending_resolved(scope)
        key = (tuple(scope.bindings), tuple(scope.links), left, bare_ok)
        out = self.index.on_cache.get(key)
        if out is not None:
            return out
        written = {frozenset(pair) for pair in scope.links}
        comp = self.components(scope)
        if len(set(comp.values())) <= 1:
            comp = {b: i for i, b in enumerate(comp)}  # (joined: any two bindings)
        cols = self.index.columns
        owners: dict[str, int] = {}
        for _, t in scope.bindings:
            for c in cols[t]:
                owners[c] = owners.get(c, 0) + 1
        table_of = dict(scope.bindings)
        out = {}
        for b, t in scope.bindings:
            for c in cols[t]:
                if left is None:
                    ok = any(comp[b2] != comp[b] and any(frozenset(((b, c), (b2, c2))) not in written
                                                         for c2 in self.index.partners(t, c, t2))
                             for b2, t2 in scope.bindings)
                else:
                    lb, lc = left
                    ok = comp[b] != comp[lb] and self.index.keyed(table_of[lb], lc, t, c) and \
                        frozenset(((lb, lc), (b, c))) not in written
                if ok:
                    out[f"{b}.{c}"] = (b, c)
                    if bare_ok and owners[c] == 1:
                        out[c] = (b, c)
        self.index.on_cache[key] = out
        return out

    def table_ref(self, scope: _Scope):
        # Which tables may come next, and then which aliases (and whether none) each may take, depend only on
        # join_key: memoised on it, since every later word re-reads this FROM clause (most of the parser's
        # time went to these satisfiability checks, one per table and alias, again at every word)
        key = self.join_key(scope)
        table = self.expect_word(*self.next_tables(scope, key))
        hit = self.index.alias_cache.get((key, table))
        if hit is None:
            hit = self.index.alias_cache[(key, table)] = (self.allowed_aliases(scope, table),
                                                          self.binding_allowed(scope, table, None))
        aliases, bare_ok = hit
        alias = None
        if aliases and self.accept_word("as"):
            alias = self.expect_word(*aliases)
        elif aliases:
            alias = self.accept_word(*aliases)
        name = alias or table
        if alias is None and not bare_ok:  # only an alias can follow
            raise _EndOfInput if self.eof() and aliases else _Reject
        scope.bindings.append((name, table))
        if alias:
            scope.aliased.add(table)

    def next_tables(self, scope: _Scope, key: tuple) -> tuple:
        """The tables FROM may name next (table_allowed), memoised on join_key."""
        tables = self.index.tables_cache.get(key)
        if tables is None:
            tables = self.index.tables_cache[key] = tuple(
                t for t in self.index.tables if self.table_allowed(scope, t, key))
        return tables

    def some_table_may_join(self, scope: _Scope) -> bool:
        """Whether any table may be joined next: the memoised next_tables when known, else the first table
        allowed (a FROM that goes on with WHERE never needs the whole list)."""
        key = self.join_key(scope)
        tables = self.index.tables_cache.get(key)
        if tables is not None:
            return bool(tables)
        return any(self.table_allowed(scope, t, key) for t in self.index.tables)

    def allowed_aliases(self, scope: _Scope, table: str) -> tuple:
        """The aliases `table` may be bound to next (binding_allowed). An alias that no pending reference
        names and no binding (here or in an outer query) holds is only a name: binding the table to any such
        "fresh" alias is the same satisfiability search with two names swapped, so the first fresh alias
        is searched for and the others copy its answer."""
        aliases = self.index.aliases
        if not scope.pending and not scope.bare:  # (nothing to resolve: binding_allowed is a name check)
            return tuple(a for a in aliases if self.binding_allowed(scope, table, a))
        fresh = set(self.fresh_aliases(scope))
        fresh_ok = None
        out = []
        for a in aliases:
            if a not in fresh:
                ok = self.binding_allowed(scope, table, a)
            else:
                if fresh_ok is None:
                    fresh_ok = self.binding_allowed(scope, table, a)
                ok = fresh_ok
            if ok:
                out.append(a)
        return tuple(out)

    def fresh_aliases(self, scope: _Scope) -> list:
        """The aliases, in order, that no pending reference of `scope` names and no binding of it or of an
        outer query holds: only names, interchangeable in every satisfiability search (allowed_aliases,
        _satisfiable_words)."""
        used = {q for q, _ in scope.pending}
        s = scope
        while s is not None:
            used.update(b for b, _ in s.bindings)
            s = s.parent
        return [a for a in self.index.aliases if a not in used]

    def table_allowed(self, scope: _Scope, table: str, key=None) -> bool:
        """Whether `table` can be joined (with some alias or none) and FROM still be completed (memoised on
        everything the answer depends on: join_key)."""
        ck = (self.join_key(scope) if key is None else key, table)
        out = self.index.join_cache.get(ck)
        if out is None:
            names = [None] + [a for a in self.index.aliases if scope.binding(a) is None]
            out = self.index.join_cache[ck] = self.may_join(tuple(t for _, t in scope.bindings), table) and any(
                self.binding_allowed(scope, table, a) for a in names)
        return out

    def may_join(self, tables: tuple, table: str) -> bool:
        """The join rules for one more table: some column of it may be compared in ON with a column of a
        table before it, and no table is bound more than MAX_SAME_TABLE times."""
        return (not tables or any(self.index.joinable(table, u) for u in set(tables))) and \
            tables.count(table) < MAX_SAME_TABLE

    def join_key(self, scope: _Scope) -> tuple:
        return (tuple(scope.bindings), tuple(scope.pending), tuple(scope.pending_agg), frozenset(scope.bare),
                self._outer_key(scope.parent))

    def binding_allowed(self, scope: _Scope, table: str, alias) -> bool:
        name = alias or table
        if scope.binding(name) is not None:
            return False
        if not scope.pending and not scope.bare:
            return True
        cols = self.index.columns
        # SQLite resolves names once the whole FROM is read: a column an ON clause named bare must not
        # become ambiguous through a later join
        if any(c in cols[table] and any(c in cols[t] for _, t in scope.bindings) for c in scope.bare):
            return False
        return self.satisfiable(scope, tuple(scope.bindings) + ((name, table),))

    def sat_with(self, scope: _Scope, word: str) -> bool:
        q, _, c = word.rpartition(".")
        ref = (q or None, c)
        in_agg = self.agg_scope is scope
        scope.pending.append(ref)
        if in_agg:
            scope.pending_agg.append(ref)
        try:
            return self.satisfiable(scope, ())
        finally:
            scope.pending.pop()
            if in_agg:
                scope.pending_agg.pop()

    def satisfiable(self, scope: _Scope, bindings: tuple) -> bool:
        """Can more tables be joined to `bindings` so that every SELECT-list reference resolves exactly once?"""
        if not scope.pending:
            return True
        key = (bindings, tuple(scope.pending), tuple(scope.pending_agg), self._outer_key(scope.parent))
        hit = self.index.sat_cache.get(key)
        if hit is None:
            hit = self.index.sat_cache[key] = self._satisfiable(scope, bindings)
        return hit

    @staticmethod
    def _outer_key(scope) -> tuple:
        out = []
        while scope is not None:
            out.append(tuple(scope.bindings))
            scope = scope.parent
        return tuple(out)

    def _satisfiable(self, scope, bindings) -> bool:
        bound = dict(bindings)
        cols = self.index.colset
        unmet = None
        agg = scope.pending_agg  # (these must resolve here, not in an outer query)
        for q, c in scope.pending:
            outer = None if (q, c) in agg else scope.parent
            if q is None:
                n = sum(c in cols[t] for t in bound.values())
                if n > 1:
                    return False
                if n == 0 and self.resolve(outer, None, c) is None and unmet is None:
                    unmet = ("bare", c)
            elif q in bound:
                if c not in cols[bound[q]]:
                    return False
            elif self.resolve(outer, q, c) is None and unmet is None:
                unmet = ("alias" if q in self.index.aliases else "table", q)
        if unmet is None:
            return True
        if len(bindings) >= MAX_TABLES:
            return False
        kind, x = unmet
        if kind == "table":
            options = [(x, x)] if x in cols else []
        elif kind == "alias":  # (a table with every column the alias is used with)
            need = {c for q, c in scope.pending if q == x}
            options = [(x, t) for t in self.index.tables if need <= cols[t]]
        else:
            options = [(t if t not in bound else next((a for a in self.index.aliases if a not in bound), t), t)
                       for t in self.index.tables if x in cols[t]]
        tables = tuple(bound.values())
        if any(self.satisfiable(scope, bindings + (o,)) for o in options
               if o[0] not in bound and self.may_join(tables, o[1])):
            return True
        # the join rules: a table the references need may have to be joined through others first (one on a
        # shortest path from the tables bound to a table that could take the reference)
        room = MAX_TABLES - len(bindings) - 1  # joins left after one more table
        if not bindings or room < 1:
            return False
        named = {q for q, _ in scope.pending} | set(bound)
        name = next((a for a in self.index.aliases if a not in named), None)
        if name is None:
            return False
        hops = self.index.hops
        near = {}
        for t in {t for _, t in options}:
            d = [h for b in set(tables) if (h := hops(b, t)) is not None]
            if d and min(d) > 1:
                near[t] = min(d)
        for u in self.index.tables:
            if u not in near and self.may_join(tables, u) and any(
                    (h := hops(u, t)) is not None and h < d and h <= room for t, d in near.items()) and \
                    self.satisfiable(scope, bindings + ((name, u),)):
                return True
        return False

    def pending_resolved(self, scope: _Scope) -> bool:
        return all(self.resolve(scope, q, c) is not None for q, c in scope.pending)

    def resolve(self, scope: _Scope | None, qualifier, column):
        """(table, column) a reference resolves to in this scope (inner first), or None."""
        while scope is not None:
            if qualifier is None:
                colset = self.index.colset
                hits = [t for _, t in scope.bindings if column in colset[t]]
                if len(hits) > 1:
                    return None
                if hits:
                    return hits[0], column
            else:
                t = scope.binding(qualifier)
                if t is not None:
                    return (t, column) if column in self.index.colset[t] else None
            scope = scope.parent
        return None

    def column_words(self, scope: _Scope) -> set:
        if not scope.in_from:  # (memoised: the SELECT list is re-read at every lexeme)
            key = (tuple(scope.pending), tuple(scope.pending_agg), self.agg_scope is scope,
                   self._outer_key(scope.parent))
            words = self.index.words_cache.get(key)
            if words is None:
                words = self.index.words_cache[key] = frozenset(self._pre_from_words(scope))
            return words
        return self._column_words(scope)

    def _pre_from_words(self, scope: _Scope) -> set:
        words = set(self.index.pre_from_words)
        for a in {q for q, _ in scope.pending if q in self.index.aliases}:
            used = {c for q, c in scope.pending if q == a}
            ok = {c for cols in self.index.columns.values() if used <= set(cols) for c in cols}
            words -= {f"{a}.{c}" for c in self.index.all_columns if c not in ok}
        if scope.pending:  # keep only references some FROM clause can still resolve together with the others
            words = self._satisfiable_words(scope, words)
        return words

    def _satisfiable_words(self, scope: _Scope, words: set) -> set:
        """The words w with sat_with(scope, w). An alias that neither the SELECT list so far nor an outer
        query uses ("fresh") is only a name: `t5.c` and `t7.c` are decided by the same search with the
        alias renamed, so one fresh alias is tested for every column and the others copy its answer.
        (With 9 aliases this is most of the words; the search per word is the parser's hot spot.)"""
        fresh = self.fresh_aliases(scope)  # (before FROM this scope binds nothing yet)
        rep = fresh[0] if fresh else None
        copies = set(fresh[1:])
        # Likewise the column of a new reference matters to the search only through the tables that have
        # it (tables_with): which tables a bare name may come from, which an alias may stand for, whether a
        # bound or outer table has it (a table-qualified name: its table always has it). So one search per
        # (qualifier, tables_with) answers for every such word, unless an equal reference is already
        # pending (then it changes whether that one counts as inside an aggregate): those search alone.
        pending = set(scope.pending)
        found: dict = {}
        out = set()
        for w in words:
            q, dot, c = w.rpartition(".")
            if dot and q in copies:
                continue
            ref = (q or None, c)
            if ref in pending:
                ok = self.sat_with(scope, w)
            else:
                group = (q, None if q in self.index.columns else self.index.tables_with[c])
                ok = found.get(group)
                if ok is None:
                    ok = found[group] = self.sat_with(scope, w)
            if ok:
                out.add(w)
        if rep is not None:
            ok = {w.rpartition(".")[2] for w in out if w.rpartition(".")[0] == rep}
            out.update(w for w in words if w.rpartition(".")[0] in copies and w.rpartition(".")[2] in ok)
        return out

    def _column_words(self, scope: _Scope) -> set:
        words = set()
        if scope.from_done or self.pending_resolved(scope):  # (column_ref: bare names in ON)
            for c in self.index.all_columns:
                if self.resolve(scope, None, c) is not None:
                    words.add(c)
        seen = set()
        s = scope
        while s is not None:
            for b, t in s.bindings:
                if b not in seen:
                    seen.add(b)
                    words.update(f"{b}.{c}" for c in self.index.columns[t])
            s = s.parent
        return words

    def column_ref(self, scope: _Scope, word: str):
        """Check a column word; returns (table, column) when it is known (for the values it is compared with)."""
        q, _, c = word.rpartition(".")
        q = q or None
        if not scope.in_from:
            if word not in self.index.pre_from_words:
                raise _Reject
            if q in self.index.aliases and not any(set(c2 for q2, c2 in scope.pending if q2 == q) | {c} <= set(cols)
                                        for cols in self.index.columns.values()):
                raise _Reject
            if self.agg_scope is scope:
                scope.pending_agg.append((q, c))
            scope.pending.append((q, c))
            if not self.satisfiable(scope, ()):
                raise _Reject
            t = q if q in self.index.columns else self.index.tables_with[c][0]
            return t, c
        hit = self.resolve(scope, q, c)
        if hit is None or not self.home_ok(scope, q, c, self.agg_scope is scope):
            raise _Reject
        return hit

    def home(self, scope, qualifier, column) -> _Scope | None:
        """The scope a resolvable reference resolves in (inner first)."""
        while scope is not None:
            if (scope.binding(qualifier) is not None if qualifier
                    else any(column in self.index.colset[t] for _, t in scope.bindings)):
                return scope
            scope = scope.parent
        return None

    def home_ok(self, scope, q, c, in_aggregate) -> bool:
        """Rules about where a resolved reference lives. In an aggregate: this scope's own tables (an outer
        column makes the aggregate the outer query's: "misuse of aggregate"). A bare name in a FROM that is
        still being read (an ON clause, or a subquery in one): only once no more joins are needed there (a
        join the SELECT list still needs could make it ambiguous), and later joins keep it unambiguous
        (binding_allowed)."""
        home = self.home(scope, q, c)
        if in_aggregate and home is not scope:
            return False
        if q is None and home is not None and not home.from_done:
            if not self.pending_resolved(home):
                return False
            home.bare.add(c)
        return True

    def finish_from(self, scope) -> bool:
        """The checks of home_ok for the columns named before this FROM, once they resolve."""
        agg = set(scope.pending_agg)
        return all(self.home_ok(scope, q, c, (q, c) in agg) for q, c in scope.pending)

    # conditions and expressions -----------------------------------------------------------------------------
    def condition(self, scope, agg):
        while True:
            while True:
                self.predicate(scope, agg)
                if not self.accept_word("and"):
                    break
            if not self.accept_word("or"):
                return

    def predicate(self, scope, agg, negated=False):
        if not negated and self.accept_word("not"):  # one NOT (no runaway NOT NOT NOT ...)
            return self.predicate(scope, agg, True)
        col = self.expr(scope, agg)
        negated = self.accept_word("not")
        if not negated and self.accept_punct(*COMPARISONS):
            self.expr(scope, agg, hint=col)
        elif self.accept_word("like"):
            self.expr(scope, agg, hint=col, like=True)
        elif self.accept_word("between"):
            # question_decides, two or more question numbers: BETWEEN low AND high with low < high, both the
            # question's (the model wrote "BETWEEN 500 AND 500" for "from 150 to 500"); so low is not the top
            numbers = self.values.numbers if self.values.question_decides else ()
            top = max(numbers, key=float) if len(numbers) >= 2 else None
            if top is not None:
                self.literal_rule = (frozenset(), frozenset({top}), None)
            low = self.literal_of(lambda: self.expr(scope, agg, hint=col))
            self.expect_word("and")
            if top is not None and low is not None and low[0] == "n":
                self.literal_rule = (frozenset(), frozenset({low[1]}), float(low[1]))
            self.expr(scope, agg, hint=col)
        elif self.accept_word("in"):
            self.expect_punct("(")
            self.depth += 1
            if self.nesting(scope) <= MAX_SUBQUERIES and self.accept_word("select"):
                self.i -= 1
                self.query(scope, single=True)
            else:
                seen = {"s": set(), "n": set()}  # question_decides: no literal twice in one list
                while True:
                    if self.values.question_decides:
                        self.literal_rule = (frozenset(seen["s"]), frozenset(seen["n"]), None)
                    lit = self.literal_of(lambda: self.expr(scope, agg, hint=col))
                    if lit is not None:  # (compared as string_complete compares: lower case unless exact)
                        seen[lit[0]].add(lit[1] if self.values.exact or lit[0] == "n" else lit[1].lower())
                    if not self.accept_punct(","):
                        break
            self.expect_punct(")")
            self.depth -= 1
        elif not negated and self.accept_word("is"):
            self.accept_word("not")
            self.expect_word("null")
        elif negated:
            raise _EndOfInput if self.eof() else _Reject

    def literal_of(self, parse) -> tuple | None:
        """Run `parse` (one expression); its lexeme when that expression was a single literal, else None."""
        start = self.i
        parse()
        self.literal_rule = None  # (not taken when the expression began with no primary)
        if self.i == start + 1 and self.lex[start][0] in ("s", "n"):
            return self.lex[start]
        return None

    def expr(self, scope, agg, hint=None, like=False, star_ok=False):
        col = self.term(scope, agg, hint, like)
        n = 0
        while n < MAX_ARITHMETIC and self.accept_punct(*ARITHMETIC):
            self.term(scope, agg, hint, like)
            col = None
            n += 1
        return col

    def term(self, scope, agg, hint, like):
        if self.accept_punct("-"):
            return self.primary(scope, agg, hint, like)
        return self.primary(scope, agg, hint, like)

    def primary(self, scope, agg, hint, like):
        no_numbers, self.no_numbers = self.no_numbers, False
        rule, self.literal_rule = self.literal_rule, None
        if self.eof():  # (a unary minus is term's)
            if self.depth < MAX_DEPTH:
                self.exp.puncts.add("(")
            if agg and self.depth < MAX_DEPTH:
                self.exp.words.update(AGGREGATES)
            self.exp.words.update(self.column_words(scope))
            self.exp.strings.append(self.str_spec(hint, like, rule))
            if not no_numbers:
                self.exp.numbers.append(self.num_spec(hint, rule))
            raise _EndOfInput
        kind, text = self.peek()
        is_call = self.i + 1 >= len(self.lex) or self.lex[self.i + 1] == ("p", "(")
        if kind == "w" and agg and text in AGGREGATES and is_call and self.depth < MAX_DEPTH:
            self.i += 1
            if not scope.in_from:
                scope.aggregates = True
            self.expect_punct("(")
            self.depth += 1
            col = None
            outer_agg, self.agg_scope = self.agg_scope, scope
            if text == "count" and self.accept_punct("*"):
                pass
            else:
                self.accept_word("distinct")
                col = self.expr(scope, agg=False)
            self.agg_scope = outer_agg
            self.expect_punct(")")
            self.depth -= 1
            return col
        if kind == "p" and text == "(" and self.depth < MAX_DEPTH:
            self.i += 1
            self.depth += 1
            sub_ok = self.nesting(scope) <= MAX_SUBQUERIES and self.agg_scope is not scope  # none in an aggregate
            if self.eof() and sub_ok:
                self.exp.words.add("select")
            if sub_ok and not self.eof() and self.peek() == ("w", "select"):
                self.query(scope, single=True)
            else:
                self.no_numbers = no_numbers  # ORDER BY (2) is positional too
                self.condition(scope, agg)
            self.expect_punct(")")
            self.depth -= 1
            return None
        if kind == "s":
            if not self.values.string_complete(self.str_spec(hint, like, rule), text):
                raise _Reject
            self.i += 1
            return None
        if kind == "n":
            if not self.values.number_complete(self.num_spec(hint, rule), text):
                raise _Reject
            self.i += 1
            return None
        if kind == "w":
            self.i += 1
            return self.column_ref(scope, text)
        raise _Reject

    # The specs of a literal at a primary (built only where one is written or may come next: most primaries
    # are columns, and the prefix is re-read at every parse). rule: the literal_rule the primary took.
    @staticmethod
    def str_spec(hint, like, rule) -> StrSpec:
        return StrSpec(hint, like, rule[0]) if rule else StrSpec(hint, like)

    @staticmethod
    def num_spec(hint, rule) -> NumSpec:
        return NumSpec(hint, hint is None, rule[1], rule[2]) if rule else NumSpec(hint, small_ints=hint is None)

    def positional_guard(self):
        """ORDER BY / GROUP BY 2 means "the second result column" (and so do (2) and -2 to SQLite): the
        first primary of such a term is no number, even behind brackets and a minus (primary, term)."""
        if not self.eof() and self.peek()[0] == "n":
            raise _Reject
        self.no_numbers = True

    def number(self, spec: NumSpec):
        if self.eof():
            self.exp.numbers.append(spec)
            raise _EndOfInput
        kind, text = self.peek()
        if kind != "n" or not self.values.number_complete(spec, text):
            raise _Reject
        self.i += 1


@dataclass(frozen=True)
class Options:
    """What may follow a lexeme prefix."""
    words: tuple          # sorted, lower case
    puncts: frozenset
    strings: tuple
    numbers: tuple
    end: bool
    # how the words may be written; None: as they are (exact_case off: lower case)
    spellings: "Spellings | None" = field(default=None, compare=False, repr=False)

    def word_viable(self, prefix: str) -> bool:
        """Some word may be written starting with `prefix`. A spelling is its word in another case, so only
        the words that start with the prefix in lower case are looked at (a bisect), and the first whose
        spellings fit answers (no sorted list of every spelling to build per word set, which cost ~10% of a
        parse)."""
        return next(self._spelled_from(prefix), None) is not None

    def spelled_from(self, prefix: str) -> list:
        """The texts the words may be written as that start with `prefix` (the completer's choices)."""
        return list(self._spelled_from(prefix))

    def _spelled_from(self, prefix: str):
        words, spellings = self.words, self.spellings
        low = prefix if spellings is None else prefix.lower()
        i = bisect_left(words, low)
        while i < len(words) and words[i].startswith(low):
            if spellings is None:
                yield words[i]
            else:
                yield from (s for s in spellings(words[i]) if s.startswith(prefix))
            i += 1


def parse_prefix(index: SchemaIndex, values: ValueSource, lexemes: tuple, exact_case: bool = True) -> Options | None:
    """The options after a lexeme prefix, or None when no valid SQL starts with it."""
    p = _Parser(index, values, lexemes)
    try:
        p.parse()
    except _EndOfInput:
        pass
    except _Reject:
        return None
    e = p.exp
    if not (e.words or e.puncts or e.strings or e.numbers or e.end):
        return None
    return Options(tuple(sorted(e.words)), frozenset(e.puncts), tuple(dict.fromkeys(e.strings)),
                   tuple(dict.fromkeys(e.numbers)), e.end, index.speller if exact_case else None)


# ----------------------------------------------------------------------------------------------------
# Characters


SEP, SPACE, WORD, NUM, OP, STR = range(6)


def _chars_after(text: str, piece: str) -> set:
    """The characters that follow an occurrence of `piece` in `text` (every character when piece is empty)."""
    if not piece:
        return set(text)
    out, i = set(), text.find(piece)
    while i >= 0:
        j = i + len(piece)
        if j < len(text):
            out.add(text[j])
        i = text.find(piece, i + 1)
    return out


class SQLPrefixChecker:
    """Character-level: is this text the start of valid SQL for this schema and question, and is it complete?

    A state is a hashable tuple (lexeme prefix id, lexer mode, partial lexeme); `feed` returns the next
    state or None. `check(text)` and `accepts(text)` are the whole-string conveniences (tests use them).

    exact_case (the default, for decoding): tables and columns only as the schema spells them, keywords and
    aliases in upper or lower case, strings as the question or the column writes them. False: SQLite's own
    case-insensitive rules (for checking gold queries written by people, as Spider's are)."""

    def __init__(self, schema: Schema, question: str = "", db_path: str | Path | None = None, real_names=None,
                 exact_case: bool = True, question_decides: bool = False):
        self.exact = exact_case
        self.index = SchemaIndex.shared(schema)
        self.values = ValueSource(question, db_path, real_names, exact_case, question_decides)
        self._lexemes: list[tuple] = [()]
        self._child: dict[tuple, int] = {}
        self._options: dict[int, Options | None] = {}
        self._feed: dict[tuple, tuple | None] = {}
        self._completions: dict[tuple, str | None] = {}
        self._numbers = sorted(set(self.values.numbers) | set(SMALL_INTS), key=lambda n: (len(n), n))  # (_pieces)
        self.start = (0, SEP, "")

    # lexeme prefixes -----------------------------------------------------------------------------------
    def options(self, pid: int) -> Options | None:
        if pid not in self._options:
            lexemes = self._lexemes[pid]
            if self._question_free(lexemes):  # the same options for every question on this schema
                key = (lexemes, self.exact, self.values.question_decides)
                opts = self.index.parse_cache.get(key, key)
                if opts is key:
                    opts = self.index.parse_cache[key] = parse_prefix(self.index, self.values, lexemes, self.exact)
            else:
                opts = parse_prefix(self.index, self.values, lexemes, self.exact)
            self._options[pid] = opts
        return self._options[pid]

    @staticmethod
    def _question_free(lexemes: tuple) -> bool:
        """Whether parsing these lexemes never asks the ValueSource (so the question and the database's
        values cannot change the options): the parser asks it only to check a string or number literal
        (string_complete, number_complete) and, with question_decides, for the question's numbers after
        BETWEEN. (The literal specs in the options are checked against the values later, per question.)"""
        return not any(kind in ("s", "n") or (kind == "w" and text == "between") for kind, text in lexemes)

    def _push(self, pid: int, lexeme: tuple) -> int | None:
        key = (pid, lexeme)
        child = self._child.get(key)
        if child is None:
            child = len(self._lexemes)
            self._lexemes.append(self._lexemes[pid] + (lexeme,))
            self._child[key] = child
        return child if self.options(child) is not None else None

    # characters ------------------------------------------------------------------------------------------
    def feed(self, state: tuple, ch: str) -> tuple | None:
        key = (state, ch)
        if key in self._feed:
            return self._feed[key]
        out = self._feed[key] = self._step(state, ch)
        return out

    def feed_text(self, state: tuple | None, text: str) -> tuple | None:
        for ch in text:
            if state is None:
                return None
            state = self.feed(state, ch)
        return state

    def _step(self, state, ch):
        pid, mode, buf = state
        if mode in (SEP, SPACE):
            return self._start(pid, ch, mode, buf)
        if mode == WORD:
            if ch in WORD_CHARS:
                nb = buf + (ch if self.exact else ch.lower())
                return (pid, WORD, nb) if self.options(pid).word_viable(nb) else None
            return self._end_then(pid, ("w", buf.lower()), ch)
        if mode == NUM:
            if ch in DIGITS or ch == ".":
                nb = buf + ch
                return (pid, NUM, nb) if any(self.values.number_viable(s, nb) for s in self.options(pid).numbers) \
                    else None
            if ch in WORD_CHARS:
                return None
            return self._end_then(pid, ("n", buf), ch)
        if mode == OP:
            nb = buf + ch
            if any(p.startswith(nb) for p in self.options(pid).puncts):
                return pid, OP, nb
            return self._end_then(pid, ("p", buf), ch)
        # STR: buf = (quote, content, quote_pending)
        quote, content, pending = buf
        opts = self.options(pid)
        if pending:
            if ch == quote:  # a doubled quote is a quote inside the string
                return self._string_state(pid, opts, quote, content + quote, False)
            return self._end_then(pid, ("s", content), ch)
        if ch == quote:
            if any(self.values.string_complete(s, content) for s in opts.strings) or any(
                    self.values.string_viable(s, content + quote) for s in opts.strings):
                return pid, STR, (quote, content, True)
            return None
        if ch == "\n":
            return None
        return self._string_state(pid, opts, quote, content + ch, False)

    def _string_state(self, pid, opts, quote, content, pending):
        if any(self.values.string_viable(s, content) for s in opts.strings):
            return pid, STR, (quote, content, pending)
        return None

    def _end_then(self, pid, lexeme, ch):
        nxt = self._push(pid, lexeme)
        return None if nxt is None else self._start(nxt, ch, SEP)

    def _start(self, pid, ch, mode, prev=""):
        if (prev == "-" and ch == "-") or (prev == "/" and ch == "*"):
            return None  # "--" and "/*" start comments
        if ch in SPACES:
            return None if mode == SPACE else (pid, SPACE, "")
        opts = self.options(pid)
        if ch in WORD_CHARS and ch not in DIGITS and ch != ".":
            c = ch if self.exact else ch.lower()
            return (pid, WORD, c) if opts.word_viable(c) else None
        if ch in DIGITS:
            return (pid, NUM, ch) if any(self.values.number_viable(s, ch) for s in opts.numbers) else None
        if ch == "'" or (ch == '"' and not self.exact):  # ("x" is a column when one is called x: not for decoding)
            return (pid, STR, (ch, "", False)) if opts.strings else None
        if ch in OP_CHARS:
            return (pid, OP, ch) if any(p.startswith(ch) for p in opts.puncts) else None
        if ch in SINGLE_PUNCT and ch in opts.puncts:
            nxt = self._push(pid, ("p", ch))
            return None if nxt is None else (nxt, SEP, ch)  # SEP remembers the punctuation: see _start
        return None

    def string_next_chars(self, state: tuple) -> frozenset | None:
        """Inside a string literal (an STR state): a superset of the characters that may come next (None:
        no bound), for TokenTrie.walk to skip the rest without feeding them. From the viability rules
        (ValueSource.string_viable): the quote (it may close or double); for a LIKE pattern %, and what
        follows the pattern's last piece where the question has it (in either case; or, without
        question_decides, where a stored value has it); otherwise what follows the string so far where the
        question has it, or a stored value of the column begins with it. Both cases of each character when
        the checker ignores case."""
        pid, mode, buf = state
        quote, content, pending = buf
        if pending:
            return None
        values = self.values
        out = {quote}
        for spec in self.options(pid).strings:
            col = values.column(spec.column)
            if spec.like:
                out.add("%")
                tail = content.rpartition("%")[2].lower()
                texts = [values.question_lower] + ([col.joined] if col is not None and not values.question_decides
                                                   else [])
                for text in texts:
                    out.update(_chars_after(text, tail))
                out.update([c.upper() for c in out])
                continue
            c = content if self.exact else content.lower()
            out.update(_chars_after(values.question, c))
            if col is not None:
                i = bisect_left(col.texts, c)
                while i < len(col.texts) and col.texts[i].startswith(c):
                    t = col.texts[i]
                    if len(t) > len(c):
                        out.add(t[len(c)])
                        # (every value that goes on with this character is covered: skip past them)
                        i = bisect_left(col.texts, c + t[len(c)] + "\U0010ffff", i)
                    else:
                        i += 1
        if not self.exact:
            out.update([c.upper() for c in out] + [c.lower() for c in out])
        return frozenset(out)

    def can_end(self, state: tuple | None) -> bool:
        """True when the text that led to `state` is complete SQL."""
        if state is None:
            return False
        pid, mode, buf = state
        if mode == STR:
            quote, content, pending = buf
            if not pending:
                return False
            pid = self._push(pid, ("s", content))
        elif mode in (WORD, NUM, OP):
            pid = self._push(pid, ({WORD: "w", NUM: "n", OP: "p"}[mode], buf.lower() if mode == WORD else buf))
        if pid is None:
            return False
        opts = self.options(pid)
        return opts is not None and opts.end

    def check(self, text: str) -> tuple | None:
        """The state after `text` (None: no valid SQL starts with it)."""
        return self.feed_text(self.start, text)

    def accepts(self, text: str) -> bool:
        """True when `text` is complete SQL the checker allows."""
        return self.can_end(self.check(text))

    # completion: a short way to finish the SQL from a state (used when the token budget runs out) ----------
    def completion(self, state: tuple, budget: int = 2000, max_pieces: int = 80) -> str | None:
        """A short text that makes the SQL complete from `state`, or None when none is found.

        A depth-first search over a few pieces per state, in the order that closes fastest (a closing
        bracket, FROM/BY/NULL, short numbers, words and strings, then the pieces that open more: JOIN, AND,
        SELECT, IN, a bracket, a comma, each at most EXPANSIONS[piece] times on one path), backtracking out
        of dead ends, at most `budget` states. Clauses that are never needed to finish (WHERE, GROUP BY,
        ORDER BY, LIMIT, a set operation, ASC/DESC, DISTINCT) are not tried. Every state on the path found
        remembers the rest of the path."""
        if state in self._completions:
            return self._completions[state]
        seen = {state}
        path: list[tuple[tuple, str]] = []  # (state, piece written from it)
        used: dict[str, int] = {}
        stack = [(state, iter(self._pieces(state)))]
        found = None
        while stack and len(seen) < budget:
            st, pieces = stack[-1]
            if self.can_end(st):
                found = ""
                break
            known = self._completions.get(st)
            if known is not None:
                found = known
                break
            nxt = None
            if len(stack) <= max_pieces:
                for piece, kind in pieces:
                    if kind and used.get(kind, 0) >= EXPANSIONS[kind]:
                        continue
                    cand = self.feed_text(st, piece)
                    if cand is not None and cand not in seen:
                        nxt = cand
                        break
            if nxt is None:
                stack.pop()
                if path:
                    kind = path.pop()[2]
                    if kind:
                        used[kind] -= 1
                continue
            seen.add(nxt)
            path.append((st, piece, kind))
            if kind:
                used[kind] = used.get(kind, 0) + 1
            stack.append((nxt, iter(self._pieces(nxt))))
        if found is None:
            self._completions[state] = None
            return None
        rest = found
        for st, piece, _ in reversed(path):
            rest = piece + rest
            if self._completions.get(st) is None or len(self._completions[st]) > len(rest):
                self._completions[st] = rest
        return self._completions.setdefault(state, rest)

    def spell(self, word: str) -> str:
        """The one spelling the completer writes a lower-case word in (upper-case keywords and aliases)."""
        if not self.exact:
            return word
        forms = self.index.spellings(word)
        return word.upper() if word.upper() in forms else min(forms, default=word)

    def _pieces(self, st, words_per_state: int = 8):
        """[(piece, kind)]: kind names a piece that opens more to close (EXPANSIONS), else ""."""
        pid, mode, buf = st
        opts = self.options(pid)
        numbers = self._numbers
        if mode in (WORD, NUM, OP):
            out = [" "]
            if mode == WORD:
                out += sorted((w[len(buf):] for w in sorted(opts.spelled_from(buf)) if len(w) > len(buf)),
                              key=len)[:words_per_state]
            elif mode == NUM:
                out += [n[len(buf):] for n in numbers if n.startswith(buf) and len(n) > len(buf)][:4]
                out += list("0123456789")  # (a number inside a column's range)
            else:
                out += [p[len(buf):] for p in opts.puncts if p.startswith(buf) and len(p) > len(buf)]
            return [(p, "") for p in out]
        if mode == STR:
            quote, content, pending = buf
            if pending:
                return [(" ", "")]
            out = [quote]
            q, c = self.values.question, content if self.exact else content.lower()
            for spec in opts.strings:  # a stored value the question names may run over several words
                named = self.values.named_values(spec.column) or ()
                out += [t[len(c):] + quote for t in named if t.startswith(c) and t not in spec.exclude][:2]
                if spec.like:  # a pattern closes as it is or behind a %
                    out.append("%" + quote)
                else:  # ...and any stored value it may still become (the question need not write it)
                    out += [t[len(c):] + quote for t in self.values.stored_completions(spec, c)]
            ends = [quote]
            if "%" in c:  # a LIKE pattern: its last piece grows as a word of the question, then % or the quote
                c, q, ends = c.rpartition("%")[2].lower(), self.values.question_lower, [quote, "%" + quote]
            if not c:
                out += [w + e for w in sorted(dict.fromkeys(re.findall(r"[A-Za-z0-9]+", q)), key=len)[:4]
                        for e in ends]
            i, grown = (q.find(c) if c else -1), 0
            while i >= 0 and grown < 3:  # (spans start at a word)
                j = i + len(c)
                while j < len(q) and q[j].isalnum():
                    j += 1
                if j > i + len(c) and (i == 0 or not q[i - 1].isalnum() or not c[:1].isalnum()):
                    out += [q[i + len(c):j] + e for e in ends]
                    grown += 1
                i = q.find(c, i + 1)
            return [(p, "") for p in out]
        lead = "" if mode == SPACE or buf else " "
        out = [")"] if ")" in opts.puncts else []
        if "=" in opts.puncts:  # (ON's pairs; a comparison already begun)
            out.append(lead + "=")
        words = [w for w in opts.words if w not in _NOT_FOR_COMPLETION]
        # qualifiers the SQL already used (T9.x needs a T9 in some FROM) before other words of a length
        used = {x.rpartition(".")[0] for kind, x in self._lexemes[pid] if kind == "w" and "." in x}
        # ...and tables by how many of the columns still missing they have (FROM the table the SELECT list
        # needs, not the first of the schema joined on to it; the next JOIN the one that still misses)
        missing = self._missing_columns(self._lexemes[pid])
        score = {t: len(missing.intersection(cols)) for t, cols in self.index.colset.items()} if missing else {}
        # (only the first words_per_state are used: the smallest, not a sort of every word)
        words = heapq.nsmallest(words_per_state, words, key=lambda w: (
            w not in ("from", "by", "null"), -score.get(w, 0), len(w), w not in used, w))
        out += [lead + self.spell(w) for w in words[:2]]
        if opts.numbers:
            out += [lead + n for n in numbers[:3]]
        out += [lead + self.spell(w) for w in words[2:words_per_state]]
        if opts.strings:
            found = dict.fromkeys(re.findall(r"[A-Za-z0-9]+", self.values.question))
            out += [lead + "'" + w + "'" for w in sorted(found, key=len)[:4]]
        out = [(p, "") for p in out]
        out += [(lead + self.spell(w), w) for w in ("join", "and", "select", "in") if w in opts.words]
        out += [(p, p) for p in ("(", "*", ",") if p in opts.puncts]
        return out

    def _missing_columns(self, lexemes: tuple) -> set:
        """The columns the query being written names that no table written in it so far can give it: behind
        a qualifier that is neither a table written nor an alias bound (T2.x before any "... AS T2"), or
        bare where no table written has them. The query being written: from its last SELECT (the second
        query of a UNION, a subquery). The completer's guide to which table to join next (a heuristic: the
        parser decides what is allowed)."""
        cols = self.index.colset
        words = [x for kind, x in lexemes if kind == "w"]
        words = words[len(words) - words[::-1].index("select") - 1:] if "select" in words else words
        tables = {x for x in words if x in cols}
        bound = set()  # aliases given to a table: "t AS a" or "t a"
        for i, x in enumerate(words[:-1]):
            if x in cols:
                a = words[i + 2] if words[i + 1] == "as" and i + 2 < len(words) else words[i + 1]
                if a in self.index.aliases:
                    bound.add(a)
        missing = set()
        for x in words:
            q, dot, c = x.rpartition(".")
            if dot:
                if q not in tables and q not in bound:
                    missing.add(c)
            elif x in self.index.tables_with and not any(x in cols[t] for t in tables):
                missing.add(x)
        return missing

    def reject_reason(self, text: str) -> str | None:
        """Where a complete query stops being accepted (for reports): None when it is accepted."""
        state = self.start
        for i, ch in enumerate(text):
            nxt = self.feed(state, ch)
            if nxt is None:
                return f"rejected at char {i}: {text[max(0, i - 30):i]}<<{text[i:i + 20]}"
            state = nxt
        return None if self.can_end(state) else "incomplete at the end"


# ----------------------------------------------------------------------------------------------------
# Tokens


class _Node:
    __slots__ = ("children", "ids")

    def __init__(self):
        self.children: dict[str, _Node] = {}
        self.ids: list[int] = []


class TokenTrie:
    """A character trie of every ordinary token's text (ids whose bytes are not UTF-8 on their own are left
    out: SQL over these schemas is written with whole characters)."""

    def __init__(self, tokenizer):
        self.root = _Node()
        specials = set(dict(tokenizer.special_tokens).values())
        self.n_vocab = tokenizer.n_vocab
        for i in range(tokenizer.n_vocab):
            if i in specials:
                continue
            try:
                text = tokenizer.decode_bytes([i]).decode("utf-8")
            except (UnicodeDecodeError, KeyError, ValueError):
                continue
            if not text:
                continue
            node = self.root
            for ch in text:
                node = node.children.setdefault(ch, _Node())
            node.ids.append(i)

    _cache: dict[int, "TokenTrie"] = {}

    @classmethod
    def for_tokenizer(cls, tokenizer) -> "TokenTrie":
        key = id(tokenizer)
        trie = cls._cache.get(key)
        if trie is None or trie._tokenizer_ref is not tokenizer:
            trie = cls(tokenizer)
            trie._tokenizer_ref = tokenizer
            cls._cache[key] = trie
        return trie

    def walk(self, checker: SQLPrefixChecker, state: tuple) -> list[int]:
        """Ids whose whole text the checker accepts from `state` (depth-first, pruned at dead characters).
        Inside a string literal, a node with many children tries only the characters the string may go on
        with (SQLPrefixChecker.string_next_chars, a superset): most of the ~150 first characters of the
        vocabulary cannot, and each costs a viability check of a new string."""
        out: list[int] = []
        stack = [(self.root, state)]
        feed = checker.feed
        while stack:
            node, st = stack.pop()
            chars = checker.string_next_chars(st) if st[1] == STR and len(node.children) > 16 else None
            for ch, child in node.children.items():
                if chars is not None and ch not in chars:
                    continue
                nxt = feed(st, ch)
                if nxt is None:
                    continue
                if child.ids:
                    out.extend(child.ids)
                if child.children:
                    stack.append((child, nxt))
        return out


class SQLConstraint:
    """The SQL constraint for one prompt, in the shape gpt.generate's Constraint hook asks for.

    `allowed_ids(generated)` lists the token ids that may follow the SQL tokens generated so far; the
    end id is in it exactly when the SQL is complete. States are kept per generated prefix, so beams that
    share a prefix share the work.

    The token budget: with max_tokens (the decode's steps, <|end|> included) every id that is allowed
    leaves a way to finish in time. Within `window` steps of the end, an id is allowed only if the state it
    leads to has a completion (SQLPrefixChecker.completion, spelled in tokens) that still fits, counting
    the <|end|>; the first token of the current state's completion always fits, since each state on a
    completion's path remembers the rest of it. So a decode never runs out of steps inside a query.
    (Earlier too, from a checkpoint whose completion was already long: _left.) The window is 64 steps: one
    token can lengthen the completion by 60 (a SELECT-list column that needs four JOIN ... ON), which
    random walks on Spider's databases did inside a window of 40 and ran out of steps. Checking costs
    about 0.2 ms a token more (Spider's gold, tagged, under the budget from its first token)."""

    CHECKPOINTS = 5
    CHECK_EVERY = 8

    def __init__(self, tokenizer, schema: Schema, question: str = "", db_path: str | Path | None = None,
                 end_id: int | None = None, max_tokens: int | None = None, window: int = 64, real_names=None,
                 exact_case: bool = True, question_decides: bool = False):
        from text2sql.prompt import SQL_END_TOKEN, special_token_ids

        self.tokenizer = tokenizer
        self.trie = TokenTrie.for_tokenizer(tokenizer)
        self.checker = SQLPrefixChecker(schema, question, db_path, real_names, exact_case, question_decides)
        self.end_id = special_token_ids(tokenizer)[SQL_END_TOKEN] if end_id is None else end_id
        self._states: dict[tuple, tuple | None] = {(): self.checker.start}
        self._next: dict[tuple, tuple | None] = {}  # (state, id) -> state
        self._allowed: dict[tuple, list[int]] = {}
        self._cost: dict[tuple, int | None] = {}  # state -> tokens of a known completion (0: complete)
        self._budgeted: dict[tuple, list[int]] = {}  # (state, tokens left) -> allowed ids
        self._lefts: dict[tuple, int | None] = {}  # generated ids -> _left of them
        self._text: dict[int, str] = {}
        self._special_ids = set(dict(tokenizer.special_tokens).values())
        self.max_tokens = max_tokens
        self.window = window

    def _token_text(self, i: int) -> str | None:
        t = self._text.get(i)
        if t is None:
            try:
                t = self.tokenizer.decode_bytes([i]).decode("utf-8")
            except (UnicodeDecodeError, KeyError, ValueError):
                t = "\x00"  # never accepted
            self._text[i] = t
        return t

    def next_state(self, st: tuple | None, t: int) -> tuple | None:
        """The state after id t (None: t may not follow; the end id is not an ordinary step)."""
        if st is None:
            return None
        key = (st, t)
        out = self._next.get(key, key)
        if out is key:
            out = None if t in self._special_ids or t >= self.trie.n_vocab \
                else self.checker.feed_text(st, self._token_text(t))
            self._next[key] = out
        return out

    def state(self, generated) -> tuple | None:
        key = tuple(generated)
        st = self._states.get(key, key)
        if st is not key:
            return st
        st = self._states[key] = self.next_state(self.state(key[:-1]), key[-1])
        return st

    def _left(self, generated) -> int | None:
        """Steps left (this one included) when the budget matters, else None: within `window` steps of the
        end, and earlier from a checkpoint (every CHECK_EVERY steps, CHECKPOINTS of them before the window)
        whose state's completion was already long (at least half the window: a SELECT list that names
        five tables needs four JOIN ... ON to finish), or unknown. One completion per checkpoint and prefix."""
        if self.max_tokens is None:
            return None
        left = self.max_tokens - len(generated)
        if left <= self.window:
            return left
        for j in range(1, self.CHECKPOINTS + 1):
            at = self.window + j * self.CHECK_EVERY  # steps left at the checkpoint
            if at < left:
                continue
            n = self.max_tokens - at
            if n < 0:
                break
            c = self.cost(self.state(generated[:n]))
            if c is None or c >= self.window // 2:
                return left
        return None

    def allowed_ids(self, generated) -> list[int]:
        st = self.state(generated)
        if st is None:
            return []
        left = self._left(generated)
        if left is not None:
            return self._within_budget(st, left)
        return self._all_allowed(st)

    def _all_allowed(self, st) -> list[int]:
        ids = self._allowed.get(st)
        if ids is None:
            ids = self.trie.walk(self.checker, st)
            if self.checker.can_end(st):
                ids.append(self.end_id)
            self._allowed[st] = ids
        return ids

    def allows(self, generated, token: int) -> bool:
        """Whether `token` may follow (a few memoised character steps: the cheap test greedy and beam use)."""
        key = tuple(generated)
        st = self.state(key)
        if st is None:
            return False
        if token == self.end_id:
            return self.checker.can_end(st)
        nxt = self.next_state(st, token)
        if nxt is None:
            return False
        left = self._lefts.get(key, key)  # (beam search tests several ids after one prefix)
        if left is key:
            left = self._lefts[key] = self._left(key)
        return left is None or self._fits(st, token, nxt, left)

    # the token budget ------------------------------------------------------------------------------------
    def cost(self, st) -> int | None:
        """Tokens of the shortest completion known from `st` (0 when complete; None: none found)."""
        if st in self._cost:
            return self._cost[st]
        if self.checker.can_end(st):
            self._cost[st] = 0
            return 0
        text = self.checker.completion(st)
        if text is None:
            self._cost[st] = None
            return None
        ids = self.spell_tokens(text)
        self._cost[st] = len(ids)
        s = st
        for j, t in enumerate(ids[:-1]):  # every state on the way knows the rest
            s = None if t < 0 else self.next_state(s, t)
            if s is None:
                break
            known = self._cost.get(s)
            if known is None or known > len(ids) - j - 1:
                self._cost[s] = len(ids) - j - 1
        return self._cost[st]

    def spell_tokens(self, text: str) -> list[int]:
        """Ids that spell `text`, longest trie match first."""
        ids, i = [], 0
        while i < len(text):
            node, best, j = self.trie.root, None, i
            while j < len(text):
                node = node.children.get(text[j])
                if node is None:
                    break
                j += 1
                if node.ids:
                    best = (node.ids[0], j)
            if best is None:
                return ids + [-1] * (len(text) - i)  # a character no token spells alone: too long to count on
            ids.append(best[0])
            i = best[1]
        return ids

    def _fits(self, st, token, nxt, left) -> bool:
        c = self.cost(nxt)
        if c is not None and c <= left - 2:  # this id, c more, then <|end|>
            return True
        return token in self._within_budget(st, left)  # (the fallback, when nothing fits)

    def _fallback(self, st, left) -> list[int]:
        """When no id fits (the budget was already short where the window began): the first id of the
        current state's completion; when no completion is known, every id the SQL allows (an empty list
        would end the decode where it stands, inside the query)."""
        c = self.cost(st)
        if c is not None and c > 0:
            ids = self.spell_tokens(self.checker.completion(st))
            if ids and ids[0] >= 0:
                return ids[:1]
        return self._all_allowed(st)

    def _within_budget(self, st, left) -> list[int]:
        key = (st, left)
        out = self._budgeted.get(key)
        if out is None:
            out = [t for t in self._all_allowed(st)
                   if t == self.end_id or (c := self.cost(self.next_state(st, t))) is not None and c <= left - 2]
            if not out:
                out = self._fallback(st, left)
            self._budgeted[key] = out
        return out

    def is_complete(self, generated) -> bool:
        return self.checker.can_end(self.state(generated))
