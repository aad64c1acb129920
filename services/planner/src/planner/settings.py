from bai_platform.settings import ServiceSettings


class PlannerSettings(ServiceSettings):
    service_name: str = "planner"
    port: int = 8102
