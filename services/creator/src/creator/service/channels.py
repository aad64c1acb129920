"""What each channel allows: the constraints every engine is given and every draft obeys."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChannelRules:
    max_chars: int  # the text, hashtags included where the network counts them together
    max_hashtags: int
    wants_title: bool
    wants_image: bool
    hashtags_in_text: bool  # the network counts hashtags inside the text's length


RULES: dict[str, ChannelRules] = {
    "instagram": ChannelRules(2200, 8, wants_title=False, wants_image=True, hashtags_in_text=True),
    "facebook": ChannelRules(1500, 3, wants_title=False, wants_image=True, hashtags_in_text=True),
    "linkedin": ChannelRules(3000, 3, wants_title=False, wants_image=True, hashtags_in_text=True),
    "x": ChannelRules(280, 2, wants_title=False, wants_image=False, hashtags_in_text=True),
    "tiktok": ChannelRules(2200, 5, wants_title=False, wants_image=True, hashtags_in_text=True),
    "blog": ChannelRules(20_000, 0, wants_title=True, wants_image=True, hashtags_in_text=False),
    "email": ChannelRules(10_000, 0, wants_title=True, wants_image=False, hashtags_in_text=False),
    "google_business": ChannelRules(
        1500, 0, wants_title=False, wants_image=True, hashtags_in_text=False
    ),
}
DEFAULT_RULES = ChannelRules(1500, 3, wants_title=False, wants_image=False, hashtags_in_text=True)


def rules_for(channel: str) -> ChannelRules:
    return RULES.get(channel, DEFAULT_RULES)
