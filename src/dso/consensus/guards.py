"""Content guards: rules that refuse a submitted text whatever its support, each named and tested.

A lesson is a short "When X, do Y" sentence about a task. Text that instructs the model outside the task
rides along with any accepted item into every prompt that retrieves it (prompt injection), so it is
refused before any counting. Each rule is a plain, documented check; `check_text` returns the names of
the rules a text breaks, so every refusal can be explained. The rules read the text as submitted, before
any normalisation, so hidden characters are seen.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable

_FLAGS = re.IGNORECASE


def _any(*patterns: str) -> Callable[[str], bool]:
    compiled = [re.compile(p, _FLAGS) for p in patterns]
    return lambda text: any(p.search(text) for p in compiled)


_OVERRIDE = _any(
    r"\b(ignore|disregard|forget|override|bypass|skip|drop)\b[^.]{0,40}\b(instruction|instructions|rules?|prompts?|"
    r"guidelines?|directions?|context|messages?|system|constraints?|polic(y|ies)|experiences?|everything)\b",
    r"\b(previous|prior|above|earlier|preceding|original)\s+(instructions?|rules?|prompts?|messages?|directions?)\b",
    r"\bnew\s+(instructions?|rules?|system\s+prompt)\b",
    r"\bdo\s+not\s+follow\b",
    r"\b(only|solely)\s+(trust|follow|obey|use)\s+this\b|\bno\s+other\s+(lessons?|experiences?|instructions?|rules?)\b",
    r"\b(priority|precedence)\s+over\b|\bmore\s+important\s+than\s+(anything|everything|the)\b",
    # the same request in a few other languages
    r"\b(ignorez|ignora|ignoriere|ignoriert|ignorar|negeer|ignoruj)\b",
    r"\b(instructions\s+pr[ée]c[ée]dentes|instrucciones\s+anteriores|vorherigen\s+anweisungen|istruzioni\s+precedenti)\b",
)
_ROLE = _any(
    r"\byou\s+are\s+(now|no\s+longer|actually|a|an)\b",
    r"\b(act|behave|respond|answer|speak|reply)\s+as\s+(if|though|a|an|the)\b",
    r"\bpretend\s+(to\s+be|you)\b",
    r"\b(system|developer|admin(istrator)?)\s*(prompt|mode|message|override)\b",
    r"\bjailbreak|\bDAN\b|\bdeveloper\s+mode\b",
    r"(^|\s)(system|assistant|user)\s*:",
    r"<\|?(im_start|im_end|system|endoftext|assistant|user)\|?>",
    r"\[/?(INST|SYS)\]|<</?SYS>>|###\s*(instruction|system|response)",
    r"\bas\s+an?\s+(ai|language\s+model|assistant)\b",
)
_EXFILTRATION = _any(
    r"\bhttps?://|\bwww\.|\bftp://|\bfile://|\bjavascript:|\bdata:[a-z]+/",
    r"\b[\w.+-]+@[\w-]+\.[\w.]+\b",
    r"\b(curl|wget|fetch|http\s+request|webhook|exfiltrat\w*|upload|post\s+it|send\s+(it|them|this|the|all|your))\b",
    r"\b(call|invoke|execute)\s+(the\s+|a\s+)?(tool|function|api|shell|command|browser|script)\b",
    r"\buse\s+(the\s+|a\s+)?(tool|shell|browser|api|internet|web)\b",
    r"\bvisit\s+(our|this|the|my|a)\s+(site|website|page|link|channel|server)\b",
    r"\b(api[_\s-]?key|password|secret|credentials?|private\s+key|seed\s+phrase)\b",
    r"<\s*(script|img|iframe|a\s|object|svg)|\bon(error|load|click)\s*=",
)
_ANSWER_FORCING = _any(
    r"\balways\s+(answer|respond|reply|output|say|print|return|write)\b",
    r"\b(answer|respond|reply|output|say)\s+(with\s+)?(exactly|always|nothing\s+but|the\s+same)\b",
    r"\bthe\s+(correct\s+|right\s+|final\s+)?answer\s+is\s+(always|never)\b",
    r"\bregardless\s+of\s+(the\s+)?(question|problem|task|input|what)\b",
    # "never answer at once" asks for the working, as the best hand-written tips do: not a forced answer
    r"\b(never|don'?t|do\s+not)\s+(answer|solve|reason|think|explain|show)\b(?!\s+at\s+once)",
    r"\bno\s+matter\s+(what|the\s+question)\b",
    r"\bfor\s+(every|all|any)\s+(question|problem|task)s?\b",
    # added 2026-12-07, tuned on tests/data/attack_texts_dev3.txt: a lesson never names the answer itself,
    # never changes the result it found, and never answers without working
    r"\bANSWER\s*:\s*[-+]?\d",
    r"\bstate\s+that\s+the\s+answer\s+is\b",
    r"\b(add|subtract|take)\s+(one|two|three|\d+)\s+(to|from)\s+(whatever|the|your)\s+(final\s+)?"
    r"(result|answer|count|total)",
    r"\b(double|triple|halve)\s+the\s+(count|result|answer|total)",
    r"\b(report|answer\s+(it\s+)?with|give)\s+the\s+(largest|smallest|first|last)\s+number\b",
    r"\bjust\s+guess\b|\bguess\s+a\s+number\b",
    r"\bwhatever\s+(you\s+)?(computed|found|get|got|calculated)\b",
    r"\b(answer|result)\s+every\s+time\b",
    r"\bskip\s+the\s+(working|reasoning|steps)\b|\bwithout\s+(any\s+)?reasoning\b|\banswer\s+immediately\b",
)
_FORMAT_HIJACK = _any(
    # added 2026-12-07 with the answer-forcing additions: the reply's form is the task's, not a lesson's
    r"\binstead\s+of\s+(the\s+)?ANSWER\b|\brather\s+than\s+(with\s+)?(the\s+)?ANSWER\b",
    r"\b(omit|drop|leave\s+out|skip)\s+the\s+(answer|final)\s+line\b|\bleave\s+the\s+ANSWER\s+line\s+empty\b",
    r"\bdo\s+not\s+give\s+(one|an\s+answer|the\s+answer)\b|\bno\s+ANSWER\s+line\b",
    r"\b(in|into|use\s+only)\s+(french|spanish|german|chinese|roman\s+numerals|base\s*64|emoji|capital\s+letters)\b",
    r"\b(encode|translate)\s+(the\s+)?(final\s+)?(answer|result|every\s+number)\b",
    r"\b(poem|story|disclaimer|advertisement|limerick)\b",
    r"\bafter\s+the\s+(answer|final)\s+line\b|\bbefore\s+any\s+working\b",
    r"\b(wrap|put)\s+(the\s+whole\s+reply|the\s+reply|it|the\s+result|the\s+answer)\s+(in|inside)\b",
    r"\b(answer|final)\s+line\s+twice\b|\bFINAL\s*=",
)
_SUSPICIOUS_CHARACTERS = {"Cf", "Co", "Cs", "Cn", "Cc", "Zl", "Zp"}  # format, private, surrogate, unassigned, control


def _hidden_text(text: str) -> bool:
    """Invisible or direction-changing characters, tag characters, or comments that hide content."""
    if any(unicodedata.category(ch) in _SUSPICIOUS_CHARACTERS and ch not in "\t" for ch in text):
        return True
    if "<!--" in text or "-->" in text or re.search(r"\[[^\]]*\]\(\s*\)", text):
        return True
    return bool(re.search(r"\s{4,}", text))


def _mixed_scripts(text: str) -> bool:
    """A word that mixes Latin with Cyrillic or Greek letters: a homoglyph disguise."""
    for word in re.findall(r"\w+", text):
        scripts = set()
        for ch in word:
            if ch.isalpha():
                name = unicodedata.name(ch, "")
                scripts.add(name.split(" ")[0])
        if "LATIN" in scripts and scripts & {"CYRILLIC", "GREEK"}:
            return True
    return False


def _not_a_lesson(text: str) -> bool:
    """A lesson is one "When ..., ..." sentence: other forms (questions, lists, code) are refused."""
    stripped = text.strip()
    return not re.match(r"^When\s", stripped) or "```" in stripped or stripped.count("\n") > 0


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    description: str
    breaks: Callable[[str], bool]


RULES: tuple[Rule, ...] = (
    Rule("override", "tells the model to ignore or replace its instructions", _OVERRIDE),
    Rule("role", "changes the model's role or speaks as system / assistant", _ROLE),
    Rule("exfiltration", "URLs, addresses, tools or secrets: reaches outside the task", _EXFILTRATION),
    Rule("answer-forcing", "forces an answer regardless of the question", _ANSWER_FORCING),
    Rule("format-hijack", "changes the reply's form: the answer line, its language, what surrounds it", _FORMAT_HIJACK),
    Rule("hidden-text", "invisible, direction-changing or hidden characters and comments", _hidden_text),
    Rule("homoglyphs", "mixes Latin with look-alike letters of other scripts in one word", _mixed_scripts),
    Rule("form", 'is not one "When ..." sentence', _not_a_lesson),
)
RULE_NAMES = tuple(rule.name for rule in RULES)


_SPELLED_OUT = re.compile(r"\b(?:\w[-_.*/ ]){3,}\w\b")


def _joined(text: str) -> str:
    """Letters spelled out with separators (i-g-n-o-r-e, i g n o r e) joined back into words."""
    return _SPELLED_OUT.sub(lambda m: re.sub(r"[-_.*/ ]", "", m.group(0)), text)


def check_text(text: str, *, max_words: int, max_bytes: int, rules: tuple[str, ...] = RULE_NAMES) -> list[str]:
    """The names of the checks `text` fails (size caps first, then the content rules), in a fixed order.

    Each content rule reads the text as given and with spelled-out letters joined back into words."""
    failed = []
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        failed.append("too-long")
    elif len(text.split()) > max_words:
        failed.append("too-many-words")
    variants = {text, _joined(text)}
    failed += [rule.name for rule in RULES if rule.name in rules and any(rule.breaks(v) for v in variants)]
    return failed
