from bai_platform.errors import NotFound


class CampaignBriefNotFound(NotFound):
    code = "campaign_brief_not_found"
