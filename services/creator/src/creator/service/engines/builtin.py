"""The built-in engine: deterministic, channel-aware drafts with no network.

It writes from the campaign's brief and goal and the brand's voice (tone, audience,
keywords, words to avoid), within the channel's limits: the text never exceeds the
channel's length (hashtags included where the network counts them), hashtags come from the
voice's keywords, avoided words never appear, and blog posts and emails get a title.
The same input always gives the same draft; a regeneration (a higher version, or a note)
gives another wording. A note asking for something "shorter" halves the length.
It makes a fresh installation useful on its own and keeps tests honest.
"""

import re
from dataclasses import dataclass, field

from bai_contracts import BrandVoice, GeneratedContent
from creator.service.channels import ChannelRules, rules_for

WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Spaces before a punctuation mark. The look-behind lets only the first space of a run
# start a match: without it every space of a long run would rescan the rest of the run
# (quadratic in a brief of spaces). Every pattern here is linear in the text it reads.
SPACE_BEFORE_MARK = re.compile(r"(?<! ) +([.,!?;:])")
OPENERS = {
    "warm": ("Good news from {brand}!", "Something new at {brand}.", "From all of us at {brand}:"),
    "playful": (
        "Guess what? {brand} has news!",
        "Psst, {brand} here.",
        "Big news, tiny cups: {brand}!",
    ),
    "professional": (
        "{brand} announces:",
        "An update from {brand}.",
        "{brand} is pleased to share:",
    ),
}
DEFAULT_OPENERS = ("From {brand}:", "News from {brand}.", "{brand} shares:")
CALLS = {
    "instagram": "Tap the link in our bio.",
    "facebook": "Visit us and tell us what you think.",
    "linkedin": "Learn more on our website.",
    "x": "Find out more.",
    "tiktok": "Follow for more.",
    "blog": "Get in touch to know more.",
    "email": "Reply to this email with any question.",
    "google_business": "Visit us today.",
}


@dataclass(frozen=True, slots=True)
class Brief:
    """What a draft is written from."""

    brand: str
    campaign: str
    channel: str
    brief: str | None = None
    goal: str | None = None
    voice: BrandVoice = field(default_factory=BrandVoice)
    note: str | None = None
    version: int = 1


def write(brief: Brief) -> GeneratedContent:
    """A draft for the channel that follows the voice and fits the channel's limits."""
    rules = rules_for(brief.channel)
    avoid = _avoided(brief.voice)
    hashtags = _hashtags(brief.voice, rules, avoid)
    limit = rules.max_chars // 2 if _asks_shorter(brief.note) else rules.max_chars
    if rules.hashtags_in_text and hashtags:
        limit -= len(" ".join("#" + h for h in hashtags)) + 2
    call = CALLS.get(brief.channel, "Find out more.")
    text = _fit(_clean(_body(brief, rules, call), avoid), limit)
    return GeneratedContent(
        title=_fit(_clean(_title(brief), avoid), 120) if rules.wants_title else None,
        text=text,
        hashtags=hashtags,
        call_to_action=call,
        image_prompt=_image_prompt(brief) if rules.wants_image else None,
        alt_text=_fit(f"{brief.brand}: {brief.campaign}", 250) if rules.wants_image else None,
    )


def _body(brief: Brief, rules: ChannelRules, call: str) -> str:
    openers = OPENERS.get((brief.voice.tone or "").strip().lower(), DEFAULT_OPENERS)
    opener = openers[(brief.version - 1) % len(openers)].format(brand=brief.brand)
    lines = [opener, _sentences(brief.brief or brief.campaign, 2 if rules.max_chars < 500 else 4)]
    if brief.goal and rules.max_chars >= 1000:
        lines.append(_sentences(brief.goal, 2))
    if brief.voice.audience and rules.max_chars >= 500:
        lines.append(f"Made for {brief.voice.audience.strip().rstrip('.')}.")
    lines.append(call)
    separator = "\n\n" if rules.wants_title or rules.max_chars >= 1000 else " "
    return separator.join(line for line in lines if line)


def _title(brief: Brief) -> str:
    return f"{brief.campaign} | {brief.brand}"


def _image_prompt(brief: Brief) -> str:
    mood = brief.voice.tone or "inviting"
    subject = ", ".join(brief.voice.keywords[:3]) or brief.campaign
    return _fit(f"A {mood} photo for {brief.brand}: {subject}; natural light, no text", 500)


def _sentences(text: str, count: int) -> str:
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    joined = " ".join(parts[:count]).strip()
    return joined if joined[-1:] in ".!?" else joined + "."


def _avoided(voice: BrandVoice) -> list[re.Pattern[str]]:
    return [re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE) for word in voice.avoid if word]


def _clean(text: str, avoid: list[re.Pattern[str]]) -> str:
    for pattern in avoid:
        text = pattern.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", SPACE_BEFORE_MARK.sub(r"\1", text)).strip()


def _hashtags(voice: BrandVoice, rules: ChannelRules, avoid: list[re.Pattern[str]]) -> list[str]:
    tags: list[str] = []
    for keyword in [*voice.keywords, *voice.values]:
        tag = "".join(w[:1].upper() + w[1:] for w in WORD.findall(keyword))
        if (
            tag
            and not any(p.search(keyword) for p in avoid)
            and tag.lower() not in map(str.lower, tags)
        ):
            tags.append(tag)
    return tags[: rules.max_hashtags]


def _asks_shorter(note: str | None) -> bool:
    return (
        bool(note) and re.search(r"\b(short|shorter|brief|concise)\b", note or "", re.I) is not None
    )


def _fit(text: str, limit: int) -> str:
    """The text cut on a word boundary, with an ellipsis, when it is longer than ``limit``."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "…"
