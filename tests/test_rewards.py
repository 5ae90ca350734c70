"""Verifiers on tricky answer forms."""

import threading
from fractions import Fraction

import pytest

from dso.config import load_config
from dso.errors import ConfigError
from dso.learn.datasets import Problem
from dso.learn.rewards import (
    ComplexVerifier,
    DefaultVerifier,
    LLMJudge,
    MathVerifier,
    PolynomialVerifier,
    WordVerifier,
    committed_answer,
    final_answer,
    parse_complex,
    parse_polynomial,
)
from dso.learn.run import make_verifier
from dso.llm.testing import ScriptedLLM

MATH = Problem("p", "q", "1000", "gsm_symbolic")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("so the total is \\boxed{1,000}", 1.0),
        ("work...\n#### 1000", 1.0),
        ("ANSWER: 1,000", 1.0),
        ("Answer: $1000$.", 1.0),
        ("The final answer is: 1000 apples", 0.0 + 1.0),
        ("ANSWER: 999", 0.0),
        ("First 1000, then 12 more: ANSWER: 1012", 0.0),
        ("no number at all", 0.0),
        ("\\boxed{1000} but later ANSWER: 5", 1.0),  # a boxed answer is the commitment
    ],
)
def test_math_answers(response: str, expected: float) -> None:
    assert MathVerifier()(response, MATH) == expected


def test_fractions_and_decimals() -> None:
    three_quarters = Problem("f", "q", "3/4", "champ")
    assert MathVerifier()("ANSWER: 0.75", three_quarters) == 1.0
    assert MathVerifier()("\\boxed{\\frac{3}{4}}", three_quarters) == 1.0
    assert MathVerifier()("ANSWER: 4/3", three_quarters) == 0.0


def test_scientific_notation_is_a_number_not_eulers_e() -> None:
    largest = Problem("n", "q", "757954645.211", "number_format")
    assert MathVerifier()("ANSWER: 7.579546452110000e+08", largest) == 1.0
    assert MathVerifier()("ANSWER: 7.5795464e+08", largest) == 0.0
    tiny = Problem("p", "q", "9.360000138304076e-18", "power_function")
    assert MathVerifier()("ANSWER: 9.360000138304076E-18", tiny) == 1.0
    assert MathVerifier()("ANSWER: 9.36e-17", tiny) == 0.0


def test_verifier_works_off_the_main_thread() -> None:
    scores: list[float] = []
    worker = threading.Thread(target=lambda: scores.append(MathVerifier()("\\boxed{\\frac{2000}{2}}", MATH)))
    worker.start()
    worker.join(timeout=30)
    assert scores == [1.0]


def test_word_answers() -> None:
    problem = Problem("w", "q", "mother-in-law", "family_relationships")
    assert WordVerifier()("Thinking...\nANSWER: Mother-in-law", problem) == 1.0
    assert WordVerifier()("ANSWER: **mother-in-law**.", problem) == 1.0
    assert WordVerifier()("ANSWER: mother", problem) == 0.0
    weekday = Problem("d", "Which weekday?", "Friday", "calendar_arithmetic")
    assert WordVerifier()("ANSWER: \\text{Friday}", weekday) == 1.0  # LaTeX's text wrapper is no word of the answer
    assert WordVerifier()("So \\(\\boxed{\\textbf{Friday}}\\).", weekday) == 1.0
    assert WordVerifier()("ANSWER: \\text{Thursday}", weekday) == 0.0
    assert WordVerifier()("ANSWER: \\text{Friday} \\text{Monday}", weekday) == 0.0
    default = DefaultVerifier()
    assert default("ANSWER: Mother-in-law", problem) == 1.0
    legs = Problem("l", "How many legs?", "292", "leg_counting")  # not a math task, but a numeric answer
    assert default("13 x 14 = 182, ...\nANSWER: 292 legs", legs) == 1.0
    assert default("ANSWER: 29.2", legs) == 0.0 and default("ANSWER: 293", legs) == 0.0


def test_a_response_ending_on_a_list_is_scored_on_the_whole_list() -> None:
    """Sorting answers are lists; an unmarked list used to be scored on its last number alone."""
    sort = Problem("s", "Sort descending: -81.7, 67.1, 61.8", "['67.1', '61.8', '-81.7']", "number_sorting")
    verify = DefaultVerifier()
    assert verify("Here's the sorted list in descending order:\n['67.1', '61.8', '-81.7']", sort) == 1.0
    assert verify("Sorted:\n[67.1, 61.8, -81.7].", sort) == 1.0
    assert verify("Sorted:\n['67.1', '-81.7', '61.8']", sort) == 0.0  # the order is the answer
    assert verify("['67.1']\nANSWER: ['67.1', '61.8', '-81.7']", sort) == 1.0  # a marked answer wins
    assert verify("['67.1', '61.8', '-81.7'] is the input; the smallest is -81.7", sort) == 0.0  # ends on a number
    single = Problem("n", "Sort: 5", "['5']", "number_sorting")
    assert verify("The list [1, 5] has 2 items, so 5", single) == 1.0  # a trailing number is still the answer
    # junk a model can emit: deep or unbalanced brackets, long lines, other scripts; one string out, no error
    for junk in ("[" * 100_000, "]" * 100_000, "[[[1]]]" * 10_000, "[\u0665, \u0666]", "[\x00\ufffd]\n" * 1_000):
        assert isinstance(committed_answer(junk), str)
        assert verify(junk, sort) == 0.0
    assert committed_answer("[[[1]]]") == "[1]"  # the innermost one-line list


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("(-6 + 2i)(10 - 9i) = -60 + 54i + 20i + 18 = -42 + 74i\nANSWER: -42 + 74i", 1.0),
        ("ANSWER: -42.0 + 74.0i.", 1.0),
        ("ANSWER: $-42+74i$", 1.0),
        ("ANSWER: (-42 + 74 * i)", 1.0),
        ("The product is -42 + 74i.", 1.0),  # no ANSWER line: the last complex number written
        ("ANSWER: -42 - 74i", 0.0),
        ("ANSWER: 74i - 42", 0.0),  # the imaginary part first is not read as the sum
        ("ANSWER: -42", 0.0),
        ("-42 + 74i, or is it? ANSWER: 74 + 42i", 0.0),  # a marked answer wins
        ("no number", 0.0),
    ],
)
def test_complex_answers(response: str, expected: float) -> None:
    """Complex answers are compared as numbers: "-42 + 74i" is the ground truth "-42.0 + 74.0i"."""
    product = Problem(
        "c", "Multiply the complex numbers: (-6.0 + 2.0i) \u00d7 (10.0 - 9.0i)", "-42.0 + 74.0i", "complex_arithmetic"
    )
    assert DefaultVerifier()(response, product) == expected
    assert ComplexVerifier()(response, product) == expected


def test_complex_parsing_edges() -> None:
    assert parse_complex("2 - i") == complex(2, -1) and parse_complex("-i") == complex(0, -1)
    assert parse_complex("\u22124 + 2i") == complex(-4, 2)  # a typeset minus sign
    assert parse_complex("3.00i") == complex(0, 3) and parse_complex("6.00") == complex(6, 0)
    assert parse_complex("It takes 3 iterations") == complex(3, 0)  # "i" starting a word is no imaginary unit
    assert parse_complex("no number here") is None
    real = Problem("r", "Divide the complex numbers: (12.0 + 0.0i) \u00f7 (2.0 + 0.0i)", "6.00", "complex_arithmetic")
    assert DefaultVerifier()("ANSWER: 6 + 0i", real) == 1.0 and DefaultVerifier()("ANSWER: 6", real) == 1.0
    # bounded and in linear time (a number, then spaces that end in no "i", once took cubic time), no error
    for junk in ("i" * 100_000, "-" * 100_000 + "1", "1." * 50_000, "\x00\ufffd" * 1_000, "1" + " " * 1_998 + "x"):
        assert ComplexVerifier()(junk, real) == 0.0


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Raise each power by one.\nANSWER: -x**9 + 7*x**7 + 9*x**4/2 + C", 1.0),
        ("ANSWER: -X^9 + 7X^7 + 4.5x^4 + c", 1.0),  # another form of the same coefficients
        ("ANSWER: $\\frac{9}{2}x^{4} - x^{9} + 7x^{7} + C$", 1.0),
        ("ANSWER: \\boxed{7x^7 - x^9 + (9/2)x^4}", 1.0),  # order and a missing + C do not matter
        ("The integral is\n\u222b ... dx = -x**9 + 7*x**7 + 9*x**4/2 + C", 1.0),  # the last line, after "="
        ("ANSWER: -x**9 + 7*x**7 + 9*x**4 + C", 0.0),  # a coefficient wrong
        ("ANSWER: -x**9 + 7*x**7 + C", 0.0),  # a term missing
        ("ANSWER: -x**8 + 7*x**7 + 9*x**4/2 + C", 0.0),  # an exponent wrong
        ("ANSWER: the same as above", 0.0),
    ],
)
def test_polynomial_answers(response: str, expected: float) -> None:
    """Polynomial answers are compared term by term with exact coefficients, not word by word."""
    integral = Problem(
        "p",
        "Find the indefinite integral: \u222b -9*x**8 + 49*x**6 + 18*x**3 dx",
        "-x**9 + 7*x**7 + 9*x**4/2 + C",
        "simple_integration",
    )
    assert DefaultVerifier()(response, integral) == expected
    assert PolynomialVerifier()(response, integral) == expected


def test_polynomial_parsing_edges() -> None:
    product = Problem(
        "q",
        "Simplify this expression: 129*z*(-193*z**3 + 19*z)",
        "-24897*z**4 + 2451*z**2",
        "polynomial_multiplication",
    )
    assert DefaultVerifier()("ANSWER: 2451z^2 - 24897z^4", product) == 1.0  # the ground truth's variable
    assert DefaultVerifier()("ANSWER: 2451x^2 - 24897x^4", product) == 0.0
    assert parse_polynomial("(x + 1)(x - 1)") == {0: -1, 2: 1} and parse_polynomial("2(x+1)") == {0: 2, 1: 2}
    assert parse_polynomial("x**2*(x+1)") == {2: 1, 3: 1} and parse_polynomial("13*X/4") == {1: Fraction(13, 4)}
    assert parse_polynomial("x - x") == {} and parse_polynomial("0") == {}
    assert parse_polynomial("-" * 399 + "x") == {1: -1}  # 399 signs in a row: deep, yet no RecursionError
    for junk in (
        "1/0",
        "x**x",
        "x/x",
        "2**-1",
        "x**(1/2)",
        "__import__('os')",
        "9" * 500,
        "(" * 100 + "x" + ")" * 100,
        "2**64**64",
        "((2**64)**64)**64",
        "((x+1)**64)**64",
        "\x00\ufffd" * 100,
        "",
    ):
        assert parse_polynomial(junk) is None, junk  # no eval, bounded depth, degree and coefficient size


def test_final_answer_and_user_callables() -> None:
    assert final_answer("a \\boxed{x^{2}} b") == "x^{2}"
    assert final_answer("1 then 2 then 3") == "3"
    assert final_answer("the largest is 9.478654191690000e+08") == "9.478654191690000e+08"  # not "08"
    fmt = Problem("n", "pick the largest", "947865419.1689999", "number_format")
    assert DefaultVerifier()("The largest is 9.478654191690000e+08", fmt) == 1.0
    assert DefaultVerifier()("The largest is 9.478654037099999e+08", fmt) == 0.0


def test_verifier_choice_reaches_every_verifier() -> None:
    judge = ScriptedLLM(lambda r: '{"correct": true}' if "ANSWER: 1000" in r.prompt else '{"correct": false}')
    chosen = {name: make_verifier(name, judge) for name in ("default", "math", "words", "llm-judge")}
    assert [type(v) for v in chosen.values()] == [DefaultVerifier, MathVerifier, WordVerifier, LLMJudge]
    assert chosen["llm-judge"]("ANSWER: 1000", MATH) == 1.0 and chosen["llm-judge"]("ANSWER: 7", MATH) == 0.0
    assert judge.requests[0].json_schema == LLMJudge.SCHEMA  # the judge's answer is schema-constrained
    assert load_config(environ={"DSO_TRAIN_VERIFIER": "words"}).train.verifier == "words"
    with pytest.raises(ConfigError, match=r"train\.verifier must be one of"):
        load_config(environ={"DSO_TRAIN_VERIFIER": "oracle"})
