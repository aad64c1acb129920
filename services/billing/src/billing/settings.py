from bai_platform.settings import ServiceSettings


class BillingSettings(ServiceSettings):
    service_name: str = "billing"
    port: int = 8105
