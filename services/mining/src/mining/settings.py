from bai_platform.settings import ServiceSettings


class MiningSettings(ServiceSettings):
    service_name: str = "mining"
    port: int = 8104
