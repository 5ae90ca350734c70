"""Rewards: a verifier turns (response, problem) into a score in [0, 1].

Math answers go through math-verify (``\\boxed{}``, ``#### 72``, ``1,000``, fractions); word answers
compare the final ``ANSWER:`` line; an LLM judge serves tasks without a ground truth (``train.verifier``).
From Python, any function ``(response, problem) -> float in [0, 1]`` is a `Verifier`. math-verify's own
time limit uses signal.alarm, which only works in the main thread, so it
is switched off and answers are cut to a bounded length instead.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal
from fractions import Fraction
from typing import Any, ClassVar, Protocol

from dso.learn.datasets import COMPLEX_TASKS, MATH_TASKS, POLYNOMIAL_TASKS, Problem
from dso.llm import LLM

# math-verify warns once that its timeout is off; that is deliberate here (answers are cut instead).
logging.getLogger("math_verify").setLevel(logging.ERROR)

_ANSWER_LINE = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:\uff1a]\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_LAST_NUMBER = re.compile(f"{_SCIENTIFIC.pattern}|{_NUMBER.pattern}")  # 7.5e+08 whole, not its exponent
_LIST = re.compile(r"\[[^\[\]\n]*\]")  # one bracketed list on one line: ['-2.8', '0.9']


class Verifier(Protocol):
    def __call__(self, response: str, problem: Problem) -> float: ...


def _boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, index = 1, start + len("\\boxed{")
    for position in range(index, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[index:position]
    return None


def marked_answer(response: str) -> str | None:
    """The answer a response marks as its answer: \\boxed{}, '#### x' or an 'Answer: x' line; None when it
    marks none (then it is scored on its last number or line, and a miss is often the format, not the result)."""
    boxed = _boxed(response)
    if boxed is not None:
        return boxed.strip()
    if "####" in response:
        tail = response.rsplit("####", 1)[1].strip()
        return tail.splitlines()[0].strip() if tail else ""
    matches = _ANSWER_LINE.findall(response)
    if matches:
        return str(matches[-1]).strip().strip("*").strip()
    return None


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    matches = list(pattern.finditer(text))
    return matches[-1] if matches else None


def final_answer(response: str) -> str:
    """The answer a response commits to: the one it marks (`marked_answer`), else its last number."""
    marked = marked_answer(response)
    if marked is not None:
        return marked
    number = _last_match(_LAST_NUMBER, response)
    return number.group(0) if number else ""


def committed_answer(response: str) -> str:
    """The marked answer; else a list the response ends on (its last number inside it), not that number
    alone; else its last number, or its last line (a bare one-word reply)."""
    marked = marked_answer(response)
    if marked is not None:
        return marked
    last_list, number = _last_match(_LIST, response), _last_match(_LAST_NUMBER, response)
    if last_list and (number is None or last_list.end() >= number.end()):
        return last_list.group(0)
    if number:
        return number.group(0)
    return (response.strip().splitlines() or [""])[-1]


def _clean_number(text: str) -> str:
    text = text.strip().strip("$").strip().rstrip(".")
    if _SCIENTIFIC.fullmatch(text):  # 7.5795e+08: math-verify reads it as 7.5795 * e + 8
        return format(Decimal(text), "f")
    match = _NUMBER.search(text.replace(" ", ""))
    if match and re.fullmatch(r"[^\d]*" + re.escape(match.group(0)) + r"[^\d]*", text.replace(" ", "")):
        return match.group(0).replace(",", "")
    return text


class MathVerifier:
    """1.0 when the final answer equals the ground truth mathematically, else 0.0."""

    def __call__(self, response: str, problem: Problem) -> float:
        from math_verify import parse, verify

        predicted = final_answer(response[-4000:])
        if not predicted:
            return 0.0
        gold_text, pred_text = _clean_number(problem.answer), _clean_number(predicted)
        if gold_text == pred_text:
            return 1.0
        gold = parse(f"${gold_text}$", parsing_timeout=None)
        guess = parse(f"${pred_text}$", parsing_timeout=None)
        if not gold or not guess:
            return 0.0
        return 1.0 if verify(gold, guess, timeout_seconds=None) else 0.0


_LATEX_TEXT = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")  # \text{Friday} is Friday


class WordVerifier:
    """1.0 when the final answer's words equal the ground truth's, ignoring case and punctuation."""

    def __call__(self, response: str, problem: Problem) -> float:
        def words(text: str) -> list[str]:
            return re.findall(r"[a-z0-9-]+", _LATEX_TEXT.sub(r"\1", text).lower())

        return 1.0 if words(committed_answer(response)) == words(problem.answer) else 0.0


_REAL = r"\d+(?:\.\d+)?"
_COMPLEX = re.compile(  # a+bi, bi or a plain real, spaces taken out; "i" starting a word ("3 in") is no unit
    rf"(?<![\w.])(?:[-+]?{_REAL}[-+](?:{_REAL})?\*?i|[-+]?(?:{_REAL})?\*?i|[-+]?{_REAL})(?!\w|\.\d)"
)


def parse_complex(text: str) -> complex | None:
    """The last complex number written in text ("-15 + 3i", "(2.0 - i)", "-4i", "6"), or None."""
    text = text[-2000:].replace("\u2212", "-").replace("\\,", "").replace("$", "")
    # "-15 + 3 * i" -> "-15+3*i" in linear time; "is -15" keeps its space, so the sign stays with the number
    text = re.sub(r"(?<=[\d.i)]) ?([-+*]) ?", r"\1", re.sub(r"\s+", " ", text))
    matches = list(_COMPLEX.finditer(text))
    if not matches:
        return None
    written = matches[-1].group(0).replace("*", "")
    if written.endswith("i"):
        written = re.sub(r"(^|[-+])i$", r"\g<1>1i", written)[:-1] + "j"
    try:
        return complex(written)
    except ValueError:
        return None


class ComplexVerifier:
    """1.0 when the committed answer is the ground truth's complex number ("-15 + 3i" for "-15.0 + 3.0i")."""

    def __call__(self, response: str, problem: Problem) -> float:
        gold = parse_complex(problem.answer)
        marked = marked_answer(response)
        guess = parse_complex(response if marked is None else marked)
        if gold is None or guess is None:
            return 0.0
        return 1.0 if abs(guess - gold) <= 1e-6 else 0.0


Polynomial = dict[int, Fraction]  # exponent -> nonzero coefficient
_POLY_TOKEN = re.compile(r"\d+(?:\.\d+)?|\*\*|[a-z()+\-*/]")
_POLY_MAX_CHARS, _POLY_MAX_DEPTH, _POLY_MAX_POWER, _POLY_MAX_BITS = 400, 40, 64, 2048


class _PolynomialParser:
    """Recursive descent over + - * / ** and parentheses in one variable, exact (Fraction) coefficients:
    no eval, a bounded depth, exponents and coefficient sizes capped, so hostile text costs little."""

    def __init__(self, tokens: list[str], variable: str) -> None:
        self.tokens, self.variable, self.position, self.depth = tokens, variable, 0, 0

    def parse(self) -> Polynomial:
        result = self._sum()
        if self.position != len(self.tokens):
            raise ValueError("trailing tokens")
        return result

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise ValueError("unexpected end")
        self.position += 1
        return token

    def _sum(self) -> Polynomial:
        result = self._product()
        while self._peek() in ("+", "-"):
            sign = -1 if self._take() == "-" else 1
            result = _poly_add(result, _poly_scale(self._product(), Fraction(sign)))
        return result

    def _product(self) -> Polynomial:
        result = self._unary()
        while self._peek() in ("*", "/"):
            if self._take() == "*":
                result = _poly_mul(result, self._unary())
            else:
                divisor = self._unary()
                if set(divisor) != {0}:
                    raise ValueError("division by a non-constant or by zero")
                result = _poly_scale(result, 1 / divisor[0])
        return result

    def _unary(self) -> Polynomial:
        if self._peek() in ("+", "-"):
            sign = -1 if self._take() == "-" else 1
            return _poly_scale(self._unary(), Fraction(sign))
        base = self._atom()
        if self._peek() == "**":
            self._take()
            exponent = self._unary()
            if set(exponent) - {0} or exponent.get(0, Fraction(0)).denominator != 1:
                raise ValueError("exponent is not a whole number")
            power = int(exponent.get(0, Fraction(0)))
            if not 0 <= power <= _POLY_MAX_POWER:
                raise ValueError("exponent out of range")
            result: Polynomial = {0: Fraction(1)}
            for _ in range(power):
                result = _poly_mul(result, base)
            return result
        return base

    def _atom(self) -> Polynomial:
        token = self._take()
        if token == "(":
            self.depth += 1
            if self.depth > _POLY_MAX_DEPTH:
                raise ValueError("nested too deep")
            inner = self._sum()
            if self._take() != ")":
                raise ValueError("unbalanced parenthesis")
            self.depth -= 1
            return inner
        if token == self.variable:
            return {1: Fraction(1)}
        if token[0].isdigit():
            return _poly_checked({0: Fraction(token)})
        raise ValueError(f"unexpected token {token!r}")


def _poly_checked(poly: Polynomial) -> Polynomial:
    clean = {e: c for e, c in poly.items() if c != 0}
    if any(max(c.numerator.bit_length(), c.denominator.bit_length()) > _POLY_MAX_BITS for c in clean.values()):
        raise ValueError("coefficient too large")
    if any(e > _POLY_MAX_POWER * 4 for e in clean):
        raise ValueError("degree too large")
    return clean


def _poly_add(a: Polynomial, b: Polynomial) -> Polynomial:
    return _poly_checked({e: a.get(e, Fraction(0)) + b.get(e, Fraction(0)) for e in a.keys() | b.keys()})


def _poly_scale(a: Polynomial, factor: Fraction) -> Polynomial:
    return _poly_checked({e: c * factor for e, c in a.items()})


def _poly_mul(a: Polynomial, b: Polynomial) -> Polynomial:
    result: dict[int, Fraction] = {}
    for ea, ca in a.items():
        for eb, cb in b.items():
            result[ea + eb] = result.get(ea + eb, Fraction(0)) + ca * cb
    return _poly_checked(result)


def parse_polynomial(text: str, variable: str = "x") -> Polynomial | None:
    """The polynomial in one variable that text writes ("-x**9 + 9*x**4/2 + C", "4.5x^4", "\\frac{9}{2}x^{4}"),
    as exponent -> coefficient with the integration constant dropped; None for anything else."""
    text = text.split("=")[-1].lower().strip().rstrip(".")
    for old, new in (("\u2212", "-"), ("^", "**"), ("\\cdot", "*"), ("\\times", "*"), ("\u00b7", "*"), ("\u00d7", "*")):
        text = text.replace(old, new)
    for _ in range(10):  # \frac{a}{b} -> ((a)/(b)), innermost first
        text, found = re.subn(r"\\d?frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", text)
        if not found:
            break
    text = re.sub(r"\\left|\\right|\$|\\[()\[\]]|\s", "", text).replace("{", "(").replace("}", ")")
    text = re.sub(r"[+-]c(?![a-z(])", "", text)  # + C, the constant of integration
    if not text or len(text) > _POLY_MAX_CHARS or re.search(rf"[^0-9.{variable}+\-*/()]", text):
        return None
    tokens = _POLY_TOKEN.findall(text)
    if "".join(tokens) != text:
        return None
    spaced: list[str] = []  # implicit products: 7x, 2(x + 1), x(x - 1), (x + 1)(x - 1)
    for token in tokens:
        if (
            spaced
            and (spaced[-1][0].isdigit() or spaced[-1] in (variable, ")"))
            and (token in (variable, "(") or (token[0].isdigit() and spaced[-1] != ")" and not spaced[-1][0].isdigit()))
        ):
            spaced.append("*")
        spaced.append(token)
    try:
        return _PolynomialParser(spaced, variable).parse()
    except (ValueError, ZeroDivisionError, RecursionError):
        return None


class PolynomialVerifier:
    """1.0 when the committed answer is the ground truth's polynomial ("9*x**4/2" equals "4.5x^4"); the
    variable is the one the ground truth uses, and "+ C" is ignored on both sides."""

    def __call__(self, response: str, problem: Problem) -> float:
        letters = set(re.findall(r"[a-z]", re.sub(r"[+-]\s*c\b", "", problem.answer.lower())))
        variable = letters.pop() if len(letters) == 1 else "x"
        marked = marked_answer(response)
        lines = response.strip().splitlines()
        written = marked if marked is not None else (lines[-1] if lines else "")
        gold, guess = parse_polynomial(problem.answer, variable), parse_polynomial(written, variable)
        return 1.0 if gold is not None and guess == gold else 0.0


class LLMJudge:
    """For tasks without ground truth: an LLM answers whether the response solves the problem."""

    SCHEMA: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"correct": {"type": "boolean"}},
        "required": ["correct"],
    }

    def __init__(self, llm: LLM) -> None:
        self._llm = llm

    def __call__(self, response: str, problem: Problem) -> float:
        import json

        prompt = (
            f"Problem:\n{problem.question}\n\nReference (may be empty): {problem.answer}\n\n"
            f"Response:\n{response[-3000:]}\n\nIs the response's final answer correct? Reply in JSON."
        )
        reply = self._llm.chat([{"role": "user", "content": prompt}], max_tokens=20, json_schema=self.SCHEMA)
        try:
            return 1.0 if json.loads(reply.text).get("correct") is True else 0.0
        except ValueError:
            return 0.0


class DefaultVerifier:
    """Per problem: complex numbers for complex-number tasks, polynomials for polynomial tasks, math comparison
    for math tasks and numeric answers ("ANSWER: 292 legs" is 292), else words."""

    def __init__(self) -> None:
        self._math, self._words, self._complex = MathVerifier(), WordVerifier(), ComplexVerifier()
        self._polynomial = PolynomialVerifier()

    def __call__(self, response: str, problem: Problem) -> float:
        if problem.task in COMPLEX_TASKS:
            return self._complex(response, problem)
        if problem.task in POLYNOMIAL_TASKS:
            return self._polynomial(response, problem)
        numeric = _NUMBER.fullmatch(problem.answer.strip()) is not None
        return (self._math if problem.task in MATH_TASKS or numeric else self._words)(response, problem)
