"""The built-in engine: deterministic drafts that follow the voice and fit the channel."""

import pytest

from bai_contracts import BrandVoice
from creator.service.channels import RULES, rules_for
from creator.service.engines.builtin import Brief, write

VOICE = BrandVoice(
    tone="warm",
    audience="young professionals",
    keywords=["coffee", "slow mornings", "winter blend"],
    avoid=["cheap"],
)
LONG_BRIEF = (
    "Launch the winter blend, a cheap thrill for slow mornings. " * 30
    + "It has notes of cocoa and orange."
)


def brief(channel: str, **extra: object) -> Brief:
    values: dict[str, object] = {
        "brand": "Acme Coffee",
        "campaign": "December push",
        "channel": channel,
        "brief": "Launch the winter blend. Cocoa and orange notes, roasted in town.",
        "goal": "Sell 500 bags before New Year.",
        "voice": VOICE,
        **extra,
    }
    return Brief(**values)  # type: ignore[arg-type]  # the test builds it from a dict


@pytest.mark.parametrize("channel", sorted(RULES))
def test_every_channel_gets_text_within_its_length_hashtags_included(channel: str) -> None:
    content = write(brief(channel, brief=LONG_BRIEF))

    rules = rules_for(channel)
    tags = " ".join("#" + h for h in content.hashtags)
    counted = f"{content.text}\n\n{tags}" if rules.hashtags_in_text and tags else content.text
    assert 0 < len(counted) <= rules.max_chars
    assert len(content.hashtags) <= rules.max_hashtags


def test_hashtags_come_from_the_voices_keywords() -> None:
    content = write(brief("instagram"))

    assert content.hashtags == ["Coffee", "SlowMornings", "WinterBlend"]


def test_x_gets_at_most_two_hashtags_and_blog_none() -> None:
    assert len(write(brief("x")).hashtags) == 2
    assert write(brief("blog")).hashtags == []


@pytest.mark.parametrize("channel", sorted(RULES))
def test_avoided_words_never_appear(channel: str) -> None:
    content = write(brief(channel, brief=LONG_BRIEF))

    written = " ".join(filter(None, [content.title, content.text, *content.hashtags])).lower()
    assert "cheap" not in written


def test_blog_and_email_get_a_title_and_social_posts_do_not() -> None:
    assert write(brief("blog")).title == "December push | Acme Coffee"
    assert write(brief("email")).title
    assert write(brief("instagram")).title is None


def test_visual_channels_get_an_image_prompt_and_alt_text() -> None:
    instagram, email = write(brief("instagram")), write(brief("email"))

    assert instagram.image_prompt
    assert "warm" in instagram.image_prompt
    assert instagram.alt_text
    assert (email.image_prompt, email.alt_text) == (None, None)


def test_the_same_input_gives_the_same_draft() -> None:
    assert write(brief("linkedin")) == write(brief("linkedin"))


def test_a_regeneration_is_worded_differently() -> None:
    assert write(brief("linkedin", version=2)).text != write(brief("linkedin", version=1)).text


def test_a_note_asking_for_shorter_halves_the_length() -> None:
    long = write(brief("x", brief=LONG_BRIEF))
    short = write(brief("x", brief=LONG_BRIEF, note="Make it shorter please"))

    assert len(short.text) <= rules_for("x").max_chars // 2
    assert len(short.text) < len(long.text)


def test_the_brief_and_the_audience_shape_the_text() -> None:
    text = write(brief("linkedin")).text

    assert "Launch the winter blend." in text
    assert "young professionals" in text
    assert text.startswith(("Good news from Acme Coffee", "Something new", "From all of us"))
    assert text.endswith("Learn more on our website.")


def test_a_campaign_without_a_brief_writes_from_its_name() -> None:
    content = write(brief("facebook", brief=None, goal=None))

    assert "December push." in content.text


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "hostile",
    ["a" + " " * 100_000 + "b", "a" + " \t" * 50_000 + "b", "a" + " " * 100_000 + "b ."],
)
def test_a_brief_built_to_stall_a_pattern_is_written_at_once(hostile: str) -> None:
    content = write(brief("blog", brief=hostile, goal=hostile, voice=VOICE))

    assert len(content.text) <= rules_for("blog").max_chars
