from bai_platform.settings import ServiceSettings


class CreatorSettings(ServiceSettings):
    service_name: str = "creator"
    port: int = 8103
